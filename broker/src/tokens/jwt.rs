//! Compact JWS: signing with the keyring's parsed key pairs (jsonwebtoken re-parses
//! the key on every call, a third of the throughput), verifying with jsonwebtoken.

use super::keyring::{Keyring, KeyringError, LoadedKey};
use crate::config::SigningAlg;
use aws_lc_rs::digest::{SHA256, SHA512, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("claims do not serialise: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("token is malformed")]
    Malformed,
    #[error("token was not signed by a current key of this issuer")]
    UnknownKey,
    #[error("token type is {found:?}, expected {expected}")]
    WrongType {
        found: Option<String>,
        expected: &'static str,
    },
    #[error("token is invalid: {0}")]
    Invalid(String),
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// Signs `claims` with the current key for `alg`.
pub fn sign<T: Serialize>(
    keyring: &Keyring,
    alg: SigningAlg,
    typ: &str,
    claims: &T,
) -> Result<String, JwtError> {
    let key = keyring.signing_key(alg)?;
    sign_with(&key, typ, claims)
}

pub fn sign_with<T: Serialize>(key: &LoadedKey, typ: &str, claims: &T) -> Result<String, JwtError> {
    let header = serde_json::to_vec(&Header {
        alg: key.alg.as_str(),
        typ,
        kid: &key.kid,
    })?;
    let payload = serde_json::to_vec(claims)?;
    let mut token = String::with_capacity(64 + payload.len() * 4 / 3 + 350);
    URL_SAFE_NO_PAD.encode_string(&header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key
        .pair
        .sign(token.as_bytes())
        .map_err(KeyringError::from)?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(token)
}

/// OIDC `at_hash` / `c_hash`: the left half of the hash of `value`, where the hash
/// matches the signing algorithm (SHA-512 for EdDSA over Ed25519).
pub fn half_hash(alg: SigningAlg, value: &str) -> String {
    let d = match alg {
        SigningAlg::EdDsa => digest(&SHA512, value.as_bytes()),
        SigningAlg::Rs256 | SigningAlg::Es256 => digest(&SHA256, value.as_bytes()),
    };
    let bytes = d.as_ref();
    URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
}

fn jwt_alg(alg: SigningAlg) -> jsonwebtoken::Algorithm {
    match alg {
        SigningAlg::Rs256 => jsonwebtoken::Algorithm::RS256,
        SigningAlg::Es256 => jsonwebtoken::Algorithm::ES256,
        SigningAlg::EdDsa => jsonwebtoken::Algorithm::EdDSA,
    }
}

/// Verifies one of our own tokens: a current key by `kid`, that key's algorithm only,
/// the expected `typ`, our issuer, and expiry (no leeway: we made the clock; a token
/// whose `exp` is now is expired).
pub async fn verify<T: DeserializeOwned>(
    keyring: &Keyring,
    issuer: &str,
    expected_typ: &'static str,
    token: &str,
) -> Result<T, JwtError> {
    verify_inner(keyring, issuer, expected_typ, token, true).await
}

/// Like [`verify`] but accepts an expired token (an `id_token_hint` may be expired).
pub async fn verify_ignoring_expiry<T: DeserializeOwned>(
    keyring: &Keyring,
    issuer: &str,
    expected_typ: &'static str,
    token: &str,
) -> Result<T, JwtError> {
    verify_inner(keyring, issuer, expected_typ, token, false).await
}

async fn verify_inner<T: DeserializeOwned>(
    keyring: &Keyring,
    issuer: &str,
    expected_typ: &'static str,
    token: &str,
    check_expiry: bool,
) -> Result<T, JwtError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
    if header.typ.as_deref() != Some(expected_typ) {
        return Err(JwtError::WrongType {
            found: header.typ,
            expected: expected_typ,
        });
    }
    let kid = header.kid.ok_or(JwtError::UnknownKey)?;
    let key = keyring
        .key_by_kid(&kid)
        .await?
        .ok_or(JwtError::UnknownKey)?;
    let alg = jwt_alg(key.alg);
    if header.alg != alg {
        return Err(JwtError::Invalid("algorithm does not match the key".into()));
    }
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.leeway = 0;
    validation.validate_aud = false;
    validation.validate_exp = check_expiry;
    // jsonwebtoken takes `exp == now` as still valid; a token is dead at its `exp`
    // (RFC 7519 §4.1.4: "on or after"), so ask for one more second.
    if check_expiry {
        validation.reject_tokens_expiring_in_less_than = 1;
    }
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    jsonwebtoken::decode::<T>(token, &key.decoding, &validation)
        .map(|d| d.claims)
        .map_err(|e| JwtError::Invalid(e.to_string()))
}
