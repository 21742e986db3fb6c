//! Self-service registration with the local provider (`allow_registration`), the
//! page its mailed link opens, and the page an email-verification link opens.
//!
//! The registration form's CSRF token is bound to this browser's binding cookie; the
//! link pages' forms carry the link's token, which no other site knows. A link page
//! asks for one press of a button before it uses the link: mail scanners that open
//! every link in a mail must not use it up.

use crate::config::Signup;
use crate::identity::signup::{self, Links, NewAccount, Registered, SignupError};
use crate::web::client_ip::client_ip;
use crate::web::i18n::Text;
use crate::web::{AppState, PageError, browser};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

const CSRF_PURPOSE: &str = "register";
/// Registrations one address may post per window, whatever their outcome.
const REGISTRATIONS_PER_IP: u32 = 10;
const REGISTRATION_WINDOW: i64 = 3600;
const INVALID_LINK: &str = "msg.register_link_invalid";

/// The provider's signup settings and link lifetime, or a 404 when it takes none.
fn signup_of(app: &AppState, provider_id: &str) -> Result<(Signup, i64), PageError> {
    app.config
        .providers
        .iter()
        .find(|p| p.id == provider_id)
        .and_then(|p| p.policy.signup.map(|s| (s, p.policy.confirmation_lifetime)))
        .ok_or_else(|| PageError::sign_in(StatusCode::NOT_FOUND, "msg.no_such_page"))
}

#[derive(Deserialize)]
pub(super) struct FormQuery {
    /// The pending login the person came from, to continue it afterwards.
    req: Option<String>,
}

/// The values the form shows again after a refusal.
#[derive(Default)]
struct Typed {
    username: String,
    email: String,
    name: String,
}

fn form_page(
    app: &AppState,
    provider_id: &str,
    csrf: &str,
    login_id: Option<&str>,
    typed: &Typed,
    error: Option<Text>,
    status: StatusCode,
) -> HttpResponse {
    app.pages.render(
        "register.html",
        status,
        minijinja::context! {
            stage => "form",
            provider_id,
            csrf,
            login_id,
            username => &typed.username,
            email => &typed.email,
            name => &typed.name,
            error,
            min_length => app.config.account_policy.min_password_length,
        },
    )
}

/// GET `/register/{provider}`.
pub(super) async fn form(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<FormQuery>,
) -> Result<HttpResponse, PageError> {
    signup_of(&app, &path)?;
    let (binding, cookie) = browser::ensure_binding(&req, &app)?;
    let csrf = app.master.mac(CSRF_PURPOSE, &binding);
    let login_id = query.req.as_deref().filter(|r| valid_login_id(r));
    let mut page = form_page(
        &app,
        &path,
        &csrf,
        login_id,
        &Typed::default(),
        None,
        StatusCode::OK,
    );
    if let Some(cookie) = cookie {
        page.add_cookie(&cookie).map_err(|e| {
            tracing::error!(error = %e, "setting the binding cookie failed");
            PageError::internal()
        })?;
    }
    Ok(page)
}

/// A pending login id as the flow makes them (URL-safe), so the page never echoes
/// anything else into a link.
fn valid_login_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[derive(Deserialize)]
pub(super) struct RegisterForm {
    csrf: Option<String>,
    req: Option<String>,
    username: Option<String>,
    email: Option<String>,
    name: Option<String>,
    password: Option<String>,
}

/// POST `/register/{provider}`.
pub(super) async fn submit(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<RegisterForm>,
) -> Result<HttpResponse, PageError> {
    let (signup_settings, lifetime) = signup_of(&app, &path)?;
    let form = form.into_inner();
    let binding = browser::binding(&req, &app);
    let csrf_good = match (&binding, form.csrf.as_deref()) {
        (Some(b), Some(t)) => app.master.verify_mac(CSRF_PURPOSE, b, t),
        _ => false,
    };
    let Some(binding) = binding.filter(|_| csrf_good) else {
        tracing::warn!("registration form with a missing or wrong CSRF token");
        return Err(PageError::sign_in(
            StatusCode::FORBIDDEN,
            "msg.register_form_expired",
        ));
    };
    let csrf = app.master.mac(CSRF_PURPOSE, &binding);
    let login_id = form.req.as_deref().filter(|r| valid_login_id(r));
    let typed = Typed {
        username: form.username.clone().unwrap_or_default(),
        email: form.email.clone().unwrap_or_default(),
        name: form.name.clone().unwrap_or_default(),
    };
    let again = |error: Text, status| {
        Ok(form_page(
            &app,
            &path,
            &csrf,
            login_id,
            &typed,
            Some(error),
            status,
        ))
    };
    let now = app.clock.now();
    if let Some(ip) = client_ip(&req, &app.config.trusted_proxies) {
        let key = format!("register:ip:{ip}");
        match app.store.hit(&key, REGISTRATION_WINDOW, now).await {
            Ok(n) if n > REGISTRATIONS_PER_IP => {
                tracing::warn!(provider = %path, "registrations throttled for an address");
                return again(
                    Text::new("msg.register_throttled"),
                    StatusCode::TOO_MANY_REQUESTS,
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "registration throttle failed");
                return Err(PageError::internal());
            }
        }
    }
    let issuer = app.config.issuer.trim_end_matches('/');
    let auto = signup_settings.auto_activate;
    // Auto-activated accounts verify their address; the others confirm it.
    let page = if auto {
        format!("{issuer}/email/verify")
    } else {
        format!("{issuer}/register/{}/confirm", path.as_str())
    };
    let links = Links {
        issuer: &app.config.issuer,
        page: &page,
        lifetime,
    };
    let account = NewAccount {
        username: &typed.username,
        email: &typed.email,
        name: Some(typed.name.as_str()),
        password: form.password.unwrap_or_default(),
    };
    let policy = &app.config.account_policy;
    let mail = app.mail.as_deref();
    match signup::register(&app.store, mail, policy, account, auto, links, now).await {
        Ok(Registered::MailSent) => {
            tracing::info!(provider = %path, "registration: mail queued");
            Ok(app.pages.render(
                "register.html",
                StatusCode::OK,
                minijinja::context! {
                    stage => "sent", email => typed.email.trim(), hours => (lifetime + 3599) / 3600,
                },
            ))
        }
        Ok(Registered::Active { verification_sent }) => {
            tracing::info!(provider = %path, "registration: account active");
            Ok(app.pages.render(
                "register.html",
                StatusCode::OK,
                minijinja::context! {
                    stage => "ready", provider_id => path.as_str(), login_id,
                    verify => verification_sent, email => typed.email.trim(),
                },
            ))
        }
        Err(SignupError::Policy(why)) => again(Text::from(&why), StatusCode::BAD_REQUEST),
        Err(SignupError::UsernameTaken) => {
            again(Text::new("msg.username_taken"), StatusCode::CONFLICT)
        }
        Err(e) => {
            tracing::error!(provider = %path, error = %e, "registration failed");
            Err(PageError::internal())
        }
    }
}

