//! The device authorization grant (RFC 8628) toward devices and people:
//! `POST /device_authorization`, where a device without a browser asks for a device
//! code and a user code, and the `/device` page, where a signed-in person types the
//! user code, sees which application asks for what, and approves or denies. The
//! device polls `/token` (see `token`) until then.

use super::clients::{authenticate, presented_credentials};
use crate::config::{Client, DEVICE_CODE_GRANT};
use crate::flow::device::{
    DeviceIntent, approve_device, display_user_code, new_user_code, normalize_user_code,
    user_code_hash,
};
use crate::flow::{OAuthError, PendingLogin, Purpose};
use crate::secrets;
use crate::store::{AuditEvent, DeviceCodeRecord, DeviceCodeState, SessionRecord, StoreError};
use crate::web::{AppState, PageError, browser, see_other};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

/// The purpose the `/device` form's CSRF token is made for.
const DEVICE_PURPOSE: &str = "device";
/// Longer input is no user code, whatever it holds.
const MAX_TYPED_LEN: usize = 32;
/// Tries at a user code that is not taken yet.
const CREATE_ATTEMPTS: usize = 3;

#[derive(Debug, Deserialize)]
pub struct DeviceAuthorizationForm {
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

#[derive(Debug, Serialize)]
struct DeviceAuthorizationResponse {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: String,
    expires_in: i64,
    interval: i64,
}

/// POST `/device_authorization` (RFC 8628 §3.1): client authentication as at
/// `/token` (a public client names itself with `client_id`).
pub async fn device_authorization(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<DeviceAuthorizationForm>,
) -> HttpResponse {
    match start(&req, &app, form.into_inner()).await {
        Ok(body) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .insert_header(("Pragma", "no-cache"))
            .json(body),
        Err(e) => {
            tracing::info!(error = e.error, description = %e.error_description, "device authorization refused");
            e.token_response()
        }
    }
}

async fn start(
    req: &HttpRequest,
    app: &AppState,
    form: DeviceAuthorizationForm,
) -> Result<DeviceAuthorizationResponse, OAuthError> {
    let creds = presented_credentials(
        req,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )?;
    let client = authenticate(&app.config, &creds)?;
    if !client.allows_grant(DEVICE_CODE_GRANT) {
        return Err(OAuthError::new(
            "unauthorized_client",
            "this client may not use the device authorization grant",
        ));
    }
    let scopes = device_scopes(client, form.scope.as_deref())?;
    let internal = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "starting a device authorization failed");
        OAuthError::server_error()
    };
    let device_code = secrets::random_token().map_err(|e| internal(&e))?;
    let settings = &app.config.device;
    let now = app.clock.now();
    for attempt in 1..=CREATE_ATTEMPTS {
        let user_code = new_user_code().map_err(|e| internal(&e))?;
        let normalized =
            normalize_user_code(&user_code).ok_or_else(|| internal(&"bad user code"))?;
        let record = DeviceCodeRecord {
            device_code_hash: secrets::hash_secret(&device_code),
            user_code_hash: user_code_hash(&app.master, &normalized),
            client_id: client.id.clone(),
            scopes: scopes.clone(),
            created_at: now,
            expires_at: now + settings.code_lifetime,
            interval: settings.interval,
            last_polled_at: None,
            state: DeviceCodeState::Pending,
            grant_id: None,
        };
        match app.store.create_device_code(&record).await {
            Ok(()) => {
                tracing::info!(client_id = %client.id, "device authorization started");
                let verification_uri = format!("{}/device", app.config.issuer);
                return Ok(DeviceAuthorizationResponse {
                    device_code,
                    verification_uri_complete: format!("{verification_uri}?user_code={user_code}"),
                    user_code,
                    verification_uri,
                    expires_in: settings.code_lifetime,
                    interval: settings.interval,
                });
            }
            Err(StoreError::Conflict { .. }) if attempt < CREATE_ATTEMPTS => {}
            Err(e) => return Err(internal(&e)),
        }
    }
    Err(internal(&"no free user code"))
}

