//! The second factor of an account: a TOTP authenticator (RFC 6238) and ten
//! single-use recovery codes.
//!
//! Enrolment is two steps: [`begin_enrolment`] stores a new random secret, sealed
//! under the master key, as *pending*; [`confirm_enrolment`] turns it on once the
//! person typed a code from their app, and hands back the recovery codes (shown once,
//! stored as hashes only). [`verify`] checks a second factor at sign-in: a TOTP code is
//! accepted once per time step (a replay within its window is refused), a recovery code
//! once. Turning it off ([`remove`]) and new recovery codes ([`regenerate_recovery_codes`])
//! are audited.

pub mod totp;

use super::{IdentityError, audit};
use crate::secrets::{self, MasterKey};
use crate::store::{SharedStore, StoreError, TotpRecord, UnixTime};
use serde_json::json;

/// What the TOTP secret's seal is bound to: the table, the user id as row, a version.
pub const TOTP_TABLE: &str = "totp_enrolments";
pub const TOTP_FORMAT: u32 = 1;
/// Recovery codes made at enrolment (and at each regeneration).
pub const RECOVERY_CODES: usize = 10;
/// Characters of a recovery code (base32: 60 bits), shown in groups of four.
const RECOVERY_CODE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    #[error("no confirmed second factor")]
    NotEnrolled,
    #[error("a second factor is already set up")]
    AlreadyEnrolled,
    #[error("no set-up is waiting for confirmation")]
    NoPendingEnrolment,
    #[error("the code is wrong")]
    WrongCode,
    #[error("the code of this time step was used already")]
    Replayed,
    #[error("making the QR code failed: {0}")]
    QrCode(String),
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Which second factor a person gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// A code from the authenticator app.
    Totp,
    /// One of the recovery codes (now used up).
    RecoveryCode,
}

/// What the set-up page shows: the secret as text, the key URI and its QR code.
#[derive(Debug)]
pub struct Enrolment {
    pub secret_text: secrets::SecretString,
    pub otpauth_uri: secrets::SecretString,
    /// Inline `<svg>` markup of the QR code of `otpauth_uri`.
    pub qr_svg: String,
}

/// Where an account's second factor stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaStatus {
    pub enrolled: bool,
    pub pending: bool,
    pub recovery_codes_left: u32,
}

fn seal(master: &MasterKey, user_id: &str, secret: &[u8]) -> Result<Vec<u8>, MfaError> {
    Ok(master.seal(TOTP_TABLE, user_id, TOTP_FORMAT, secret)?)
}

fn open(master: &MasterKey, record: &TotpRecord) -> Result<zeroize::Zeroizing<Vec<u8>>, MfaError> {
    Ok(zeroize::Zeroizing::new(master.open(
        TOTP_TABLE,
        &record.user_id,
        TOTP_FORMAT,
        &record.sealed_secret,
    )?))
}

fn enrolment_view(secret: &[u8], issuer: &str, account: &str) -> Result<Enrolment, MfaError> {
    let uri = totp::otpauth_uri(secret, issuer, account);
    let qr_svg = totp::qr_svg(&uri).map_err(|e| MfaError::QrCode(e.to_string()))?;
    Ok(Enrolment {
        secret_text: secrets::SecretString::new(totp::secret_text(secret)),
        otpauth_uri: secrets::SecretString::new(uri),
        qr_svg,
    })
}

/// Whether the user has a confirmed second factor (asked for at every sign-in).
pub async fn is_enrolled(store: &SharedStore, user_id: &str) -> Result<bool, MfaError> {
    Ok(store
        .get_totp(user_id)
        .await?
        .is_some_and(|t| t.confirmed_at.is_some()))
}

pub async fn status(store: &SharedStore, user_id: &str) -> Result<MfaStatus, MfaError> {
    let record = store.get_totp(user_id).await?;
    let enrolled = record.as_ref().is_some_and(|t| t.confirmed_at.is_some());
    Ok(MfaStatus {
        enrolled,
        pending: record.is_some() && !enrolled,
        recovery_codes_left: if enrolled {
            store.count_recovery_codes(user_id).await?
        } else {
            0
        },
    })
}

