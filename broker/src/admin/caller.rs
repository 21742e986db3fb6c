//! Who is calling the admin API, and whether they may: a live bearer access token of
//! this broker whose permissions, recomputed now (a lost role counts at once), allow
//! the operation. The token must carry the `permissions` scope: the app that holds it
//! was given the right to act on them. A person's token holds that person's
//! permissions toward the app; a client-credentials token holds what `client_id`
//! role rules give the client.

use super::problem::{Problem, internal};
use crate::tokens::status::{ActiveToken, TokenStatus};
use crate::web::AppState;
use actix_web::HttpRequest;
use actix_web::http::header;

pub const USERS_READ: &str = "admin:users:read";
pub const USERS_WRITE: &str = "admin:users:write";
pub const AUDIT_READ: &str = "admin:audit:read";
pub const GROUPS_WRITE: &str = "admin:groups:write";

/// A person calling through an app, or a client acting as itself.
#[derive(Debug)]
pub struct Caller {
    /// The person; `None` for a client acting as itself.
    pub user_id: Option<String>,
    actor: String,
    permissions: crate::roles::Access,
}

impl Caller {
    /// Reads and checks the bearer token of `req`.
    pub async fn authenticate(req: &HttpRequest, app: &AppState) -> Result<Caller, Problem> {
        let token = bearer(req)?;
        let status = TokenStatus {
            store: &app.store,
            signer: &app.signer,
            now: app.clock.now(),
        };
        let active = status
            .live_access_token(token)
            .await
            .map_err(internal("checking an admin API token failed"))?;
        let Some(ActiveToken::Access { claims, person }) = active else {
            return Err(Problem::unauthorized(
                "the access token is invalid, expired or revoked",
            ));
        };
        if !claims.scope.split(' ').any(|s| s == "permissions") {
            return Err(Problem::forbidden(
                "the token was not granted the permissions scope".to_string(),
            ));
        }
        let Some(person) = person else {
            // A client acting as itself: only while it is still configured as one.
            let machine = app
                .config
                .clients
                .get(&claims.client_id)
                .is_some_and(|c| c.allows_grant("client_credentials") && !c.is_public());
            if !machine {
                return Err(Problem::unauthorized("the client is no longer configured"));
            }
            return Ok(Caller {
                user_id: None,
                actor: format!("client:{}", claims.client_id),
                permissions: crate::identity::machine_access(&app.config.roles, &claims.client_id),
            });
        };
        let permissions = crate::identity::access_for(
            &app.store,
            &app.config.roles,
            &person.user.id,
            &person.grant.provider_id,
            Some(&person.grant.client_id),
        )
        .await
        .map_err(internal("computing the caller's permissions failed"))?;
        Ok(Caller {
            actor: format!("user:{}", person.user.id),
            user_id: Some(person.user.id),
            permissions,
        })
    }

    /// Fails with 403 unless the caller's permissions allow `permission`.
    pub fn require(&self, permission: &str) -> Result<(), Problem> {
        match self.permissions.allows(permission) {
            true => Ok(()),
            false => Err(Problem::forbidden(format!(
                "this operation needs the permission {permission}"
            ))),
        }
    }

    /// How audit events name this caller.
    pub fn actor(&self) -> String {
        self.actor.clone()
    }
}

fn bearer(req: &HttpRequest) -> Result<&str, Problem> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(Problem::unauthorized(""));
    };
    let value = value
        .to_str()
        .map_err(|_| Problem::unauthorized("malformed Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() => {
            Ok(token.trim())
        }
        _ => Err(Problem::unauthorized("expected a Bearer token")),
    }
}
