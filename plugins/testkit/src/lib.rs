//! Test support for Switchboard's upstream providers (dev-dependency only):
//!
//! - [`peer`]: the certified OpenID Provider peer (npm `oidc-provider`, under
//!   `tests/peers/oidc-op/`) started on a random loopback port.
//! - [`browser`]: a scripted browser (cookie jar, no automatic redirects) that walks
//!   the peer's login and consent forms up to the broker's callback URL.
//! - [`server`]: a tiny HTTP/1.1 server on loopback for fakes shaped like real APIs.
//! - [`fake_op`]: a scripted OpenID Provider that signs whatever ID token a test
//!   wants (bad signature, wrong issuer, unknown key, ...).
//! - helpers to build the broker's side of a login: PKCE pairs and callbacks.

pub mod browser;
pub mod fake_op;
pub mod peer;
pub mod server;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::collections::BTreeMap;
use switchboard_plugin_api::Callback;

/// A fresh random URL-safe string of `bytes` random bytes.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).unwrap_or_else(|_| panic!("system RNG failed"));
    URL_SAFE_NO_PAD.encode(buf)
}

/// The S256 PKCE challenge of `verifier`.
pub fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// What the broker generates for one login: state, nonce and a PKCE pair.
#[derive(Debug, Clone)]
pub struct LoginSecrets {
    /// `state`.
    pub state: String,
    /// `nonce`.
    pub nonce: String,
    /// PKCE verifier.
    pub verifier: String,
    /// S256 challenge of the verifier.
    pub challenge: String,
}

impl LoginSecrets {
    /// Fresh random values.
    pub fn new() -> Self {
        let verifier = random_token(32);
        LoginSecrets {
            state: random_token(16),
            nonce: random_token(16),
            challenge: s256(&verifier),
            verifier,
        }
    }
}

impl Default for LoginSecrets {
    fn default() -> Self {
        Self::new()
    }
}

/// The broker's callback for `params` (what reached `/callback/{id}`).
pub fn callback(
    params: BTreeMap<String, String>,
    provider_state: serde_json::Value,
    callback_url: &str,
    secrets: &LoginSecrets,
) -> Callback {
    serde_json::from_value(serde_json::json!({
        "method": "GET",
        "params": params,
        "provider_state": provider_state,
        "callback_url": callback_url,
        "nonce": secrets.nonce,
        "pkce_verifier": secrets.verifier,
    }))
    .unwrap_or_else(|e| panic!("callback does not deserialise: {e}"))
}

/// Query parameters of a URL as a map.
pub fn query_map(url: &url::Url) -> BTreeMap<String, String> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
