//! RP-Initiated Logout 1.0 (`/logout`): end the SSO session, the grants started in it
//! that were not `offline_access`, and tell back-channel clients.

use crate::config::Client;
use crate::store::{LogoutNotice, SessionRecord};
use crate::tokens::{ID_TOKEN_TYP, IdTokenClaims, jwt};
use crate::web::{AppState, PageError, Params, browser};
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

/// GET or POST `/logout`.
pub async fn logout(
    req: HttpRequest,
    app: web::Data<AppState>,
    params: Params,
) -> Result<HttpResponse, PageError> {
    let posted = req.method() == actix_web::http::Method::POST;
    let params = params.into_unique()?;
    end_and_leave(&req, &app, params, posted).await
}

/// Where to send the person afterwards: only a URI registered for the client that the
/// request proves (by `id_token_hint` or `client_id`).
fn post_logout_target<'a>(
    app: &'a AppState,
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
        .ok_or("msg.post_logout_needs_client")?;
    let client = app
        .config
        .clients
        .get(client_id)
        .ok_or("msg.client_unknown")?;
    // One exact string comparison, as for redirect_uri: no normalisation may make an
    // unregistered spelling acceptable.
    let registered = client
        .post_logout_redirect_uris
        .iter()
        .find(|u| u.as_str() == requested.as_str())
        .ok_or("msg.post_logout_unknown")?;
    Ok(Some((client, registered.url().clone())))
}

async fn end_and_leave(
    req: &HttpRequest,
    app: &AppState,
    params: BTreeMap<String, String>,
    posted: bool,
) -> Result<HttpResponse, PageError> {
    let hint: Option<IdTokenClaims> = match params.get("id_token_hint") {
        None => None,
        Some(t) => {
            match jwt::verify_ignoring_expiry(&app.keyring, &app.config.issuer, ID_TOKEN_TYP, t)
                .await
            {
                Ok(c) => Some(c),
                Err(_) => {
                    return Err(PageError::bad_request("msg.id_token_hint_invalid"));
                }
            }
        }
    };
    let target = post_logout_target(app, hint.as_ref(), &params).map_err(PageError::bad_request)?;
    let session = browser::session(req, app).await.ok().flatten();
    if let Some(s) = &session {
        let proven_by_hint = hint.as_ref().is_some_and(|h| h.sub == s.user_id);
        let confirmed = posted
            && params.get("confirm").is_some_and(|v| v == "yes")
            && params
                .get("csrf")
                .is_some_and(|t| app.master.verify_mac(LOGOUT_PURPOSE, &s.id_hash, t));
        if !proven_by_hint && !confirmed {
            let carried: Vec<(&str, &str)> = CARRIED
                .iter()
                .filter_map(|k| params.get(*k).map(|v| (*k, v.as_str())))
                .collect();
            return Ok(app.pages.render(
                "logout.html",
                StatusCode::OK,
                minijinja::context! {
                    confirm => true,
                    params => carried,
                    csrf => app.master.mac(LOGOUT_PURPOSE, &s.id_hash),
                },
            ));
        }
        end_session(app, s).await;
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
        None => app.pages.render(
            "logout.html",
            StatusCode::OK,
            minijinja::context! { confirm => false },
        ),
    };
    if let Err(e) = res.add_cookie(&app.cookies.clear_session_cookie()) {
        tracing::warn!(error = %e, "clearing the session cookie failed");
    }
    Ok(res)
}

/// Ends a session: the session itself, its grants that were not `offline_access`, and
/// a back-channel notice to each client that took part (queued in the store in the
/// same transaction that ends the session, sent by the outbox sender).
pub async fn end_session(app: &AppState, session: &SessionRecord) {
    let now = app.clock.now();
    let grants = match app.store.list_session_grants(&session.id_hash).await {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, "listing the session's grants failed");
            Vec::new()
        }
    };
    let mut notices: Vec<LogoutNotice> = Vec::new();
    for g in &grants {
        let takes_notice = app
            .config
            .clients
            .get(&g.client_id)
            .is_some_and(|c| c.backchannel_logout_uri.is_some());
        if takes_notice && !notices.iter().any(|n| n.client_id == g.client_id) {
            notices.push(LogoutNotice {
                client_id: g.client_id.clone(),
                sid: session.id_hash.clone(),
                user_id: session.user_id.clone(),
            });
        }
    }
    match app.store.end_session(&session.id_hash, now, &notices).await {
        Ok(true) if !notices.is_empty() => app.logout_outbox.notify_one(),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "ending the session failed"),
    }
    for g in &grants {
        let offline = g.scopes.iter().any(|s| s == "offline_access");
        if !offline && g.revoked_at.is_none() {
            let _ = app.store.revoke_grant(&g.id, now).await;
        }
    }
    tracing::info!(user = %session.user_id, grants = grants.len(), notices = notices.len(), "session ended");
}