/// The scopes a device asks for: `openid` when it names none; each one the client
/// may have, unknown values ignored (as at `/authorize`).
fn device_scopes(client: &Client, scope: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let Some(scope) = scope.filter(|s| !s.trim().is_empty()) else {
        return Ok(vec!["openid".to_string()]);
    };
    let mut granted: Vec<String> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if client.scopes.contains(s) {
            if !granted.iter().any(|g| g == s) {
                granted.push(s.to_string());
            }
        } else if crate::config::SUPPORTED_SCOPES.contains(&s) {
            return Err(OAuthError::new(
                "invalid_scope",
                format!("scope {s} is not allowed for this client"),
            ));
        }
    }
    Ok(granted)
}

#[derive(Debug, Deserialize)]
pub struct DeviceQuery {
    user_code: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct DeviceForm {
    csrf: Option<String>,
    user_code: Option<String>,
    /// `approve` or `deny`; absent when the code was just entered.
    decision: Option<String>,
}

fn device_error(status: StatusCode, msg: &str) -> PageError {
    PageError::new(status, "msg.title.device", msg)
}

fn csrf_token(app: &AppState, session: &SessionRecord) -> String {
    app.master.mac(DEVICE_PURPOSE, &session.id_hash)
}

/// The code as typed, kept only when it could be one (to fill the form in again).
fn typed_code(typed: Option<&str>) -> Option<String> {
    typed
        .filter(|t| t.len() <= MAX_TYPED_LEN)
        .and_then(normalize_user_code)
        .map(|c| display_user_code(&c))
}

/// GET `/device`: signed in, the form to enter the user code (filled in from
/// `verification_uri_complete`); otherwise the broker's login first, which returns
/// here.
pub async fn show(
    req: HttpRequest,
    app: web::Data<AppState>,
    query: web::Query<DeviceQuery>,
) -> Result<HttpResponse, PageError> {
    let user_code = typed_code(query.user_code.as_deref());
    let Some(session) = browser::session(&req, &app).await? else {
        let started =
            PendingLogin::start(&app, &req, Purpose::Device(DeviceIntent { user_code })).await?;
        return Ok(started.into_response());
    };
    Ok(enter_page(&app, &session, StatusCode::OK, user_code, None))
}

fn enter_page(
    app: &AppState,
    session: &SessionRecord,
    status: StatusCode,
    user_code: Option<String>,
    error: Option<&str>,
) -> HttpResponse {
    app.pages.render(
        "device.html",
        status,
        minijinja::context! {
            stage => "enter",
            csrf => csrf_token(app, session),
            user_code,
            error,
        },
    )
}

/// The throttle key of one person's user-code entries.
fn tries_key(user_id: &str) -> String {
    format!("device-user-code:{}", secrets::hash_secret(user_id))
}

const WRONG_CODE: &str = "msg.device_code_invalid";
const TOO_MANY: &str = "msg.device_too_many";

/// POST `/device`: the code entered (shows the request), or the person's decision.
pub async fn submit(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<DeviceForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    let Some(session) = browser::session(&req, &app).await? else {
        // The session ended meanwhile: sign in again, then start over.
        return Ok(see_other("/device"));
    };
    let good = form
        .csrf
        .as_deref()
        .is_some_and(|t| app.master.verify_mac(DEVICE_PURPOSE, &session.id_hash, t));
    if !good {
        tracing::warn!("device form with a missing or wrong CSRF token");
        return Err(device_error(
            StatusCode::FORBIDDEN,
            "msg.device_form_expired",
        ));
    }
    let now = app.clock.now();
    let store_failed = |e: StoreError| {
        tracing::error!(error = %e, "the device page's store access failed");
        device_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::web::pages::TRY_AGAIN,
        )
    };
    let key = tries_key(&session.user_id);
    let settings = &app.config.device;
    if app.store.current(&key, now).await.map_err(store_failed)? >= settings.user_code_tries {
        tracing::warn!(user = %session.user_id, "device user code entries throttled");
        return Ok(enter_page(
            &app,
            &session,
            StatusCode::TOO_MANY_REQUESTS,
            None,
            Some(TOO_MANY),
        ));
    }
    let typed = typed_code(form.user_code.as_deref());
    let device = match typed.as_deref().and_then(normalize_user_code) {
        Some(code) => app
            .store
            .find_device_code(&user_code_hash(&app.master, &code), now)
            .await
            .map_err(store_failed)?,
        None => None,
    };
    let Some(device) = device else {
        app.store
            .hit(&key, app.config.login.throttle_window, now)
            .await
            .map_err(store_failed)?;
        tracing::info!(user = %session.user_id, "wrong device user code entered");
        return Ok(enter_page(
            &app,
            &session,
            StatusCode::BAD_REQUEST,
            typed,
            Some(WRONG_CODE),
        ));
    };
    let Some(client) = app.config.clients.get(&device.client_id) else {
        return Err(device_error(
            StatusCode::BAD_REQUEST,
            "msg.device_client_gone",
        ));
    };
    let user_code = typed.unwrap_or_default();
    let decided = |outcome: &str| {
        app.pages.render(
            "device.html",
            StatusCode::OK,
            minijinja::context! { stage => outcome, client_name => &client.name },
        )
    };
    match form.decision.as_deref() {
        None => Ok(app.pages.render(
            "device.html",
            StatusCode::OK,
            minijinja::context! {
                stage => "confirm",
                csrf => csrf_token(&app, &session),
                user_code,
                client_name => &client.name,
                client_id => &client.id,
                scopes => &device.scopes,
            },
        )),
        Some("approve") => {
            let approved = approve_device(&app, &device, &session).await.map_err(|e| {
                tracing::error!(error = %e, "approving a device failed");
                device_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    crate::web::pages::TRY_AGAIN,
                )
            })?;
            if !approved {
                return Ok(enter_page(
                    &app,
                    &session,
                    StatusCode::BAD_REQUEST,
                    None,
                    Some(WRONG_CODE),
                ));
            }
            audit(&app, &session, &device, "device_approved").await;
            Ok(decided("approved"))
        }
        Some("deny") => {
            app.store
                .deny_device_code(&device.user_code_hash, now)
                .await
                .map_err(store_failed)?;
            tracing::info!(client_id = %client.id, user = %session.user_id, "device authorization denied");
            audit(&app, &session, &device, "device_denied").await;
            Ok(decided("denied"))
        }
        Some(_) => Err(device_error(StatusCode::BAD_REQUEST, "msg.form_malformed")),
    }
}

