//! The account page (`/account`): the identities linked to the signed-in user, linking
//! another provider and unlinking one. Linking starts an ordinary login whose pending
//! request carries a [`LinkIntent`]; `login::complete_login` finishes it by linking the
//! identity to this session's user instead of starting a session.

use crate::http::AppState;
use crate::identity::{self, IdentityError};
use crate::oidc::authorize::{AuthorizationRequest, LinkIntent, Prompt, request_id};
use crate::secrets;
use crate::sessions;
use crate::store::{AuthRequestRecord, SessionRecord, UnixTime};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

const ACCOUNT_PURPOSE: &str = "account";
/// Linking and unlinking need a login at most this many seconds old.
pub const RECENT_LOGIN_SECS: i64 = 300;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/account", web::get().to(show))
        .route("/account/link/{provider}", web::post().to(link))
        .route("/account/unlink/{provider}", web::post().to(unlink));
}

/// Whether a session's login is recent enough to change the account's identities.
pub fn recent_enough(auth_time: UnixTime, now: UnixTime) -> bool {
    now - auth_time <= RECENT_LOGIN_SECS
}

const SIGN_IN_AGAIN: &str = "Changing the sign-in methods of your account needs a recent sign-in. \
     Sign out, sign in again, and come back within five minutes.";

fn account_error(
    state: &AppState,
    req: &HttpRequest,
    status: StatusCode,
    msg: &str,
) -> HttpResponse {
    state
        .pages
        .error(status, "Your account", msg, request_id(req).as_deref())
}

