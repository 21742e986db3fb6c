//! After a successful login, by the pending login's purpose: sign in (resolve the
//! user, a fresh session, the authorization code), or link the identity to the
//! account of the session that started the link. A person with a second factor set up
//! is first sent to give it (`second_factor`), which then completes the login here.

use crate::flow::{
    AccountIntent, AuthorizationRequest, DeviceIntent, PendingLogin, Purpose, SecondFactor,
    issue_code,
};
use crate::identity::{IdentityError, link_to_user, mfa, resolve_login};
use crate::metrics::LoginOutcome;
use crate::providers::ProviderEntry;
use crate::secrets;
use crate::sessions::{self, Authentication};
use crate::store::{SessionRecord, UnixTime};
use crate::tokens::amr;
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
    let first = amr::first_factor(entry.has_password());
    let now = app.clock.now();
    match p.purpose.clone() {
        Purpose::Link(intent) => link(req, app, &p, &intent, entry, identity).await,
        Purpose::SecondFactor(_) => {
            tracing::warn!(provider = %entry.id, "a provider login ended on a second-factor step");
            Err(PageError::bad_request(crate::flow::EXPIRED))
        }
        Purpose::Reauthenticate(intent) => {
            take_for_the_session(req, app, &p, &intent, entry).await?;
            let auth_time = authenticated_at(identity.auth_time, now);
            let user = resolve_user(app, entry, identity, now).await?;
            if user.id != intent.user_id {
                tracing::warn!(provider = %entry.id, "re-authentication as another person refused");
                return Err(account_page_error(
                    StatusCode::FORBIDDEN,
                    "msg.someone_else",
                ));
            }
            let auth = authentication(&user.id, entry, auth_time, first);
            let purpose = Purpose::Reauthenticate(intent);
            match ask_second_factor(req, app, &auth, &purpose).await? {
                Some(res) => Ok(res),
                None => complete(req, app, purpose, auth).await,
            }
        }
        purpose @ (Purpose::SignIn(_) | Purpose::Device(_)) => {
            let auth_time = authenticated_at(identity.auth_time, now);
            let user = resolve_user(app, entry, identity, now).await?;
            p.take(app).await?;
            let auth = authentication(&user.id, entry, auth_time, first);
            match ask_second_factor(req, app, &auth, &purpose).await? {
                Some(res) => Ok(res),
                None => complete(req, app, purpose, auth).await,
            }
        }
    }
}

fn authentication(
    user_id: &str,
    entry: &ProviderEntry,
    auth_time: UnixTime,
    amr: Vec<String>,
) -> Authentication {
    Authentication {
        user_id: user_id.to_string(),
        provider_id: entry.id.clone(),
        auth_time,
        amr,
    }
}

/// After the first factor: the second factor's page when the person has one set up
/// (the pending login's purpose travels on in a new pending login), else `None`.
async fn ask_second_factor(
    req: &HttpRequest,
    app: &AppState,
    auth: &Authentication,
    then: &Purpose,
) -> Result<Option<HttpResponse>, PageError> {
    let enrolled = mfa::is_enrolled(&app.store, &auth.user_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading the second factor failed");
            PageError::internal()
        })?;
    if !enrolled {
        return Ok(None);
    }
    let step = SecondFactor {
        user_id: auth.user_id.clone(),
        provider_id: auth.provider_id.clone(),
        auth_time: auth.auth_time,
        amr: auth.amr.clone(),
        then: then.clone(),
    };
    let started = PendingLogin::start(app, req, Purpose::SecondFactor(Box::new(step))).await?;
    tracing::info!(provider = %auth.provider_id, user = %auth.user_id, "first factor passed; asking for the second");
    Ok(Some(started.into_response()))
}

