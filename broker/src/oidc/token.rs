//! `/token`: the authorization-code grant (with PKCE), the refresh-token grant
//! (rotation with reuse detection), client credentials, the device-code grant
//! (RFC 8628 polling) and token exchange (RFC 8693, see `token_exchange`).

use super::clients::{authenticate, presented_credentials};
use super::token_exchange::{ACCESS_TOKEN_TYPE, ExchangeRequest, exchange_token};
use crate::config::{Client, DEVICE_CODE_GRANT, TOKEN_EXCHANGE_GRANT};
use crate::flow::OAuthError;
use crate::secrets::{self, constant_time_eq};
use crate::store::{DevicePoll, GrantRecord, RedeemOutcome, RotateOutcome, UserRecord, UserStatus};
use crate::tokens::PersonClaims;
use crate::web::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    /// RFC 8707: the one resource the access token is for.
    resource: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    /// RFC 8628: the device code being polled.
    device_code: Option<String>,
    /// RFC 8693: the token exchanged, and what it and the answer are.
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    actor_token: Option<String>,
    requested_token_type: Option<String>,
    audience: Option<String>,
}

#[derive(Debug, Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// RFC 8693: what a token exchange issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<&'static str>,
}

/// POST `/token`.
pub async fn token(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<TokenForm>,
) -> HttpResponse {
    let form = form.into_inner();
    let grant_type = form.grant_type.clone();
    match exchange(&req, &app, form).await {
        Ok(body) => {
            app.metrics.token_request(grant_type.as_deref(), Ok(()));
            HttpResponse::Ok()
                .insert_header(("Cache-Control", "no-store"))
                .insert_header(("Pragma", "no-cache"))
                .json(body)
        }
        Err(e) => {
            tracing::info!(error = e.error, description = %e.error_description, "token request refused");
            app.metrics
                .token_request(grant_type.as_deref(), Err(e.error));
            e.token_response()
        }
    }
}

async fn exchange(
    req: &HttpRequest,
    app: &AppState,
    form: TokenForm,
) -> Result<TokenResponse, OAuthError> {
    let creds = presented_credentials(
        req,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )?;
    let client = authenticate(&app.config, &creds)?;
    tracing::Span::current().record("client_id", client.id.as_str());
    let grant_type = form
        .grant_type
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    if !client.allows_grant(grant_type) {
        return Err(match grant_type {
            "authorization_code" | "refresh_token" | "client_credentials" | DEVICE_CODE_GRANT
            | TOKEN_EXCHANGE_GRANT => OAuthError::new(
                "unauthorized_client",
                format!("this client may not use {grant_type}"),
            ),
            _ => OAuthError::new("unsupported_grant_type", "unsupported grant_type"),
        });
    }
    match grant_type {
        "authorization_code" => authorization_code(app, client, &form).await,
        "refresh_token" => refresh(app, client, &form).await,
        "client_credentials" => client_credentials(app, client, &form),
        DEVICE_CODE_GRANT => device_code(app, client, &form).await,
        TOKEN_EXCHANGE_GRANT => token_exchange(app, client, &form).await,
        _ => Err(OAuthError::new(
            "unsupported_grant_type",
            "unsupported grant_type",
        )),
    }
}

fn server_error<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> OAuthError {
    move |e| {
        tracing::error!(error = %e, "{what}");
        OAuthError::server_error()
    }
}

