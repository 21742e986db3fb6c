//! The account page (`/account`): the identities linked to the signed-in user, linking
//! another provider and unlinking one. Linking starts an ordinary login whose purpose
//! is [`Purpose::Link`]; the login pages finish it by linking the identity to this
//! session's user instead of starting a session.

use crate::flow::{AccountIntent, PendingLogin, Purpose};
use crate::identity::{self, IdentityError};
use crate::store::{SessionRecord, UnixTime};
use crate::web::{AppState, PageError, browser, see_other};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

const ACCOUNT_PURPOSE: &str = "account";
/// Linking and unlinking need a login at most this many seconds old.
pub const RECENT_LOGIN_SECS: i64 = 300;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/account", web::get().to(show))
        .route("/account/link/{provider}", web::post().to(link))
        .route("/account/unlink/{provider}", web::post().to(unlink))
        .route("/account/reauthenticate", web::post().to(reauthenticate));
}

/// Whether a session's login is recent enough to change the account's identities.
pub fn recent_enough(auth_time: UnixTime, now: UnixTime) -> bool {
    now - auth_time <= RECENT_LOGIN_SECS
}

const SIGN_IN_AGAIN: &str = "Changing the sign-in methods of your account needs a recent sign-in. \
     Use \"Sign in again\" on your account page, then come back within five minutes.";

fn account_error(status: StatusCode, msg: &str) -> PageError {
    PageError::new(status, "Your account", msg)
}

fn csrf_token(app: &AppState, session: &SessionRecord) -> String {
    app.master.mac(ACCOUNT_PURPOSE, &session.id_hash)
}

/// A short, recognisable form of an upstream subject.
fn shorten(subject: &str) -> String {
    let mut chars = subject.chars();
    let head: String = chars.by_ref().take(12).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// GET `/account`.
async fn show(req: HttpRequest, app: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let Some(session) = browser::session(&req, &app).await? else {
        return Ok(app.pages.render(
            "account.html",
            StatusCode::UNAUTHORIZED,
            minijinja::context! { signed_in => false },
        ));
    };
    let links = app
        .store
        .list_user_identities(&session.user_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "listing identities failed");
            internal()
        })?;
    let name_of = |id: &str| {
        app.providers
            .get(id)
            .map(|e| e.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let linked: Vec<_> = links
        .iter()
        .map(|l| {
            minijinja::context! {
                provider_id => &l.provider_id,
                provider_name => name_of(&l.provider_id),
                subject => shorten(&l.subject),
            }
        })
        .collect();
    let linkable: Vec<_> = app
        .providers
        .all()
        .iter()
        .filter(|e| !links.iter().any(|l| l.provider_id == e.id))
        .map(|e| minijinja::context! { id => &e.id, name => &e.name })
        .collect();
    Ok(app.pages.render(
        "account.html",
        StatusCode::OK,
        minijinja::context! {
            signed_in => true,
            linked,
            linkable,
            csrf => csrf_token(&app, &session),
            recent => recent_enough(session.auth_time, app.clock.now()),
        },
    ))
}

fn internal() -> PageError {
    account_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        crate::web::pages::TRY_AGAIN,
    )
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

/// The session an account form acts for: live, its CSRF token good.
async fn form_session(
    req: &HttpRequest,
    app: &AppState,
    form: &CsrfForm,
) -> Result<SessionRecord, PageError> {
    let Some(session) = browser::session(req, app).await? else {
        return Err(account_error(
            StatusCode::UNAUTHORIZED,
            "You are not signed in. Sign in to an application first, then open this page again.",
        ));
    };
    let good = form
        .csrf
        .as_deref()
        .is_some_and(|t| app.master.verify_mac(ACCOUNT_PURPOSE, &session.id_hash, t));
    if !good {
        tracing::warn!("account form with a missing or wrong CSRF token");
        return Err(account_error(
            StatusCode::FORBIDDEN,
            "The form expired. Open your account page again.",
        ));
    }
    Ok(session)
}

/// The session a link or unlink form may act for: a form session whose login is
/// recent.
async fn authorised_session(
    req: &HttpRequest,
    app: &AppState,
    form: &CsrfForm,
) -> Result<SessionRecord, PageError> {
    let session = form_session(req, app, form).await?;
    if !recent_enough(session.auth_time, app.clock.now()) {
        return Err(account_error(StatusCode::FORBIDDEN, SIGN_IN_AGAIN));
    }
    Ok(session)
}

/// POST `/account/reauthenticate`: sign in again at the session's provider, forced
/// upstream (`prompt=login`), to renew the session's authentication time.
async fn reauthenticate(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let session = form_session(&req, &app, &form).await?;
    if app.providers.get(&session.provider_id).is_none() {
        return Err(account_error(
            StatusCode::CONFLICT,
            "The sign-in method of this session is no longer offered. Sign out and sign in again.",
        ));
    }
    let intent = AccountIntent {
        user_id: session.user_id.clone(),
        session_hash: session.id_hash.clone(),
        provider_id: session.provider_id.clone(),
    };
    let started = PendingLogin::start(&app, &req, Purpose::Reauthenticate(intent)).await?;
    tracing::info!(provider = %session.provider_id, user = %session.user_id, "re-authentication started");
    Ok(started.into_response())
}

/// POST `/account/link/{provider}`: start a login at the provider whose result links to
/// this session's user.
async fn link(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let session = authorised_session(&req, &app, &form).await?;
    let Some(entry) = app.providers.get(&path) else {
        return Err(account_error(
            StatusCode::NOT_FOUND,
            "No such sign-in method.",
        ));
    };
    let intent = AccountIntent {
        user_id: session.user_id.clone(),
        session_hash: session.id_hash.clone(),
        provider_id: entry.id.clone(),
    };
    let started = PendingLogin::start(&app, &req, Purpose::Link(intent)).await?;
    tracing::info!(provider = %entry.id, user = %session.user_id, "account link started");
    Ok(started.into_response())
}

/// POST `/account/unlink/{provider}`.
async fn unlink(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let session = authorised_session(&req, &app, &form).await?;
    let now = app.clock.now();
    match identity::unlink_from_user(&app.store, &session.user_id, &path, now).await {
        Ok(()) => Ok(see_other("/account")),
        Err(IdentityError::LastWayIn) => Err(account_error(
            StatusCode::CONFLICT,
            "This is the only way to sign in to your account, so it cannot be unlinked. \
             Link another sign-in method first.",
        )),
        Err(IdentityError::NotLinked(_)) => Err(account_error(
            StatusCode::NOT_FOUND,
            "This sign-in method is not linked to your account.",
        )),
        Err(e) => {
            tracing::error!(error = %e, "unlinking failed");
            Err(internal())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_recent_login_may_change_identities() {
        assert!(recent_enough(1000, 1000));
        assert!(recent_enough(1000, 1000 + RECENT_LOGIN_SECS));
        assert!(!recent_enough(1000, 1001 + RECENT_LOGIN_SECS));
    }

    #[test]
    fn long_subjects_are_shortened() {
        assert_eq!(shorten("abc"), "abc");
        assert_eq!(shorten("0123456789abcdef"), "0123456789ab…");
    }
}
