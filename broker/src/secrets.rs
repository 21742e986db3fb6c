//! Secrets: values that never print, random bearer tokens and their hashes, and the
//! master key that seals signing keys and upstream tokens at rest (AES-256-GCM, with
//! the table, row id and format version as associated data, so a sealed value cannot
//! be moved to another row).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::fmt;
use std::path::Path;
use zeroize::Zeroize;

/// A string that does not print and is wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: String) -> Self {
        SecretString(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Fills the secret in place (reading it into a buffer that is wiped on drop,
    /// never into a copy that is not).
    pub fn expose_mut(&mut self) -> &mut String {
        &mut self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("sealed value is malformed")]
    Malformed,
    #[error(
        "sealed value was sealed under master key {found}, which is neither the current key {current} nor a previous one"
    )]
    WrongKey { found: String, current: String },
    #[error("sealed value failed authentication (tampered, or moved to another row)")]
    Authentication,
    #[error("random number generator failed")]
    Random,
}

/// Fills a fresh buffer from the system CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], SecretsError> {
    let mut buf = [0u8; N];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| SecretsError::Random)?;
    Ok(buf)
}

/// A 256-bit random bearer secret, base64url: codes, session ids, refresh tokens.
pub fn random_token() -> Result<String, SecretsError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// A shorter random identifier that is not a secret (grant ids, jti, kid).
pub fn random_id() -> Result<String, SecretsError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<16>()?))
}

/// SHA-256 as lowercase hex: how bearer secrets are stored and logged (a prefix).
pub fn hash_secret(secret: &str) -> String {
    sha256_hex(secret.as_bytes())
}

/// SHA-256 of any bytes as lowercase hex (file pins, stored hashes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest(&SHA256, bytes).as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality of two byte strings.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

const SEAL_FORMAT: u8 = 1;
const KEY_ID_LEN: usize = 8;

/// One master key's material: the AEAD key, its id (written into every value it
/// seals) and the key derived from it for cookie and CSRF MACs.
struct KeyMaterial {
    key: LessSafeKey,
    key_id: [u8; KEY_ID_LEN],
    cookie_key: aws_lc_rs::hmac::Key,
}

