//! Token exchange (RFC 8693) at `/token`: a client trades a person's access token
//! (the subject token) for a short-lived access token for one audience it is allowed
//! to exchange for (`clients.ID.exchange_audiences`) — a "widget token".
//!
//! - The subject token must be live (signature, expiry, not revoked, its grant and
//!   person live) and issued to this client or for its audience; anything else is
//!   `invalid_grant`, the same answer for every case.
//! - Only down-scoping: the scopes asked for must be among the subject token's
//!   (`invalid_scope` otherwise); groups, roles and permissions are those the subject
//!   token carried that the person still holds, as the kept scopes allow.
//! - The result lives `tokens.exchange_token_lifetime`, never past the subject token,
//!   has no refresh token, and names the exchanging client in `act`. It belongs to the
//!   subject token's grant: ending that login ends it too.

use crate::config::Client;
use crate::flow::OAuthError;
use crate::store::AuditEvent;
use crate::tokens::status::ActiveToken;
use crate::tokens::{PersonClaims, RoleClaims};
use crate::web::AppState;

/// RFC 8693 §3: the one token type this broker exchanges and issues.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The token-exchange parameters of a `/token` request.
#[derive(Debug, Default)]
pub struct ExchangeRequest<'a> {
    pub subject_token: Option<&'a str>,
    pub subject_token_type: Option<&'a str>,
    pub actor_token: Option<&'a str>,
    pub requested_token_type: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub scope: Option<&'a str>,
}

/// The token made.
#[derive(Debug)]
pub struct Exchanged {
    pub access_token: String,
    pub expires_in: i64,
    pub scopes: Vec<String>,
}

fn server_error<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> OAuthError {
    move |e| {
        tracing::error!(error = %e, "{what}");
        OAuthError::server_error()
    }
}

/// The one audience asked for: `audience` or `resource` (the same one if both).
fn target<'a>(req: &ExchangeRequest<'a>) -> Result<&'a str, OAuthError> {
    match (req.audience, req.resource) {
        (None, None) => Err(OAuthError::invalid_request(
            "audience or resource is required",
        )),
        (Some(a), Some(r)) if a != r => Err(OAuthError::new(
            "invalid_target",
            "ask for one audience at a time",
        )),
        (Some(t), _) | (None, Some(t)) => Ok(t),
    }
}

/// The scopes of the new token: those asked for, each one the subject token's, or all
/// of the subject token's; never `offline_access` (no refresh token comes of it).
fn narrowed_scopes(subject: &str, asked: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let held: Vec<&str> = subject.split(' ').filter(|s| !s.is_empty()).collect();
    let wanted: Vec<&str> = match asked {
        None => held.clone(),
        Some(asked) => asked.split(' ').filter(|s| !s.is_empty()).collect(),
    };
    let mut scopes: Vec<String> = Vec::new();
    for s in wanted {
        if !held.contains(&s) {
            return Err(OAuthError::new(
                "invalid_scope",
                format!("scope {s} is not in the subject token"),
            ));
        }
        if s != "offline_access" && !scopes.iter().any(|k| k == s) {
            scopes.push(s.to_string());
        }
    }
    Ok(scopes)
}

/// Of `now`, only what `before` had too: `None` if either is.
fn kept(now: Option<Vec<String>>, before: Option<&Vec<String>>) -> Option<Vec<String>> {
    let before = before?;
    now.map(|now| now.into_iter().filter(|v| before.contains(v)).collect())
}

