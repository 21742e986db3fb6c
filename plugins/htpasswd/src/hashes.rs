//! Password hashes as they appear in the file: which schemes are accepted, how one is
//! checked for shape at load and verified at login.
//!
//! Only slow, salted schemes are accepted: bcrypt (`$2a$`, `$2b$`, `$2y$`) and argon2
//! PHC strings (`$argon2id$`, `$argon2i$`). Verification is CPU-heavy (argon2 also
//! memory-heavy): callers run it off the async workers.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use std::fmt;

/// The password the timing dummy is made from. Nobody logs in with it: the dummy is
/// only verified for unknown users, whose login is refused whatever the result.
const DUMMY_PASSWORD: &str = "switchboard-htpasswd-timing-equaliser";

/// bcrypt cost of the dummy when the file has no user to copy it from.
const DEFAULT_BCRYPT_COST: u32 = 10;

/// A hash scheme this plugin verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `$2a$`, `$2b$` or `$2y$` followed by a two-digit cost.
    Bcrypt {
        /// log2 of the number of rounds.
        cost: u32,
    },
    /// `$argon2id$` or `$argon2i$` PHC string.
    Argon2,
}

/// A validated hash from the file. It never prints: `Debug` shows the scheme only.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredHash {
    scheme: Scheme,
    text: String,
}

impl fmt::Debug for StoredHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredHash")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// Why a hash was refused. The messages name the scheme, never the hash's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashProblem {
    /// A scheme this plugin does not accept (fast, unsalted or unknown).
    #[error(
        "unsupported hash scheme ({0}); use bcrypt (`htpasswd -nbB user pass`) or \
         argon2id (`broker hash-password`)"
    )]
    Unsupported(&'static str),
    /// An accepted scheme, but the hash is not well formed.
    #[error("malformed {scheme} hash: {reason}")]
    Malformed {
        /// `bcrypt` or `argon2`.
        scheme: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl StoredHash {
    /// Recognises the scheme and checks the hash's shape, without verifying anything.
    pub fn parse(text: &str) -> Result<Self, HashProblem> {
        let scheme = if ["$2a$", "$2b$", "$2y$"].iter().any(|p| text.starts_with(p)) {
            Scheme::Bcrypt {
                cost: bcrypt_cost(text)?,
            }
        } else if text.starts_with("$argon2id$") || text.starts_with("$argon2i$") {
            check_argon2(text)?;
            Scheme::Argon2
        } else {
            return Err(HashProblem::Unsupported(unsupported_name(text)));
        };
        Ok(StoredHash {
            scheme,
            text: text.to_owned(),
        })
    }

    /// The hash's scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// True if `password` matches. A hash that fails inside the library counts as no
    /// match: its shape was checked at load, so this does not happen in practice.
    pub fn verify(&self, password: &str) -> bool {
        match self.scheme {
            // Like Apache, bcrypt looks at the first 72 bytes of the password only.
            Scheme::Bcrypt { .. } => bcrypt::verify(password, &self.text).unwrap_or(false),
            Scheme::Argon2 => Argon2::default()
                .verify_password(password.as_bytes(), self.text.as_str())
                .is_ok(),
        }
    }

    /// A hash of a fixed password with the same scheme and cost as `model` (bcrypt at
    /// cost 10 without a model). Verifying it for an unknown user costs what verifying
    /// a real user's hash costs, so timing does not tell who has an account.
    pub fn dummy_like(model: Option<&StoredHash>) -> Result<StoredHash, String> {
        let text = match model.map(|m| (m.scheme(), m.text.as_str())) {
            Some((Scheme::Argon2, text)) => argon2_like(text)?,
            Some((Scheme::Bcrypt { cost }, _)) => bcrypt_dummy(cost)?,
            None => bcrypt_dummy(DEFAULT_BCRYPT_COST)?,
        };
        StoredHash::parse(&text).map_err(|e| format!("timing dummy: {e}"))
    }
}

fn bcrypt_dummy(cost: u32) -> Result<String, String> {
    bcrypt::hash(DUMMY_PASSWORD, cost).map_err(|e| format!("timing dummy: bcrypt: {e}"))
}

fn argon2_like(model: &str) -> Result<String, String> {
    let failed = |what: &str| format!("timing dummy: argon2: {what}");
    let model = PasswordHash::new(model).map_err(|_| failed("model hash"))?;
    let algorithm =
        Algorithm::try_from(model.algorithm.as_str()).map_err(|_| failed("algorithm"))?;
    let version = match model.version {
        Some(v) => Version::try_from(v).map_err(|_| failed("version"))?,
        None => Version::default(),
    };
    let params = Params::try_from(&model).map_err(|_| failed("parameters"))?;
    Argon2::new(algorithm, version, params)
        .hash_password(DUMMY_PASSWORD.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| failed("hashing"))
}

/// Checks `$2?$CC$<53 characters>` and returns the cost.
fn bcrypt_cost(text: &str) -> Result<u32, HashProblem> {
    let malformed = |reason| HashProblem::Malformed {
        scheme: "bcrypt",
        reason,
    };
    let rest = text.get(4..).unwrap_or_default();
    let (cost, digest) = rest
        .split_once('$')
        .ok_or(malformed("no `$` after the cost"))?;
    if cost.len() != 2 || !cost.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("the cost is not two digits"));
    }
    let cost: u32 = cost
        .parse()
        .map_err(|_| malformed("the cost is not two digits"))?;
    if !(4..=31).contains(&cost) {
        return Err(malformed("the cost is not between 04 and 31"));
    }
    let bcrypt_base64 = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'/';
    if digest.len() != 53 || !digest.bytes().all(bcrypt_base64) {
        return Err(malformed(
            "salt and digest are not 53 characters of bcrypt base64",
        ));
    }
    Ok(cost)
}

