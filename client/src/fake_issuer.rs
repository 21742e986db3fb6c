//! Test support: a loopback issuer serving discovery and a JWKS that tests change,
//! counting the JWKS fetches, and P-256 keys to sign tokens with.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub(crate) struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: serde_json::Value,
}

impl SigningKey {
    pub fn p256(kid: &str) -> SigningKey {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        SigningKey {
            kid: kid.to_string(),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        }
    }

    /// Signs `claims` as an access token (`typ` given, ES256, this key's kid).
    pub fn sign(&self, typ: &str, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_string());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

pub(crate) struct FakeIssuer {
    pub url: String,
    pub jwks: Arc<Mutex<serde_json::Value>>,
    pub jwks_fetches: Arc<AtomicUsize>,
    /// The JSON `/introspect` answers, and how often it was asked.
    pub introspection: Arc<Mutex<serde_json::Value>>,
    pub introspections: Arc<AtomicUsize>,
    /// What `/device_authorization` answers.
    pub device: Arc<Mutex<serde_json::Value>>,
    /// What `/token` answers, in turn (status, JSON); and when each call came.
    pub token_answers: Arc<Mutex<VecDeque<(u16, serde_json::Value)>>>,
    pub token_calls: Arc<Mutex<Vec<Instant>>>,
}

impl FakeIssuer {
    pub async fn start(keys: &[&SigningKey]) -> FakeIssuer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let jwks = Arc::new(Mutex::new(serde_json::json!({
            "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()
        })));
        let fetches = Arc::new(AtomicUsize::new(0));
        let introspection = Arc::new(Mutex::new(serde_json::json!({"active": false})));
        let introspections = Arc::new(AtomicUsize::new(0));
        let device = Arc::new(Mutex::new(serde_json::json!({})));
        let token_answers = Arc::new(Mutex::new(VecDeque::new()));
        let token_calls = Arc::new(Mutex::new(Vec::new()));
        let discovery = serde_json::json!({
            "issuer": url,
            "jwks_uri": format!("{url}/jwks"),
            "introspection_endpoint": format!("{url}/introspect"),
            "token_endpoint": format!("{url}/token"),
            "device_authorization_endpoint": format!("{url}/device_authorization"),
        });
        let (d, t, c) = (device.clone(), token_answers.clone(), token_calls.clone());
        let (j, f, i, n) = (
            jwks.clone(),
            fetches.clone(),
            introspection.clone(),
            introspections.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                let text = String::from_utf8_lossy(&head);
                let path = text.split(' ').nth(1).unwrap_or_default().to_string();
                let mut status = 200;
                let body = match path.as_str() {
                    "/.well-known/openid-configuration" => discovery.to_string(),
                    "/device_authorization" => d.lock().unwrap().to_string(),
                    "/token" => {
                        c.lock().unwrap().push(Instant::now());
                        let (code, body) = t
                            .lock()
                            .unwrap()
                            .pop_front()
                            .unwrap_or((500, serde_json::json!({})));
                        status = code;
                        body.to_string()
                    }
                    "/jwks" => {
                        f.fetch_add(1, Ordering::SeqCst);
                        j.lock().unwrap().to_string()
                    }
                    "/introspect" => {
                        n.fetch_add(1, Ordering::SeqCst);
                        i.lock().unwrap().to_string()
                    }
                    _ => String::new(),
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        FakeIssuer {
            url,
            jwks,
            jwks_fetches: fetches,
            introspection,
            introspections,
            device,
            token_answers,
            token_calls,
        }
    }
}