/// Exchanges `req.subject_token` for a token for one audience.
pub async fn exchange_token(
    app: &AppState,
    client: &Client,
    req: &ExchangeRequest<'_>,
) -> Result<Exchanged, OAuthError> {
    let subject_token = req
        .subject_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
    match req.subject_token_type {
        Some(ACCESS_TOKEN_TYPE) => {}
        None => {
            return Err(OAuthError::invalid_request(
                "subject_token_type is required",
            ));
        }
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "only access tokens of this issuer may be exchanged",
            ));
        }
    }
    if req.actor_token.is_some() {
        return Err(OAuthError::invalid_request(
            "actor tokens are not supported",
        ));
    }
    if req
        .requested_token_type
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return Err(OAuthError::invalid_request(
            "only access tokens can be issued",
        ));
    }
    let audience = target(req)?;
    if !client.exchange_audiences.contains(audience) {
        return Err(OAuthError::new(
            "invalid_target",
            "this client may not exchange tokens for this audience",
        ));
    }
    let refused = || OAuthError::invalid_grant("subject_token is invalid, expired or revoked");
    let status = app.token_status();
    let now = status.now;
    let Some(ActiveToken::Access(live)) = status
        .live_access_token(subject_token)
        .await
        .map_err(server_error("checking the subject token failed"))?
    else {
        return Err(refused());
    };
    let claims = &live.claims;
    let Some(person) = &live.person else {
        tracing::info!(client_id = %client.id, "token exchange of a machine's token refused");
        return Err(refused());
    };
    // Exchanged tokens are not exchanged again, and a client exchanges only tokens
    // issued to it or meant for it.
    let for_this_client = claims.client_id == client.id
        || claims
            .audiences()
            .any(|aud| aud == client.id || client.audience.as_deref() == Some(aud));
    if claims.act.is_some() || !for_this_client {
        tracing::info!(client_id = %client.id, subject_client = %claims.client_id, "token exchange of another client's token refused");
        return Err(refused());
    }
    let scopes = narrowed_scopes(&claims.scope, req.scope)?;
    let current = PersonClaims::for_scopes(&person.user, person.access.as_ref(), &scopes);
    let before = &claims.person;
    let claims_now = PersonClaims {
        groups: kept(current.groups, before.groups.as_ref()),
        roles: RoleClaims {
            roles: kept(current.roles.roles, before.roles.roles.as_ref()),
            permissions: kept(current.roles.permissions, before.roles.permissions.as_ref()),
        },
    };
    let lifetime = app
        .config
        .tokens
        .exchange_token_lifetime
        .min(claims.exp - now);
    if lifetime <= 0 {
        return Err(refused());
    }
    let signed = app
        .signer
        .exchanged_access_token(
            client,
            &person.grant,
            audience,
            &scopes,
            claims_now,
            lifetime,
            now,
        )
        .map_err(server_error("signing the exchanged token failed"))?;
    let event = AuditEvent {
        user_id: claims.sub.clone(),
        actor: Some(format!("client:{}", client.id)),
        kind: "token_exchanged".to_string(),
        detail: serde_json::json!({
            "audience": audience,
            "scope": scopes.join(" "),
            "subject_client_id": claims.client_id,
            "grant_id": person.grant.id,
            "expires_in": signed.expires_in,
        }),
        at: now,
    };
    app.store
        .record_audit(&event)
        .await
        .map_err(server_error("recording the token exchange failed"))?;
    tracing::info!(client_id = %client.id, grant = %person.grant.id, "issued an exchanged token");
    Ok(Exchanged {
        access_token: signed.token,
        expires_in: signed.expires_in,
        scopes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_only_narrow() {
        let held = "openid profile roles offline_access";
        assert_eq!(
            narrowed_scopes(held, None).unwrap(),
            vec!["openid", "profile", "roles"]
        );
        assert_eq!(
            narrowed_scopes(held, Some("roles roles")).unwrap(),
            vec!["roles"]
        );
        assert_eq!(
            narrowed_scopes(held, Some("roles permissions"))
                .unwrap_err()
                .error,
            "invalid_scope"
        );
    }

    #[test]
    fn one_target_is_asked_for() {
        let req = |audience, resource| ExchangeRequest {
            audience,
            resource,
            ..Default::default()
        };
        assert_eq!(target(&req(Some("a"), None)).unwrap(), "a");
        assert_eq!(target(&req(None, Some("r"))).unwrap(), "r");
        assert_eq!(target(&req(Some("a"), Some("a"))).unwrap(), "a");
        assert_eq!(
            target(&req(Some("a"), Some("b"))).unwrap_err().error,
            "invalid_target"
        );
        assert_eq!(
            target(&req(None, None)).unwrap_err().error,
            "invalid_request"
        );
    }

    #[test]
    fn claims_keep_only_what_the_subject_token_had() {
        let now = Some(vec!["a".to_string(), "b".to_string()]);
        assert_eq!(
            kept(now.clone(), Some(&vec!["b".to_string(), "c".to_string()])),
            Some(vec!["b".to_string()])
        );
        assert_eq!(kept(now, None), None);
        assert_eq!(kept(None, Some(&vec!["b".to_string()])), None);
    }
}
