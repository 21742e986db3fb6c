//! `/authorize`: validate the request into an [`AuthorizationRequest`], then either
//! answer from the SSO session or send the browser to log in; and `issue_code`, which
//! ends every successful path.

use super::clients::match_redirect_uri;
use super::error::{AuthorizationReply, OAuthError};
use crate::config::{Client, Config};
use crate::http::AppState;
use crate::http::RequestId;
use crate::secrets;
use crate::sessions;
use crate::store::{AuthRequestRecord, CodeRecord, GrantRecord, SessionRecord, UnixTime};
use crate::tokens::{ID_TOKEN_TYP, IdTokenClaims, jwt};
use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const MAX_STATE_LEN: usize = 2048;
const MAX_NONCE_LEN: usize = 512;
const MAX_HINT_LEN: usize = 256;

/// What `prompt` asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub select_account: bool,
}

/// A validated authorization request. Only this type reaches the login flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// `sub` of a valid `id_token_hint`.
    pub hinted_subject: Option<String>,
    pub provider_hint: Option<String>,
    /// Hash of the browser-binding cookie of the browser that started this request.
    #[serde(default)]
    pub binding_hash: String,
    /// Set when this login links an identity to a signed-in user instead of signing
    /// in to an application (see `account`).
    #[serde(default)]
    pub link: Option<LinkIntent>,
}

/// Whose account a login started from the account page links to, from which session,
/// and through which provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkIntent {
    pub user_id: String,
    pub session_hash: String,
    pub provider_id: String,
}

impl AuthorizationRequest {
    pub fn reply(&self, config: &Config) -> Result<AuthorizationReply, OAuthError> {
        let redirect_uri = url::Url::parse(&self.redirect_uri)
            .map_err(|_| OAuthError::invalid_request("stored redirect_uri is invalid"))?;
        Ok(AuthorizationReply {
            redirect_uri,
            state: self.state.clone(),
            issuer: config.issuer.clone(),
        })
    }

    /// True when a session's authentication is too old for this request.
    pub fn needs_fresh_login(&self, auth_time: UnixTime, now: UnixTime) -> bool {
        self.prompt.login
            || self.prompt.select_account
            || self.max_age.is_some_and(|m| m == 0 || now - auth_time > m)
    }
}

/// Why a request cannot be served.
#[derive(Debug)]
pub enum Rejection {
    /// Client or redirect URI unknown: show a page, never redirect.
    Page(String),
    /// Redirect the error to the (validated) client.
    Redirect(AuthorizationReply, OAuthError),
}

