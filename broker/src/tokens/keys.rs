//! Signing key material: generation, PKCS#8 parsing (once, at load), signing with the
//! parsed key pair, and the public JWK.

use crate::config::SigningAlg;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed for {0}")]
    Generate(&'static str),
    #[error("stored {alg} key {kid} is unreadable")]
    Parse { alg: &'static str, kid: String },
    #[error("signing failed")]
    Sign,
}

/// A parsed private key, ready to sign without re-parsing.
pub enum KeyPairKind {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl fmt::Debug for KeyPairKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyPairKind::Rsa(_) => "Rsa(..)",
            KeyPairKind::Ec(_) => "Ec(..)",
            KeyPairKind::Ed(_) => "Ed(..)",
        })
    }
}

/// Generates a new key and returns its PKCS#8 DER.
pub fn generate_pkcs8(alg: SigningAlg) -> Result<Vec<u8>, KeyError> {
    let name = alg.as_str();
    match alg {
        SigningAlg::Rs256 => {
            let kp =
                RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate(name))?;
            let der = kp.as_der().map_err(|_| KeyError::Generate(name))?;
            Ok(der.as_ref().to_vec())
        }
        SigningAlg::Es256 => {
            let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| KeyError::Generate(name))?;
            let doc = kp.to_pkcs8v1().map_err(|_| KeyError::Generate(name))?;
            Ok(doc.as_ref().to_vec())
        }
        SigningAlg::EdDsa => {
            let kp = Ed25519KeyPair::generate().map_err(|_| KeyError::Generate(name))?;
            let doc = kp.to_pkcs8v1().map_err(|_| KeyError::Generate(name))?;
            Ok(doc.as_ref().to_vec())
        }
    }
}

/// Parses PKCS#8 DER into a key pair for `alg`.
pub fn parse_pkcs8(alg: SigningAlg, kid: &str, der: &[u8]) -> Result<KeyPairKind, KeyError> {
    let err = || KeyError::Parse {
        alg: alg.as_str(),
        kid: kid.to_string(),
    };
    Ok(match alg {
        SigningAlg::Rs256 => KeyPairKind::Rsa(RsaKeyPair::from_pkcs8(der).map_err(|_| err())?),
        SigningAlg::Es256 => KeyPairKind::Ec(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|_| err())?,
        ),
        SigningAlg::EdDsa => KeyPairKind::Ed(Ed25519KeyPair::from_pkcs8(der).map_err(|_| err())?),
    })
}

impl KeyPairKind {
    /// The JWS signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match self {
            KeyPairKind::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
                    .map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
            KeyPairKind::Ec(kp) => kp
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
            KeyPairKind::Ed(kp) => Ok(kp.sign(message).as_ref().to_vec()),
        }
    }

    /// The public JWK with `kid`, `alg` and `use: sig`.
    pub fn public_jwk(&self, kid: &str, alg: SigningAlg) -> serde_json::Value {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        match self {
            KeyPairKind::Rsa(kp) => {
                let pk = kp.public_key();
                json!({
                    "kty": "RSA", "use": "sig", "alg": alg.as_str(), "kid": kid,
                    "n": b64(pk.modulus().big_endian_without_leading_zero()),
                    "e": b64(pk.exponent().big_endian_without_leading_zero()),
                })
            }
            KeyPairKind::Ec(kp) => {
                // Uncompressed SEC1 point: 0x04 || x || y.
                let point = kp.public_key().as_ref();
                let (x, y) = point
                    .get(1..)
                    .unwrap_or_default()
                    .split_at(point.len().saturating_sub(1) / 2);
                json!({
                    "kty": "EC", "use": "sig", "alg": alg.as_str(), "kid": kid,
                    "crv": "P-256", "x": b64(x), "y": b64(y),
                })
            }
            KeyPairKind::Ed(kp) => json!({
                "kty": "OKP", "use": "sig", "alg": alg.as_str(), "kid": kid,
                "crv": "Ed25519", "x": b64(kp.public_key().as_ref()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_generates_parses_and_signs() {
        for alg in SigningAlg::ALL {
            let der = generate_pkcs8(alg).unwrap();
            let kp = parse_pkcs8(alg, "k", &der).unwrap();
            let sig = kp.sign(b"message").unwrap();
            let expected_len = match alg {
                SigningAlg::Rs256 => 256,
                SigningAlg::Es256 | SigningAlg::EdDsa => 64,
            };
            assert_eq!(sig.len(), expected_len, "{alg:?}");
            let jwk = kp.public_jwk("k", alg);
            assert_eq!(jwk["kid"], "k");
            assert_eq!(jwk["alg"], alg.as_str());
        }
    }

    #[test]
    fn ec_jwk_coordinates_are_32_bytes_each() {
        let der = generate_pkcs8(SigningAlg::Es256).unwrap();
        let jwk = parse_pkcs8(SigningAlg::Es256, "k", &der)
            .unwrap()
            .public_jwk("k", SigningAlg::Es256);
        for c in ["x", "y"] {
            let bytes = URL_SAFE_NO_PAD.decode(jwk[c].as_str().unwrap()).unwrap();
            assert_eq!(bytes.len(), 32, "{c}");
        }
    }

    #[test]
    fn garbage_der_is_a_parse_error_not_a_panic() {
        assert!(matches!(
            parse_pkcs8(SigningAlg::Rs256, "k", b"nope"),
            Err(KeyError::Parse { .. })
        ));
    }
}