/// The master key: seals and opens values stored at rest.
///
/// It holds the current key and, during a rotation, previous ones: a value opens
/// under whichever key sealed it (named by the key id in its header), and everything
/// new is sealed under the current key. MACs are made with the current key and
/// accepted under any of them, so cookies survive a rotation too.
pub struct MasterKey {
    current: KeyMaterial,
    previous: Vec<KeyMaterial>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let previous: Vec<String> = self.previous.iter().map(|k| hex(&k.key_id)).collect();
        f.debug_struct("MasterKey")
            .field("key_id", &hex(&self.current.key_id))
            .field("previous", &previous)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// From 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretsError> {
        if bytes.len() != 32 {
            return Err(SecretsError::MasterKey(format!(
                "must be 32 bytes, got {}",
                bytes.len()
            )));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| SecretsError::MasterKey("rejected by AES-256-GCM".into()))?;
        let id_digest = digest(&SHA256, bytes);
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&id_digest.as_ref()[..KEY_ID_LEN]);
        // A separate key for cookie and CSRF MACs, so no key serves two purposes.
        let cookie_key_bytes = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, bytes),
            b"switchboard/cookie-mac/v1",
        );
        Ok(MasterKey {
            current: KeyMaterial {
                key: LessSafeKey::new(unbound),
                key_id,
                cookie_key: aws_lc_rs::hmac::Key::new(
                    aws_lc_rs::hmac::HMAC_SHA256,
                    cookie_key_bytes.as_ref(),
                ),
            },
            previous: Vec::new(),
        })
    }

    /// Adds keys that no longer seal but still open what they sealed (and still
    /// verify MACs they made). A key equal to the current one, or given twice, counts
    /// once.
    #[must_use]
    pub fn with_previous(mut self, previous: impl IntoIterator<Item = MasterKey>) -> Self {
        for old in previous {
            let material = old.current;
            let known = material.key_id == self.current.key_id
                || self.previous.iter().any(|k| k.key_id == material.key_id);
            if !known {
                self.previous.push(material);
            }
        }
        self
    }

    /// The ids of the previous keys, in the order configured.
    pub fn previous_key_ids(&self) -> Vec<String> {
        self.previous.iter().map(|k| hex(&k.key_id)).collect()
    }

    /// From its text form: 32 bytes in standard or url-safe base64.
    pub fn from_text(text: &str) -> Result<Self, SecretsError> {
        let t = text.trim();
        let mut bytes = STANDARD
            .decode(t)
            .or_else(|_| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')))
            .map_err(|_| {
                SecretsError::MasterKey(
                    "not base64 (generate one with `openssl rand -base64 32`)".into(),
                )
            })?;
        let key = Self::from_bytes(&bytes);
        bytes.zeroize();
        key
    }

    /// Reads the key file, or in dev mode creates it (mode 0600) when missing.
    pub fn load_or_generate(path: &Path, generate: bool) -> Result<Self, SecretsError> {
        match std::fs::read_to_string(path) {
            Ok(mut text) => {
                let key = Self::from_text(&text);
                text.zeroize();
                key.map_err(|e| SecretsError::MasterKey(format!("{}: {e}", path.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && generate => {
                let bytes = random_bytes::<32>()?;
                let mut text = STANDARD.encode(bytes);
                write_private_file(path, text.as_bytes())
                    .map_err(|e| SecretsError::MasterKey(format!("{}: {e}", path.display())))?;
                text.zeroize();
                Self::from_bytes(&bytes)
            }
            Err(e) => Err(SecretsError::MasterKey(format!("{}: {e}", path.display()))),
        }
    }

    /// HMAC-SHA256 under the current key's derived cookie key, base64url.
    pub fn mac(&self, purpose: &str, value: &str) -> String {
        Self::mac_with(&self.current, purpose, value)
    }

    fn mac_with(material: &KeyMaterial, purpose: &str, value: &str) -> String {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&material.cookie_key);
        ctx.update(purpose.as_bytes());
        ctx.update(b"\0");
        ctx.update(value.as_bytes());
        URL_SAFE_NO_PAD.encode(ctx.sign().as_ref())
    }

    /// Checks a MAC made by [`Self::mac`] in constant time, under the current key or
    /// a previous one.
    pub fn verify_mac(&self, purpose: &str, value: &str, mac: &str) -> bool {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .any(|k| constant_time_eq(Self::mac_with(k, purpose, value).as_bytes(), mac.as_bytes()))
    }

    /// The current key's id (hex): what new seals carry.
    pub fn key_id(&self) -> String {
        hex(&self.current.key_id)
    }

    fn aad(table: &str, row_id: &str, version: u32) -> Vec<u8> {
        format!("{table}\0{row_id}\0{version}").into_bytes()
    }

    /// Encrypts `plaintext` bound to `(table, row_id, version)`, under the current key.
    pub fn seal(
        &self,
        table: &str,
        row_id: &str,
        version: u32,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SecretsError> {
        let nonce_bytes = random_bytes::<NONCE_LEN>()?;
        let mut in_out = plaintext.to_vec();
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(Self::aad(table, row_id, version)),
                &mut in_out,
            )
            .map_err(|_| SecretsError::Authentication)?;
        let mut out = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN + in_out.len());
        out.push(SEAL_FORMAT);
        out.extend_from_slice(&self.current.key_id);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&in_out);
        in_out.zeroize();
        Ok(out)
    }

    /// The id (hex) of the key that sealed `sealed`, read from its header.
    pub fn sealed_by(sealed: &[u8]) -> Result<String, SecretsError> {
        if sealed.len() < 1 + KEY_ID_LEN + NONCE_LEN + 16 || sealed[0] != SEAL_FORMAT {
            return Err(SecretsError::Malformed);
        }
        Ok(hex(&sealed[1..1 + KEY_ID_LEN]))
    }

    /// Whether `sealed` was sealed under the current key (a rotation leaves it be).
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        sealed.len() > KEY_ID_LEN && sealed[1..1 + KEY_ID_LEN] == self.current.key_id
    }

    /// Decrypts what `seal` produced for the same `(table, row_id, version)`, under
    /// whichever configured key sealed it.
    pub fn open(
        &self,
        table: &str,
        row_id: &str,
        version: u32,
        sealed: &[u8],
    ) -> Result<Vec<u8>, SecretsError> {
        let header = 1 + KEY_ID_LEN + NONCE_LEN;
        if sealed.len() < header + 16 || sealed[0] != SEAL_FORMAT {
            return Err(SecretsError::Malformed);
        }
        let key_id = &sealed[1..1 + KEY_ID_LEN];
        let Some(material) = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.key_id == key_id)
        else {
            return Err(SecretsError::WrongKey {
                found: hex(key_id),
                current: self.key_id(),
            });
        };
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1 + KEY_ID_LEN..header]);
        let mut in_out = sealed[header..].to_vec();
        let plain = material
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(table, row_id, version)),
                &mut in_out,
            )
            .map_err(|_| SecretsError::Authentication)?
            .to_vec();
        in_out.zeroize();
        Ok(plain)
    }

    /// Opens `sealed` and seals its plaintext again under the current key, for the
    /// same row. The plaintext is wiped before this returns.
    pub fn reseal(
        &self,
        table: &str,
        row_id: &str,
        version: u32,
        sealed: &[u8],
    ) -> Result<Vec<u8>, SecretsError> {
        let mut plain = self.open(table, row_id, version, sealed)?;
        let fresh = self.seal(table, row_id, version, &plain);
        plain.zeroize();
        fresh
    }
}