/// The client acting as itself: an access token whose `sub` is the client, with
/// scopes drawn from the client's allowed ones; no ID token, no refresh token.
fn client_credentials(
    app: &AppState,
    client: &Client,
    form: &TokenForm,
) -> Result<TokenResponse, OAuthError> {
    // Config refuses client_credentials for public clients; this keeps it true.
    if client.is_public() {
        return Err(OAuthError::new(
            "unauthorized_client",
            "public clients cannot act as themselves",
        ));
    }
    let person_only = |s: &str| matches!(s, "openid" | "offline_access");
    let scopes: Vec<String> = match &form.scope {
        None => client
            .scopes
            .iter()
            .filter(|s| !person_only(s))
            .cloned()
            .collect(),
        Some(requested) => {
            let mut out = Vec::new();
            for s in requested.split(' ').filter(|s| !s.is_empty()) {
                if person_only(s) || !client.scopes.contains(s) {
                    return Err(OAuthError::new(
                        "invalid_scope",
                        format!("scope {s} is not allowed"),
                    ));
                }
                if !out.iter().any(|o: &String| o == s) {
                    out.push(s.to_string());
                }
            }
            out
        }
    };
    let audience = audience(app, client, None, form.resource.as_deref())?;
    // A machine's roles come from client_id rules, computed at every issuance.
    let roles = crate::tokens::RoleClaims::for_scopes(
        Some(&crate::identity::machine_access(
            &app.config.roles,
            &client.id,
        )),
        &scopes,
    );
    let access = app
        .signer
        .client_access_token(client, &scopes, &audience, roles, app.clock.now())
        .map_err(server_error("signing access token failed"))?;
    tracing::info!(client_id = %client.id, "issued client-credentials token");
    Ok(TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        scope: scopes.join(" "),
        id_token: None,
        refresh_token: None,
        issued_token_type: None,
    })
}

/// The `aud` of an access token. A `resource` asked for at the token endpoint must be
/// one the client may have and, for a person's grant authorized for a resource, that
/// very one (RFC 8707 §2.2); without one, the grant's resource, else the client's
/// `audience`, else the issuer.
fn audience(
    app: &AppState,
    client: &Client,
    grant: Option<&GrantRecord>,
    asked: Option<&str>,
) -> Result<String, OAuthError> {
    let authorized = grant.and_then(|g| g.resource.as_deref());
    match asked {
        Some(resource) if !client.allows_resource(resource) => Err(OAuthError::new(
            "invalid_target",
            "resource is not allowed for this client",
        )),
        Some(resource) if authorized.is_some_and(|a| a != resource) => Err(OAuthError::new(
            "invalid_target",
            "resource differs from the one authorized",
        )),
        Some(resource) => Ok(resource.to_string()),
        None => Ok(authorized
            .or(client.audience.as_deref())
            .unwrap_or(&app.config.issuer)
            .to_string()),
    }
}

/// RFC 7636 S256: BASE64URL(SHA256(verifier)) == challenge, verifier 43..128 unreserved.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()));
    well_formed && constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

