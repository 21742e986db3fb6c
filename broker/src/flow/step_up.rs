//! Step-up: an SSO session whose person gave one factor meets a request that needs two
//! (the client's `require_mfa`, or `acr_values` naming the MFA level). The person is
//! asked for the second factor alone, as after a first factor; one who has none set up
//! is sent to set one up on their account page.

use super::pending::{PendingLogin, Purpose, SecondFactor};
use super::request::AuthorizationRequest;
use crate::identity::mfa;
use crate::store::SessionRecord;
use crate::web::pages::WayBack;
use crate::web::{AppState, PageError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

/// What a person sees when the app needs a second factor they have not set up.
const SET_UP_MFA: &str = "msg.mfa.required";

/// The page for a signed-in person whose app needs a second factor they have not set up.
pub fn set_up_mfa_page(app: &AppState) -> HttpResponse {
    app.pages.render(
        "error.html",
        StatusCode::FORBIDDEN,
        minijinja::context! {
            title => "msg.title.second_factor",
            message => SET_UP_MFA,
            back => WayBack {
                id: "set-up-mfa",
                url: "/account#mfa".into(),
                label: "msg.set_up_mfa",
            },
        },
    )
}

/// Asks the person of `session` for their second factor before `request` is answered.
pub async fn step_up(
    app: &AppState,
    req: &HttpRequest,
    session: &SessionRecord,
    request: AuthorizationRequest,
) -> Result<HttpResponse, PageError> {
    let enrolled = mfa::is_enrolled(&app.store, &session.user_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading the second factor failed");
            PageError::internal()
        })?;
    if !enrolled {
        tracing::info!(user = %session.user_id, client_id = %request.client_id, "the app needs a second factor the person has not set up");
        return Ok(set_up_mfa_page(app));
    }
    let step = SecondFactor {
        user_id: session.user_id.clone(),
        provider_id: session.provider_id.clone(),
        auth_time: session.auth_time,
        amr: session.amr.clone(),
        then: Purpose::SignIn(request),
    };
    tracing::info!(user = %session.user_id, "step-up: asking the signed-in person for their second factor");
    let started = PendingLogin::start(app, req, Purpose::SecondFactor(Box::new(step))).await?;
    Ok(started.into_response())
}
