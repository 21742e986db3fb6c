//! Asking about a token and ending it: introspection (RFC 7662) and revocation
//! (RFC 7009). Both authenticate the client first and say nothing about tokens that
//! are not live.

use super::clients::{authenticate, presented_credentials};
use crate::config::Client;
use crate::flow::OAuthError;
use crate::secrets;
use crate::store::{GrantRecord, UserRecord, UserStatus};
use crate::tokens::AccessTokenClaims;
use crate::web::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    token: Option<String>,
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// A token we issued that is still good.
enum LiveToken {
    Access {
        claims: Box<AccessTokenClaims>,
        grant: Option<(GrantRecord, UserRecord)>,
    },
    Refresh {
        grant: GrantRecord,
        user: UserRecord,
    },
}

async fn live_grant(app: &AppState, grant: GrantRecord) -> Option<(GrantRecord, UserRecord)> {
    let now = app.clock.now();
    if grant.revoked_at.is_some() || grant.expires_at <= now {
        return None;
    }
    let user = app.store.get_user(&grant.user_id).await.ok()??;
    (user.status == UserStatus::Active).then_some((grant, user))
}

/// Which live token `token` is; `None` for anything expired, revoked, of a disabled
/// user, malformed or unknown. The hint only decides the order of the lookups.
async fn identify(app: &AppState, token: &str, hint: Option<&str>) -> Option<LiveToken> {
    let as_access = async {
        let claims = app.signer.verify_access_token(token).await.ok()?;
        let grant = match &claims.gid {
            None => None,
            Some(id) => {
                let g = app.store.get_grant(id).await.ok()??;
                Some(live_grant(app, g).await?)
            }
        };
        Some(LiveToken::Access {
            claims: Box::new(claims),
            grant,
        })
    };
    let as_refresh = async {
        let now = app.clock.now();
        let hash = secrets::hash_secret(token);
        let grant = app.store.refresh_token_grant(&hash, now).await.ok()??;
        let (grant, user) = live_grant(app, grant).await?;
        Some(LiveToken::Refresh { grant, user })
    };
    // JWTs have two dots; refresh tokens are plain base64url.
    let looks_like_jwt = token.matches('.').count() == 2;
    if hint == Some("refresh_token") || !looks_like_jwt {
        as_refresh.await
    } else {
        as_access.await
    }
}

async fn authenticated<'a>(
    req: &HttpRequest,
    app: &'a AppState,
    form: &TokenForm,
) -> Result<&'a Client, OAuthError> {
    let creds = presented_credentials(
        req,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )?;
    authenticate(&app.config, &creds)
}

/// Adds the roles and permissions the grant's scopes ask for, recomputed now.
async fn add_roles(app: &AppState, grant: &GrantRecord, body: &mut serde_json::Value) {
    match crate::identity::grant_access(&app.store, &app.config.roles, grant).await {
        Ok(Some(access)) => {
            let has = |s: &str| grant.scopes.iter().any(|g| g == s);
            if has("roles") {
                body["roles"] = json!(access.roles);
            }
            if has("permissions") {
                body["permissions"] = json!(access.permissions);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "computing roles for introspection failed"),
    }
}

fn no_store_json(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(body)
}

/// POST `/introspect` (RFC 7662). Confidential clients only: resource servers
/// authenticate as clients.
pub async fn introspect(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<TokenForm>,
) -> HttpResponse {
    let form = form.into_inner();
    let client = match authenticated(&req, &app, &form).await {
        Ok(c) if !c.is_public() => c,
        Ok(_) => {
            return OAuthError::invalid_client("public clients cannot introspect").token_response();
        }
        Err(e) => return e.token_response(),
    };
    let Some(token) = form.token.as_deref().filter(|t| !t.is_empty()) else {
        return OAuthError::invalid_request("token is required").token_response();
    };
    let inactive = || no_store_json(json!({ "active": false }));
    let groups_of = |u: &UserRecord, scopes: &[String]| {
        scopes
            .iter()
            .any(|s| s == "groups")
            .then(|| u.groups.clone())
    };
    let body = match identify(&app, token, form.token_type_hint.as_deref()).await {
        None => return inactive(),
        Some(LiveToken::Access { claims, grant }) => {
            let mut body = json!({
                "active": true,
                "token_type": "Bearer",
                "scope": claims.scope,
                "client_id": claims.client_id,
                "sub": claims.sub,
                "aud": claims.aud,
                "iss": claims.iss,
                "exp": claims.exp,
                "iat": claims.iat,
                "jti": claims.jti,
            });
            if let Some((g, user)) = grant {
                body["username"] = json!(user.username.clone().or(user.email.clone()));
                if let Some(groups) = groups_of(&user, &g.scopes) {
                    body["groups"] = json!(groups);
                }
                add_roles(&app, &g, &mut body).await;
            }
            body
        }
        Some(LiveToken::Refresh { grant, user }) => {
            let mut body = json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": grant.scopes.join(" "),
                "client_id": grant.client_id,
                "sub": user.id,
                "iss": app.config.issuer,
                "iat": grant.created_at,
                "exp": grant.expires_at,
                "username": user.username.clone().or(user.email.clone()),
            });
            if let Some(groups) = groups_of(&user, &grant.scopes) {
                body["groups"] = json!(groups);
            }
            add_roles(&app, &grant, &mut body).await;
            body
        }
    };
    tracing::info!(client_id = %client.id, "introspected an active token");
    no_store_json(body)
}

/// POST `/revoke` (RFC 7009). Revoking a refresh token or an access token ends its
/// grant (the whole family). Tokens of other clients and unknown tokens get the same
/// 200 as success, so the answer tells nothing.
pub async fn revoke(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<TokenForm>,
) -> HttpResponse {
    let form = form.into_inner();
    let client = match authenticated(&req, &app, &form).await {
        Ok(c) => c,
        Err(e) => return e.token_response(),
    };
    let Some(token) = form.token.as_deref().filter(|t| !t.is_empty()) else {
        return OAuthError::invalid_request("token is required").token_response();
    };
    let grant_id = match identify(&app, token, form.token_type_hint.as_deref()).await {
        Some(LiveToken::Refresh { grant, .. }) if grant.client_id == client.id => Some(grant.id),
        Some(LiveToken::Access {
            claims,
            grant: Some((grant, _)),
        }) if claims.client_id == client.id => Some(grant.id),
        _ => None,
    };
    if let Some(id) = grant_id {
        match app.store.revoke_grant(&id, app.clock.now()).await {
            Ok(_) => {
                tracing::info!(client_id = %client.id, grant = %id, "grant revoked by the client")
            }
            Err(e) => {
                tracing::error!(error = %e, "revocation failed");
                return OAuthError::server_error().token_response();
            }
        }
    }
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}
