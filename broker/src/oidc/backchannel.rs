//! OpenID Back-Channel Logout 1.0: a signed logout token POSTed to each client that
//! registered a `backchannel_logout_uri`, in the background, with a timeout and a
//! bounded number of retries, so a client that is down never holds up a logout.

use crate::config::Client;
use crate::store::UnixTime;
use crate::tokens::{TokenSigner, jwt};
use serde::Serialize;
use std::time::Duration;

pub const LOGOUT_TOKEN_TYP: &str = "logout+jwt";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
const ATTEMPTS: u32 = 3;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

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
        exp: now + 120,
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

/// Delivers in the background; returns at once.
pub fn deliver(http: reqwest::Client, client_id: String, uri: url::Url, token: String) {
    actix_web::rt::spawn(async move {
        for attempt in 1..=ATTEMPTS {
            let sent = http
                .post(uri.clone())
                .timeout(ATTEMPT_TIMEOUT)
                .form(&[("logout_token", token.as_str())])
                .send()
                .await;
            match sent {
                Ok(res) if res.status().is_success() => {
                    tracing::info!(client_id = %client_id, attempt, "back-channel logout delivered");
                    return;
                }
                Ok(res) => {
                    tracing::warn!(client_id = %client_id, attempt, status = res.status().as_u16(), "back-channel logout refused")
                }
                Err(e) => {
                    tracing::warn!(client_id = %client_id, attempt, error = %e, "back-channel logout failed")
                }
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
        }
        tracing::error!(client_id = %client_id, "back-channel logout abandoned after {ATTEMPTS} attempts");
    });
}
