//! Asking about a token and ending it: introspection (RFC 7662) and revocation
//! (RFC 7009). Both authenticate the client first, then ask `tokens::status`, which
//! decides what the client may see and what it may end, and say nothing about tokens
//! that are not live or not the client's to see.

use super::clients::{authenticate, presented_credentials};
use crate::config::Client;
use crate::flow::OAuthError;
use crate::identity::api_keys::{self, LiveApiKey, Verified};
use crate::store::UnixTime;
use crate::store::UserRecord;
use crate::tokens::live::LiveAccess;
use crate::tokens::status::{ActiveToken, Person, Revoked, StatusError, TokenKind};
use crate::web::AppState;
use crate::web::client_ip::client_ip;
use actix_web::error::UrlencodedError;
use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    token: Option<String>,
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

const FORM: &str = "application/x-www-form-urlencoded";

impl TokenForm {
    /// The form of a request body, as `web::Form` reads it (same checks, same errors),
    /// with a fast path for the usual body — UTF-8, nothing escaped, each field once —
    /// that takes the fields as they are instead of decoding an 800-byte token byte by
    /// byte. Anything else goes the general way.
    fn from_body(req: &HttpRequest, body: &[u8]) -> Result<Self, UrlencodedError> {
        if !req.content_type().eq_ignore_ascii_case(FORM) {
            return Err(UrlencodedError::ContentType);
        }
        let plain_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| !v.as_bytes().contains(&b';'));
        if plain_type
            && !body.iter().any(|b| *b == b'%' || *b == b'+')
            && let Ok(text) = std::str::from_utf8(body)
            && let Some(form) = Self::unescaped(text)
        {
            return Ok(form);
        }
        let encoding = req.encoding().map_err(|_| UrlencodedError::ContentType)?;
        if encoding.name() == "UTF-8" {
            serde_urlencoded::from_bytes(body).map_err(UrlencodedError::Parse)
        } else {
            let text = encoding
                .decode_without_bom_handling_and_without_replacement(body)
                .ok_or(UrlencodedError::Encoding)?;
            serde_urlencoded::from_str(&text).map_err(UrlencodedError::Parse)
        }
    }

    /// A body with nothing to decode; `None` when a field repeats (the general way
    /// then reports it).
    fn unescaped(text: &str) -> Option<Self> {
        let mut form = TokenForm::default();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let field = match name {
                "token" => &mut form.token,
                "token_type_hint" => &mut form.token_type_hint,
                "client_id" => &mut form.client_id,
                "client_secret" => &mut form.client_secret,
                _ => continue,
            };
            if field.replace(value.to_owned()).is_some() {
                return None;
            }
        }
        Some(form)
    }
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

/// The RFC 7662 answer for a live access token: its claims, and what [`add_person`]
/// adds for a person's token. Written straight from the cached token (a typed body
/// instead of a `serde_json::Value` built per request); keys in the order a `Value`
/// prints them.
#[derive(Serialize)]
struct AccessTokenBody<'a> {
    active: bool,
    aud: &'a str,
    client_id: &'a str,
    exp: UnixTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<&'a [String]>,
    iat: UnixTime,
    iss: &'a str,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    permissions: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<&'a [String]>,
    scope: &'a str,
    sub: &'a str,
    token_type: &'static str,
    /// Present (maybe `null`) on a person's token only.
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<Option<&'a String>>,
}

impl<'a> AccessTokenBody<'a> {
    fn of(live: &'a LiveAccess) -> Self {
        let claims = &live.claims;
        let person = live.person.as_ref();
        let has = |s: &str| person.is_some_and(|p| p.grant.scopes.iter().any(|g| g == s));
        let access = person.and_then(|p| p.access.as_ref());
        AccessTokenBody {
            active: true,
            aud: &claims.aud,
            client_id: &claims.client_id,
            exp: claims.exp,
            groups: person
                .filter(|_| has("groups"))
                .map(|p| p.user.groups.as_slice()),
            iat: claims.iat,
            iss: &claims.iss,
            jti: &claims.jti,
            permissions: access
                .filter(|_| has("permissions"))
                .map(|a| a.permissions.as_slice()),
            roles: access.filter(|_| has("roles")).map(|a| a.roles.as_slice()),
            scope: &claims.scope,
            sub: &claims.sub,
            token_type: "Bearer",
            username: person.map(|p| username(&p.user)),
        }
    }
}

fn no_store_json(body: impl Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(body)
}

/// POST `/introspect` (RFC 7662). Confidential clients only: resource servers
/// authenticate as clients.
pub async fn introspect(
    req: HttpRequest,
    app: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, UrlencodedError> {
    let form = TokenForm::from_body(&req, &body)?;
    Ok(introspect_form(&req, &app, form).await)
}

async fn introspect_form(req: &HttpRequest, app: &AppState, form: TokenForm) -> HttpResponse {
    let client = match authenticated(req, app, &form).await {
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
        let ip = client_ip(req, &app.config.trusted_proxies);
        match app
            .token_status()
            .introspect_api_key(&app.config, token, ip)
            .await
        {
            Ok(Verified::Live(key)) => {
                tracing::info!(client_id = %client.id, key_id = %key.key.id, "introspected an active API key");
                return no_store_json(api_key_body(app, &key));
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
            tracing::info!(client_id = %client.id, "introspected an active token");
            return no_store_json(AccessTokenBody::of(&live));
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed step should fail the test loudly
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn read(content_type: &str, body: &str) -> Result<TokenForm, UrlencodedError> {
        let req = TestRequest::default()
            .insert_header((header::CONTENT_TYPE, content_type))
            .to_http_request();
        TokenForm::from_body(&req, body.as_bytes())
    }

    #[test]
    fn the_fast_path_reads_the_form_as_serde_urlencoded_does() {
        for body in [
            "token=abc.def-ghi_jkl&token_type_hint=access_token",
            "token=a%2Bb+c&client_id=x%20y",
            "&&token=t&unknown=1&client_secret=&client_id",
            "token==x=y",
            "",
        ] {
            let fast = read(FORM, body).unwrap();
            let general: TokenForm = serde_urlencoded::from_str(body).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{general:?}"), "{body}");
        }
        let form = read(
            "application/x-www-form-urlencoded; charset=utf-8",
            "token=a+b",
        )
        .unwrap();
        assert_eq!(form.token.as_deref(), Some("a b"));
    }

    #[test]
    fn a_repeated_field_or_another_media_type_is_refused() {
        assert!(matches!(
            read(FORM, "token=a&token=b"),
            Err(UrlencodedError::Parse(_))
        ));
        assert!(matches!(
            read("application/json", "token=a"),
            Err(UrlencodedError::ContentType)
        ));
    }
}
