//! The password form of a password provider (local users, LDAP, …): CSRF bound to the
//! pending login and the browser, attempts throttled per account and per address.

use super::{finish, provider, throttle};
use crate::flow::PendingLogin;
use crate::metrics::LoginOutcome;
use crate::providers::ProviderEntry;
use crate::sessions;
use crate::web::client_ip::client_ip;
use crate::web::{AppState, PageError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use switchboard_plugin_api::{Password, PasswordRequest, ProviderError};

const BAD_CREDENTIALS: &str = "msg.bad_credentials";
const THROTTLED: &str = "msg.throttled";
const UNAVAILABLE: &str = "msg.unavailable";

pub(super) fn page(
    app: &AppState,
    p: &PendingLogin,
    entry: &ProviderEntry,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    app.pages.render(
        "password.html",
        status,
        minijinja::context! {
            client_name => p.heading(app),
            provider_name => &entry.name,
            provider_id => &entry.id,
            login_id => &p.id,
            csrf => sessions::csrf_token(&app.master, &p.id, &p.binding),
            username,
            error,
            other_providers => p.request().is_some() && app.providers.all().len() > 1,
            forgot => app.mail.is_some()
                && app.config.providers.iter().any(|s| s.id == entry.id && s.policy.password_reset.is_some()),
            register => app.config.providers.iter().any(|s| s.id == entry.id && s.policy.signup.is_some()),
        },
    )
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    req: Option<String>,
    csrf: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// POST `/login/{provider}`.
pub(super) async fn submit(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, PageError> {
    let submitted = form.into_inner();
    let p = PendingLogin::load(&app, &req, submitted.req.as_deref()).await?;
    let csrf_good = submitted
        .csrf
        .as_deref()
        .is_some_and(|t| sessions::check_csrf(&app.master, &p.id, &p.binding, t));
    if !csrf_good {
        tracing::warn!("login form with a missing or wrong CSRF token");
        return Err(PageError::sign_in(
            StatusCode::FORBIDDEN,
            "msg.form_expired_back",
        ));
    }
    let entry = provider(&app, &path)?;
    if !entry.has_password() {
        return Err(PageError::sign_in(
            StatusCode::NOT_IMPLEMENTED,
            "msg.not_available_yet",
        ));
    }
    let username = submitted.username.unwrap_or_default().trim().to_string();
    let password = Password::new(submitted.password.unwrap_or_default());
    let again = |error: &str, status| Ok(page(&app, &p, entry, &username, Some(error), status));
    let ip = client_ip(&req, &app.config.trusted_proxies);
    let now = app.clock.now();
    let keys = throttle::Keys::new(&entry.id, &username, ip);
    match throttle::admit(&app.store, &app.config.login, &keys, now).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(provider = %entry.id, "password login throttled");
            app.metrics.login(&entry.id, LoginOutcome::Throttled);
            return again(THROTTLED, StatusCode::TOO_MANY_REQUESTS);
        }
        Err(e) => {
            tracing::error!(error = %e, "throttle check failed");
            return Err(PageError::internal());
        }
    }
    let outcome = entry
        .authenticate(PasswordRequest::new(&username, password))
        .await;
    let count_failure = || async {
        if let Err(e) = throttle::failed(&app.store, &app.config.login, &keys, now).await {
            tracing::warn!(error = %e, "counting a failed login failed");
        }
    };
    let identity = match outcome {
        Ok(identity) => identity,
        Err(ProviderError::InvalidCredentials) => {
            tracing::info!(provider = %entry.id, "password login failed: invalid credentials");
            app.metrics
                .login(&entry.id, LoginOutcome::InvalidCredentials);
            count_failure().await;
            return again(BAD_CREDENTIALS, StatusCode::UNAUTHORIZED);
        }
        Err(ProviderError::Denied { reason }) => {
            tracing::info!(provider = %entry.id, %reason, "password login denied");
            app.metrics.login(&entry.id, LoginOutcome::Failed);
            count_failure().await;
            return again(&reason, StatusCode::FORBIDDEN);
        }
        Err(e) => {
            tracing::error!(provider = %entry.id, error = %e, "password provider failed");
            app.metrics.login(&entry.id, LoginOutcome::Failed);
            return again(UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    if let Err(e) = throttle::succeeded(&app.store, &keys).await {
        tracing::warn!(error = %e, "clearing throttle failed");
    }
    finish::finish(&req, &app, p, entry, identity).await
}