#[derive(Deserialize)]
pub(super) struct TokenQuery {
    token: Option<String>,
}

fn link_page(
    app: &AppState,
    template: &str,
    stage: &str,
    provider_id: Option<&str>,
    token: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    app.pages.render(
        template,
        status,
        minijinja::context! { stage, provider_id, token, error },
    )
}

/// GET `/register/{provider}/confirm?token=…`: a button that uses the link.
pub(super) async fn confirm_form(
    app: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, PageError> {
    signup_of(&app, &path)?;
    Ok(match query.into_inner().token.filter(|t| !t.is_empty()) {
        Some(token) => link_page(
            &app,
            "register.html",
            "confirm",
            Some(&path),
            Some(&token),
            None,
            StatusCode::OK,
        ),
        None => link_page(
            &app,
            "register.html",
            "failed",
            Some(&path),
            None,
            Some(INVALID_LINK),
            StatusCode::BAD_REQUEST,
        ),
    })
}

/// POST `/register/{provider}/confirm`: the account is created.
pub(super) async fn confirm_submit(
    app: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<TokenQuery>,
) -> Result<HttpResponse, PageError> {
    signup_of(&app, &path)?;
    let token = form.into_inner().token.unwrap_or_default();
    let failed = |why: &str| {
        Ok(link_page(
            &app,
            "register.html",
            "failed",
            Some(&path),
            None,
            Some(why),
            StatusCode::BAD_REQUEST,
        ))
    };
    match signup::confirm_registration(&app.store, &token, app.clock.now()).await {
        Ok(user) => {
            tracing::info!(provider = %path, user = %user.id, "registration confirmed");
            Ok(link_page(
                &app,
                "register.html",
                "confirmed",
                Some(&path),
                None,
                None,
                StatusCode::OK,
            ))
        }
        Err(SignupError::InvalidLink) => {
            tracing::info!(provider = %path, "registration link unknown, used or expired");
            failed(INVALID_LINK)
        }
        Err(SignupError::Taken(what)) => {
            tracing::info!(provider = %path, what, "registration confirmed too late: taken meanwhile");
            failed("msg.register_race")
        }
        Err(e) => {
            tracing::error!(provider = %path, error = %e, "confirming a registration failed");
            Err(PageError::internal())
        }
    }
}

/// GET `/email/verify?token=…`: a button that uses the link.
pub(super) async fn verify_form(
    app: web::Data<AppState>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, PageError> {
    Ok(match query.into_inner().token.filter(|t| !t.is_empty()) {
        Some(token) => link_page(
            &app,
            "verify_email.html",
            "confirm",
            None,
            Some(&token),
            None,
            StatusCode::OK,
        ),
        None => link_page(
            &app,
            "verify_email.html",
            "failed",
            None,
            None,
            Some(INVALID_LINK),
            StatusCode::BAD_REQUEST,
        ),
    })
}

/// POST `/email/verify`: the address becomes the account's verified email.
pub(super) async fn verify_submit(
    app: web::Data<AppState>,
    form: web::Form<TokenQuery>,
) -> Result<HttpResponse, PageError> {
    let token = form.into_inner().token.unwrap_or_default();
    let failed = |why: &str| {
        Ok(link_page(
            &app,
            "verify_email.html",
            "failed",
            None,
            None,
            Some(why),
            StatusCode::BAD_REQUEST,
        ))
    };
    let mail = app.mail.as_deref();
    match signup::verify_email(
        &app.store,
        mail,
        &token,
        &app.config.issuer,
        app.clock.now(),
    )
    .await
    {
        Ok(user) => {
            tracing::info!(user = %user.id, "email verified with a mailed link");
            Ok(link_page(
                &app,
                "verify_email.html",
                "done",
                None,
                None,
                None,
                StatusCode::OK,
            ))
        }
        Err(SignupError::InvalidLink) => failed(INVALID_LINK),
        Err(SignupError::Taken(_)) => failed("msg.email_confirmed_elsewhere"),
        Err(e) => {
            tracing::error!(error = %e, "verifying an email failed");
            Err(PageError::internal())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_url_safe_login_ids_are_echoed_into_links() {
        assert!(valid_login_id("abc-DEF_123"));
        for bad in ["", "a b", "a\"b", "a/b", "javascript:x", &"x".repeat(129)] {
            assert!(!valid_login_id(bad), "{bad:?}");
        }
    }
}