/// Starts (or starts over) setting up an authenticator: a new secret, pending until
/// [`confirm_enrolment`]. `issuer` and `account` label the entry in the person's app.
pub async fn begin_enrolment(
    store: &SharedStore,
    master: &MasterKey,
    user_id: &str,
    issuer: &str,
    account: &str,
    now: UnixTime,
) -> Result<Enrolment, MfaError> {
    let secret = zeroize::Zeroizing::new(secrets::random_bytes::<{ totp::SECRET_LEN }>()?);
    let sealed = seal(master, user_id, secret.as_ref())?;
    if !store.put_pending_totp(user_id, &sealed, now).await? {
        return Err(MfaError::AlreadyEnrolled);
    }
    enrolment_view(secret.as_ref(), issuer, account)
}

/// The pending set-up shown again (after a wrong confirmation code).
pub async fn pending_enrolment(
    store: &SharedStore,
    master: &MasterKey,
    user_id: &str,
    issuer: &str,
    account: &str,
) -> Result<Enrolment, MfaError> {
    let record = store
        .get_totp(user_id)
        .await?
        .filter(|t| t.confirmed_at.is_none())
        .ok_or(MfaError::NoPendingEnrolment)?;
    let secret = open(master, &record)?;
    enrolment_view(&secret, issuer, account)
}

/// Ten new recovery codes (`xxxx-xxxx-xxxx`) and their hashes for the store.
fn new_recovery_codes(user_id: &str) -> Result<(Vec<String>, Vec<String>), MfaError> {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut hashes = Vec::with_capacity(RECOVERY_CODES);
    while codes.len() < RECOVERY_CODES {
        let raw = zeroize::Zeroizing::new(secrets::random_bytes::<10>()?);
        let text = data_encoding::BASE32_NOPAD
            .encode(raw.as_ref())
            .to_ascii_lowercase();
        let Some(code) = text.get(..RECOVERY_CODE_LEN) else {
            continue;
        };
        let hash = recovery_hash(user_id, code);
        if hashes.contains(&hash) {
            continue;
        }
        let shown = format!("{}-{}-{}", &code[..4], &code[4..8], &code[8..]);
        codes.push(shown);
        hashes.push(hash);
    }
    Ok((codes, hashes))
}

/// A recovery code as typed, without dashes, spaces and case; `None` if it cannot be one.
fn normalize_recovery_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let valid = code.len() == RECOVERY_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
    valid.then_some(code)
}

/// How a recovery code is stored: bound to its user, so equal codes of two people differ.
fn recovery_hash(user_id: &str, normalized: &str) -> String {
    secrets::hash_secret(&format!("recovery:{user_id}:{normalized}"))
}

/// Turns the pending set-up on with a code from the app; returns the recovery codes,
/// to show this once.
pub async fn confirm_enrolment(
    store: &SharedStore,
    master: &MasterKey,
    user_id: &str,
    typed: &str,
    actor: &str,
    now: UnixTime,
) -> Result<Vec<String>, MfaError> {
    let record = store
        .get_totp(user_id)
        .await?
        .ok_or(MfaError::NoPendingEnrolment)?;
    if record.confirmed_at.is_some() {
        return Err(MfaError::AlreadyEnrolled);
    }
    let secret = open(master, &record)?;
    let typed: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    let step = totp::matching_step(&secret, &typed, now).ok_or(MfaError::WrongCode)?;
    let (codes, hashes) = new_recovery_codes(user_id)?;
    if !store
        .confirm_totp(user_id, &record.sealed_secret, step, &hashes, now)
        .await?
    {
        // Started over or confirmed meanwhile (another tab).
        return Err(MfaError::NoPendingEnrolment);
    }
    audit(
        store,
        user_id,
        actor,
        "mfa_enrolled",
        json!({ "method": "totp" }),
        now,
    )
    .await?;
    Ok(codes)
}

