//! OpenID Back-Channel Logout 1.0: a signed logout token POSTed to each client that
//! registered a `backchannel_logout_uri`.
//!
//! Deliveries survive a restart: ending a session queues one notice per client and
//! session in the store's outbox, in the same transaction (see
//! [`LogoutOutbox`](crate::store::LogoutOutbox)). A sender in every replica claims
//! due notices under a lease, so two replicas never send one notice at once and a
//! crashed replica's notices are taken over when its lease ends. A notice is removed
//! when the client answers 2xx; a failed attempt is retried with a doubling delay, up
//! to `[backchannel_logout] max_attempts`, then given up with an error in the log. The
//! token is signed at each attempt, so it is never stale when it finally arrives.
//! Sessions end this way at /logout, and all of a user's at once when the user is
//! disabled, their password is set, or an operator ends their sessions (the store
//! queues a notice for every client of each session then; the sender drops those of
//! clients without a `backchannel_logout_uri`).

use crate::config::Client;
use crate::store::{LogoutDelivery, UnixTime};
use crate::tokens::{TokenSigner, jwt};
use crate::web::AppState;
use serde::Serialize;
use std::time::Duration;

pub const LOGOUT_TOKEN_TYP: &str = "logout+jwt";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Notices claimed (and sent concurrently) per round.
const CLAIM_BATCH: u32 = 32;
/// The longest wait between two attempts.
const MAX_RETRY_DELAY: i64 = 3600;
/// How long a logout token is valid after it was signed.
const TOKEN_LIFETIME: i64 = 120;

#[derive(Debug, Serialize)]
pub struct LogoutTokenClaims {
    pub iss: String,
    pub aud: String,
    pub iat: UnixTime,
    pub exp: UnixTime,
    pub jti: String,
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub events: serde_json::Value,
}

/// Signs the logout token for one client.
pub fn logout_token(
    signer: &TokenSigner,
    client: &Client,
    user_id: &str,
    sid: &str,
    now: UnixTime,
) -> Result<String, jwt::JwtError> {
    let claims = LogoutTokenClaims {
        iss: signer.issuer.clone(),
        aud: client.id.clone(),
        iat: now,
        exp: now + TOKEN_LIFETIME,
        jti: crate::secrets::random_id().map_err(|e| jwt::JwtError::Invalid(e.to_string()))?,
        sub: user_id.to_string(),
        // Always sent: it costs nothing and lets clients end exactly this session.
        sid: Some(sid.to_string()),
        events: serde_json::json!({ EVENT: {} }),
    };
    jwt::sign(
        &signer.keyring,
        client.id_token_alg,
        LOGOUT_TOKEN_TYP,
        &claims,
    )
}

/// The wait before attempt `attempts + 1`, after `attempts` failed ones.
fn retry_delay(first: i64, attempts: u32) -> i64 {
    let factor = 1i64 << attempts.saturating_sub(1).min(20);
    first.saturating_mul(factor).min(MAX_RETRY_DELAY)
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    Failed(String),
    /// The client is gone from the config.
    Unaddressable,
    /// The client takes no back-channel logout: the notice was queued for every
    /// client of a session (a user's sessions ended all at once), not for this one.
    NotWanted,
}

/// One attempt at one notice.
async fn attempt(app: &AppState, delivery: &LogoutDelivery) -> Attempt {
    let n = &delivery.notice;
    let Some(client) = app.config.clients.get(&n.client_id) else {
        return Attempt::Unaddressable;
    };
    let Some(uri) = &client.backchannel_logout_uri else {
        return Attempt::NotWanted;
    };
    let token = match logout_token(&app.signer, client, &n.user_id, &n.sid, app.clock.now()) {
        Ok(t) => t,
        Err(e) => return Attempt::Failed(format!("signing the logout token failed: {e}")),
    };
    let timeout = Duration::from_secs(u64::try_from(app.config.backchannel.timeout).unwrap_or(5));
    let sent = app
        .http
        .post(uri.clone())
        .timeout(timeout)
        .form(&[("logout_token", token.as_str())])
        .send()
        .await;
    match sent {
        Ok(res) if res.status().is_success() => Attempt::Delivered,
        Ok(res) => Attempt::Failed(format!("answered {}", res.status().as_u16())),
        Err(e) => Attempt::Failed(e.to_string()),
    }
}

