//! The HTTP server: shared state, middleware (request ids, security headers), routes.

pub mod client_ip;
pub mod pages;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::providers::ProviderRegistry;
use crate::secrets::MasterKey;
use crate::sessions::CookiePolicy;
use crate::store::SharedStore;
use crate::tokens::TokenSigner;
use crate::tokens::keyring::Keyring;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{App, HttpMessage, HttpServer, web};
use std::sync::Arc;
use tracing::Instrument;

/// Everything a handler may use. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: SharedStore,
    pub clock: SharedClock,
    pub master: Arc<MasterKey>,
    pub keyring: Arc<Keyring>,
    pub signer: TokenSigner,
    pub providers: Arc<ProviderRegistry>,
    pub cookies: CookiePolicy,
    pub pages: Arc<pages::Pages>,
    pub discovery: Arc<String>,
    pub oauth_metadata: Arc<String>,
    /// Outbound HTTP (back-channel logout): timeouts on, redirects off.
    pub http: reqwest::Client,
}

/// The id of the request being served, for logs and error pages.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = crate::secrets::random_id().unwrap_or_else(|_| "-".to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
    );
    async move {
        let started = std::time::Instant::now();
        let mut res = next.call(req).await?;
        let h = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&id) {
            h.insert(header::HeaderName::from_static("x-request-id"), v);
        }
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
                ),
            );
        }
        tracing::info!(
            status = res.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "served"
        );
        Ok(res)
    }
    .instrument(span)
    .await
}

async fn hsts(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    res.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    );
    Ok(res)
}

fn configure(state: &AppState, cfg: &mut web::ServiceConfig) {
    let limit = state.config.max_body_bytes;
    cfg.app_data(web::Data::new(state.clone()))
        .app_data(web::FormConfig::default().limit(limit))
        .app_data(web::PayloadConfig::default().limit(limit))
        .app_data(web::JsonConfig::default().limit(limit));
    crate::oidc::routes(cfg);
    crate::login::routes(cfg);
    crate::account::routes(cfg);
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(state: web::Data<AppState>) -> actix_web::HttpResponse {
    match state.keyring.signing_key(state.config.tokens.default_alg) {
        Ok(_) => actix_web::HttpResponse::Ok().body("ready"),
        Err(_) => actix_web::HttpResponse::ServiceUnavailable().body("no signing key"),
    }
}

/// Binds and runs the server until it is stopped.
pub async fn serve(state: AppState) -> std::io::Result<()> {
    let listen = state.config.listen;
    let workers = state.config.workers;
    let https = state.config.issuer_url.scheme() == "https";
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::Condition::new(
                https,
                actix_web::middleware::from_fn(hsts),
            ))
            .wrap(actix_web::middleware::from_fn(request_context))
            .configure(|cfg| configure(&state, cfg))
    })
    .shutdown_timeout(5)
    .bind(listen)?;
    let server = match workers {
        Some(n) => server.workers(n),
        None => server,
    };
    tracing::info!(%listen, "listening");
    server.run().await
}
