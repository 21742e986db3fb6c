//! `/userinfo` (GET and POST): only our access tokens that were not revoked, only for
//! live grants of active users (as `tokens::status` decides, and keeps for a few
//! seconds); errors per RFC 6750.

use crate::flow::OAuthError;
use crate::tokens::status::ActiveToken;
use crate::tokens::{ProfileClaims, RoleClaims};
use crate::web::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct UserinfoForm {
    access_token: Option<String>,
}

#[derive(Serialize)]
struct Userinfo {
    sub: String,
    #[serde(flatten)]
    profile: ProfileClaims,
    #[serde(flatten)]
    roles: RoleClaims,
}

fn invalid_token(why: &str) -> OAuthError {
    OAuthError::new("invalid_token", why)
}

fn bearer_from_header(req: &HttpRequest) -> Result<Option<String>, OAuthError> {
    let Some(v) = req.headers().get("authorization") else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| OAuthError::invalid_request("malformed Authorization header"))?;
    match v.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim().to_string()))
        }
        _ => Err(OAuthError::invalid_request("expected a Bearer token")),
    }
}

pub async fn userinfo_get(req: HttpRequest, app: web::Data<AppState>) -> HttpResponse {
    respond(&app, bearer_from_header(&req)).await
}

pub async fn userinfo_post(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: Option<web::Form<UserinfoForm>>,
) -> HttpResponse {
    let from_form = form.and_then(|f| f.into_inner().access_token);
    let token = match (bearer_from_header(&req), from_form) {
        (Ok(Some(_)), Some(_)) => Err(OAuthError::invalid_request("send the token once")),
        (Ok(None), Some(t)) => Ok(Some(t)),
        (other, None) => other,
        (Err(e), _) => Err(e),
    };
    respond(&app, token).await
}

async fn respond(app: &AppState, token: Result<Option<String>, OAuthError>) -> HttpResponse {
    let result = match token {
        Ok(Some(t)) => lookup(app, &t).await,
        Ok(None) => Err(OAuthError::new("invalid_token", "no access token")),
        Err(e) => Err(e),
    };
    match result {
        Ok(body) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(body),
        Err(e) => {
            tracing::info!(error = e.error, description = %e.error_description, "userinfo refused");
            e.bearer_response()
        }
    }
}

async fn lookup(app: &AppState, token: &str) -> Result<Userinfo, OAuthError> {
    let active = app
        .token_status()
        .live_access_token(token)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "checking an access token failed");
            OAuthError::server_error()
        })?;
    let Some(ActiveToken::Access(live)) = active else {
        return Err(invalid_token(
            "the access token is invalid, expired or revoked",
        ));
    };
    let Some(person) = &live.person else {
        return Err(invalid_token("the token does not belong to a person"));
    };
    let scopes: Vec<String> = live.claims.scope.split(' ').map(str::to_string).collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Err(OAuthError::new(
            "insufficient_scope",
            "the openid scope is required",
        ));
    }
    Ok(Userinfo {
        profile: ProfileClaims::for_scopes(&person.user, &scopes),
        roles: RoleClaims::for_scopes(person.access.as_ref(), &scopes),
        sub: person.user.id.clone(),
    })
}
