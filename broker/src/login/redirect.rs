//! Logins through a redirect provider: send the browser upstream, take it back at
//! `/callback/{provider}`.
//!
//! The broker owns all per-login state: the upstream `state`, nonce and PKCE verifier
//! are generated here and kept in the store (single use, keyed by the hash of
//! `state`), together with the provider's own `provider_state`, so the callback may
//! reach another replica. The callback is bound to the browser that started the login
//! and to the provider whose path it arrived on (no mix-up).

use super::{finish, provider};
use crate::flow::{EXPIRED, FlowError, OAuthError, PendingLogin, admit_start};
use crate::metrics::LoginOutcome;
use crate::providers::ProviderEntry;
use crate::secrets;
use crate::store::AuthRequestRecord;
use crate::web::{AppState, PageError, Params, browser, see_other};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use switchboard_plugin_api::{BeginRequest, Callback, ProviderError};

const MAX_STATE_LEN: usize = 128;
const UNAVAILABLE: &str = "msg.unavailable_choose_another";

/// What the broker keeps between sending the browser upstream and its return.
#[derive(Debug, Serialize, Deserialize)]
struct UpstreamLogin {
    login_request_id: String,
    provider_id: String,
    binding_hash: String,
    nonce: String,
    pkce_verifier: String,
    callback_url: String,
    provider_state: serde_json::Value,
}

fn no_such_method() -> PageError {
    PageError::sign_in(StatusCode::NOT_FOUND, "msg.no_such_method")
}

fn unavailable() -> PageError {
    PageError::sign_in(StatusCode::BAD_GATEWAY, UNAVAILABLE)
}

/// Sends the browser to the provider.
pub(super) async fn begin(
    req: &HttpRequest,
    app: &AppState,
    p: &PendingLogin,
    entry: &ProviderEntry,
) -> Result<HttpResponse, PageError> {
    if !entry.has_redirect() {
        return Err(no_such_method());
    }
    admit_start(app, req).await?;
    let fresh = (
        secrets::random_token(),
        secrets::random_token(),
        secrets::random_token(),
    );
    let (Ok(upstream_state), Ok(nonce), Ok(pkce_verifier)) = fresh else {
        return Err(PageError::internal());
    };
    let challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, pkce_verifier.as_bytes()));
    let callback_url = format!("{}/callback/{}", app.config.issuer, entry.id);
    let (prompt, max_age) = p.freshness();
    let request = BeginRequest::new(&callback_url, &upstream_state, &nonce, challenge)
        .with_login_hint(p.login_hint().map(str::to_string))
        .with_freshness(prompt, max_age);
    let begun = entry
        .begin(request)
        .await
        .map_err(|e| provider_failure(app, entry, e, p))?;
    let upstream_url = match url::Url::parse(&begun.url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") => u,
        _ => {
            tracing::error!(provider = %entry.id, "provider returned an unusable authorization URL");
            return Err(unavailable());
        }
    };
    let now = app.clock.now();
    let login = UpstreamLogin {
        login_request_id: p.id.clone(),
        provider_id: entry.id.clone(),
        binding_hash: secrets::hash_secret(&p.binding),
        nonce,
        pkce_verifier,
        callback_url,
        provider_state: begun.provider_state,
    };
    let record = AuthRequestRecord {
        id_hash: secrets::hash_secret(&upstream_state),
        request: serde_json::to_value(&login).map_err(|_| unavailable())?,
        created_at: now,
        expires_at: now + app.config.login.request_lifetime,
    };
    app.store.put_auth_request(&record).await.map_err(|e| {
        tracing::error!(error = %e, "storing upstream login state failed");
        PageError::internal()
    })?;
    tracing::info!(provider = %entry.id, "sent the browser upstream");
    Ok(see_other(upstream_url.as_str()))
}

/// A page for the person, with a way back that tells the app what happened
/// (`access_denied` when upstream refused, `server_error` when it failed).
fn provider_failure(
    app: &AppState,
    entry: &ProviderEntry,
    e: ProviderError,
    p: &PendingLogin,
) -> PageError {
    let outcome = match &e {
        ProviderError::InvalidCredentials => LoginOutcome::InvalidCredentials,
        _ => LoginOutcome::Failed,
    };
    app.metrics.login(&entry.id, outcome);
    let (status, title, message, oauth) = match &e {
        ProviderError::Denied { reason } => {
            tracing::info!(provider = %entry.id, %reason, "upstream login denied");
            (
                StatusCode::FORBIDDEN,
                "msg.title.access_denied",
                reason.clone(),
                OAuthError::new("access_denied", reason.clone()),
            )
        }
        ProviderError::InvalidCredentials => {
            tracing::info!(provider = %entry.id, "upstream login refused");
            (
                StatusCode::UNAUTHORIZED,
                "msg.title.sign_in_refused_upstream",
                "msg.not_accepted".to_string(),
                OAuthError::new("access_denied", "The sign-in was not accepted."),
            )
        }
        other => {
            tracing::error!(provider = %entry.id, error = %other, "upstream login failed");
            (
                StatusCode::BAD_GATEWAY,
                "msg.title.sign_in_unavailable",
                UNAVAILABLE.to_string(),
                OAuthError::new("server_error", "the identity provider failed"),
            )
        }
    };
    let page = PageError::new(status, title, message);
    match p.back_to_app(app, &oauth) {
        Some(url) => page.back_to_app(url),
        None => page,
    }
}

/// GET or POST (`response_mode=form_post`) `/callback/{provider}`.
pub(super) async fn callback(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<String>,
    params: Params,
) -> Result<HttpResponse, PageError> {
    let method = req.method().as_str().to_string();
    let params = params.into_unique()?;
    let entry = provider(&app, &path)?;
    if !entry.has_redirect() {
        return Err(no_such_method());
    }
    let upstream_state = params
        .get("state")
        .filter(|s| !s.is_empty() && s.len() <= MAX_STATE_LEN)
        .ok_or_else(|| PageError::bad_request(EXPIRED))?;
    // Single use: a replayed callback finds nothing.
    let login: UpstreamLogin = app
        .store
        .take_auth_request(&secrets::hash_secret(upstream_state), app.clock.now())
        .await
        .map_err(FlowError::from)?
        .ok_or(FlowError::Expired)
        .and_then(|r| {
            serde_json::from_value(r.request).map_err(|e| FlowError::Unreadable(e.to_string()))
        })?;
    if login.provider_id != entry.id {
        tracing::warn!(expected = %login.provider_id, got = %entry.id, "callback on another provider's path (mix-up)");
        return Err(PageError::bad_request(EXPIRED));
    }
    let same_browser = browser::binding(&req, &app).is_some_and(|b| {
        secrets::constant_time_eq(
            secrets::hash_secret(&b).as_bytes(),
            login.binding_hash.as_bytes(),
        )
    });
    if !same_browser {
        tracing::warn!(provider = %entry.id, "callback from another browser");
        return Err(FlowError::OtherBrowser.into());
    }
    let p = PendingLogin::load(&app, &req, Some(&login.login_request_id)).await?;
    let cb = Callback::new(
        &method,
        params,
        login.provider_state,
        login.callback_url,
        login.nonce,
        login.pkce_verifier,
    );
    let identity = entry
        .complete(cb)
        .await
        .map_err(|e| provider_failure(&app, entry, e, &p))?;
    finish::finish(&req, &app, p, entry, identity).await
}
