//! Asking about a token and ending it: introspection (RFC 7662) and revocation
//! (RFC 7009). Both authenticate the client first, then ask `tokens::status`, which
//! decides what the client may see and what it may end, and say nothing about tokens
//! that are not live or not the client's to see.

use super::clients::{authenticate, presented_credentials};
use crate::config::Client;
use crate::flow::OAuthError;
use crate::identity::api_keys::{self, LiveApiKey, Verified};
use crate::store::UserRecord;
use crate::tokens::status::{ActiveToken, Person, Revoked, StatusError, TokenKind};
use crate::web::AppState;
use crate::web::client_ip::client_ip;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    token: Option<String>,
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn status_failed(e: StatusError) -> HttpResponse {
    tracing::error!(error = %e, "reading token status failed");
    OAuthError::server_error().token_response()
}

async fn authenticated<'a>(
    req: &HttpRequest,
    app: &'a AppState,
    form: &TokenForm,
) -> Result<&'a Client, OAuthError> {
    let creds = presented_credentials(
        req,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )?;
    authenticate(&app.config, &creds)
}

/// Adds the person's username, and the groups, roles and permissions the grant's
/// scopes ask for.
fn add_person(person: &Person, body: &mut serde_json::Value) {
    let Person {
        grant,
        user,
        access,
    } = person;
    let has = |s: &str| grant.scopes.iter().any(|g| g == s);
    body["username"] = json!(username(user));
    if has("groups") {
        body["groups"] = json!(user.groups);
    }
    if let Some(access) = access {
        if has("roles") {
            body["roles"] = json!(access.roles);
        }
        if has("permissions") {
            body["permissions"] = json!(access.permissions);
        }
    }
}

fn username(user: &UserRecord) -> Option<&String> {
    user.username.as_ref().or(user.email.as_ref())
}

fn no_store_json(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(body)
}

/// POST `/introspect` (RFC 7662). Confidential clients only: resource servers
/// authenticate as clients.
pub async fn introspect(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<TokenForm>,
) -> HttpResponse {
    let form = form.into_inner();
    let client = match authenticated(&req, &app, &form).await {
        Ok(c) if !c.is_public() => c,
        Ok(_) => {
            return OAuthError::invalid_client("public clients cannot introspect").token_response();
        }
        Err(e) => return e.token_response(),
    };
    let Some(token) = form.token.as_deref().filter(|t| !t.is_empty()) else {
        return OAuthError::invalid_request("token is required").token_response();
    };
    if api_keys::is_api_key(token) {
        let ip = client_ip(&req, &app.config.trusted_proxies);
        match app
            .token_status()
            .introspect_api_key(&app.config, token, ip)
            .await
        {
            Ok(Verified::Live(key)) => {
                tracing::info!(client_id = %client.id, key_id = %key.key.id, "introspected an active API key");
                return no_store_json(api_key_body(&app, &key));
            }
            // A refresh token may start with `sbk_` by chance: look further.
            Ok(Verified::Inactive) => {}
            Ok(Verified::Throttled) => {
                tracing::warn!(client_id = %client.id, ip = ?ip, "API key verifications throttled");
                return OAuthError::new(
                    "slow_down",
                    "too many unknown API keys from this address; wait and try again",
                )
                .retry_after(app.config.api_keys.failure_window)
                .token_response();
            }
            Err(e) => return status_failed(e),
        }
    }
    let hint = TokenKind::from_hint(form.token_type_hint.as_deref());
    let active = match app.token_status().introspect(client, token, hint).await {
        Ok(Some(active)) => active,
        Ok(None) => return no_store_json(json!({ "active": false })),
        Err(e) => return status_failed(e),
    };
    let body = match active {
        ActiveToken::Access(live) => {
            let claims = &live.claims;
            let mut body = json!({
                "active": true,
                "token_type": "Bearer",
                "scope": claims.scope,
                "client_id": claims.client_id,
                "sub": claims.sub,
                "aud": claims.aud,
                "iss": claims.iss,
                "exp": claims.exp,
                "iat": claims.iat,
                "jti": claims.jti,
            });
            if let Some(person) = &live.person {
                add_person(person, &mut body);
            }
            body
        }
        ActiveToken::Refresh { token, person } => {
            let mut body = json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": person.grant.scopes.join(" "),
                "client_id": person.grant.client_id,
                "sub": person.user.id,
                "iss": app.config.issuer,
                "iat": token.created_at,
                "exp": token.expires_at,
            });
            add_person(&person, &mut body);
            body
        }
    };
    tracing::info!(client_id = %client.id, "introspected an active token");
    no_store_json(body)
}

/// The RFC 7662 answer for a live API key: its scopes as the person's permissions
/// allow them now, as both `scope` and `permissions`.
fn api_key_body(app: &AppState, live: &LiveApiKey) -> serde_json::Value {
    json!({
        "active": true,
        "token_type": "api_key",
        "scope": live.scopes.join(" "),
        "permissions": live.scopes,
        "sub": live.user.id,
        "username": live.user.username.clone().or(live.user.email.clone()),
        "iss": app.config.issuer,
        "iat": live.key.created_at,
        "exp": live.key.expires_at,
        "jti": live.key.id,
    })
}

/// POST `/revoke` (RFC 7009). Only the client a token was issued to can revoke it:
/// a refresh token ends its grant (the whole family), an access token is denied until
/// its expiry (a person's also ends its grant). An API key, issued to no client, is
/// revoked by any client that presents its secret. Tokens of other clients and unknown
/// tokens get the same 200 as success, so the answer tells nothing.
pub async fn revoke(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<TokenForm>,
) -> HttpResponse {
    let form = form.into_inner();
    let client = match authenticated(&req, &app, &form).await {
        Ok(c) => c,
        Err(e) => return e.token_response(),
    };
    let Some(token) = form.token.as_deref().filter(|t| !t.is_empty()) else {
        return OAuthError::invalid_request("token is required").token_response();
    };
    let hint = TokenKind::from_hint(form.token_type_hint.as_deref());
    match app.token_status().revoke(client, token, hint).await {
        Ok(Revoked::Grant { grant_id }) => {
            tracing::info!(client_id = %client.id, grant = %grant_id, "grant revoked by the client");
        }
        Ok(Revoked::AccessToken { jti, grant_id }) => {
            tracing::info!(client_id = %client.id, %jti, grant = ?grant_id, "access token revoked by the client");
        }
        Ok(Revoked::ApiKey { key_id, user_id }) => {
            tracing::info!(client_id = %client.id, key_id = %key_id, user = %user_id, "API key revoked by a client holding it");
        }
        Ok(Revoked::Nothing) => {}
        Err(e) => {
            tracing::error!(error = %e, "revocation failed");
            return OAuthError::server_error().token_response();
        }
    }
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}