/// Checks a second factor at sign-in: six digits are an authenticator code (each time
/// step once), anything else a recovery code (each once).
pub async fn verify(
    store: &SharedStore,
    master: &MasterKey,
    user_id: &str,
    typed: &str,
    now: UnixTime,
) -> Result<Factor, MfaError> {
    let record = store
        .get_totp(user_id)
        .await?
        .filter(|t| t.confirmed_at.is_some())
        .ok_or(MfaError::NotEnrolled)?;
    let compact: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() == totp::DIGITS as usize && compact.bytes().all(|b| b.is_ascii_digit()) {
        let secret = open(master, &record)?;
        let step = totp::matching_step(&secret, &compact, now).ok_or(MfaError::WrongCode)?;
        if !store.use_totp_step(user_id, step).await? {
            return Err(MfaError::Replayed);
        }
        return Ok(Factor::Totp);
    }
    let code = normalize_recovery_code(&compact).ok_or(MfaError::WrongCode)?;
    if !store
        .use_recovery_code(user_id, &recovery_hash(user_id, &code))
        .await?
    {
        return Err(MfaError::WrongCode);
    }
    let left = store.count_recovery_codes(user_id).await?;
    audit(
        store,
        user_id,
        &format!("user:{user_id}"),
        "recovery_code_used",
        json!({ "left": left }),
        now,
    )
    .await?;
    Ok(Factor::RecoveryCode)
}

/// Removes the second factor (the person on their account page, or an operator's
/// reset); false if there was none.
pub async fn remove(
    store: &SharedStore,
    user_id: &str,
    actor: &str,
    now: UnixTime,
) -> Result<bool, MfaError> {
    if !store.delete_totp(user_id).await? {
        return Ok(false);
    }
    audit(
        store,
        user_id,
        actor,
        "mfa_removed",
        json!({ "method": "totp" }),
        now,
    )
    .await?;
    Ok(true)
}

