//! After a successful login, by the pending login's purpose: sign in (resolve the
//! user, a fresh session, the authorization code), or link the identity to the
//! account of the session that started the link.

use crate::flow::{
    AccountIntent, AuthorizationRequest, DeviceIntent, PendingLogin, Purpose, issue_code,
};
use crate::identity::{IdentityError, link_to_user, resolve_login};
use crate::metrics::LoginOutcome;
use crate::providers::ProviderEntry;
use crate::secrets;
use crate::sessions;
use crate::store::{SessionRecord, UnixTime};
use crate::web::{AppState, PageError, browser, see_other};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use switchboard_plugin_api::Identity;

pub(super) async fn finish(
    req: &HttpRequest,
    app: &AppState,
    p: PendingLogin,
    entry: &ProviderEntry,
    identity: Identity,
) -> Result<HttpResponse, PageError> {
    match p.purpose.clone() {
        Purpose::SignIn(request) => sign_in(req, app, &p, &request, entry, identity).await,
        Purpose::Link(intent) => link(req, app, &p, &intent, entry, identity).await,
        Purpose::Reauthenticate(intent) => {
            reauthenticate(req, app, &p, &intent, entry, identity).await
        }
        Purpose::Device(intent) => device(req, app, &p, &intent, entry, identity).await,
    }
}

/// When the person authenticated: now, or the upstream's older `auth_time` when a
/// silent upstream SSO answered. A time in the future or before 1970 is ignored.
fn authenticated_at(upstream: Option<i64>, now: UnixTime) -> UnixTime {
    upstream.filter(|t| *t > 0).map_or(now, |t| t.min(now))
}

/// Resolves the user behind a login, as a page error a person can act on.
async fn resolve_user(
    app: &AppState,
    entry: &ProviderEntry,
    identity: Identity,
    now: UnixTime,
) -> Result<crate::store::UserRecord, PageError> {
    // Providers whose verified emails may link a first login to an existing account.
    let vouchers = &app.config.roles.email_trusted;
    match resolve_login(&app.store, &app.master, entry, vouchers, identity, now).await {
        Ok(u) => Ok(u),
        Err(IdentityError::Disabled) => {
            tracing::info!(provider = %entry.id, "login of a disabled user refused");
            app.metrics.login(&entry.id, LoginOutcome::Disabled);
            Err(PageError::sign_in(
                StatusCode::FORBIDDEN,
                "msg.account_disabled",
            ))
        }
        Err(IdentityError::RegistrationClosed(provider)) => {
            tracing::info!(%provider, "login refused: no account and registration closed");
            app.metrics
                .login(&entry.id, LoginOutcome::RegistrationClosed);
            Err(PageError::sign_in(
                StatusCode::FORBIDDEN,
                closed_message(entry),
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "resolving the user failed");
            Err(PageError::internal())
        }
    }
}

/// Ends this browser's current session and starts a new one (a new id: no fixation).
async fn replace_session(
    req: &HttpRequest,
    app: &AppState,
    user_id: &str,
    entry: &ProviderEntry,
    auth_time: UnixTime,
    now: UnixTime,
) -> Result<(String, SessionRecord), PageError> {
    if let Some(old) = browser::session(req, app).await.ok().flatten() {
        // Re-authentication replaces the session: the old id stops working.
        let _ = app.store.revoke_session(&old.id_hash, now).await;
    }
    sessions::start(
        &app.store,
        &app.master,
        user_id,
        &entry.id,
        auth_time,
        app.config.session_lifetime,
        now,
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "starting the session failed");
        PageError::internal()
    })
}

/// What a person without an account sees when their provider's registration is closed.
fn closed_message(entry: &ProviderEntry) -> crate::web::Text {
    crate::web::Text::new("msg.no_account").arg("provider", &entry.name)
}

/// Resolve the user, start a fresh session, issue the code.
async fn sign_in(
    req: &HttpRequest,
    app: &AppState,
    p: &PendingLogin,
    request: &AuthorizationRequest,
    entry: &ProviderEntry,
    identity: Identity,
) -> Result<HttpResponse, PageError> {
    let now = app.clock.now();
    let auth_time = authenticated_at(identity.auth_time, now);
    let user = resolve_user(app, entry, identity, now).await?;
    p.take(app).await?;
    let (cookie_value, session) =
        replace_session(req, app, &user.id, entry, auth_time, now).await?;
    tracing::info!(provider = %entry.id, user = %user.id, "login succeeded");
    app.metrics.login(&entry.id, LoginOutcome::Success);
    let hash = session.id_hash.clone();
    let mut res = match issue_code(app, request, &session, &hash).await {
        Ok(res) => res,
        Err(e) => match request.reply(&app.config) {
            Ok(reply) => reply.error(&e),
            Err(_) => return Err(PageError::internal()),
        },
    };
    if let Err(e) = res.add_cookie(&app.cookies.session_cookie(cookie_value)) {
        tracing::error!(error = %e, "setting the session cookie failed");
    }
    Ok(res)
}

