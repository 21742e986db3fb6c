//! Who is calling the admin API, and whether they may: a live bearer access token of
//! this broker whose permissions, recomputed now (a lost role counts at once), allow
//! the operation. The token must carry the `permissions` scope: the app that holds it
//! was given the right to act on them. A person's token holds that person's
//! permissions toward the app; a client-credentials token holds what `client_id`
//! role rules give the client.
//!
//! With `[admin] accept_api_keys = true`, a person's API key (`Authorization: Token
//! sbk_…`, or `Bearer sbk_…`) calls with the key's scopes that the person's
//! permissions still allow; otherwise a key is refused (401).

use super::problem::{Problem, internal};
use crate::identity::api_keys::{self, Verified};
use crate::roles::Access;
use crate::tokens::status::ActiveToken;
use crate::web::AppState;
use crate::web::client_ip::client_ip;
use actix_web::HttpRequest;
use actix_web::http::header;

pub const USERS_READ: &str = "admin:users:read";
pub const USERS_WRITE: &str = "admin:users:write";
pub const AUDIT_READ: &str = "admin:audit:read";
pub const GROUPS_WRITE: &str = "admin:groups:write";
pub const KEYS_WRITE: &str = "admin:keys:write";
pub const RESOURCES_READ: &str = "admin:resources:read";
pub const RESOURCES_WRITE: &str = "admin:resources:write";

/// A person calling through an app, or a client acting as itself.
#[derive(Debug)]
pub struct Caller {
    /// The person; `None` for a client acting as itself.
    pub user_id: Option<String>,
    actor: String,
    permissions: Access,
}

impl Caller {
    /// Reads and checks the bearer token (or API key) of `req`.
    pub async fn authenticate(req: &HttpRequest, app: &AppState) -> Result<Caller, Problem> {
        let token = bearer(req)?;
        if api_keys::is_api_key(token) {
            return Self::with_api_key(req, app, token).await;
        }
        let active = app
            .token_status()
            .live_access_token(token)
            .await
            .map_err(internal("checking an admin API token failed"))?;
        let Some(ActiveToken::Access(live)) = active else {
            return Err(Problem::unauthorized(
                "the access token is invalid, expired or revoked",
            ));
        };
        let (claims, person) = (&live.claims, &live.person);
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
            user_id: Some(person.user.id.clone()),
            permissions,
        })
    }

    /// A person calling with an API key, if the admin API accepts keys.
    async fn with_api_key(
        req: &HttpRequest,
        app: &AppState,
        secret: &str,
    ) -> Result<Caller, Problem> {
        if !app.config.admin.accept_api_keys {
            return Err(Problem::unauthorized(
                "this API does not accept API keys; use an access token",
            ));
        }
        let ip = client_ip(req, &app.config.trusted_proxies);
        let verified =
            api_keys::verify_api_key(&app.store, &app.config, secret, ip, app.clock.now())
                .await
                .map_err(internal("checking an API key failed"))?;
        match verified {
            Verified::Live(live) => {
                tracing::info!(key_id = %live.key.id, user = %live.user.id, "admin API called with an API key");
                Ok(Caller {
                    actor: format!("user:{}", live.user.id),
                    user_id: Some(live.user.id),
                    permissions: Access {
                        roles: Vec::new(),
                        permissions: live.scopes,
                        admin: false,
                    },
                })
            }
            Verified::Inactive => Err(Problem::unauthorized(
                "the API key is invalid, expired or revoked",
            )),
            Verified::Throttled => {
                tracing::warn!(ip = ?ip, "API key verifications throttled");
                Err(Problem::too_many(
                    "too many unknown API keys from this address; wait and try again",
                    app.config.api_keys.failure_window,
                ))
            }
        }
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
        // GitHub's scheme for personal tokens: keys only.
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("token") && api_keys::is_api_key(token.trim()) =>
        {
            Ok(token.trim())
        }
        _ => Err(Problem::unauthorized("expected a Bearer token")),
    }
}
