//! `/authorize`: validate the request into an [`AuthorizationRequest`], then either
//! answer from the SSO session or start a [`PendingLogin`] and send the browser to the
//! login pages.

use super::clients::match_redirect_uri;
use crate::config::Client;
use crate::flow::{
    AuthorizationReply, AuthorizationRequest, OAuthError, PendingLogin, Prompt, Purpose,
    issue_code, step_up,
};
use crate::store::SessionRecord;
use crate::tokens::{ID_TOKEN_TYP, IdTokenClaims, amr, jwt};
use crate::web::{AppState, PageError, Params, browser};
use actix_web::{HttpRequest, HttpResponse, web};

const MAX_STATE_LEN: usize = 2048;
const MAX_NONCE_LEN: usize = 512;
const MAX_HINT_LEN: usize = 256;

/// Why a request cannot be served.
#[derive(Debug)]
pub enum Rejection {
    /// Client or redirect URI unknown: show a page, never redirect.
    Page(String),
    /// Redirect the error to the (validated) client.
    Redirect(AuthorizationReply, OAuthError),
}

/// Parses the raw parameters; the order of checks decides where errors may go.
pub async fn validate(app: &AppState, params: &Params) -> Result<AuthorizationRequest, Rejection> {
    if params.is_repeated("client_id") || params.is_repeated("redirect_uri") {
        return Err(Rejection::Page("msg.repeated_client".into()));
    }
    let config = &app.config;
    let client_id = params.get("client_id").unwrap_or_default();
    let Some(client) = config.clients.get(client_id) else {
        return Err(Rejection::Page("msg.client_unknown".into()));
    };
    let Some(requested) = params.get("redirect_uri") else {
        return Err(Rejection::Page("msg.no_redirect_uri".into()));
    };
    let Some(redirect_uri) = match_redirect_uri(client, requested) else {
        return Err(Rejection::Page("msg.redirect_uri_unknown".into()));
    };
    let raw_state = params.get("state").map(|s| s.to_string());
    let reply = AuthorizationReply {
        redirect_uri: redirect_uri.url().clone(),
        state: raw_state.clone().filter(|s| s.len() <= MAX_STATE_LEN),
        issuer: config.issuer.clone(),
    };
    let fail = |e: OAuthError| Rejection::Redirect(reply.clone(), e);

    if let Some(name) = params.first_repeated() {
        return Err(fail(OAuthError::invalid_request(format!(
            "parameter {name} is repeated"
        ))));
    }
    if params.contains("request") {
        return Err(fail(OAuthError::new(
            "request_not_supported",
            "request objects are not supported",
        )));
    }
    if params.contains("request_uri") {
        return Err(fail(OAuthError::new(
            "request_uri_not_supported",
            "request_uri is not supported",
        )));
    }
    if raw_state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return Err(fail(OAuthError::invalid_request("state is too long")));
    }
    match params.get("response_type") {
        Some("code") => {}
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
    if let Some(mode) = params.get("response_mode")
        && mode != "query"
    {
        return Err(fail(OAuthError::invalid_request(
            "only response_mode=query is supported",
        )));
    }
    let scopes = parse_scopes(client, params.get("scope")).map_err(fail)?;
    let code_challenge = parse_pkce(
        client,
        params.get("code_challenge"),
        params.get("code_challenge_method"),
    )
    .map_err(fail)?;
    let nonce = params.get("nonce").map(|s| s.to_string());
    if nonce
        .as_ref()
        .is_some_and(|n| n.len() > MAX_NONCE_LEN || n.is_empty())
    {
        return Err(fail(OAuthError::invalid_request(
            "nonce is empty or too long",
        )));
    }
    let prompt = parse_prompt(params.get("prompt")).map_err(fail)?;
    let max_age = match params.get("max_age") {
        None => None,
        Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            fail(OAuthError::invalid_request(
                "max_age must be a non-negative integer",
            ))
        })?),
    };
    let login_hint = params.get("login_hint").map(|s| s.to_string());
    if login_hint.as_ref().is_some_and(|h| h.len() > MAX_HINT_LEN) {
        return Err(fail(OAuthError::invalid_request("login_hint is too long")));
    }
    let ui_locales = params.get("ui_locales").map(|s| s.to_string());
    if ui_locales.as_ref().is_some_and(|u| u.len() > MAX_HINT_LEN) {
        return Err(fail(OAuthError::invalid_request("ui_locales is too long")));
    }
    let provider_hint = params.get("provider").map(|s| s.to_string());
    if let Some(p) = &provider_hint
        && app.providers.get(p).is_none()
    {
        return Err(fail(OAuthError::invalid_request("unknown provider")));
    }
    let resource = params.get("resource").map(str::to_string);
    if let Some(resource) = &resource
        && !client.allows_resource(resource)
    {
        return Err(fail(OAuthError::new(
            "invalid_target",
            "resource is not allowed for this client",
        )));
    }
    let hinted_subject = match params.get("id_token_hint") {
        None => None,
        Some(hint) => {
            let claims: IdTokenClaims =
                jwt::verify_ignoring_expiry(&app.keyring, &config.issuer, ID_TOKEN_TYP, hint)
                    .await
                    .map_err(|_| {
                        fail(OAuthError::invalid_request(
                            "id_token_hint is not a valid ID token of this issuer",
                        ))
                    })?;
            Some(claims.sub)
        }
    };
    if params
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
        // The string as requested (and registered): what /token compares.
        redirect_uri: redirect_uri.as_str().to_string(),
        state: raw_state,
        nonce,
        scopes,
        code_challenge,
        prompt,
        max_age,
        login_hint,
        hinted_subject,
        provider_hint,
        resource,
        acr_mfa: params
            .get("acr_values")
            .is_some_and(|v| v.split(' ').any(|acr| acr == crate::tokens::amr::ACR_MFA)),
        ui_locales,
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
        (None, None) if client.require_pkce => Err(OAuthError::invalid_request(
            "this client must use PKCE (S256): send code_challenge",
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

/// GET and POST `/authorize`.
pub async fn authorize(
    req: HttpRequest,
    app: web::Data<AppState>,
    params: Params,
) -> Result<HttpResponse, PageError> {
    // The pages of this request (an error here, the login pages later through the
    // pending login) speak the language the application asked for.
    crate::web::i18n::prefer_ui_locales(app.pages.catalogues(), params.get("ui_locales"));
    match validate(&app, &params).await {
        Ok(request) => decide(&req, &app, request).await,
        Err(Rejection::Page(msg)) => {
            tracing::info!(reason = %msg, "authorization request refused without redirect");
            Err(PageError::bad_request(msg))
        }
        Err(Rejection::Redirect(reply, e)) => {
            tracing::info!(error = e.error, description = %e.error_description, "authorization request refused");
            Ok(reply.error(&e))
        }
    }
}

/// SSO, `prompt=none`, or a login.
async fn decide(
    req: &HttpRequest,
    app: &AppState,
    request: AuthorizationRequest,
) -> Result<HttpResponse, PageError> {
    let now = app.clock.now();
    let reply = request.reply(&app.config).map_err(|e| {
        tracing::error!(error = %e.error_description, "a validated request has no reply");
        PageError::internal()
    })?;
    let hint_ok = |s: &SessionRecord| {
        request
            .hinted_subject
            .as_ref()
            .is_none_or(|h| *h == s.user_id)
    };
    if let Some(session) = browser::session(req, app).await?
        && !request.needs_fresh_login(session.auth_time, now)
        && hint_ok(&session)
    {
        if request.needs_mfa(&app.config) && !amr::has_mfa(&session.amr) {
            if request.prompt.none {
                return Ok(reply.error(&OAuthError::new(
                    "interaction_required",
                    "the session has no second factor and this request needs one",
                )));
            }
            return step_up(app, req, &session, request).await;
        }
        let hash = session.id_hash.clone();
        return Ok(issue_code(app, &request, &session, &hash)
            .await
            .unwrap_or_else(|e| reply.error(&e)));
    }
    if request.prompt.none {
        return Ok(reply.error(&OAuthError::new("login_required", "the user must log in")));
    }
    let started = PendingLogin::start(app, req, Purpose::SignIn(request)).await?;
    Ok(started.into_response())
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
}
