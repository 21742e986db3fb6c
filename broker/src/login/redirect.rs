//! Logins through a redirect provider: send the browser upstream, take it back at
//! `/callback/{provider}`.
//!
//! The broker owns all per-login state: the upstream `state`, nonce and PKCE verifier
//! are generated here and kept in the store (single use, keyed by the hash of
//! `state`), together with the provider's own `provider_state`, so the callback may
//! reach another replica. The callback is bound to the browser that started the login
//! and to the provider whose path it arrived on (no mix-up).

use super::{EXPIRED, Pending, complete_login};
use crate::http::AppState;
use crate::oidc::authorize::{AuthorizationRequest, page_error};
use crate::oidc::error::OAuthError;
use crate::providers::ProviderEntry;
use crate::secrets;
use crate::sessions;
use crate::store::AuthRequestRecord;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use switchboard_plugin_api::{BeginRequest, Callback, ProviderError};

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

/// Sends the browser to the provider.
pub(super) async fn begin(
    req: &HttpRequest,
    state: &AppState,
    p: &Pending,
    entry: &ProviderEntry,
) -> HttpResponse {
    let Some(redirect) = entry.provider.redirect() else {
        return page_error(state, req, StatusCode::NOT_FOUND, "No such sign-in method.");
    };
    let fresh = (
        secrets::random_token(),
        secrets::random_token(),
        secrets::random_token(),
    );
    let (Ok(upstream_state), Ok(nonce), Ok(pkce_verifier)) = fresh else {
        return page_error(
            state,
            req,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong. Try again.",
        );
    };
    let challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, pkce_verifier.as_bytes()));
    let callback_url = format!("{}/callback/{}", state.config.issuer, entry.id);
    let request = BeginRequest::new(&callback_url, &upstream_state, &nonce, challenge)
        .with_login_hint(p.request.login_hint.clone());
    let begun =
        match tokio::time::timeout(state.config.login.provider_timeout, redirect.begin(request))
            .await
        {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return provider_failure(req, state, entry, e, Some(&p.request)),
            Err(_) => {
                tracing::warn!(provider = %entry.id, "provider timed out at begin");
                let e = ProviderError::UpstreamUnavailable {
                    detail: "timed out".into(),
                };
                return provider_failure(req, state, entry, e, Some(&p.request));
            }
        };
    let upstream_url = match url::Url::parse(&begun.url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") => u,
        _ => {
            tracing::error!(provider = %entry.id, "provider returned an unusable authorization URL");
            return unavailable(req, state);
        }
    };
    let now = state.clock.now();
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
        request: match serde_json::to_value(&login) {
            Ok(v) => v,
            Err(_) => return unavailable(req, state),
        },
        created_at: now,
        expires_at: now + state.config.login.request_lifetime,
    };
    if let Err(e) = state.store.put_auth_request(&record).await {
        tracing::error!(error = %e, "storing upstream login state failed");
        return page_error(
            state,
            req,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong. Try again.",
        );
    }
    tracing::info!(provider = %entry.id, "sent the browser upstream");
    HttpResponse::SeeOther()
        .insert_header(("Location", upstream_url.as_str()))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

const UNAVAILABLE: &str =
    "This sign-in method is unavailable right now. Try again later or choose another.";

fn unavailable(req: &HttpRequest, state: &AppState) -> HttpResponse {
    page_error(state, req, StatusCode::BAD_GATEWAY, UNAVAILABLE)
}

/// A page for the person, with a way back that tells the app what happened
/// (`access_denied` when upstream refused, `server_error` when it failed).
fn provider_failure(
    req: &HttpRequest,
    state: &AppState,
    entry: &ProviderEntry,
    e: ProviderError,
    request: Option<&AuthorizationRequest>,
) -> HttpResponse {
    let (status, title, message, oauth) = match &e {
        ProviderError::Denied { reason } => {
            tracing::info!(provider = %entry.id, %reason, "upstream login denied");
            (
                StatusCode::FORBIDDEN,
                "Access denied",
                reason.clone(),
                OAuthError::new("access_denied", reason.clone()),
            )
        }
        ProviderError::InvalidCredentials => {
            tracing::info!(provider = %entry.id, "upstream login refused");
            let m = "The sign-in was not accepted.".to_string();
            (
                StatusCode::UNAUTHORIZED,
                "Sign-in refused",
                m.clone(),
                OAuthError::new("access_denied", m),
            )
        }
        other => {
            tracing::error!(provider = %entry.id, error = %other, "upstream login failed");
            (
                StatusCode::BAD_GATEWAY,
                "Sign-in unavailable",
                UNAVAILABLE.to_string(),
                OAuthError::new("server_error", "the identity provider failed"),
            )
        }
    };
    let return_url = request
        .and_then(|r| r.reply(&state.config).ok())
        .map(|reply| reply.error_url(&oauth).to_string());
    state.pages.render(
        "error.html",
        status,
        minijinja::context! {
            title,
            message,
            return_url,
            request_id => crate::oidc::authorize::request_id(req),
        },
    )
}

