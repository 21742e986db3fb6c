//! "Forgot password" for the local provider: the form that asks for a username or
//! email and always answers the same page, and the page the mailed link opens, which
//! sets a new password. On only where `[providers.ID] allow_password_reset = true`.
//!
//! The reset form carries the link's token, which no other site knows: it is the
//! form's CSRF proof.

use crate::identity::reset::{self, ResetError, ResetRequest};
use crate::web::client_ip::client_ip;
use crate::web::{AppState, PageError, Text};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

/// Seconds a link works on this provider, or a 404 when the flow is off.
fn lifetime(app: &AppState, provider_id: &str) -> Result<i64, PageError> {
    app.config
        .providers
        .iter()
        .find(|p| p.id == provider_id)
        .and_then(|p| p.policy.password_reset)
        .filter(|_| app.mail.is_some())
        .ok_or_else(|| PageError::sign_in(StatusCode::NOT_FOUND, "msg.no_such_page"))
}

/// GET `/password/forgot/{provider}`.
pub(super) async fn forgot_form(
    app: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let minutes = lifetime(&app, &path)? / 60;
    Ok(app.pages.render(
        "forgot.html",
        StatusCode::OK,
        minijinja::context! { provider_id => path.as_str(), sent => false, minutes },
    ))
}

#[derive(Deserialize)]
pub(super) struct ForgotForm {
    login: Option<String>,
}

/// Reset requests one client address may make per window, and one account may get:
/// past them the page answers the same, and no mail goes (no mail bombing).
const REQUESTS_PER_IP: u32 = 20;
const REQUESTS_PER_ACCOUNT: u32 = 5;
const REQUEST_WINDOW: i64 = 3600;

/// Whether this request stays within the limits; counts it.
async fn within_limits(
    app: &AppState,
    req: &HttpRequest,
    provider_id: &str,
    login: &str,
) -> Result<bool, crate::store::StoreError> {
    let now = app.clock.now();
    if let Some(ip) = client_ip(req, &app.config.trusted_proxies)
        && app
            .store
            .hit(&format!("forgot:ip:{ip}"), REQUEST_WINDOW, now)
            .await?
            > REQUESTS_PER_IP
    {
        return Ok(false);
    }
    // The login hashed: throttle keys are not a place to keep who asked.
    let account = crate::secrets::hash_secret(&login.trim().to_lowercase());
    let key = format!("forgot:acct:{provider_id}:{account}");
    Ok(app.store.hit(&key, REQUEST_WINDOW, now).await? <= REQUESTS_PER_ACCOUNT)
}

/// POST `/password/forgot/{provider}`: the same answer whether or not an account
/// matched (or a limit was reached).
pub(super) async fn forgot_submit(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<ForgotForm>,
) -> Result<HttpResponse, PageError> {
    let lifetime = lifetime(&app, &path)?;
    let Some(mail) = &app.mail else {
        return Err(PageError::internal());
    };
    let login = form.into_inner().login.unwrap_or_default();
    let sent_page = || {
        Ok(app.pages.render(
            "forgot.html",
            StatusCode::OK,
            minijinja::context! { provider_id => path.as_str(), sent => true, minutes => lifetime / 60 },
        ))
    };
    match within_limits(&app, &req, &path, &login).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(provider = %path, "password reset requests over their limit: no mail");
            return sent_page();
        }
        Err(e) => {
            tracing::error!(error = %e, "password reset throttle failed");
            return Err(PageError::internal());
        }
    }
    let reset_page = format!(
        "{}/password/reset/{}",
        app.config.issuer.trim_end_matches('/'),
        path.as_str()
    );
    let request = ResetRequest {
        login: &login,
        reset_page: &reset_page,
        issuer: &app.config.issuer,
        lifetime,
        now: app.clock.now(),
    };
    match reset::request_reset(&app.store, mail, &request).await {
        Ok(queued) => tracing::info!(provider = %path, queued, "password reset requested"),
        Err(e) => {
            tracing::error!(provider = %path, error = %e, "password reset request failed");
            return Err(PageError::internal());
        }
    }
    sent_page()
}

#[derive(Deserialize)]
pub(super) struct TokenQuery {
    token: Option<String>,
}

fn reset_page(
    app: &AppState,
    provider_id: &str,
    token: Option<&str>,
    error: Option<Text>,
    status: StatusCode,
) -> HttpResponse {
    app.pages.render(
        "reset.html",
        status,
        minijinja::context! {
            provider_id,
            token,
            error,
            done => false,
            min_length => app.config.account_policy.min_password_length,
        },
    )
}

/// GET `/password/reset/{provider}?token=…`: the form; the token is checked when it
/// is used, so opening the page spends nothing.
pub(super) async fn reset_form(
    app: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, PageError> {
    lifetime(&app, &path)?;
    let token = query.into_inner().token.filter(|t| !t.is_empty());
    let (error, status) = match token {
        Some(_) => (None, StatusCode::OK),
        None => (Some(INVALID_LINK.into()), StatusCode::BAD_REQUEST),
    };
    Ok(reset_page(&app, &path, token.as_deref(), error, status))
}

#[derive(Deserialize)]
pub(super) struct ResetForm {
    token: Option<String>,
    password: Option<String>,
}

const INVALID_LINK: &str = "msg.reset_link_invalid";

/// POST `/password/reset/{provider}`.
pub(super) async fn reset_submit(
    app: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<ResetForm>,
) -> Result<HttpResponse, PageError> {
    lifetime(&app, &path)?;
    let form = form.into_inner();
    let token = form.token.unwrap_or_default();
    let password = form.password.unwrap_or_default();
    let policy = &app.config.account_policy;
    match reset::reset_password(&app.store, policy, &token, password, app.clock.now()).await {
        Ok(user_id) => {
            tracing::info!(provider = %path, user = %user_id, "password reset with a mailed link");
            Ok(app.pages.render(
                "reset.html",
                StatusCode::OK,
                minijinja::context! { done => true },
            ))
        }
        Err(ResetError::Policy(why)) => Ok(reset_page(
            &app,
            &path,
            Some(&token),
            Some(Text::from(&why)),
            StatusCode::BAD_REQUEST,
        )),
        Err(ResetError::InvalidLink) => {
            tracing::info!(provider = %path, "password reset with an unknown, used or expired link");
            Ok(reset_page(
                &app,
                &path,
                None,
                Some(INVALID_LINK.into()),
                StatusCode::BAD_REQUEST,
            ))
        }
        Err(e) => {
            tracing::error!(provider = %path, error = %e, "password reset failed");
            Err(PageError::internal())
        }
    }
}