/// Parses the raw parameters; the order of checks decides where errors may go.
pub async fn validate(
    state: &AppState,
    params: &[(String, String)],
) -> Result<AuthorizationRequest, Rejection> {
    let mut map: BTreeMap<&str, &str> = BTreeMap::new();
    let mut duplicated = Vec::new();
    for (k, v) in params {
        if map.insert(k.as_str(), v.as_str()).is_some() {
            duplicated.push(k.as_str());
        }
    }
    if duplicated.contains(&"client_id") || duplicated.contains(&"redirect_uri") {
        return Err(Rejection::Page(
            "The request repeats client_id or redirect_uri.".into(),
        ));
    }
    let config = &state.config;
    let client_id = map.get("client_id").copied().unwrap_or_default();
    let Some(client) = config.clients.get(client_id) else {
        return Err(Rejection::Page(
            "The application is not registered with this sign-in service.".into(),
        ));
    };
    let Some(requested) = map.get("redirect_uri") else {
        return Err(Rejection::Page("The request has no redirect_uri.".into()));
    };
    let Some(redirect_uri) = match_redirect_uri(client, requested) else {
        return Err(Rejection::Page(
            "The redirect URI is not registered for this application.".into(),
        ));
    };
    let raw_state = map.get("state").map(|s| s.to_string());
    let reply = AuthorizationReply {
        redirect_uri: redirect_uri.clone(),
        state: raw_state.clone().filter(|s| s.len() <= MAX_STATE_LEN),
        issuer: config.issuer.clone(),
    };
    let fail = |e: OAuthError| Rejection::Redirect(reply.clone(), e);

    if let Some(name) = duplicated.first() {
        return Err(fail(OAuthError::invalid_request(format!(
            "parameter {name} is repeated"
        ))));
    }
    if map.contains_key("request") {
        return Err(fail(OAuthError::new(
            "request_not_supported",
            "request objects are not supported",
        )));
    }
    if map.contains_key("request_uri") {
        return Err(fail(OAuthError::new(
            "request_uri_not_supported",
            "request_uri is not supported",
        )));
    }
    if raw_state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return Err(fail(OAuthError::invalid_request("state is too long")));
    }
    match map.get("response_type") {
        Some(&"code") => {}
        None => {
            return Err(fail(OAuthError::invalid_request(
                "response_type is required",
            )));
        }
        Some(_) => {
            return Err(fail(OAuthError::new(
                "unsupported_response_type",
                "only response_type=code is supported",
            )));
        }
    }
    if !client.allows_grant("authorization_code") {
        return Err(fail(OAuthError::new(
            "unauthorized_client",
            "this client may not use the authorization code flow",
        )));
    }
    if let Some(mode) = map.get("response_mode")
        && *mode != "query"
    {
        return Err(fail(OAuthError::invalid_request(
            "only response_mode=query is supported",
        )));
    }
    let scopes = parse_scopes(client, map.get("scope").copied()).map_err(fail)?;
    let code_challenge = parse_pkce(
        client,
        map.get("code_challenge").copied(),
        map.get("code_challenge_method").copied(),
    )
    .map_err(fail)?;
    let nonce = map.get("nonce").map(|s| s.to_string());
    if nonce
        .as_ref()
        .is_some_and(|n| n.len() > MAX_NONCE_LEN || n.is_empty())
    {
        return Err(fail(OAuthError::invalid_request(
            "nonce is empty or too long",
        )));
    }
    let prompt = parse_prompt(map.get("prompt").copied()).map_err(fail)?;
    let max_age = match map.get("max_age") {
        None => None,
        Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            fail(OAuthError::invalid_request(
                "max_age must be a non-negative integer",
            ))
        })?),
    };
    let login_hint = map.get("login_hint").map(|s| s.to_string());
    if login_hint.as_ref().is_some_and(|h| h.len() > MAX_HINT_LEN) {
        return Err(fail(OAuthError::invalid_request("login_hint is too long")));
    }
    let provider_hint = map.get("provider").map(|s| s.to_string());
    if let Some(p) = &provider_hint
        && state.providers.get(p).is_none()
    {
        return Err(fail(OAuthError::invalid_request("unknown provider")));
    }
    if let Some(resource) = map.get("resource")
        && client.audience.as_deref() != Some(*resource)
        && !client.resources.contains(*resource)
    {
        return Err(fail(OAuthError::new(
            "invalid_target",
            "resource is not allowed for this client",
        )));
    }
    let hinted_subject = match map.get("id_token_hint") {
        None => None,
        Some(hint) => {
            let claims: IdTokenClaims =
                jwt::verify_ignoring_expiry(&state.keyring, &config.issuer, ID_TOKEN_TYP, hint)
                    .await
                    .map_err(|_| {
                        fail(OAuthError::invalid_request(
                            "id_token_hint is not a valid ID token of this issuer",
                        ))
                    })?;
            Some(claims.sub)
        }
    };
    if map
        .get("prompt")
        .is_some_and(|p| p.split(' ').any(|v| v == "consent"))
    {
        return Err(fail(OAuthError::new(
            "consent_required",
            "this issuer has no consent screen yet",
        )));
    }
    Ok(AuthorizationRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_string(),
        state: raw_state,
        nonce,
        scopes,
        code_challenge,
        prompt,
        max_age,
        login_hint,
        hinted_subject,
        provider_hint,
        binding_hash: String::new(),
        link: None,
    })
}

fn parse_scopes(client: &Client, scope: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let requested: Vec<&str> = scope
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    if !requested.contains(&"openid") {
        return Err(OAuthError::new(
            "invalid_scope",
            "the openid scope is required",
        ));
    }
    let mut granted = Vec::new();
    for s in requested {
        if client.scopes.contains(s) && !granted.iter().any(|g: &String| g == s) {
            granted.push(s.to_string());
        } else if crate::config::SUPPORTED_SCOPES.contains(&s) && !client.scopes.contains(s) {
            return Err(OAuthError::new(
                "invalid_scope",
                format!("scope {s} is not allowed for this client"),
            ));
        }
        // Unknown scope values are ignored (OIDC Core §3.1.2.1).
    }
    Ok(granted)
}

