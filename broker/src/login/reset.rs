//! "Forgot password" for the local provider: the form that asks for a username or
//! email and always answers the same page, and the page the mailed link opens, which
//! sets a new password. On only where `[providers.ID] allow_password_reset = true`.
//!
//! The reset form carries the link's token, which no other site knows: it is the
//! form's CSRF proof.

use crate::identity::reset::{self, MIN_PASSWORD_LEN, ResetError, ResetRequest};
use crate::web::{AppState, PageError, Text};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
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

/// POST `/password/forgot/{provider}`: the same answer whether or not an account
/// matched.
pub(super) async fn forgot_submit(
    app: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<ForgotForm>,
) -> Result<HttpResponse, PageError> {
    let lifetime = lifetime(&app, &path)?;
    let Some(mail) = &app.mail else {
        return Err(PageError::internal());
    };
    let login = form.into_inner().login.unwrap_or_default();
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
    Ok(app.pages.render(
        "forgot.html",
        StatusCode::OK,
        minijinja::context! { provider_id => path.as_str(), sent => true, minutes => lifetime / 60 },
    ))
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
            min_length => MIN_PASSWORD_LEN,
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
    match reset::reset_password(&app.store, &token, password, app.clock.now()).await {
        Ok(user_id) => {
            tracing::info!(provider = %path, user = %user_id, "password reset with a mailed link");
            Ok(app.pages.render(
                "reset.html",
                StatusCode::OK,
                minijinja::context! { done => true },
            ))
        }
        Err(ResetError::Policy) => Ok(reset_page(
            &app,
            &path,
            Some(&token),
            Some(Text::new("msg.password_too_short").arg("min", MIN_PASSWORD_LEN)),
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
