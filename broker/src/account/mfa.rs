//! The account page's second factor: set up an authenticator app (a QR code and the
//! key as text, confirmed by a code, then ten recovery codes shown once), turn it off,
//! and make new recovery codes. Setting up needs a recent sign-in; turning off and new
//! recovery codes need a current code (authenticator or recovery) or a recent sign-in.
//! Codes typed here are throttled per user like the sign-in's second step.

use super::{CsrfForm, account_error, form_session, internal, recent_enough};
use crate::identity::mfa::{self, Enrolment, MfaError, MfaStatus};
use crate::store::SessionRecord;
use crate::web::{AppState, PageError, see_other};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

const NEEDS_RECENT: &str = "msg.mfa.needs_recent";
const NEEDS_CODE: &str = "msg.mfa.needs_code";
const WRONG_CODE: &str = "msg.mfa.wrong_code";
const THROTTLED: &str = "msg.mfa.code_throttled";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/account/mfa/enrol", web::post().to(enrol))
        .route("/account/mfa/confirm", web::post().to(confirm))
        .route("/account/mfa/disable", web::post().to(disable))
        .route("/account/mfa/recovery-codes", web::post().to(regenerate));
}

/// What the account page's section shows.
pub async fn summary(app: &AppState, user_id: &str) -> Result<MfaStatus, PageError> {
    mfa::status(&app.store, user_id).await.map_err(|e| {
        tracing::error!(error = %e, "reading the second factor failed");
        internal()
    })
}

pub fn view(status: &MfaStatus) -> minijinja::Value {
    minijinja::context! {
        enrolled => status.enrolled,
        recovery_codes_left => status.recovery_codes_left,
    }
}

#[derive(Deserialize)]
struct CodeForm {
    csrf: Option<String>,
    code: Option<String>,
}

impl CodeForm {
    fn csrf(&self) -> CsrfForm {
        CsrfForm {
            csrf: self.csrf.clone(),
        }
    }

    fn code(&self) -> Option<&str> {
        self.code
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
    }
}

/// How the entry in the person's app is labelled: this issuer's host, and their name.
fn labels(
    app: &AppState,
    user: Option<&crate::store::UserRecord>,
    user_id: &str,
) -> (String, String) {
    let issuer = url::Url::parse(&app.config.issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "Switchboard".to_string());
    let account = user
        .and_then(|u| u.username.clone().or_else(|| u.email.clone()))
        .unwrap_or_else(|| user_id.to_string());
    (issuer, account)
}

fn enrol_page(
    app: &AppState,
    session: &SessionRecord,
    enrolment: &Enrolment,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    app.pages.render(
        "mfa_enrol.html",
        status,
        minijinja::context! {
            csrf => super::csrf_token(app, session),
            // Made here from the key URI alone: markup of ours, not input.
            qr_svg => minijinja::Value::from_safe_string(enrolment.qr_svg.clone()),
            secret => enrolment.secret_text.expose(),
            error,
        },
    )
}

fn codes_page(app: &AppState, codes: &[String], enrolled_now: bool) -> HttpResponse {
    app.pages.render(
        "mfa_enrol.html",
        StatusCode::OK,
        minijinja::context! { recovery_codes => codes, enrolled_now },
    )
}

fn failed(e: MfaError) -> PageError {
    tracing::error!(error = %e, "a second-factor change failed");
    internal()
}

async fn user_labels(app: &AppState, user_id: &str) -> Result<(String, String), PageError> {
    let user = app.store.get_user(user_id).await.map_err(|e| {
        tracing::error!(error = %e, "reading the user failed");
        internal()
    })?;
    Ok(labels(app, user.as_ref(), user_id))
}

