//! The login pages: choose a provider, the password form, and what happens after a
//! successful login (new session, then the authorization code).

mod redirect;
mod throttle;

use crate::http::AppState;
use crate::http::client_ip::client_ip;
use crate::identity::{IdentityError, resolve_login};
use crate::oidc::authorize::{AuthorizationRequest, LinkIntent, issue_code, page_error};
use crate::providers::ProviderEntry;
use crate::secrets;
use crate::sessions;
use crate::store::AuthRequestRecord;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use switchboard_plugin_api::{Password, PasswordRequest, ProviderError};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::get().to(choose))
        .route("/login/{provider}", web::get().to(show_form))
        .route("/login/{provider}", web::post().to(submit_password))
        .route(
            "/callback/{provider}",
            web::get().to(redirect::callback_get),
        )
        .route(
            "/callback/{provider}",
            web::post().to(redirect::callback_post),
        )
        .route("/assets/style.css", web::get().to(style));
}

async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(crate::http::pages::STYLE_CSS)
}

#[derive(Debug, Deserialize)]
struct RequestQuery {
    req: Option<String>,
}

/// A pending request that this browser started.
struct Pending {
    id: String,
    binding: String,
    request: AuthorizationRequest,
}

pub(crate) const EXPIRED: &str = "This sign-in request has expired or was already used. Go back to the application and start again.";

async fn pending(
    req: &HttpRequest,
    state: &AppState,
    request_id: Option<&str>,
) -> Result<Pending, HttpResponse> {
    let refuse = |status, msg: &str| page_error(state, req, status, msg);
    let Some(id) = request_id.filter(|s| !s.is_empty() && s.len() <= 64) else {
        return Err(refuse(StatusCode::BAD_REQUEST, EXPIRED));
    };
    let now = state.clock.now();
    let record: AuthRequestRecord = match state
        .store
        .get_auth_request(&secrets::hash_secret(id), now)
        .await
    {
        Ok(Some(r)) => r,
        Ok(None) => return Err(refuse(StatusCode::BAD_REQUEST, EXPIRED)),
        Err(e) => {
            tracing::error!(error = %e, "reading authorization request failed");
            return Err(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong. Try again.",
            ));
        }
    };
    let request: AuthorizationRequest = match serde_json::from_value(record.request) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "stored authorization request is unreadable");
            return Err(refuse(StatusCode::BAD_REQUEST, EXPIRED));
        }
    };
    let binding = req
        .cookie(state.cookies.binding_name())
        .and_then(|c| sessions::read_binding(&state.master, c.value()));
    match binding {
        Some(b)
            if secrets::constant_time_eq(
                secrets::hash_secret(&b).as_bytes(),
                request.binding_hash.as_bytes(),
            ) =>
        {
            Ok(Pending {
                id: id.to_string(),
                binding: b,
                request,
            })
        }
        _ => {
            tracing::warn!("login request used from another browser");
            Err(refuse(
                StatusCode::BAD_REQUEST,
                "This sign-in request was started in another browser. Start again from the application.",
            ))
        }
    }
}

fn client_name(state: &AppState, request: &AuthorizationRequest) -> String {
    if request.link.is_some() {
        return "link it to your account".to_string();
    }
    state
        .config
        .clients
        .get(&request.client_id)
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

/// GET `/login?req=…`: the provider choice, or straight to the only provider.
async fn choose(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<RequestQuery>,
) -> HttpResponse {
    let p = match pending(&req, &state, q.req.as_deref()).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let all = state.providers.all();
    if let [only] = all
        && !p.request.prompt.select_account
    {
        return see_other(&format!("/login/{}?req={}", only.id, p.id));
    }
    let providers: Vec<_> = all
        .iter()
        .map(|e| minijinja::context! { id => &e.id, name => &e.name })
        .collect();
    state.pages.render(
        "choose.html",
        StatusCode::OK,
        minijinja::context! { client_name => client_name(&state, &p.request), providers, request_id => &p.id },
    )
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", location))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

fn provider<'a>(
    state: &'a AppState,
    req: &HttpRequest,
    id: &str,
) -> Result<&'a ProviderEntry, HttpResponse> {
    state
        .providers
        .get(id)
        .ok_or_else(|| page_error(state, req, StatusCode::NOT_FOUND, "No such sign-in method."))
}

fn password_form(
    state: &AppState,
    p: &Pending,
    entry: &ProviderEntry,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    state.pages.render(
        "password.html",
        status,
        minijinja::context! {
            client_name => client_name(state, &p.request),
            provider_name => &entry.name,
            provider_id => &entry.id,
            request_id => &p.id,
            csrf => sessions::csrf_token(&state.master, &p.id, &p.binding),
            username,
            error,
            other_providers => p.request.link.is_none() && state.providers.all().len() > 1,
        },
    )
}