fn parse_pkce(
    client: &Client,
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<Option<String>, OAuthError> {
    match (challenge, method) {
        (None, Some(_)) => Err(OAuthError::invalid_request(
            "code_challenge_method without code_challenge",
        )),
        (None, None) if client.is_public() => Err(OAuthError::invalid_request(
            "public clients must use PKCE (S256)",
        )),
        (None, None) => Ok(None),
        (Some(_), None) | (Some(_), Some("plain")) => Err(OAuthError::invalid_request(
            "code_challenge_method must be S256",
        )),
        (Some(c), Some("S256")) => {
            let well_formed = c.len() == 43
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !well_formed {
                return Err(OAuthError::invalid_request(
                    "code_challenge is not a base64url SHA-256",
                ));
            }
            Ok(Some(c.to_string()))
        }
        (Some(_), Some(_)) => Err(OAuthError::invalid_request(
            "code_challenge_method must be S256",
        )),
    }
}

fn parse_prompt(prompt: Option<&str>) -> Result<Prompt, OAuthError> {
    let mut p = Prompt::default();
    let Some(text) = prompt else { return Ok(p) };
    let values: Vec<&str> = text.split(' ').filter(|s| !s.is_empty()).collect();
    for v in &values {
        match *v {
            "none" => p.none = true,
            "login" => p.login = true,
            "select_account" => p.select_account = true,
            "consent" => {}
            other => {
                return Err(OAuthError::invalid_request(format!(
                    "unknown prompt value {other}"
                )));
            }
        }
    }
    if p.none && values.len() > 1 {
        return Err(OAuthError::invalid_request(
            "prompt=none cannot be combined with other values",
        ));
    }
    Ok(p)
}

/// Creates the grant and its one-time code and redirects the browser to the client.
pub async fn issue_code(
    state: &AppState,
    request: &AuthorizationRequest,
    session: &SessionRecord,
    session_id_hash: &str,
) -> Result<HttpResponse, OAuthError> {
    let reply = request.reply(&state.config)?;
    let client = state
        .config
        .clients
        .get(&request.client_id)
        .ok_or_else(|| OAuthError::invalid_request("client no longer exists"))?;
    let now = state.clock.now();
    let code = secrets::random_token().map_err(|_| OAuthError::server_error())?;
    let grant = GrantRecord {
        id: secrets::random_id().map_err(|_| OAuthError::server_error())?,
        user_id: session.user_id.clone(),
        client_id: client.id.clone(),
        session_id_hash: Some(session_id_hash.to_string()),
        scopes: request.scopes.clone(),
        auth_time: session.auth_time,
        provider_id: session.provider_id.clone(),
        created_at: now,
        expires_at: now + client.lifetimes.refresh_token_absolute,
        revoked_at: None,
    };
    let code_record = CodeRecord {
        code_hash: secrets::hash_secret(&code),
        grant_id: grant.id.clone(),
        client_id: client.id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        nonce: request.nonce.clone(),
        created_at: now,
        expires_at: now + state.config.tokens.code_lifetime,
    };
    state
        .store
        .create_grant_with_code(&grant, &code_record)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "storing code failed");
            OAuthError::server_error()
        })?;
    tracing::info!(client_id = %client.id, grant = %grant.id, "issued authorization code");
    Ok(reply.code(&code))
}

pub(crate) fn request_id(req: &HttpRequest) -> Option<String> {
    req.extensions().get::<RequestId>().map(|r| r.0.clone())
}

pub(crate) fn page_error(
    state: &AppState,
    req: &HttpRequest,
    status: StatusCode,
    message: &str,
) -> HttpResponse {
    state.pages.error(
        status,
        "Sign-in request refused",
        message,
        request_id(req).as_deref(),
    )
}

