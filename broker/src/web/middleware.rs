//! Middleware around every request: a request id in the span and the response,
//! its count and latency in the metrics, security headers, the request's language
//! (from `Accept-Language`, see [`super::i18n`]), a page error rendered as the page
//! (with that request id), and HSTS when the issuer is https.

use super::AppState;
use super::pages::PageError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = crate::secrets::random_id().unwrap_or_else(|_| "-".to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
    );
    let locale = req.app_data::<web::Data<AppState>>().and_then(|app| {
        let header = req.headers().get(header::ACCEPT_LANGUAGE)?.to_str().ok()?;
        app.pages.catalogues().from_accept_language(header)
    });
    let handled = async move {
        let started = std::time::Instant::now();
        let res = next.call(req).await?;
        let mut res = render_page_error(res, &id);
        let h = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&id) {
            h.insert(header::HeaderName::from_static("x-request-id"), v);
        }
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(super::pages::CONTENT_SECURITY_POLICY),
            );
        }
        let elapsed = started.elapsed();
        if let Some(app) = res.request().app_data::<web::Data<AppState>>() {
            app.metrics.observe_request(
                res.request().method().as_str(),
                res.request().match_pattern().as_deref(),
                res.status().as_u16(),
                elapsed,
            );
        }
        tracing::info!(
            status = res.status().as_u16(),
            elapsed_ms = elapsed.as_millis() as u64,
            "served"
        );
        Ok(res)
    }
    .instrument(span);
    super::i18n::with_locale(locale, handled).await
}

/// A handler that failed with a [`PageError`] gets the full page, which needs the
/// templates and the request id that only this layer has together.
fn render_page_error<B>(
    res: ServiceResponse<B>,
    request_id: &str,
) -> ServiceResponse<EitherBody<B>> {
    let page = res
        .response()
        .error()
        .and_then(|e| e.as_error::<PageError>())
        .cloned();
    let pages = res
        .request()
        .app_data::<web::Data<AppState>>()
        .map(|app| app.pages.clone());
    match (page, pages) {
        (Some(page), Some(pages)) => {
            let rendered = pages.error_page(&page, Some(request_id));
            res.into_response(rendered).map_into_right_body()
        }
        _ => res.map_into_left_body(),
    }
}

pub async fn hsts(
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