/// Sends one claimed notice and records the outcome in the outbox.
async fn deliver(app: &AppState, owner: &str, delivery: LogoutDelivery) {
    let n = &delivery.notice;
    let attempts = delivery.attempts.saturating_add(1);
    let sid_prefix = n.sid.get(..8).unwrap_or(&n.sid);
    let finished = match attempt(app, &delivery).await {
        Attempt::Delivered => {
            tracing::info!(client_id = %n.client_id, sid = sid_prefix, attempts, "back-channel logout delivered");
            app.store
                .finish_logout_delivery(&n.client_id, &n.sid, owner)
                .await
        }
        Attempt::Unaddressable => {
            tracing::warn!(client_id = %n.client_id, sid = sid_prefix, "back-channel logout dropped: the client is no longer configured");
            app.store
                .finish_logout_delivery(&n.client_id, &n.sid, owner)
                .await
        }
        Attempt::NotWanted => {
            tracing::debug!(client_id = %n.client_id, sid = sid_prefix, "no back-channel logout for this client");
            app.store
                .finish_logout_delivery(&n.client_id, &n.sid, owner)
                .await
        }
        Attempt::Failed(why) if attempts >= app.config.backchannel.max_attempts => {
            tracing::error!(client_id = %n.client_id, sid = sid_prefix, user = %n.user_id, attempts, error = %why, "back-channel logout abandoned");
            app.store
                .finish_logout_delivery(&n.client_id, &n.sid, owner)
                .await
        }
        Attempt::Failed(why) => {
            let wait = retry_delay(app.config.backchannel.retry_delay, attempts);
            tracing::warn!(client_id = %n.client_id, sid = sid_prefix, attempts, retry_in = wait, error = %why, "back-channel logout failed");
            app.store
                .defer_logout_delivery(
                    &n.client_id,
                    &n.sid,
                    owner,
                    attempts,
                    app.clock.now() + wait,
                )
                .await
        }
    };
    match finished {
        Ok(true) => {}
        // Our lease ran out and another replica took the notice: it decides now.
        Ok(false) => {
            tracing::warn!(client_id = %n.client_id, sid = sid_prefix, "back-channel logout lease was lost")
        }
        Err(e) => {
            tracing::error!(client_id = %n.client_id, error = %e, "recording a back-channel logout attempt failed")
        }
    }
}

/// Sends every notice that is due now, batch by batch, until none is left or
/// `deadline` passes. Returns how many notices were attempted.
pub async fn deliver_due(app: &AppState, owner: &str, deadline: tokio::time::Instant) -> usize {
    let mut attempted = 0;
    while tokio::time::Instant::now() < deadline {
        let now = app.clock.now();
        let claimed = match app
            .store
            .claim_logout_deliveries(owner, now, now + app.config.backchannel.lease, CLAIM_BATCH)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming back-channel logout notices failed");
                break;
            }
        };
        if claimed.is_empty() {
            break;
        }
        let full = claimed.len() == CLAIM_BATCH as usize;
        attempted += claimed.len();
        let mut sends = tokio::task::JoinSet::new();
        for d in claimed {
            let (app, owner) = (app.clone(), owner.to_string());
            sends.spawn(async move { deliver(&app, &owner, d).await });
        }
        let all = async { while sends.join_next().await.is_some() {} };
        if tokio::time::timeout_at(deadline, all).await.is_err() {
            // Unfinished notices stay leased; another pass (or replica) takes them
            // when the lease ends.
            tracing::warn!("back-channel logout pass cut short");
            break;
        }
        if !full {
            break;
        }
    }
    attempted
}

/// The sender: a pass whenever notices are queued here, and at least every few
/// seconds for retries and other replicas' notices. Runs until the process ends.
pub async fn run_sender(app: AppState, owner: String) {
    let tick = Duration::from_secs(
        u64::try_from(app.config.backchannel.retry_delay.clamp(1, 10)).unwrap_or(5),
    );
    // A pass may not run longer than a lease: past it, another replica could claim
    // the same notices.
    let pass_limit =
        Duration::from_secs(u64::try_from(app.config.backchannel.lease).unwrap_or(60) / 2);
    loop {
        deliver_due(&app, &owner, tokio::time::Instant::now() + pass_limit).await;
        tokio::select! {
            () = app.logout_outbox.notified() => {}
            () = tokio::time::sleep(tick) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_twice_as_long_each_time_up_to_an_hour() {
        assert_eq!(retry_delay(5, 1), 5);
        assert_eq!(retry_delay(5, 2), 10);
        assert_eq!(retry_delay(5, 3), 20);
        assert_eq!(retry_delay(5, 40), MAX_RETRY_DELAY);
    }
}