/// GET and POST `/authorize`.
pub async fn authorize(
    req: HttpRequest,
    state: web::Data<AppState>,
    params: Vec<(String, String)>,
) -> HttpResponse {
    let request = match validate(&state, &params).await {
        Ok(r) => r,
        Err(Rejection::Page(msg)) => {
            tracing::info!(reason = %msg, "authorization request refused without redirect");
            return page_error(&state, &req, StatusCode::BAD_REQUEST, &msg);
        }
        Err(Rejection::Redirect(reply, e)) => {
            tracing::info!(error = e.error, description = %e.error_description, "authorization request refused");
            return reply.error(&e);
        }
    };
    match decide(&req, &state, request).await {
        Ok(res) => res,
        Err(e) => {
            tracing::error!(error = ?e, "authorization failed");
            page_error(
                &state,
                &req,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong. Try again.",
            )
        }
    }
}

/// SSO, `prompt=none`, or a login.
async fn decide(
    req: &HttpRequest,
    state: &AppState,
    mut request: AuthorizationRequest,
) -> Result<HttpResponse, String> {
    let now = state.clock.now();
    let reply = request
        .reply(&state.config)
        .map_err(|e| e.error_description)?;
    let cookie = req.cookie(state.cookies.session_name());
    let session = sessions::current(
        &state.store,
        &state.master,
        cookie.as_ref().map(|c| c.value()),
        now,
    )
    .await
    .map_err(|e| e.to_string())?;
    let hint_ok = |s: &SessionRecord| {
        request
            .hinted_subject
            .as_ref()
            .is_none_or(|h| *h == s.user_id)
    };
    if let Some(active) = &session {
        let s = &active.record;
        if !request.needs_fresh_login(s.auth_time, now) && hint_ok(s) {
            let hash = s.id_hash.clone();
            return issue_code(state, &request, s, &hash)
                .await
                .or_else(|e| Ok(reply.error(&e)));
        }
    }
    if request.prompt.none {
        return Ok(reply.error(&OAuthError::new("login_required", "the user must log in")));
    }
    // Start a login: store the request, bound to this browser.
    let existing = req
        .cookie(state.cookies.binding_name())
        .and_then(|c| sessions::read_binding(&state.master, c.value()));
    let (binding, new_cookie) = match existing {
        Some(b) => (b, None),
        None => {
            let (cookie_value, id) =
                sessions::new_binding(&state.master).map_err(|e| e.to_string())?;
            (id, Some(state.cookies.binding_cookie(cookie_value)))
        }
    };
    request.binding_hash = secrets::hash_secret(&binding);
    let request_id = secrets::random_token().map_err(|e| e.to_string())?;
    let record = AuthRequestRecord {
        id_hash: secrets::hash_secret(&request_id),
        request: serde_json::to_value(&request).map_err(|e| e.to_string())?,
        created_at: now,
        expires_at: now + state.config.login.request_lifetime,
    };
    state
        .store
        .put_auth_request(&record)
        .await
        .map_err(|e| e.to_string())?;
    let target = match &request.provider_hint {
        Some(p) => format!("/login/{p}?req={request_id}"),
        None => format!("/login?req={request_id}"),
    };
    let mut res = HttpResponse::SeeOther();
    res.insert_header(("Location", target))
        .insert_header(("Cache-Control", "no-store"));
    if let Some(c) = new_cookie {
        res.cookie(c);
    }
    Ok(res.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_none_cannot_be_combined() {
        assert!(parse_prompt(Some("none login")).is_err());
        assert!(parse_prompt(Some("none")).unwrap().none);
        assert!(parse_prompt(Some("login select_account")).unwrap().login);
        assert!(parse_prompt(Some("bogus")).is_err());
    }

    #[test]
    fn fresh_login_rules() {
        let mut r = AuthorizationRequest {
            client_id: "c".into(),
            redirect_uri: "https://a/cb".into(),
            state: None,
            nonce: None,
            scopes: vec![],
            code_challenge: None,
            prompt: Prompt::default(),
            max_age: None,
            login_hint: None,
            hinted_subject: None,
            provider_hint: None,
            binding_hash: String::new(),
            link: None,
        };
        assert!(!r.needs_fresh_login(100, 200));
        r.max_age = Some(150);
        assert!(!r.needs_fresh_login(100, 200));
        r.max_age = Some(50);
        assert!(r.needs_fresh_login(100, 200));
        r.max_age = Some(0);
        assert!(r.needs_fresh_login(200, 200));
        r.max_age = None;
        r.prompt.login = true;
        assert!(r.needs_fresh_login(200, 200));
    }
}