/// Replaces the recovery codes by ten new ones, to show this once.
pub async fn regenerate_recovery_codes(
    store: &SharedStore,
    user_id: &str,
    actor: &str,
    now: UnixTime,
) -> Result<Vec<String>, MfaError> {
    let (codes, hashes) = new_recovery_codes(user_id)?;
    if !store.replace_recovery_codes(user_id, &hashes, now).await? {
        return Err(MfaError::NotEnrolled);
    }
    audit(
        store,
        user_id,
        actor,
        "recovery_codes_regenerated",
        json!({ "count": RECOVERY_CODES }),
        now,
    )
    .await?;
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, UserRecord, UserStatus};
    use std::sync::Arc;

    const NOW: UnixTime = 1_700_000_000;

    fn master() -> MasterKey {
        MasterKey::from_bytes(&[7u8; 32]).unwrap()
    }

    async fn store_with_user() -> SharedStore {
        let store: SharedStore = Arc::new(MemoryStore::new());
        store
            .create_user(&UserRecord {
                id: "u1".into(),
                username: Some("ada".into()),
                email: None,
                email_verified: false,
                name: None,
                given_name: None,
                family_name: None,
                picture: None,
                groups: vec![],
                status: UserStatus::Active,
                password_hash: None,
                created_at: NOW,
                updated_at: NOW,
                last_login_at: None,
                revision: 1,
            })
            .await
            .unwrap();
        store
    }

    fn secret_of(e: &Enrolment) -> Vec<u8> {
        data_encoding::BASE32_NOPAD
            .decode(e.secret_text.expose().as_bytes())
            .unwrap()
    }

    async fn enrolled(store: &SharedStore) -> (Vec<u8>, Vec<String>) {
        let m = master();
        let e = begin_enrolment(store, &m, "u1", "Switchboard", "ada", NOW)
            .await
            .unwrap();
        let secret = secret_of(&e);
        let code = totp::code_at_step(&secret, totp::step_at(NOW));
        let codes = confirm_enrolment(store, &m, "u1", &code, "user:u1", NOW)
            .await
            .unwrap();
        (secret, codes)
    }

    #[tokio::test]
    async fn enrolment_needs_a_right_code_and_gives_ten_distinct_recovery_codes() {
        let store = store_with_user().await;
        let m = master();
        let e = begin_enrolment(&store, &m, "u1", "Switchboard", "ada", NOW)
            .await
            .unwrap();
        assert!(e.qr_svg.starts_with("<svg"));
        assert!(!is_enrolled(&store, "u1").await.unwrap(), "pending only");
        let secret = secret_of(&e);
        let code = totp::code_at_step(&secret, totp::step_at(NOW));
        let wrong = totp::code_at_step(&secret, totp::step_at(NOW) + 5);
        assert!(matches!(
            confirm_enrolment(&store, &m, "u1", &wrong, "user:u1", NOW).await,
            Err(MfaError::WrongCode)
        ));
        let codes = confirm_enrolment(&store, &m, "u1", &code, "user:u1", NOW)
            .await
            .unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let mut distinct = codes.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), RECOVERY_CODES);
        assert!(is_enrolled(&store, "u1").await.unwrap());
        let stored = store.get_totp("u1").await.unwrap().unwrap();
        assert!(
            !stored
                .sealed_secret
                .windows(secret.len())
                .any(|w| w == secret.as_slice()),
            "the secret is sealed, not stored in the clear"
        );
        assert!(matches!(
            begin_enrolment(&store, &m, "u1", "Switchboard", "ada", NOW).await,
            Err(MfaError::AlreadyEnrolled)
        ));
    }

    #[tokio::test]
    async fn a_code_is_accepted_once_per_time_step() {
        let store = store_with_user().await;
        let m = master();
        let (secret, _) = enrolled(&store).await;
        let later = NOW + 60;
        let code = totp::code_at_step(&secret, totp::step_at(later));
        assert_eq!(
            verify(&store, &m, "u1", &code, later).await.unwrap(),
            Factor::Totp
        );
        assert!(matches!(
            verify(&store, &m, "u1", &code, later).await,
            Err(MfaError::Replayed)
        ));
        // The code of the step before the one used is refused too.
        let older = totp::code_at_step(&secret, totp::step_at(later) - 1);
        assert!(verify(&store, &m, "u1", &older, later).await.is_err());
        let next = NOW + 90;
        let code = totp::code_at_step(&secret, totp::step_at(next));
        assert!(verify(&store, &m, "u1", &code, next).await.is_ok());
    }

    #[tokio::test]
    async fn a_recovery_code_works_once_typed_any_way() {
        let store = store_with_user().await;
        let m = master();
        let (_, codes) = enrolled(&store).await;
        let typed = codes[3].to_uppercase().replace('-', " ");
        assert_eq!(
            verify(&store, &m, "u1", &typed, NOW).await.unwrap(),
            Factor::RecoveryCode
        );
        assert!(matches!(
            verify(&store, &m, "u1", &codes[3], NOW).await,
            Err(MfaError::WrongCode)
        ));
        assert_eq!(status(&store, "u1").await.unwrap().recovery_codes_left, 9);
        assert!(matches!(
            verify(&store, &m, "u1", "aaaa-bbbb-cccc", NOW).await,
            Err(MfaError::WrongCode)
        ));
    }

    #[tokio::test]
    async fn regenerated_codes_replace_the_old_ones_and_removal_ends_it_all() {
        let store = store_with_user().await;
        let m = master();
        let (secret, old) = enrolled(&store).await;
        let new = regenerate_recovery_codes(&store, "u1", "user:u1", NOW)
            .await
            .unwrap();
        assert!(verify(&store, &m, "u1", &old[0], NOW).await.is_err());
        assert!(verify(&store, &m, "u1", &new[0], NOW).await.is_ok());
        assert!(remove(&store, "u1", "user:u1", NOW).await.unwrap());
        let code = totp::code_at_step(&secret, totp::step_at(NOW + 300));
        assert!(matches!(
            verify(&store, &m, "u1", &code, NOW + 300).await,
            Err(MfaError::NotEnrolled)
        ));
        let kinds: Vec<String> = store
            .list_audit("u1")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                "mfa_enrolled",
                "recovery_codes_regenerated",
                "recovery_code_used",
                "mfa_removed"
            ]
        );
    }
}
