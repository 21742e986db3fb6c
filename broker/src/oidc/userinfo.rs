//! `/userinfo` (GET and POST): only our access tokens that were not revoked, only for
//! live grants of active users; errors per RFC 6750.

use crate::flow::OAuthError;
use crate::store::UserStatus;
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
    let claims = app
        .signer
        .verify_access_token(token)
        .await
        .map_err(|e| invalid_token(&e.to_string()))?;
    // Read at every call, never cached: a revocation holds at once, on every replica.
    let denied = app
        .store
        .access_token_denied(&claims.jti)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading access-token denials failed");
            OAuthError::server_error()
        })?;
    if denied {
        return Err(invalid_token("the token was revoked"));
    }
    let now = app.clock.now();
    let Some(grant_id) = &claims.gid else {
        return Err(invalid_token("the token does not belong to a person"));
    };
    let grant = app
        .store
        .get_grant(grant_id)
        .await
        .map_err(|_| OAuthError::server_error())?;
    let grant = match grant {
        Some(g) if g.revoked_at.is_none() && g.expires_at > now && g.user_id == claims.sub => g,
        _ => return Err(invalid_token("the token was revoked")),
    };
    let user = app
        .store
        .get_user(&claims.sub)
        .await
        .map_err(|_| OAuthError::server_error())?;
    let Some(user) = user.filter(|u| u.status == UserStatus::Active) else {
        return Err(invalid_token("the user is disabled"));
    };
    let scopes: Vec<String> = claims.scope.split(' ').map(str::to_string).collect();
    let user = crate::identity::with_managed_groups(&app.store, user, &scopes)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading managed groups failed");
            OAuthError::server_error()
        })?;
    if !scopes.iter().any(|s| s == "openid") {
        return Err(OAuthError::new(
            "insufficient_scope",
            "the openid scope is required",
        ));
    }
    let access = crate::identity::grant_access(&app.store, &app.config.roles, &grant)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "computing roles failed");
            OAuthError::server_error()
        })?;
    Ok(Userinfo {
        profile: ProfileClaims::for_scopes(&user, &scopes),
        roles: RoleClaims::for_scopes(access.as_ref(), &scopes),
        sub: user.id,
    })
}