/// Records the person's decision; a failure to record is logged, not shown.
async fn audit(app: &AppState, session: &SessionRecord, device: &DeviceCodeRecord, kind: &str) {
    let event = AuditEvent {
        user_id: session.user_id.clone(),
        actor: Some(format!("user:{}", session.user_id)),
        kind: kind.to_string(),
        detail: serde_json::json!({
            "client_id": device.client_id,
            "scopes": device.scopes,
        }),
        at: app.clock.now(),
    };
    if let Err(e) = app.store.record_audit(&event).await {
        tracing::error!(error = %e, "recording the device decision failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientAuth, Lifetimes, SigningAlg};
    use std::collections::BTreeSet;

    fn client(scopes: &[&str]) -> Client {
        Client {
            id: "tv".into(),
            name: "TV".into(),
            auth: ClientAuth::None,
            redirect_uris: vec![],
            require_pkce: true,
            require_mfa: false,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            grants: BTreeSet::new(),
            cors_origins: BTreeSet::new(),
            id_token_alg: SigningAlg::Rs256,
            audience: None,
            resources: BTreeSet::new(),
            lifetimes: Lifetimes {
                access_token: 1,
                id_token: 1,
                refresh_token_idle: 1,
                refresh_token_absolute: 1,
            },
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            introspection: crate::config::IntrospectionPolicy::OwnAudience,
            exchange_audiences: BTreeSet::new(),
        }
    }

    #[test]
    fn a_device_gets_the_scopes_its_client_may_have_and_openid_by_default() {
        let c = client(&["openid", "profile", "offline_access"]);
        assert_eq!(device_scopes(&c, None).unwrap(), vec!["openid"]);
        assert_eq!(
            device_scopes(&c, Some("openid offline_access openid x-unknown")).unwrap(),
            vec!["openid", "offline_access"]
        );
        let refused = device_scopes(&c, Some("openid permissions")).unwrap_err();
        assert_eq!(refused.error, "invalid_scope");
    }

    #[test]
    fn only_codes_that_could_be_user_codes_are_kept_from_the_query() {
        assert_eq!(typed_code(Some("bcdf ghjk")).as_deref(), Some("BCDF-GHJK"));
        assert_eq!(typed_code(Some("<script>")), None);
        assert_eq!(typed_code(Some(&"B".repeat(40))), None);
        assert_eq!(typed_code(None), None);
    }
}
