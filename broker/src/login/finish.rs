//! After a successful login, by the pending login's purpose: sign in (resolve the
//! user, a fresh session, the authorization code), or link the identity to the
//! account of the session that started the link.

use crate::flow::{AuthorizationRequest, LinkIntent, PendingLogin, Purpose, issue_code};
use crate::identity::{IdentityError, link_to_user, resolve_login};
use crate::providers::ProviderEntry;
use crate::secrets;
use crate::sessions;
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
    }
}

/// What a person without an account sees when their provider's registration is closed.
fn closed_message(entry: &ProviderEntry) -> String {
    format!(
        "You have no account here, and new accounts cannot be created by signing in with {}. \
         Ask an administrator for an account, or sign in with a method already linked to yours.",
        entry.name
    )
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
    // Providers whose verified emails may link a first login to an existing account.
    let vouchers = &app.config.roles.email_trusted;
    let resolved = resolve_login(&app.store, &app.master, entry, vouchers, identity, now).await;
    let user = match resolved {
        Ok(u) => u,
        Err(IdentityError::Disabled) => {
            tracing::info!(provider = %entry.id, "login of a disabled user refused");
            return Err(PageError::sign_in(
                StatusCode::FORBIDDEN,
                "This account is disabled.",
            ));
        }
        Err(IdentityError::RegistrationClosed(provider)) => {
            tracing::info!(%provider, "login refused: no account and registration closed");
            return Err(PageError::sign_in(
                StatusCode::FORBIDDEN,
                closed_message(entry),
            ));
        }
        Err(IdentityError::Taken(what)) => {
            return Err(PageError::sign_in(
                StatusCode::CONFLICT,
                format!("Another account already uses {what}."),
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "resolving the user failed");
            return Err(PageError::internal());
        }
    };
    p.take(app).await?;
    if let Some(old) = browser::session(req, app).await.ok().flatten() {
        // Re-authentication replaces the session: the old id stops working.
        let _ = app.store.revoke_session(&old.id_hash, now).await;
    }
    let (cookie_value, session) = sessions::start(
        &app.store,
        &app.master,
        &user.id,
        &entry.id,
        now,
        app.config.session_lifetime,
        now,
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "starting the session failed");
        PageError::internal()
    })?;
    tracing::info!(provider = %entry.id, user = %user.id, "login succeeded");
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

fn account_page_error(status: StatusCode, message: &str) -> PageError {
    PageError::new(status, "Your account", message)
}

/// Link the identity to the user of the same, still live session that started the
/// link: no new session, no code.
async fn link(
    req: &HttpRequest,
    app: &AppState,
    p: &PendingLogin,
    intent: &LinkIntent,
    entry: &ProviderEntry,
    identity: Identity,
) -> Result<HttpResponse, PageError> {
    // Single use, whatever the outcome.
    p.take(app).await?;
    let session = browser::session(req, app).await?;
    let same_session = session.is_some_and(|s| {
        s.user_id == intent.user_id
            && secrets::constant_time_eq(s.id_hash.as_bytes(), intent.session_hash.as_bytes())
    });
    if !same_session || entry.id != intent.provider_id {
        tracing::warn!(provider = %entry.id, "link login finished outside the session that started it");
        return Err(account_page_error(
            StatusCode::FORBIDDEN,
            "This link request does not belong to your current sign-in. Open your account page and start again.",
        ));
    }
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
            "This sign-in belongs to another account and was not linked to yours.",
        )),
        Err(IdentityError::ProviderAlreadyLinked(_)) => Err(account_page_error(
            StatusCode::CONFLICT,
            "Your account already has a sign-in of this method. Unlink it first.",
        )),
        Err(IdentityError::Disabled) => Err(account_page_error(
            StatusCode::FORBIDDEN,
            "This account is disabled.",
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