/// GET `/login/{provider}?req=…`.
async fn show_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<RequestQuery>,
) -> HttpResponse {
    let p = match pending(&req, &state, q.req.as_deref()).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let entry = match provider(&state, &req, &path) {
        Ok(e) => e,
        Err(res) => return res,
    };
    if entry.provider.password().is_none() {
        return redirect::begin(&req, &state, &p, entry).await;
    }
    let hint = p.request.login_hint.clone().unwrap_or_default();
    password_form(&state, &p, entry, &hint, None, StatusCode::OK)
}

#[derive(Deserialize)]
struct PasswordForm {
    req: Option<String>,
    csrf: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

const BAD_CREDENTIALS: &str = "Wrong username or password.";
const THROTTLED: &str = "Too many sign-in attempts. Wait a few minutes and try again.";

/// POST `/login/{provider}`.
async fn submit_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<PasswordForm>,
) -> HttpResponse {
    let form = form.into_inner();
    let p = match pending(&req, &state, form.req.as_deref()).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    if !form
        .csrf
        .as_deref()
        .is_some_and(|t| sessions::check_csrf(&state.master, &p.id, &p.binding, t))
    {
        tracing::warn!("login form with a missing or wrong CSRF token");
        return page_error(
            &state,
            &req,
            StatusCode::FORBIDDEN,
            "The form expired. Go back and try again.",
        );
    }
    let entry = match provider(&state, &req, &path) {
        Ok(e) => e,
        Err(res) => return res,
    };
    let Some(password_login) = entry.provider.password() else {
        return page_error(
            &state,
            &req,
            StatusCode::NOT_IMPLEMENTED,
            "This sign-in method is not available yet.",
        );
    };
    let username = form.username.unwrap_or_default();
    let password = Password::new(form.password.unwrap_or_default());
    let username = username.trim().to_string();
    let ip = client_ip(&req, &state.config.trusted_proxies);
    let now = state.clock.now();
    let keys = throttle::Keys::new(&entry.id, &username, ip);
    match throttle::admit(&state.store, &state.config.login, &keys, now).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(provider = %entry.id, "password login throttled");
            return password_form(
                &state,
                &p,
                entry,
                &username,
                Some(THROTTLED),
                StatusCode::TOO_MANY_REQUESTS,
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "throttle check failed");
            return page_error(
                &state,
                &req,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong. Try again.",
            );
        }
    }
    let outcome = match tokio::time::timeout(
        state.config.login.provider_timeout,
        password_login.authenticate(PasswordRequest::new(&username, password)),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(_) => Err(ProviderError::UpstreamUnavailable {
            detail: "timed out".into(),
        }),
    };
    let identity = match outcome {
        Ok(identity) => identity,
        Err(ProviderError::InvalidCredentials) => {
            tracing::info!(provider = %entry.id, "password login failed: invalid credentials");
            if let Err(e) = throttle::failed(&state.store, &state.config.login, &keys, now).await {
                tracing::warn!(error = %e, "counting a failed login failed");
            }
            return password_form(
                &state,
                &p,
                entry,
                &username,
                Some(BAD_CREDENTIALS),
                StatusCode::UNAUTHORIZED,
            );
        }
        Err(ProviderError::Denied { reason }) => {
            tracing::info!(provider = %entry.id, %reason, "password login denied");
            if let Err(e) = throttle::failed(&state.store, &state.config.login, &keys, now).await {
                tracing::warn!(error = %e, "counting a failed login failed");
            }
            return password_form(
                &state,
                &p,
                entry,
                &username,
                Some(&reason),
                StatusCode::FORBIDDEN,
            );
        }
        Err(e) => {
            tracing::error!(provider = %entry.id, error = %e, "password provider failed");
            return password_form(
                &state,
                &p,
                entry,
                &username,
                Some("This sign-in method is unavailable right now. Try again later."),
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    if let Err(e) = throttle::succeeded(&state.store, &keys).await {
        tracing::warn!(error = %e, "clearing throttle failed");
    }
    complete_login(&req, &state, p, entry, identity).await
}

/// What a person without an account sees when their provider's registration is closed.
fn closed_message(entry: &ProviderEntry) -> String {
    format!(
        "You have no account here, and new accounts cannot be created by signing in with {}. \
         Ask an administrator for an account, or sign in with a method already linked to yours.",
        entry.name
    )
}

/// After a login started from the account page: link the identity to the user of the
/// same, still live session that started it; no new session, no code.
async fn complete_link(
    req: &HttpRequest,
    state: &AppState,
    p: Pending,
    entry: &ProviderEntry,
    intent: &LinkIntent,
    identity: switchboard_plugin_api::Identity,
) -> HttpResponse {
    let now = state.clock.now();
    // Single use, whatever the outcome.
    match state
        .store
        .take_auth_request(&secrets::hash_secret(&p.id), now)
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => return page_error(state, req, StatusCode::BAD_REQUEST, EXPIRED),
        Err(e) => {
            tracing::error!(error = %e, "consuming the link request failed");
            return page_error(
                state,
                req,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong. Try again.",
            );
        }
    }
    let session = match crate::account::session_of(req, state).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let same_session = session.is_some_and(|s| {
        s.user_id == intent.user_id
            && secrets::constant_time_eq(s.id_hash.as_bytes(), intent.session_hash.as_bytes())
    });
    if !same_session || entry.id != intent.provider_id {
        tracing::warn!(provider = %entry.id, "link login finished outside the session that started it");
        return page_error(
            state,
            req,
            StatusCode::FORBIDDEN,
            "This link request does not belong to your current sign-in. Open your account page and start again.",
        );
    }
    let linked = crate::identity::link_to_user(
        &state.store,
        &state.master,
        entry,
        &intent.user_id,
        identity,
        now,
    )
    .await;
    crate::account::link_outcome(state, req, linked)
}

/// After any successful login: resolve the user, start a fresh session, issue the code.
async fn complete_login(
    req: &HttpRequest,
    state: &AppState,
    p: Pending,
    entry: &ProviderEntry,
    identity: switchboard_plugin_api::Identity,
) -> HttpResponse {
    if let Some(intent) = p.request.link.clone() {
        return complete_link(req, state, p, entry, &intent, identity).await;
    }
    let now = state.clock.now();
    // Providers whose verified emails may link a first login to an existing account.
    let vouchers = &state.config.roles.email_trusted;
    let user =
        match resolve_login(&state.store, &state.master, entry, vouchers, identity, now).await {
            Ok(u) => u,
            Err(IdentityError::Disabled) => {
                tracing::info!(provider = %entry.id, "login of a disabled user refused");
                return page_error(
                    state,
                    req,
                    StatusCode::FORBIDDEN,
                    "This account is disabled.",
                );
            }
            Err(IdentityError::RegistrationClosed(provider)) => {
                tracing::info!(%provider, "login refused: no account and registration closed");
                return page_error(state, req, StatusCode::FORBIDDEN, &closed_message(entry));
            }
            Err(IdentityError::Taken(what)) => {
                return page_error(
                    state,
                    req,
                    StatusCode::CONFLICT,
                    &format!("Another account already uses {what}."),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "resolving the user failed");
                return page_error(
                    state,
                    req,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong. Try again.",
                );
            }
        };
    // Single use: of two submissions racing with the same request, one proceeds.
    match state
        .store
        .take_auth_request(&secrets::hash_secret(&p.id), now)
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => return page_error(state, req, StatusCode::BAD_REQUEST, EXPIRED),
        Err(e) => {
            tracing::error!(error = %e, "consuming the authorization request failed");
            return page_error(
                state,
                req,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong. Try again.",
            );
        }
    }
    if let Some(old) = req.cookie(state.cookies.session_name()) {
        // Re-authentication replaces the session: the old id stops working.
        if let Ok(Some(s)) =
            sessions::current(&state.store, &state.master, Some(old.value()), now).await
        {
            let _ = state.store.revoke_session(&s.record.id_hash, now).await;
        }
    }
    let started = sessions::start(
        &state.store,
        &state.master,
        &user.id,
        &entry.id,
        now,
        state.config.session_lifetime,
        now,
    )
    .await;
    let (cookie_value, session) = match started {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "starting the session failed");
            return page_error(
                state,
                req,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong. Try again.",
            );
        }
    };
    tracing::info!(provider = %entry.id, user = %user.id, "login succeeded");
    let hash = session.id_hash.clone();
    let mut res = match issue_code(state, &p.request, &session, &hash).await {
        Ok(res) => res,
        Err(e) => match p.request.reply(&state.config) {
            Ok(reply) => reply.error(&e),
            Err(_) => page_error(
                state,
                req,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong.",
            ),
        },
    };
    if let Err(e) = res.add_cookie(&state.cookies.session_cookie(cookie_value)) {
        tracing::error!(error = %e, "setting the session cookie failed");
    }
    res
}