/// Once every factor the login needs is given: a session, and what the purpose wants.
pub(super) async fn complete(
    req: &HttpRequest,
    app: &AppState,
    purpose: Purpose,
    auth: Authentication,
) -> Result<HttpResponse, PageError> {
    match purpose {
        Purpose::SignIn(request) => sign_in(req, app, &request, auth).await,
        Purpose::Device(intent) => device(req, app, &intent, auth).await,
        Purpose::Reauthenticate(intent) => reauthenticated(req, app, &intent, auth).await,
        Purpose::Link(_) | Purpose::SecondFactor(_) => {
            tracing::error!("a login completed with a purpose that needs no session");
            Err(PageError::internal())
        }
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
    auth: &Authentication,
    now: UnixTime,
) -> Result<(String, SessionRecord), PageError> {
    if let Some(old) = browser::session(req, app).await.ok().flatten() {
        // Re-authentication replaces the session: the old id stops working.
        let _ = app.store.revoke_session(&old.id_hash, now).await;
    }
    sessions::start(
        &app.store,
        &app.master,
        auth,
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

/// Start a fresh session and issue the code; or, when the app needs a second factor the
/// person has not set up, a page sending them to set one up (signed in meanwhile).
async fn sign_in(
    req: &HttpRequest,
    app: &AppState,
    request: &AuthorizationRequest,
    auth: Authentication,
) -> Result<HttpResponse, PageError> {
    let now = app.clock.now();
    let (cookie_value, session) = replace_session(req, app, &auth, now).await?;
    tracing::info!(provider = %auth.provider_id, user = %auth.user_id, amr = ?auth.amr, "login succeeded");
    app.metrics.login(&auth.provider_id, LoginOutcome::Success);
    let mut res = if request.needs_mfa(&app.config) && !amr::has_mfa(&session.amr) {
        tracing::info!(user = %auth.user_id, client_id = %request.client_id, "the app needs a second factor the person has not set up");
        crate::flow::set_up_mfa_page(app)
    } else {
        let hash = session.id_hash.clone();
        match issue_code(app, request, &session, &hash).await {
            Ok(res) => res,
            Err(e) => match request.reply(&app.config) {
                Ok(reply) => reply.error(&e),
                Err(_) => return Err(PageError::internal()),
            },
        }
    };
    if let Err(e) = res.add_cookie(&app.cookies.session_cookie(cookie_value)) {
        tracing::error!(error = %e, "setting the session cookie failed");
    }
    Ok(res)
}

/// Start a fresh session, and go back to the `/device` page (with the user code the
/// login started with) where the person approves the device.
async fn device(
    req: &HttpRequest,
    app: &AppState,
    intent: &DeviceIntent,
    auth: Authentication,
) -> Result<HttpResponse, PageError> {
    let now = app.clock.now();
    let (cookie_value, _) = replace_session(req, app, &auth, now).await?;
    tracing::info!(provider = %auth.provider_id, user = %auth.user_id, "login succeeded for a device");
    app.metrics.login(&auth.provider_id, LoginOutcome::Success);
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

/// The signed-in person proved themselves again: the same user, from the session that
/// asked (still live), gets a new session with this authentication's time and methods.
async fn reauthenticated(
    req: &HttpRequest,
    app: &AppState,
    intent: &AccountIntent,
    auth: Authentication,
) -> Result<HttpResponse, PageError> {
    let session = browser::session(req, app).await?;
    let same_session = session.is_some_and(|s| {
        s.user_id == intent.user_id
            && auth.user_id == intent.user_id
            && secrets::constant_time_eq(s.id_hash.as_bytes(), intent.session_hash.as_bytes())
    });
    if !same_session {
        tracing::warn!("a re-authentication finished outside the session that started it");
        return Err(account_page_error(
            StatusCode::FORBIDDEN,
            "msg.someone_else",
        ));
    }
    let now = app.clock.now();
    let (cookie_value, _) = replace_session(req, app, &auth, now).await?;
    tracing::info!(provider = %auth.provider_id, user = %auth.user_id, "re-authenticated from the account page");
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