/// Creates `path` (and its parent) with mode 0600; fails if it exists.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_bytes(&[7u8; 32]).unwrap()
    }

    #[test]
    fn sealed_value_opens_only_in_its_own_row() {
        let k = key();
        let sealed = k.seal("signing_keys", "kid-1", 1, b"private").unwrap();
        assert_eq!(
            k.open("signing_keys", "kid-1", 1, &sealed).unwrap(),
            b"private"
        );
        assert!(matches!(
            k.open("signing_keys", "kid-2", 1, &sealed),
            Err(SecretsError::Authentication)
        ));
        assert!(matches!(
            k.open("signing_keys", "kid-1", 2, &sealed),
            Err(SecretsError::Authentication)
        ));
    }

    #[test]
    fn tampered_value_is_refused() {
        let k = key();
        let mut sealed = k.seal("t", "r", 1, b"data").unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(k.open("t", "r", 1, &sealed).is_err());
    }

    #[test]
    fn another_master_key_is_named_in_the_error() {
        let sealed = key().seal("t", "r", 1, b"data").unwrap();
        let other = MasterKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(matches!(
            other.open("t", "r", 1, &sealed),
            Err(SecretsError::WrongKey { .. })
        ));
    }

    #[test]
    fn a_previous_key_opens_what_it_sealed_and_new_seals_use_the_current_key() {
        let old = key();
        let sealed = old.seal("t", "r", 1, b"data").unwrap();
        let rotated = MasterKey::from_bytes(&[8u8; 32])
            .unwrap()
            .with_previous([key()]);
        assert!(!rotated.is_current(&sealed));
        assert_eq!(rotated.open("t", "r", 1, &sealed).unwrap(), b"data");
        let resealed = rotated.reseal("t", "r", 1, &sealed).unwrap();
        assert!(rotated.is_current(&resealed));
        assert_eq!(MasterKey::sealed_by(&resealed).unwrap(), rotated.key_id());
        // Only the new key is needed afterwards; the old one cannot open it.
        let only_new = MasterKey::from_bytes(&[8u8; 32]).unwrap();
        assert_eq!(only_new.open("t", "r", 1, &resealed).unwrap(), b"data");
        assert!(matches!(
            old.open("t", "r", 1, &resealed),
            Err(SecretsError::WrongKey { .. })
        ));
        // A resealed value stays bound to its row.
        assert!(rotated.open("t", "other", 1, &resealed).is_err());
    }

    #[test]
    fn macs_of_a_previous_key_still_verify_but_new_ones_use_the_current_key() {
        let old_mac = key().mac("csrf", "v");
        let rotated = MasterKey::from_bytes(&[8u8; 32])
            .unwrap()
            .with_previous([key(), key()]);
        assert_eq!(
            rotated.previous_key_ids().len(),
            1,
            "a key given twice counts once"
        );
        assert!(rotated.verify_mac("csrf", "v", &old_mac));
        assert!(!rotated.verify_mac("csrf", "w", &old_mac));
        assert_ne!(rotated.mac("csrf", "v"), old_mac);
        assert!(
            !MasterKey::from_bytes(&[8u8; 32])
                .unwrap()
                .verify_mac("csrf", "v", &old_mac)
        );
    }

    #[test]
    fn dev_key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let a = MasterKey::load_or_generate(&path, true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = MasterKey::load_or_generate(&path, false).unwrap();
        assert_eq!(a.key_id(), b.key_id());
    }

    #[test]
    fn missing_key_file_outside_dev_mode_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(MasterKey::load_or_generate(&dir.path().join("none"), false).is_err());
    }

    #[test]
    fn secret_string_does_not_print() {
        assert_eq!(format!("{:?}", SecretString::new("hunter2".into())), "***");
    }

    #[test]
    fn tokens_are_random_and_hash_to_hex() {
        let a = random_token().unwrap();
        assert_ne!(a, random_token().unwrap());
        assert_eq!(a.len(), 43);
        assert_eq!(hash_secret("abc").len(), 64);
    }
}