/// POST `/account/mfa/enrol`: a new secret, pending; the page with its QR code.
async fn enrol(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let session = form_session(&req, &app, &form).await?;
    let now = app.clock.now();
    if !recent_enough(session.auth_time, now) {
        return Err(account_error(StatusCode::FORBIDDEN, NEEDS_RECENT));
    }
    let (issuer, account) = user_labels(&app, &session.user_id).await?;
    match mfa::begin_enrolment(
        &app.store,
        &app.master,
        &session.user_id,
        &issuer,
        &account,
        now,
    )
    .await
    {
        Ok(enrolment) => {
            tracing::info!(user = %session.user_id, "second factor set-up started");
            Ok(enrol_page(&app, &session, &enrolment, None, StatusCode::OK))
        }
        Err(MfaError::AlreadyEnrolled) => Err(account_error(
            StatusCode::CONFLICT,
            "msg.mfa.already_enrolled",
        )),
        Err(e) => Err(failed(e)),
    }
}

/// POST `/account/mfa/confirm`: a code from the app turns the pending set-up on.
async fn confirm(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, PageError> {
    let session = form_session(&req, &app, &form.csrf()).await?;
    let now = app.clock.now();
    if !admit(&app, &session.user_id).await? {
        return Err(account_error(StatusCode::TOO_MANY_REQUESTS, THROTTLED));
    }
    let actor = format!("user:{}", session.user_id);
    let typed = form.code().unwrap_or_default();
    match mfa::confirm_enrolment(
        &app.store,
        &app.master,
        &session.user_id,
        typed,
        &actor,
        now,
    )
    .await
    {
        Ok(codes) => {
            succeeded(&app, &session.user_id).await;
            tracing::info!(user = %session.user_id, "second factor set up");
            Ok(codes_page(&app, &codes, true))
        }
        Err(MfaError::WrongCode) => {
            let (issuer, account) = user_labels(&app, &session.user_id).await?;
            let enrolment = mfa::pending_enrolment(
                &app.store,
                &app.master,
                &session.user_id,
                &issuer,
                &account,
            )
            .await
            .map_err(failed)?;
            Ok(enrol_page(
                &app,
                &session,
                &enrolment,
                Some(WRONG_CODE),
                StatusCode::UNAUTHORIZED,
            ))
        }
        Err(MfaError::NoPendingEnrolment | MfaError::AlreadyEnrolled) => {
            Err(account_error(StatusCode::CONFLICT, "msg.mfa.no_pending"))
        }
        Err(e) => Err(failed(e)),
    }
}

fn throttle_key(user_id: &str) -> String {
    format!("mfa-account:{}", crate::secrets::hash_secret(user_id))
}

/// A right code clears the person's count of attempts.
async fn succeeded(app: &AppState, user_id: &str) {
    if let Err(e) = app.store.clear(&throttle_key(user_id)).await {
        tracing::warn!(error = %e, "clearing the code attempts failed");
    }
}

/// Counts an attempt at a code on the account page; false past the per-user limit.
async fn admit(app: &AppState, user_id: &str) -> Result<bool, PageError> {
    let s = &app.config.login;
    let n = app
        .store
        .hit(&throttle_key(user_id), s.throttle_window, app.clock.now())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "counting a code attempt failed");
            internal()
        })?;
    Ok(n <= s.max_failures_per_account)
}

/// A change that needs proof of the person now: a current code (used up), or a recent
/// sign-in when no code was typed.
async fn proven(app: &AppState, session: &SessionRecord, form: &CodeForm) -> Result<(), PageError> {
    let now = app.clock.now();
    let Some(code) = form.code() else {
        if recent_enough(session.auth_time, now) {
            return Ok(());
        }
        return Err(account_error(StatusCode::FORBIDDEN, NEEDS_CODE));
    };
    if !admit(app, &session.user_id).await? {
        return Err(account_error(StatusCode::TOO_MANY_REQUESTS, THROTTLED));
    }
    match mfa::verify(&app.store, &app.master, &session.user_id, code, now).await {
        Ok(_) => {
            succeeded(app, &session.user_id).await;
            Ok(())
        }
        Err(MfaError::WrongCode | MfaError::Replayed) => {
            tracing::info!(user = %session.user_id, "wrong code on the account page");
            Err(account_error(StatusCode::UNAUTHORIZED, WRONG_CODE))
        }
        Err(MfaError::NotEnrolled) => {
            Err(account_error(StatusCode::CONFLICT, "msg.mfa.not_enrolled"))
        }
        Err(e) => Err(failed(e)),
    }
}