/// Checks an argon2i or argon2id PHC string: parameters, salt and digest present.
fn check_argon2(text: &str) -> Result<(), HashProblem> {
    let malformed = |reason| HashProblem::Malformed {
        scheme: "argon2",
        reason,
    };
    let parsed = PasswordHash::new(text).map_err(|_| malformed("not a valid PHC string"))?;
    if let Some(version) = parsed.version {
        Version::try_from(version).map_err(|_| malformed("unknown version"))?;
    }
    Params::try_from(&parsed).map_err(|_| malformed("bad m, t or p parameters"))?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(malformed("no salt or no digest"));
    }
    Ok(())
}

/// A name for a refused scheme, for the operator. Never the hash itself.
fn unsupported_name(text: &str) -> &'static str {
    const KNOWN: &[(&str, &str)] = &[
        ("$apr1$", "Apache MD5 `$apr1$`"),
        ("$1$", "MD5-crypt `$1$`"),
        ("$5$", "SHA-256-crypt `$5$`"),
        ("$6$", "SHA-512-crypt `$6$`"),
        ("$2x$", "legacy bcrypt `$2x$`"),
        ("$argon2d$", "argon2d"),
        ("{SHA}", "unsalted SHA-1 `{SHA}`"),
        ("{SSHA}", "salted SHA-1 `{SSHA}`"),
    ];
    KNOWN
        .iter()
        .find(|(prefix, _)| text.starts_with(prefix))
        .map(|(_, name)| *name)
        .unwrap_or(if text.starts_with('$') || text.starts_with('{') {
            "unrecognised prefix"
        } else {
            "DES crypt or plaintext"
        })
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A bcrypt hash at the cheapest cost, with the prefix htpasswd writes (`$2y$`).
    pub(crate) fn bcrypt_hash(password: &str) -> String {
        let hash = bcrypt::hash(password, 4).unwrap();
        format!("$2y${}", hash.strip_prefix("$2b$").unwrap())
    }

    /// An argon2id hash with the smallest parameters.
    pub(crate) fn argon2_hash(password: &str) -> String {
        let params = Params::new(Params::MIN_M_COST, 1, 1, None).unwrap();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(password.as_bytes())
            .unwrap()
            .to_string()
    }

    #[test]
    fn bcrypt_in_every_accepted_prefix_verifies() {
        let hash = bcrypt_hash("pw");
        for prefix in ["$2a$", "$2b$", "$2y$"] {
            let text = format!("{prefix}{}", &hash[4..]);
            let stored = StoredHash::parse(&text).unwrap();
            assert_eq!(stored.scheme(), Scheme::Bcrypt { cost: 4 });
            assert!(stored.verify("pw"), "{prefix}");
            assert!(!stored.verify("pW"), "{prefix}");
        }
    }

    #[test]
    fn argon2id_and_argon2i_verify() {
        let id = StoredHash::parse(&argon2_hash("pw")).unwrap();
        assert!(id.verify("pw"));
        assert!(!id.verify("other"));
        let params = Params::new(Params::MIN_M_COST, 1, 1, None).unwrap();
        let i = Argon2::new(Algorithm::Argon2i, Version::V0x13, params)
            .hash_password(b"pw")
            .unwrap()
            .to_string();
        assert!(StoredHash::parse(&i).unwrap().verify("pw"));
    }

    #[test]
    fn fast_or_unknown_schemes_are_refused_by_name() {
        for (hash, name) in [
            ("$apr1$salt$abcdefghijklmnopqrstuv", "$apr1$"),
            ("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "{SHA}"),
            ("$6$salt$digest", "$6$"),
            ("$argon2d$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$ZGlnZXN0", "argon2d"),
            ("xyJ7mUcs0Jv2.", "plaintext"),
            ("hunter2", "plaintext"),
        ] {
            let err = StoredHash::parse(hash).unwrap_err();
            assert!(matches!(err, HashProblem::Unsupported(_)), "{hash}: {err}");
            assert!(err.to_string().contains(name), "{hash}: {err}");
            assert!(!err.to_string().contains(hash), "{err}");
        }
    }

    #[test]
    fn malformed_bcrypt_and_argon2_are_refused() {
        let good = bcrypt_hash("pw");
        for bad in [
            good[..good.len() - 1].to_owned(),
            good.replacen("$04$", "$4$", 1),
            good.replacen("$04$", "$03$", 1),
            good.replacen("$04$", "$32$", 1),
            format!("{}!", &good[..good.len() - 1]),
            "$2y$".to_owned(),
        ] {
            let err = StoredHash::parse(&bad).unwrap_err();
            assert!(matches!(err, HashProblem::Malformed { .. }), "{bad}: {err}");
        }
        let argon = argon2_hash("pw");
        let (without_digest, _) = argon.rsplit_once('$').unwrap();
        assert!(StoredHash::parse(without_digest).is_err());
        assert!(StoredHash::parse("$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$ZGlnZXN0").is_err());
    }

    #[test]
    fn dummy_copies_the_scheme_and_cost_of_its_model() {
        let bcrypt = StoredHash::parse(&bcrypt_hash("pw")).unwrap();
        let dummy = StoredHash::dummy_like(Some(&bcrypt)).unwrap();
        assert_eq!(dummy.scheme(), Scheme::Bcrypt { cost: 4 });
        assert!(!dummy.verify("pw"));

        let argon = StoredHash::parse(&argon2_hash("pw")).unwrap();
        let dummy = StoredHash::dummy_like(Some(&argon)).unwrap();
        assert_eq!(dummy.scheme(), Scheme::Argon2);
        assert!(dummy.text.contains("m=8,t=1,p=1"), "{}", dummy.text);

        let fallback = StoredHash::dummy_like(None).unwrap();
        assert_eq!(fallback.scheme(), Scheme::Bcrypt { cost: 10 });
    }

    #[test]
    fn a_stored_hash_does_not_print() {
        let text = bcrypt_hash("pw");
        let shown = format!("{:?}", StoredHash::parse(&text).unwrap());
        assert!(!shown.contains(&text[7..]), "{shown}");
    }
}