fn internal(state: &AppState, req: &HttpRequest) -> HttpResponse {
    account_error(
        state,
        req,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong. Try again.",
    )
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", location))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

/// The live session of this browser, if any.
pub(crate) async fn session_of(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Option<SessionRecord>, HttpResponse> {
    let cookie = req.cookie(state.cookies.session_name());
    match sessions::current(
        &state.store,
        &state.master,
        cookie.as_ref().map(|c| c.value()),
        state.clock.now(),
    )
    .await
    {
        Ok(s) => Ok(s.map(|a| a.record)),
        Err(e) => {
            tracing::error!(error = %e, "reading the session failed");
            Err(internal(state, req))
        }
    }
}

fn csrf_token(state: &AppState, session: &SessionRecord) -> String {
    state.master.mac(ACCOUNT_PURPOSE, &session.id_hash)
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
async fn show(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let session = match session_of(&req, &state).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return state.pages.render(
                "account.html",
                StatusCode::UNAUTHORIZED,
                minijinja::context! { signed_in => false },
            );
        }
        Err(res) => return res,
    };
    let links = match state.store.list_user_identities(&session.user_id).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "listing identities failed");
            return internal(&state, &req);
        }
    };
    let name_of = |id: &str| {
        state
            .providers
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
    let linkable: Vec<_> = state
        .providers
        .all()
        .iter()
        .filter(|e| !links.iter().any(|l| l.provider_id == e.id))
        .map(|e| minijinja::context! { id => &e.id, name => &e.name })
        .collect();
    state.pages.render(
        "account.html",
        StatusCode::OK,
        minijinja::context! {
            signed_in => true,
            linked,
            linkable,
            csrf => csrf_token(&state, &session),
            recent => recent_enough(session.auth_time, state.clock.now()),
        },
    )
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

/// The session a link or unlink form may act for: live, its CSRF token good, its
/// login recent.
async fn authorised_session(
    req: &HttpRequest,
    state: &AppState,
    form: &CsrfForm,
) -> Result<SessionRecord, HttpResponse> {
    let Some(session) = session_of(req, state).await? else {
        return Err(account_error(
            state,
            req,
            StatusCode::UNAUTHORIZED,
            "You are not signed in. Sign in to an application first, then open this page again.",
        ));
    };
    let good = form.csrf.as_deref().is_some_and(|t| {
        state
            .master
            .verify_mac(ACCOUNT_PURPOSE, &session.id_hash, t)
    });
    if !good {
        tracing::warn!("account form with a missing or wrong CSRF token");
        return Err(account_error(
            state,
            req,
            StatusCode::FORBIDDEN,
            "The form expired. Open your account page again.",
        ));
    }
    if !recent_enough(session.auth_time, state.clock.now()) {
        return Err(account_error(
            state,
            req,
            StatusCode::FORBIDDEN,
            SIGN_IN_AGAIN,
        ));
    }
    Ok(session)
}

/// POST `/account/link/{provider}`: start a login at the provider whose result links to
/// this session's user.
async fn link(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let session = match authorised_session(&req, &state, &form).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let Some(entry) = state.providers.get(&path) else {
        return account_error(
            &state,
            &req,
            StatusCode::NOT_FOUND,
            "No such sign-in method.",
        );
    };
    // The login is bound to this browser, like any other.
    let existing = req
        .cookie(state.cookies.binding_name())
        .and_then(|c| sessions::read_binding(&state.master, c.value()));
    let (binding, new_cookie) = match existing {
        Some(b) => (b, None),
        None => match sessions::new_binding(&state.master) {
            Ok((cookie_value, id)) => (id, Some(state.cookies.binding_cookie(cookie_value))),
            Err(_) => return internal(&state, &req),
        },
    };
    let Ok(login_id) = secrets::random_token() else {
        return internal(&state, &req);
    };
    let request = AuthorizationRequest {
        client_id: String::new(),
        redirect_uri: String::new(),
        state: None,
        nonce: None,
        scopes: Vec::new(),
        code_challenge: None,
        prompt: Prompt {
            login: true,
            ..Prompt::default()
        },
        max_age: None,
        login_hint: None,
        hinted_subject: None,
        provider_hint: Some(entry.id.clone()),
        binding_hash: secrets::hash_secret(&binding),
        link: Some(LinkIntent {
            user_id: session.user_id.clone(),
            session_hash: session.id_hash.clone(),
            provider_id: entry.id.clone(),
        }),
    };
    let now = state.clock.now();
    let Ok(value) = serde_json::to_value(&request) else {
        return internal(&state, &req);
    };
    let record = AuthRequestRecord {
        id_hash: secrets::hash_secret(&login_id),
        request: value,
        created_at: now,
        expires_at: now + state.config.login.request_lifetime,
    };
    if let Err(e) = state.store.put_auth_request(&record).await {
        tracing::error!(error = %e, "storing the link request failed");
        return internal(&state, &req);
    }
    tracing::info!(provider = %entry.id, user = %session.user_id, "account link started");
    let mut res = see_other(&format!("/login/{}?req={login_id}", entry.id));
    if let Some(c) = new_cookie
        && let Err(e) = res.add_cookie(&c)
    {
        tracing::error!(error = %e, "setting the binding cookie failed");
    }
    res
}

/// POST `/account/unlink/{provider}`.
async fn unlink(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let session = match authorised_session(&req, &state, &form).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let now = state.clock.now();
    match identity::unlink_from_user(&state.store, &session.user_id, &path, now).await {
        Ok(()) => see_other("/account"),
        Err(IdentityError::LastWayIn) => account_error(
            &state,
            &req,
            StatusCode::CONFLICT,
            "This is the only way to sign in to your account, so it cannot be unlinked. \
             Link another sign-in method first.",
        ),
        Err(IdentityError::NotLinked(_)) => account_error(
            &state,
            &req,
            StatusCode::NOT_FOUND,
            "This sign-in method is not linked to your account.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "unlinking failed");
            internal(&state, &req)
        }
    }
}

/// How a finished link login ends: the identity linked, or a page saying why not.
pub(crate) fn link_outcome(
    state: &AppState,
    req: &HttpRequest,
    result: Result<(), IdentityError>,
) -> HttpResponse {
    match result {
        Ok(()) => see_other("/account"),
        Err(IdentityError::LinkedElsewhere) => account_error(
            state,
            req,
            StatusCode::CONFLICT,
            "This sign-in belongs to another account and was not linked to yours.",
        ),
        Err(IdentityError::ProviderAlreadyLinked(_)) => account_error(
            state,
            req,
            StatusCode::CONFLICT,
            "Your account already has a sign-in of this method. Unlink it first.",
        ),
        Err(IdentityError::Disabled) => account_error(
            state,
            req,
            StatusCode::FORBIDDEN,
            "This account is disabled.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "linking failed");
            internal(state, req)
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