async fn authorization_code(
    app: &AppState,
    client: &Client,
    form: &TokenForm,
) -> Result<TokenResponse, OAuthError> {
    let code = form
        .code
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let redirect_uri = form
        .redirect_uri
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
    let now = app.clock.now();
    let record = match app
        .store
        .redeem_code(&secrets::hash_secret(code), now)
        .await
        .map_err(server_error("redeeming code failed"))?
    {
        RedeemOutcome::Redeemed(r) => r,
        RedeemOutcome::AlreadyUsed { grant_id } => {
            // A replayed code means it leaked: end everything it issued.
            let _ = app.store.revoke_grant(&grant_id, now).await;
            tracing::warn!(grant = %grant_id, "authorization code replayed; grant revoked");
            return Err(OAuthError::invalid_grant(
                "code is invalid or was already used",
            ));
        }
        RedeemOutcome::Invalid => {
            return Err(OAuthError::invalid_grant("code is invalid or expired"));
        }
    };
    let refuse = |why: &'static str| OAuthError::invalid_grant(why);
    if record.client_id != client.id {
        let _ = app.store.revoke_grant(&record.grant_id, now).await;
        return Err(refuse("code was issued to another client"));
    }
    if record.redirect_uri != redirect_uri {
        let _ = app.store.revoke_grant(&record.grant_id, now).await;
        return Err(refuse(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (&record.code_challenge, form.code_verifier.as_deref()) {
        (Some(challenge), Some(verifier)) if pkce_matches(verifier, challenge) => {}
        (Some(_), _) => {
            let _ = app.store.revoke_grant(&record.grant_id, now).await;
            return Err(refuse("PKCE verification failed"));
        }
        (None, Some(_)) => {
            let _ = app.store.revoke_grant(&record.grant_id, now).await;
            return Err(refuse("code_verifier sent but no code_challenge was"));
        }
        // Only if the client's config changed since /authorize, which enforces it.
        (None, None) if client.require_pkce => {
            let _ = app.store.revoke_grant(&record.grant_id, now).await;
            return Err(refuse("this client must use PKCE"));
        }
        (None, None) => {}
    }
    // The redeemer won the code: a replay racing it revokes the grant, which kills
    // these tokens at their first use, but this exchange still answers (exactly one
    // success per code). Only a grant that is gone or expired stops it here.
    let grant = redeemed_grant(app, &record.grant_id).await?;
    let audience = audience(app, client, Some(&grant), form.resource.as_deref())?;
    let user = active_user(app, &grant).await?;
    let offline =
        grant.scopes.iter().any(|s| s == "offline_access") && client.allows_grant("refresh_token");
    let nonce = record.nonce.as_deref();
    issue(app, client, &grant, &audience, &user, nonce, offline).await
}

/// How much a device's interval grows at each `slow_down` (RFC 8628 §3.5).
const SLOW_DOWN_SECS: i64 = 5;

/// A device polls: `authorization_pending`, `slow_down` (its interval grew),
/// `access_denied`, `expired_token`, or, once the person approved, the tokens of the
/// grant, to exactly one poll.
async fn device_code(
    app: &AppState,
    client: &Client,
    form: &TokenForm,
) -> Result<TokenResponse, OAuthError> {
    let code = form
        .device_code
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("device_code is required"))?;
    let now = app.clock.now();
    let poll = app
        .store
        .poll_device_code(&secrets::hash_secret(code), &client.id, now, SLOW_DOWN_SECS)
        .await
        .map_err(server_error("polling a device code failed"))?;
    let record = match poll {
        DevicePoll::Approved(record) => record,
        DevicePoll::Pending => {
            return Err(OAuthError::new(
                "authorization_pending",
                "the person has not approved the request yet",
            ));
        }
        DevicePoll::SlowDown { interval } => {
            return Err(OAuthError::new(
                "slow_down",
                format!("polling too fast: wait {interval} seconds between requests"),
            ));
        }
        DevicePoll::Denied => {
            return Err(OAuthError::new(
                "access_denied",
                "the person denied the request",
            ));
        }
        DevicePoll::Expired => {
            return Err(OAuthError::new(
                "expired_token",
                "the device code has expired; start again",
            ));
        }
        DevicePoll::AlreadyRedeemed { .. } => {
            return Err(OAuthError::invalid_grant(
                "the device code was already used",
            ));
        }
        DevicePoll::Unknown => {
            return Err(OAuthError::invalid_grant("device_code is invalid"));
        }
    };
    let grant_id = record.grant_id.ok_or_else(|| {
        tracing::error!("an approved device code has no grant");
        OAuthError::server_error()
    })?;
    let grant = redeemed_grant(app, &grant_id).await?;
    if grant.revoked_at.is_some() {
        return Err(OAuthError::invalid_grant("the grant was revoked"));
    }
    let audience = audience(app, client, Some(&grant), form.resource.as_deref())?;
    let user = active_user(app, &grant).await?;
    let offline =
        grant.scopes.iter().any(|s| s == "offline_access") && client.allows_grant("refresh_token");
    issue(app, client, &grant, &audience, &user, None, offline).await
}

/// RFC 8693: a person's access token for a short-lived one for one audience.
async fn token_exchange(
    app: &AppState,
    client: &Client,
    form: &TokenForm,
) -> Result<TokenResponse, OAuthError> {
    let request = ExchangeRequest {
        subject_token: form.subject_token.as_deref(),
        subject_token_type: form.subject_token_type.as_deref(),
        actor_token: form.actor_token.as_deref(),
        requested_token_type: form.requested_token_type.as_deref(),
        audience: form.audience.as_deref(),
        resource: form.resource.as_deref(),
        scope: form.scope.as_deref(),
    };
    let exchanged = exchange_token(app, client, &request).await?;
    Ok(TokenResponse {
        access_token: exchanged.access_token,
        token_type: "Bearer",
        expires_in: exchanged.expires_in,
        scope: exchanged.scopes.join(" "),
        id_token: None,
        refresh_token: None,
        issued_token_type: Some(ACCESS_TOKEN_TYPE),
    })
}

async fn redeemed_grant(app: &AppState, id: &str) -> Result<GrantRecord, OAuthError> {
    let now = app.clock.now();
    match app
        .store
        .get_grant(id)
        .await
        .map_err(server_error("reading grant failed"))?
    {
        Some(g) if g.expires_at > now => Ok(g),
        _ => Err(OAuthError::invalid_grant("the grant has expired")),
    }
}

async fn active_user(app: &AppState, grant: &GrantRecord) -> Result<UserRecord, OAuthError> {
    match app
        .store
        .get_user(&grant.user_id)
        .await
        .map_err(server_error("reading user failed"))?
    {
        Some(u) if u.status == UserStatus::Active => Ok(u),
        _ => {
            let _ = app.store.revoke_grant(&grant.id, app.clock.now()).await;
            Err(OAuthError::invalid_grant("the user is disabled"))
        }
    }
}

async fn refresh(
    app: &AppState,
    client: &Client,
    form: &TokenForm,
) -> Result<TokenResponse, OAuthError> {
    let presented = form
        .refresh_token
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let now = app.clock.now();
    let presented_hash = secrets::hash_secret(presented);
    // Ask upstream before spending the token, so an unreachable provider costs the
    // client a retry, not its refresh token.
    let peeked = app
        .store
        .refresh_token_grant(&presented_hash, now)
        .await
        .map_err(server_error("reading refresh token failed"))?
        .ok_or_else(|| OAuthError::invalid_grant("refresh token is invalid or expired"))?;
    if peeked.client_id != client.id {
        // Another client holding this token means it leaked.
        let _ = app.store.revoke_grant(&peeked.id, now).await;
        return Err(OAuthError::invalid_grant(
            "refresh token was issued to another client",
        ));
    }
    // A narrower scope (RFC 6749 §6) is for this access token only: the grant and
    // the rotated refresh token keep what was granted.
    let narrowed: Option<Vec<String>> = match &form.scope {
        None => None,
        Some(scope) => {
            let mut asked: Vec<String> = Vec::new();
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                if !peeked.scopes.iter().any(|g| g == s) {
                    return Err(OAuthError::new(
                        "invalid_scope",
                        "scope exceeds the original grant",
                    ));
                }
                if !asked.iter().any(|a| a == s) {
                    asked.push(s.to_string());
                }
            }
            (!asked.is_empty()).then_some(asked)
        }
    };
    let audience = audience(app, client, Some(&peeked), form.resource.as_deref())?;
    let user = active_user(app, &peeked).await?;
    let user = recheck_upstream(app, &peeked, user).await?;
    let new_token = secrets::random_token().map_err(server_error("random failed"))?;
    let outcome = app
        .store
        .rotate_refresh(
            &presented_hash,
            &secrets::hash_secret(&new_token),
            (now + client.lifetimes.refresh_token_idle).min(peeked.expires_at),
            now,
            app.config.tokens.refresh_reuse_grace,
        )
        .await
        .map_err(server_error("rotating refresh token failed"))?;
    let grant = match outcome {
        RotateOutcome::Rotated(g) => *g,
        RotateOutcome::Reused { grant_id } => {
            tracing::warn!(grant = %grant_id, "refresh token reused; family revoked");
            return Err(OAuthError::invalid_grant("refresh token was already used"));
        }
        RotateOutcome::Superseded => {
            tracing::info!(grant = %peeked.id, "refresh token superseded by a retry of its parent");
            return Err(OAuthError::invalid_grant(
                "refresh token was replaced by a later refresh",
            ));
        }
        RotateOutcome::Invalid => {
            return Err(OAuthError::invalid_grant(
                "refresh token is invalid or expired",
            ));
        }
    };
    let for_this_token = match narrowed {
        Some(scopes) => GrantRecord { scopes, ..grant },
        None => grant,
    };
    let mut response = issue(app, client, &for_this_token, &audience, &user, None, false).await?;
    response.refresh_token = Some(new_token);
    Ok(response)
}

/// The provider's verdict at refresh: a person removed or disabled upstream loses the
/// grant; an unreachable provider is a retryable error.
async fn recheck_upstream(
    app: &AppState,
    grant: &GrantRecord,
    user: UserRecord,
) -> Result<UserRecord, OAuthError> {
    use crate::identity::IdentityError;
    use switchboard_plugin_api::ProviderError;
    let Some(entry) = app.providers.get(&grant.provider_id) else {
        // The provider was removed from the config: its logins end.
        let _ = app.store.revoke_grant(&grant.id, app.clock.now()).await;
        return Err(OAuthError::invalid_grant(
            "the identity provider is no longer configured",
        ));
    };
    let now = app.clock.now();
    let asked =
        crate::identity::refresh_from_provider(&app.store, &app.master, entry, user, now).await;
    match asked {
        Ok(user) => Ok(user),
        Err(IdentityError::Provider(ProviderError::UpstreamUnavailable { detail })) => {
            tracing::warn!(provider = %entry.id, %detail, "upstream unavailable at refresh");
            Err(OAuthError::new(
                "temporarily_unavailable",
                "the identity provider is unavailable; retry later",
            ))
        }
        Err(IdentityError::RecheckOverdue(_)) => {
            tracing::info!(provider = %entry.id, grant = %grant.id, "refresh past max_session_without_recheck; grant revoked");
            let _ = app.store.revoke_grant(&grant.id, now).await;
            Err(OAuthError::invalid_grant(
                "the identity provider cannot re-check this login; sign in again",
            ))
        }
        Err(e) => {
            tracing::info!(provider = %entry.id, grant = %grant.id, error = %e, "upstream refused refresh; grant revoked");
            let _ = app.store.revoke_grant(&grant.id, now).await;
            Err(OAuthError::invalid_grant(
                "the identity provider no longer accepts this user",
            ))
        }
    }
}

async fn issue(
    app: &AppState,
    client: &Client,
    grant: &GrantRecord,
    audience: &str,
    user: &UserRecord,
    nonce: Option<&str>,
    with_refresh: bool,
) -> Result<TokenResponse, OAuthError> {
    let now = app.clock.now();
    // Roles are recomputed at every issuance: after a login, and after a refresh has
    // asked the provider again.
    let roles = crate::identity::grant_access(&app.store, &app.config.roles, grant)
        .await
        .map_err(server_error("computing roles failed"))?;
    let user = &crate::identity::with_managed_groups(&app.store, user.clone(), &grant.scopes)
        .await
        .map_err(server_error("reading managed groups failed"))?;
    let person = PersonClaims::for_scopes(user, roles.as_ref(), &grant.scopes);
    let role_claims = person.roles.clone();
    let access = app
        .signer
        .access_token(client, grant, audience, person, now)
        .map_err(server_error("signing access token failed"))?;
    // Without `openid` (a refresh narrowed below it) there is no ID token.
    let id_token = match grant.scopes.iter().any(|s| s == "openid") {
        false => None,
        true => Some(
            app.signer
                .id_token(
                    client,
                    user,
                    grant,
                    role_claims,
                    nonce,
                    &access.token,
                    grant.session_id_hash.as_deref(),
                    now,
                )
                .map_err(server_error("signing ID token failed"))?,
        ),
    };
    let refresh_token = if with_refresh {
        let token = secrets::random_token().map_err(server_error("random failed"))?;
        let expires_at = (now + client.lifetimes.refresh_token_idle).min(grant.expires_at);
        app.store
            .put_refresh_token(&secrets::hash_secret(&token), &grant.id, expires_at, now)
            .await
            .map_err(server_error("storing refresh token failed"))?;
        Some(token)
    } else {
        None
    };
    tracing::info!(client_id = %client.id, grant = %grant.id, "issued tokens");
    Ok(TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        scope: grant.scopes.join(" "),
        id_token,
        refresh_token,
        issued_token_type: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_the_base64url_sha256_of_the_verifier() {
        // Computed independently: base64url(sha256(verifier)) with Python's hashlib.
        let verifier = "dBjftJeZ4CVP-mJ92K9ihuwRdqcWbGkaiewPxW1lKGE";
        let challenge = "1XZYdTsx83r_j4SJ03YUmINKUsHinCgePJsO23cNBk0";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mJ92K9ihuwRdqcWbGkaiewPxW1lKGF",
            challenge
        ));
        assert!(!pkce_matches("short", challenge));
    }
}
