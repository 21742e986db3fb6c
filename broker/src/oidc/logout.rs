//! RP-Initiated Logout 1.0 (`/logout`): end the SSO session, the grants started in it
//! that were not `offline_access`, and tell back-channel clients.

use super::authorize::page_error;
use super::backchannel;
use crate::config::Client;
use crate::http::AppState;
use crate::sessions;
use crate::store::SessionRecord;
use crate::tokens::{ID_TOKEN_TYP, IdTokenClaims, jwt};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use std::collections::BTreeMap;
use url::Url;

const LOGOUT_PURPOSE: &str = "logout";
/// Parameters echoed through the confirmation form.
const CARRIED: [&str; 4] = [
    "id_token_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
];

pub async fn logout_get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    match serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string()) {
        Ok(params) => logout(&req, &state, params, false).await,
        Err(_) => page_error(
            &state,
            &req,
            StatusCode::BAD_REQUEST,
            "The request is malformed.",
        ),
    }
}

pub async fn logout_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    match serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
        Ok(params) => logout(&req, &state, params, true).await,
        Err(_) => page_error(
            &state,
            &req,
            StatusCode::BAD_REQUEST,
            "The request is malformed.",
        ),
    }
}

/// Where to send the person afterwards: only a URI registered for the client that the
/// request proves (by `id_token_hint` or `client_id`).
fn post_logout_target<'a>(
    state: &'a AppState,
    hint: Option<&IdTokenClaims>,
    params: &BTreeMap<String, String>,
) -> Result<Option<(&'a Client, Url)>, &'static str> {
    let client_id = params.get("client_id").map(String::as_str);
    if let (Some(h), Some(c)) = (hint, client_id)
        && h.aud != c
    {
        return Err("client_id does not match the id_token_hint.");
    }
    let Some(requested) = params.get("post_logout_redirect_uri") else {
        return Ok(None);
    };
    let client_id = client_id
        .or(hint.map(|h| h.aud.as_str()))
        .ok_or("A post_logout_redirect_uri needs an id_token_hint or a client_id.")?;
    let client = state
        .config
        .clients
        .get(client_id)
        .ok_or("The application is not registered with this sign-in service.")?;
    let url = Url::parse(requested).map_err(|_| "The post_logout_redirect_uri is not a URL.")?;
    if !client
        .post_logout_redirect_uris
        .iter()
        .any(|u| u.as_str() == url.as_str())
    {
        return Err("The post_logout_redirect_uri is not registered for this application.");
    }
    Ok(Some((client, url)))
}

async fn logout(
    req: &HttpRequest,
    state: &AppState,
    pairs: Vec<(String, String)>,
    posted: bool,
) -> HttpResponse {
    let params: BTreeMap<String, String> = pairs.into_iter().collect();
    let hint: Option<IdTokenClaims> = match params.get("id_token_hint") {
        None => None,
        Some(t) => {
            match jwt::verify_ignoring_expiry(&state.keyring, &state.config.issuer, ID_TOKEN_TYP, t)
                .await
            {
                Ok(c) => Some(c),
                Err(_) => {
                    return page_error(
                        state,
                        req,
                        StatusCode::BAD_REQUEST,
                        "The id_token_hint is not a valid ID token of this issuer.",
                    );
                }
            }
        }
    };
    let target = match post_logout_target(state, hint.as_ref(), &params) {
        Ok(t) => t,
        Err(msg) => return page_error(state, req, StatusCode::BAD_REQUEST, msg),
    };
    let now = state.clock.now();
    let cookie = req.cookie(state.cookies.session_name());
    let session = sessions::current(
        &state.store,
        &state.master,
        cookie.as_ref().map(|c| c.value()),
        now,
    )
    .await
    .ok()
    .flatten();
    if let Some(active) = &session {
        let s = &active.record;
        let proven_by_hint = hint.as_ref().is_some_and(|h| h.sub == s.user_id);
        let confirmed = posted
            && params.get("confirm").is_some_and(|v| v == "yes")
            && params
                .get("csrf")
                .is_some_and(|t| state.master.verify_mac(LOGOUT_PURPOSE, &s.id_hash, t));
        if !proven_by_hint && !confirmed {
            let carried: Vec<(&str, &str)> = CARRIED
                .iter()
                .filter_map(|k| params.get(*k).map(|v| (*k, v.as_str())))
                .collect();
            return state.pages.render(
                "logout.html",
                StatusCode::OK,
                minijinja::context! {
                    confirm => true,
                    params => carried,
                    csrf => state.master.mac(LOGOUT_PURPOSE, &s.id_hash),
                },
            );
        }
        end_session(state, s).await;
    }
    let mut res = match target {
        Some((_, mut url)) => {
            if let Some(st) = params.get("state") {
                url.query_pairs_mut().append_pair("state", st);
            }
            HttpResponse::SeeOther()
                .insert_header(("Location", url.as_str()))
                .insert_header(("Cache-Control", "no-store"))
                .finish()
        }
        None => state.pages.render(
            "logout.html",
            StatusCode::OK,
            minijinja::context! { confirm => false },
        ),
    };
    if let Err(e) = res.add_cookie(&state.cookies.clear_session_cookie()) {
        tracing::warn!(error = %e, "clearing the session cookie failed");
    }
    res
}

/// Ends a session: the session itself, its grants that were not `offline_access`, and
/// a back-channel notice to each client that took part.
pub async fn end_session(state: &AppState, session: &SessionRecord) {
    let now = state.clock.now();
    if let Err(e) = state.store.revoke_session(&session.id_hash, now).await {
        tracing::error!(error = %e, "revoking the session failed");
    }
    let grants = match state.store.list_session_grants(&session.id_hash).await {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, "listing the session's grants failed");
            Vec::new()
        }
    };
    let mut notified = std::collections::BTreeSet::new();
    for g in &grants {
        let offline = g.scopes.iter().any(|s| s == "offline_access");
        if !offline && g.revoked_at.is_none() {
            let _ = state.store.revoke_grant(&g.id, now).await;
        }
        let Some(client) = state.config.clients.get(&g.client_id) else {
            continue;
        };
        let Some(uri) = &client.backchannel_logout_uri else {
            continue;
        };
        if !notified.insert(client.id.clone()) {
            continue;
        }
        match backchannel::logout_token(
            &state.signer,
            client,
            &session.user_id,
            &session.id_hash,
            now,
        ) {
            Ok(token) => {
                backchannel::deliver(state.http.clone(), client.id.clone(), uri.clone(), token)
            }
            Err(e) => {
                tracing::error!(client_id = %client.id, error = %e, "signing a logout token failed")
            }
        }
    }
    tracing::info!(user = %session.user_id, grants = grants.len(), "session ended");
}