pub async fn callback_get(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    match serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string()) {
        Ok(params) => callback(&req, &state, &path, "GET", params).await,
        Err(_) => page_error(
            &state,
            &req,
            StatusCode::BAD_REQUEST,
            "The request is malformed.",
        ),
    }
}

/// `response_mode=form_post` callbacks.
pub async fn callback_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    match serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
        Ok(params) => callback(&req, &state, &path, "POST", params).await,
        Err(_) => page_error(
            &state,
            &req,
            StatusCode::BAD_REQUEST,
            "The request is malformed.",
        ),
    }
}

async fn callback(
    req: &HttpRequest,
    state: &AppState,
    provider_id: &str,
    method: &str,
    pairs: Vec<(String, String)>,
) -> HttpResponse {
    let mut params = BTreeMap::new();
    for (k, v) in pairs {
        if params.insert(k.clone(), v).is_some() {
            return page_error(
                state,
                req,
                StatusCode::BAD_REQUEST,
                "The response repeats a parameter.",
            );
        }
    }
    let Some(entry) = state.providers.get(provider_id) else {
        return page_error(state, req, StatusCode::NOT_FOUND, "No such sign-in method.");
    };
    let Some(redirect) = entry.provider.redirect() else {
        return page_error(state, req, StatusCode::NOT_FOUND, "No such sign-in method.");
    };
    let now = state.clock.now();
    let Some(upstream_state) = params
        .get("state")
        .filter(|s| !s.is_empty() && s.len() <= 128)
    else {
        return page_error(state, req, StatusCode::BAD_REQUEST, EXPIRED);
    };
    // Single use: a replayed callback finds nothing.
    let login: UpstreamLogin = match state
        .store
        .take_auth_request(&secrets::hash_secret(upstream_state), now)
        .await
    {
        Ok(Some(r)) => match serde_json::from_value(r.request) {
            Ok(l) => l,
            Err(_) => return page_error(state, req, StatusCode::BAD_REQUEST, EXPIRED),
        },
        Ok(None) => return page_error(state, req, StatusCode::BAD_REQUEST, EXPIRED),
        Err(e) => {
            tracing::error!(error = %e, "reading upstream login state failed");
            return page_error(
                state,
                req,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong. Try again.",
            );
        }
    };
    if login.provider_id != entry.id {
        tracing::warn!(expected = %login.provider_id, got = %entry.id, "callback on another provider's path (mix-up)");
        return page_error(state, req, StatusCode::BAD_REQUEST, EXPIRED);
    }
    let binding = req
        .cookie(state.cookies.binding_name())
        .and_then(|c| sessions::read_binding(&state.master, c.value()));
    let Some(binding) = binding.filter(|b| {
        secrets::constant_time_eq(
            secrets::hash_secret(b).as_bytes(),
            login.binding_hash.as_bytes(),
        )
    }) else {
        tracing::warn!(provider = %entry.id, "callback from another browser");
        return page_error(
            state,
            req,
            StatusCode::BAD_REQUEST,
            "This sign-in was started in another browser. Start again from the application.",
        );
    };
    let request: AuthorizationRequest = match state
        .store
        .get_auth_request(&secrets::hash_secret(&login.login_request_id), now)
        .await
    {
        Ok(Some(r)) => match serde_json::from_value(r.request) {
            Ok(a) => a,
            Err(_) => return page_error(state, req, StatusCode::BAD_REQUEST, EXPIRED),
        },
        Ok(None) => return page_error(state, req, StatusCode::BAD_REQUEST, EXPIRED),
        Err(e) => {
            tracing::error!(error = %e, "reading authorization request failed");
            return page_error(
                state,
                req,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong. Try again.",
            );
        }
    };
    let cb = Callback::new(
        method,
        params,
        login.provider_state,
        login.callback_url,
        login.nonce,
        login.pkce_verifier,
    );
    let identity = match tokio::time::timeout(
        state.config.login.provider_timeout,
        redirect.complete(cb),
    )
    .await
    {
        Ok(Ok(identity)) => identity,
        Ok(Err(e)) => return provider_failure(req, state, entry, e, Some(&request)),
        Err(_) => {
            tracing::warn!(provider = %entry.id, "provider timed out at callback");
            let e = ProviderError::UpstreamUnavailable {
                detail: "timed out".into(),
            };
            return provider_failure(req, state, entry, e, Some(&request));
        }
    };
    let pending = Pending {
        id: login.login_request_id,
        binding,
        request,
    };
    complete_login(req, state, pending, entry, identity).await
}