/// Resolve the user, start a fresh session, and go back to the `/device` page (with
/// the user code the login started with) where the person approves the device.
async fn device(
    req: &HttpRequest,
    app: &AppState,
    p: &PendingLogin,
    intent: &DeviceIntent,
    entry: &ProviderEntry,
    identity: Identity,
) -> Result<HttpResponse, PageError> {
    let now = app.clock.now();
    let auth_time = authenticated_at(identity.auth_time, now);
    let user = resolve_user(app, entry, identity, now).await?;
    p.take(app).await?;
    let (cookie_value, _) = replace_session(req, app, &user.id, entry, auth_time, now).await?;
    tracing::info!(provider = %entry.id, user = %user.id, "login succeeded for a device");
    app.metrics.login(&entry.id, LoginOutcome::Success);
    let page = match intent
        .user_code
        .as_deref()
        .and_then(crate::flow::device::normalize_user_code)
    {
        Some(code) => format!(
            "/device?user_code={}",
            crate::flow::device::display_user_code(&code)
        ),
        None => "/device".to_string(),
    };
    let mut res = see_other(&page);
    if let Err(e) = res.add_cookie(&app.cookies.session_cookie(cookie_value)) {
        tracing::error!(error = %e, "setting the session cookie failed");
    }
    Ok(res)
}

/// Consumes an account-page login (single use, whatever the outcome) and checks it
/// ends in the same live session, through the same provider, that started it.
async fn take_for_the_session(
    req: &HttpRequest,
    app: &AppState,
    p: &PendingLogin,
    intent: &AccountIntent,
    entry: &ProviderEntry,
) -> Result<(), PageError> {
    p.take(app).await?;
    let session = browser::session(req, app).await?;
    let same_session = session.is_some_and(|s| {
        s.user_id == intent.user_id
            && secrets::constant_time_eq(s.id_hash.as_bytes(), intent.session_hash.as_bytes())
    });
    if !same_session || entry.id != intent.provider_id {
        tracing::warn!(provider = %entry.id, "an account-page login finished outside the session that started it");
        return Err(account_page_error(
            StatusCode::FORBIDDEN,
            "msg.not_this_session",
        ));
    }
    Ok(())
}

fn account_page_error(status: StatusCode, message: &str) -> PageError {
    PageError::new(status, "msg.title.account", message)
}

/// Link the identity to the user of the same, still live session that started the
/// link: no new session, no code.
async fn link(
    req: &HttpRequest,
    app: &AppState,
    p: &PendingLogin,
    intent: &AccountIntent,
    entry: &ProviderEntry,
    identity: Identity,
) -> Result<HttpResponse, PageError> {
    take_for_the_session(req, app, p, intent, entry).await?;
    let now = app.clock.now();
    match link_to_user(
        &app.store,
        &app.master,
        entry,
        &intent.user_id,
        identity,
        now,
    )
    .await
    {
        Ok(()) => Ok(see_other("/account")),
        Err(IdentityError::LinkedElsewhere) => Err(account_page_error(
            StatusCode::CONFLICT,
            "msg.linked_elsewhere",
        )),
        Err(IdentityError::ProviderAlreadyLinked(_)) => Err(account_page_error(
            StatusCode::CONFLICT,
            "msg.already_linked",
        )),
        Err(IdentityError::Disabled) => Err(account_page_error(
            StatusCode::FORBIDDEN,
            "msg.account_disabled",
        )),
        Err(e) => {
            tracing::error!(error = %e, "linking failed");
            Err(account_page_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                crate::web::pages::TRY_AGAIN,
            ))
        }
    }
}

/// The signed-in person proved themselves again at their provider: the same user, from
/// the session that asked, gets a new session with this authentication's time.
async fn reauthenticate(
    req: &HttpRequest,
    app: &AppState,
    p: &PendingLogin,
    intent: &AccountIntent,
    entry: &ProviderEntry,
    identity: Identity,
) -> Result<HttpResponse, PageError> {
    take_for_the_session(req, app, p, intent, entry).await?;
    let now = app.clock.now();
    let auth_time = authenticated_at(identity.auth_time, now);
    let user = resolve_user(app, entry, identity, now).await?;
    if user.id != intent.user_id {
        tracing::warn!(provider = %entry.id, "re-authentication as another person refused");
        return Err(account_page_error(
            StatusCode::FORBIDDEN,
            "msg.someone_else",
        ));
    }
    let (cookie_value, _) = replace_session(req, app, &user.id, entry, auth_time, now).await?;
    tracing::info!(provider = %entry.id, user = %user.id, "re-authenticated from the account page");
    let mut res = see_other("/account");
    if let Err(e) = res.add_cookie(&app.cookies.session_cookie(cookie_value)) {
        tracing::error!(error = %e, "setting the session cookie failed");
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_older_of_the_upstream_and_this_login_is_the_authentication_time() {
        assert_eq!(authenticated_at(None, 1000), 1000);
        assert_eq!(
            authenticated_at(Some(400), 1000),
            400,
            "a silent upstream SSO"
        );
        assert_eq!(
            authenticated_at(Some(5000), 1000),
            1000,
            "never in the future"
        );
        assert_eq!(authenticated_at(Some(0), 1000), 1000);
        assert_eq!(authenticated_at(Some(-5), 1000), 1000);
    }
}
