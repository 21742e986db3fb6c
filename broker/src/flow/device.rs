//! The device authorization grant (RFC 8628) without handlers: user codes (made,
//! normalised, hashed), the login the `/device` page waits on ([`DeviceIntent`]), and
//! [`approve_device`], which turns a person's yes into a grant the polling device
//! redeems once.
//!
//! A user code is 8 letters from an alphabet without vowels or look-alikes (no word
//! can be spelt, no 0/O or 1/I to confuse), shown as `XXXX-XXXX`; what a person types
//! is compared without case, dashes or spaces. 20⁸ ≈ 2.6·10¹⁰ codes, each alive for
//! minutes, and wrong entries are counted per person: guessing one is hopeless.

use crate::secrets::{self, SecretsError};
use crate::store::{DeviceCodeRecord, GrantRecord, SessionRecord, StoreError};
use crate::web::AppState;
use serde::{Deserialize, Serialize};

/// The letters of user codes (RFC 8628 §6.1: base-20, no vowels).
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Letters in a user code.
pub const USER_CODE_LEN: usize = 8;

/// Why a user code could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Random(#[from] SecretsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The `/device` page a login returns to: the user code it carried, if any (from
/// `verification_uri_complete`), to fill in again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIntent {
    pub user_code: Option<String>,
}

/// A new user code, as shown: `XXXX-XXXX`. Unbiased: bytes past the last whole
/// multiple of the alphabet's size are drawn again.
pub fn new_user_code() -> Result<String, SecretsError> {
    let limit =
        u8::try_from(256 / USER_CODE_ALPHABET.len() * USER_CODE_ALPHABET.len()).unwrap_or(u8::MAX);
    let mut letters = Vec::with_capacity(USER_CODE_LEN);
    // 64 bytes hold 8 usable ones unless the generator is broken; bounded all the same.
    for _ in 0..8 {
        for b in secrets::random_bytes::<64>()? {
            if b < limit && letters.len() < USER_CODE_LEN {
                letters.push(USER_CODE_ALPHABET[usize::from(b) % USER_CODE_ALPHABET.len()]);
            }
        }
        if letters.len() == USER_CODE_LEN {
            let text: String = letters.iter().map(|b| char::from(*b)).collect();
            return Ok(format!("{}-{}", &text[..4], &text[4..]));
        }
    }
    Err(SecretsError::Random)
}

/// What a person typed, as compared: upper case, without dashes and spaces; `None`
/// when it cannot be a user code at all (wrong length or letters).
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let valid =
        code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
    valid.then_some(code)
}

/// A normalised user code as shown again: `XXXX-XXXX`.
pub fn display_user_code(normalized: &str) -> String {
    match (normalized.get(..4), normalized.get(4..)) {
        (Some(head), Some(tail)) => format!("{head}-{tail}"),
        _ => normalized.to_string(),
    }
}

/// How a normalised user code is stored and looked up: keyed with the master key,
/// because a user code is short (20^8 codes) and a plain hash in a copy of the
/// database could be reversed offline while the code is live. (A master-key rotation
/// strands the codes of devices waiting at that moment; they ask again.)
pub fn user_code_hash(master: &secrets::MasterKey, normalized: &str) -> String {
    master.mac(USER_CODE_PURPOSE, normalized)
}

const USER_CODE_PURPOSE: &str = "device_user_code";

/// The person of `session` approves `device`: a grant for its client and scopes, of
/// this person as their session authenticated them, stored together with the approval.
/// False when the request was decided or expired meanwhile.
pub async fn approve_device(
    app: &AppState,
    device: &DeviceCodeRecord,
    session: &SessionRecord,
) -> Result<bool, DeviceError> {
    let now = app.clock.now();
    let lifetime = app
        .config
        .clients
        .get(&device.client_id)
        .map_or(app.config.tokens.lifetimes.refresh_token_absolute, |c| {
            c.lifetimes.refresh_token_absolute
        });
    let grant = GrantRecord {
        id: secrets::random_id()?,
        user_id: session.user_id.clone(),
        client_id: device.client_id.clone(),
        // The device's login is its own: ending this browser's session leaves it.
        session_id_hash: None,
        scopes: device.scopes.clone(),
        auth_time: session.auth_time,
        provider_id: session.provider_id.clone(),
        created_at: now,
        expires_at: now + lifetime,
        revoked_at: None,
        resource: None,
        amr: session.amr.clone(),
    };
    let approved = app
        .store
        .approve_device_code(&device.user_code_hash, &grant, now)
        .await?;
    if approved {
        tracing::info!(client_id = %device.client_id, grant = %grant.id, user = %session.user_id, "device authorization approved");
    }
    Ok(approved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_user_codes_are_keyed_so_a_database_copy_cannot_reverse_them() {
        let key = secrets::MasterKey::from_bytes(&[1u8; 32]).unwrap();
        let other = secrets::MasterKey::from_bytes(&[2u8; 32]).unwrap();
        let stored = user_code_hash(&key, "BCDFGHJK");
        assert_eq!(stored, user_code_hash(&key, "BCDFGHJK"), "found again");
        assert_ne!(stored, secrets::hash_secret("BCDFGHJK"), "not a plain hash");
        assert_ne!(stored, user_code_hash(&other, "BCDFGHJK"));
        assert_ne!(stored, user_code_hash(&key, "BCDFGHJL"));
    }

    #[test]
    fn user_codes_are_eight_unambiguous_letters_shown_in_two_halves() {
        for _ in 0..200 {
            let code = new_user_code().unwrap();
            assert_eq!(code.len(), 9, "{code}");
            assert_eq!(&code[4..5], "-");
            let normalized = normalize_user_code(&code).unwrap();
            assert_eq!(display_user_code(&normalized), code);
            assert!(!code.contains(['A', 'E', 'I', 'O', 'U', 'Y', '0', '1']));
        }
    }

    #[test]
    fn typed_codes_compare_without_case_dashes_or_spaces() {
        assert_eq!(
            normalize_user_code("bcdf-ghjk").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(
            normalize_user_code(" BCDF GHJK ").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(normalize_user_code("BCDFGHJ"), None, "too short");
        assert_eq!(normalize_user_code("BCDFGHJKL"), None, "too long");
        assert_eq!(
            normalize_user_code("ABCD-EFGH"),
            None,
            "vowels are never used"
        );
        assert_eq!(normalize_user_code("BCDF-GHJ1"), None);
        assert_eq!(
            normalize_user_code("ＢCDF-GHJK"),
            None,
            "no full-width letters"
        );
    }
}