/// POST `/account/mfa/disable`.
async fn disable(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, PageError> {
    let session = form_session(&req, &app, &form.csrf()).await?;
    proven(&app, &session, &form).await?;
    let actor = format!("user:{}", session.user_id);
    mfa::remove(&app.store, &session.user_id, &actor, app.clock.now())
        .await
        .map_err(failed)?;
    tracing::info!(user = %session.user_id, "second factor turned off on the account page");
    Ok(see_other("/account#mfa"))
}

/// POST `/account/mfa/recovery-codes`: ten new codes in place of the old ones.
async fn regenerate(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, PageError> {
    let session = form_session(&req, &app, &form.csrf()).await?;
    proven(&app, &session, &form).await?;
    let actor = format!("user:{}", session.user_id);
    match mfa::regenerate_recovery_codes(&app.store, &session.user_id, &actor, app.clock.now())
        .await
    {
        Ok(codes) => {
            tracing::info!(user = %session.user_id, "new recovery codes made");
            Ok(codes_page(&app, &codes, false))
        }
        Err(MfaError::NotEnrolled) => {
            Err(account_error(StatusCode::CONFLICT, "msg.mfa.not_enrolled"))
        }
        Err(e) => Err(failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use crate::web::pages::Pages;
    use actix_web::http::StatusCode;

    async fn body(res: actix_web::HttpResponse) -> String {
        let bytes = actix_web::body::to_bytes(res.into_body())
            .await
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn the_qr_code_is_inline_markup_and_the_rest_is_escaped() {
        let pages = Pages::new().unwrap();
        let page = body(pages.render(
            "mfa_enrol.html",
            StatusCode::OK,
            minijinja::context! {
                csrf => "c",
                qr_svg => minijinja::Value::from_safe_string("<svg id=\"q\"><path d=\"M0\"/></svg>".into()),
                secret => "<b>KEY</b>",
                error => "<i>wrong</i>",
            },
        ))
        .await;
        assert!(
            page.contains("<svg id=\"q\"><path d=\"M0\"/></svg>"),
            "{page}"
        );
        assert!(!page.contains("<b>KEY") && page.contains("&lt;b&gt;KEY"));
        assert!(!page.contains("<i>wrong"));
        assert!(
            !page.contains("<script"),
            "no script: the page works under a strict CSP"
        );
        let codes = body(pages.render(
            "mfa_enrol.html",
            StatusCode::OK,
            minijinja::context! { recovery_codes => ["aaaa-bbbb-cccc", "<x>"], enrolled_now => true },
        ))
        .await;
        assert!(codes.contains("<code>aaaa-bbbb-cccc</code>"), "{codes}");
        assert!(codes.contains("&lt;x&gt;"));
        assert!(
            !codes.contains("totp-secret"),
            "the key is not shown with the codes"
        );
    }

    #[tokio::test]
    async fn the_account_section_offers_what_fits_the_state() {
        let pages = Pages::new().unwrap();
        let render = |enrolled: bool| {
            pages.render(
                "account_mfa.html",
                StatusCode::OK,
                minijinja::context! {
                    csrf => "tok",
                    mfa => minijinja::context! { enrolled, recovery_codes_left => 7 },
                },
            )
        };
        let off = body(render(false)).await;
        assert!(off.contains("id=\"enrol-mfa\"") && !off.contains("id=\"disable-mfa\""));
        assert!(off.contains("value=\"tok\""), "forms carry the CSRF token");
        let on = body(render(true)).await;
        assert!(
            on.contains("id=\"disable-mfa\"") && on.contains("id=\"regenerate-recovery-codes\"")
        );
        assert!(!on.contains("id=\"enrol-mfa\""));
        assert!(on.contains(">7<"));
    }
}
