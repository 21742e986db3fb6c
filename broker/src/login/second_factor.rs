//! The second step of a login (`/second-factor`): after the first factor, a code from
//! the person's authenticator app or one of their recovery codes. The step is a pending
//! login of its own that only a passed first factor starts, bound to the browser and
//! guarded by a CSRF token like the password form; codes are throttled per user and per
//! address, and five wrong ones end the login.

use super::{finish, throttle};
use crate::flow::{PendingLogin, Purpose, SecondFactor};
use crate::identity::mfa::{self, Factor, MfaError};
use crate::metrics::LoginOutcome;
use crate::secrets;
use crate::sessions::{self, Authentication};
use crate::store::UserStatus;
use crate::tokens::amr;
use crate::web::client_ip::client_ip;
use crate::web::{AppState, PageError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

/// Wrong codes after which the login ends.
pub const MAX_WRONG_CODES: u32 = 5;
const WRONG: &str = "msg.mfa.wrong";
const THROTTLED: &str = "msg.mfa.throttled";
const ENDED: &str = "msg.mfa.ended";
/// Throttle keys of the second step use this in place of a provider id.
const THROTTLE_SCOPE: &str = "second-factor";

#[derive(Debug, Deserialize)]
pub(super) struct StepQuery {
    req: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct CodeForm {
    req: Option<String>,
    csrf: Option<String>,
    code: Option<String>,
}

/// The first factor a pending login passed; a login of any other kind has no second step.
fn step_of(p: &PendingLogin) -> Result<&SecondFactor, PageError> {
    match &p.purpose {
        Purpose::SecondFactor(step) => Ok(step),
        _ => {
            tracing::warn!("the second-factor page was asked for without a first factor");
            Err(PageError::bad_request(crate::flow::EXPIRED))
        }
    }
}

fn page(app: &AppState, p: &PendingLogin, error: Option<&str>, status: StatusCode) -> HttpResponse {
    app.pages.render(
        "totp.html",
        status,
        minijinja::context! {
            client_name => p.heading(app),
            login_id => &p.id,
            csrf => sessions::csrf_token(&app.master, &p.id, &p.binding),
            error,
        },
    )
}

/// GET `/second-factor?req=…`.
pub(super) async fn form(
    req: HttpRequest,
    app: web::Data<AppState>,
    q: web::Query<StepQuery>,
) -> Result<HttpResponse, PageError> {
    let p = PendingLogin::load(&app, &req, q.req.as_deref()).await?;
    step_of(&p)?;
    Ok(page(&app, &p, None, StatusCode::OK))
}

/// POST `/second-factor`.
pub(super) async fn submit(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, PageError> {
    let submitted = form.into_inner();
    let p = PendingLogin::load(&app, &req, submitted.req.as_deref()).await?;
    let csrf_good = submitted
        .csrf
        .as_deref()
        .is_some_and(|t| sessions::check_csrf(&app.master, &p.id, &p.binding, t));
    if !csrf_good {
        tracing::warn!("second-factor form with a missing or wrong CSRF token");
        return Err(PageError::sign_in(
            StatusCode::FORBIDDEN,
            "msg.form_expired_back",
        ));
    }
    let step = step_of(&p)?.clone();
    let now = app.clock.now();
    let ip = client_ip(&req, &app.config.trusted_proxies);
    let keys = throttle::Keys::new(THROTTLE_SCOPE, &step.user_id, ip);
    match throttle::admit(&app.store, &app.config.login, &keys, now).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(user = %step.user_id, "second-factor attempts throttled");
            app.metrics
                .login(&step.provider_id, LoginOutcome::Throttled);
            return Ok(page(
                &app,
                &p,
                Some(THROTTLED),
                StatusCode::TOO_MANY_REQUESTS,
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "throttle check failed");
            return Err(PageError::internal());
        }
    }
    let typed = submitted.code.unwrap_or_default();
    match mfa::verify(&app.store, &app.master, &step.user_id, &typed, now).await {
        Ok(factor) => {
            if let Err(e) = throttle::succeeded(&app.store, &keys).await {
                tracing::warn!(error = %e, "clearing throttle failed");
            }
            p.take(&app).await?;
            let active = app
                .store
                .get_user(&step.user_id)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "reading the user failed");
                    PageError::internal()
                })?
                .is_some_and(|u| u.status == UserStatus::Active);
            if !active {
                app.metrics.login(&step.provider_id, LoginOutcome::Disabled);
                return Err(PageError::sign_in(
                    StatusCode::FORBIDDEN,
                    "msg.account_disabled",
                ));
            }
            tracing::info!(user = %step.user_id, recovery_code = factor == Factor::RecoveryCode, "second factor passed");
            let auth = Authentication {
                user_id: step.user_id.clone(),
                provider_id: step.provider_id.clone(),
                // The last factor is the authentication's time.
                auth_time: now,
                amr: amr::with_second_factor(&step.amr, factor == Factor::Totp),
            };
            finish::complete(&req, &app, step.then, auth).await
        }
        Err(MfaError::WrongCode | MfaError::Replayed) => {
            tracing::info!(user = %step.user_id, "second factor refused: wrong or replayed code");
            app.metrics
                .login(&step.provider_id, LoginOutcome::InvalidCredentials);
            if let Err(e) = throttle::failed(&app.store, &app.config.login, &keys, now).await {
                tracing::warn!(error = %e, "counting a failed second factor failed");
            }
            let wrong_key = format!("mfa-wrong:{}", secrets::hash_secret(&p.id));
            let wrong = app
                .store
                .hit(&wrong_key, app.config.login.request_lifetime, now)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "counting a wrong code failed");
                    PageError::internal()
                })?;
            if wrong >= MAX_WRONG_CODES {
                tracing::warn!(user = %step.user_id, "too many wrong second-factor codes: the login ends");
                let _ = p.take(&app).await;
                return Err(PageError::sign_in(StatusCode::FORBIDDEN, ENDED));
            }
            Ok(page(&app, &p, Some(WRONG), StatusCode::UNAUTHORIZED))
        }
        Err(MfaError::NotEnrolled) => {
            tracing::info!(user = %step.user_id, "the second factor was removed during the login");
            let _ = p.take(&app).await;
            Err(PageError::bad_request(crate::flow::EXPIRED))
        }
        Err(e) => {
            tracing::error!(error = %e, "checking the second factor failed");
            Err(PageError::internal())
        }
    }
}
