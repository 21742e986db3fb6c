//! The account page's password and email forms, for users of the local provider
//! (`allow_password_change`, `allow_email_change`). A change that worked answers
//! with a redirect to the page and a notice (so a reload does not post again); one
//! that did not shows the page again with the reason.

use super::{CsrfForm, account_error, form_session, internal, recent_enough, render_with};
use crate::config::ProviderSection;
use crate::identity::signup::{self, Links, PasswordChange, SignupError};
use crate::store::{SessionRecord, UserRecord};
use crate::web::i18n::Text;
use crate::web::{AppState, PageError, see_other};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

/// What the account page may offer a user for their password and email.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Offer {
    pub password: bool,
    pub email: bool,
}

/// The local provider whose settings govern self-service changes.
fn local_section(app: &AppState) -> Option<&ProviderSection> {
    app.config.providers.iter().find(|p| p.kind == "local")
}

/// What `user` may change here: a password only if they have one.
pub(super) fn offer(app: &AppState, user: &UserRecord) -> Offer {
    let Some(local) = local_section(app) else {
        return Offer::default();
    };
    Offer {
        password: local.policy.password_change && user.password_hash.is_some(),
        email: local.policy.email_change && app.mail.is_some(),
    }
}

/// The notice for `?done=…` after a change that worked.
pub(super) fn done_notice(done: &str) -> Option<&'static str> {
    match done {
        "password" => Some("msg.password_changed"),
        "email" => Some("msg.email_link_sent"),
        _ => None,
    }
}

async fn user_of(app: &AppState, session: &SessionRecord) -> Result<UserRecord, PageError> {
    app.store
        .get_user(&session.user_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading the user failed");
            internal()
        })?
        .ok_or_else(internal)
}

async fn refused(
    app: &AppState,
    session: &SessionRecord,
    status: StatusCode,
    why: impl Into<Text>,
) -> Result<HttpResponse, PageError> {
    let extra = minijinja::context! { credentials_error => why.into() };
    render_with(app, session, status, None, None, extra).await
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    csrf: Option<String>,
    current_password: Option<String>,
    new_password: Option<String>,
}

/// POST `/account/password`.
pub(super) async fn change_password(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    let session = form_session(&req, &app, &CsrfForm { csrf: form.csrf }).await?;
    let user = user_of(&app, &session).await?;
    if !offer(&app, &user).password {
        return Err(account_error(
            StatusCode::NOT_FOUND,
            "msg.password_not_changeable",
        ));
    }
    let now = app.clock.now();
    let change = PasswordChange {
        current: form.current_password,
        recent_login: recent_enough(session.auth_time, now),
        keep_session: &session.id_hash,
        new_password: form.new_password.unwrap_or_default(),
    };
    match signup::change_password(&app.store, &app.config.account_policy, &user, change, now).await
    {
        Ok(()) => {
            tracing::info!(user = %user.id, "password changed on the account page");
            Ok(see_other("/account?done=password#password"))
        }
        Err(SignupError::Policy(why)) => {
            refused(&app, &session, StatusCode::BAD_REQUEST, Text::from(&why)).await
        }
        Err(SignupError::WrongPassword) => {
            tracing::info!(user = %user.id, "password change with a wrong current password");
            let why = "msg.current_password_wrong".to_string();
            refused(&app, &session, StatusCode::FORBIDDEN, why).await
        }
        Err(SignupError::Throttled) => {
            tracing::warn!(user = %user.id, "password changes throttled after wrong passwords");
            let why = "msg.password_change_throttled".to_string();
            refused(&app, &session, StatusCode::TOO_MANY_REQUESTS, why).await
        }
        Err(e) => {
            tracing::error!(user = %user.id, error = %e, "password change failed");
            Err(internal())
        }
    }
}

#[derive(Deserialize)]
pub(super) struct EmailForm {
    csrf: Option<String>,
    email: Option<String>,
}

/// POST `/account/email`: a link to the new address; nothing changes until it is
/// used.
pub(super) async fn change_email(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<EmailForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    let session = form_session(&req, &app, &CsrfForm { csrf: form.csrf }).await?;
    let user = user_of(&app, &session).await?;
    let (Some(mail), Some(local), true) =
        (&app.mail, local_section(&app), offer(&app, &user).email)
    else {
        return Err(account_error(
            StatusCode::NOT_FOUND,
            "msg.email_not_changeable",
        ));
    };
    let page = format!("{}/email/verify", app.config.issuer.trim_end_matches('/'));
    let links = Links {
        issuer: &app.config.issuer,
        page: &page,
        lifetime: local.policy.confirmation_lifetime,
    };
    let email = form.email.unwrap_or_default();
    let now = app.clock.now();
    let policy = &app.config.account_policy;
    match signup::request_email_change(&app.store, mail, policy, &user, &email, links, now).await {
        Ok(()) => {
            tracing::info!(user = %user.id, "email change requested on the account page");
            Ok(see_other("/account?done=email#email"))
        }
        Err(SignupError::Policy(why)) => {
            refused(&app, &session, StatusCode::BAD_REQUEST, Text::from(&why)).await
        }
        Err(SignupError::SameEmail) => {
            let why = "msg.email_unchanged".to_string();
            refused(&app, &session, StatusCode::BAD_REQUEST, why).await
        }
        Err(e) => {
            tracing::error!(user = %user.id, error = %e, "email change failed");
            Err(internal())
        }
    }
}
