//! A scripted OpenID Provider on loopback, for what a certified OP will not do: sign
//! ID tokens with a wrong issuer, audience or nonce, expired ones, ones signed by a key
//! it does not publish, or after rotating its key. ES256 keys from aws-lc-rs.
//!
//! It serves a discovery document at every path ending in
//! `/.well-known/openid-configuration` (so tenant-shaped paths work), `/jwks`,
//! `/token` and `/userinfo`. Tests skip `/authorize` and call `complete()` with a
//! made-up code: the token endpoint answers whatever the test scripted.

use crate::server::{FakeRequest, FakeResponse, FakeServer};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// The access token the fake issues.
pub const ACCESS_TOKEN: &str = "fake-access-token";

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

struct Key {
    kid: String,
    pair: EcdsaKeyPair,
}

impl Key {
    fn generate() -> Key {
        Key {
            kid: crate::random_token(8),
            pair: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .unwrap_or_else(|_| panic!("P-256 key generation failed")),
        }
    }

    fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap_or_else(|_| panic!("signing failed"));
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

/// How the next ID tokens are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// With the published key.
    Published,
    /// With a key that is not (and never will be) in the JWKS, same `kid` as published.
    ForgedSameKid,
    /// With a key whose `kid` is not in the JWKS.
    UnpublishedKid,
}

struct State {
    origin: String,
    discovery_issuer: Option<String>,
    iss_parameter_supported: bool,
    published: Vec<Key>,
    rogue: Key,
    signing: Signing,
    id_token_claims: Value,
    token_override: Option<(u16, Value)>,
    userinfo: Option<Value>,
    refresh_counter: u32,
    jwks_fetches: u32,
    token_requests: Vec<FakeRequest>,
    publish_pending: Option<Key>,
}

/// A running scripted OP.
pub struct FakeOp {
    server: FakeServer,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FakeOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOp")
            .field("origin", &self.server.origin())
            .finish_non_exhaustive()
    }
}

fn lock(state: &Arc<Mutex<State>>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeOp {
    /// Starts the fake with one published key.
    pub async fn start() -> FakeOp {
        let state = Arc::new(Mutex::new(State {
            origin: String::new(),
            discovery_issuer: None,
            iss_parameter_supported: false,
            published: vec![Key::generate()],
            rogue: Key::generate(),
            signing: Signing::Published,
            id_token_claims: Value::Null,
            token_override: None,
            userinfo: None,
            refresh_counter: 0,
            jwks_fetches: 0,
            token_requests: Vec::new(),
            publish_pending: None,
        }));
        let handler_state = state.clone();
        let server = FakeServer::start(move |req| handle(&handler_state, req)).await;
        lock(&state).origin = server.origin();
        FakeOp { server, state }
    }

    /// `http://127.0.0.1:PORT`, also the default issuer.
    pub fn origin(&self) -> String {
        self.server.origin()
    }

    /// The issuer the discovery document names (default: the origin).
    pub fn set_discovery_issuer(&self, issuer: &str) {
        lock(&self.state).discovery_issuer = Some(issuer.to_string());
    }

    /// Advertise RFC 9207 `authorization_response_iss_parameter_supported`.
    pub fn set_iss_parameter_supported(&self, on: bool) {
        lock(&self.state).iss_parameter_supported = on;
    }

    /// Valid claims for `client_id` and `nonce`: iss (the origin), sub, aud, exp in 5
    /// minutes, iat now, email verified.
    pub fn claims(&self, client_id: &str, nonce: &str) -> Value {
        let now = now();
        json!({
            "iss": self.origin(), "sub": "user-1", "aud": client_id,
            "exp": now + 300, "iat": now, "nonce": nonce,
            "email": "user1@example.com", "email_verified": true, "name": "User One",
            "groups": ["users"],
        })
    }

    /// The claims of the ID tokens issued from now on.
    pub fn set_id_token_claims(&self, claims: Value) {
        lock(&self.state).id_token_claims = claims;
    }

    /// How ID tokens are signed from now on.
    pub fn set_signing(&self, signing: Signing) {
        lock(&self.state).signing = signing;
    }

    /// Replaces the published key with a new one and signs with it; the new JWKS is
    /// served from the next JWKS fetch on.
    pub fn rotate_key(&self) {
        lock(&self.state).publish_pending = Some(Key::generate());
    }

    /// The token endpoint answers this instead of tokens (`None`: tokens again).
    pub fn set_token_response(&self, response: Option<(u16, Value)>) {
        lock(&self.state).token_override = response;
    }

    /// The userinfo endpoint answers this JSON (default: 404).
    pub fn set_userinfo(&self, userinfo: Option<Value>) {
        lock(&self.state).userinfo = userinfo;
    }

    /// How often the JWKS was fetched.
    pub fn jwks_fetches(&self) -> u32 {
        lock(&self.state).jwks_fetches
    }

    /// Token requests received so far.
    pub fn token_requests(&self) -> Vec<FakeRequest> {
        lock(&self.state).token_requests.clone()
    }

    /// Signs `claims` with the published key (for tests that need a raw token).
    pub fn sign(&self, claims: &Value) -> String {
        let state = lock(&self.state);
        state.published[0].sign(claims)
    }
}

fn handle(state: &Arc<Mutex<State>>, req: FakeRequest) -> FakeResponse {
    let mut s = lock(state);
    let origin = s.origin.clone();
    if req.path.ends_with("/.well-known/openid-configuration") {
        let issuer = s.discovery_issuer.clone().unwrap_or_else(|| origin.clone());
        return FakeResponse::json(
            200,
            &json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{origin}/authorize"),
                "token_endpoint": format!("{origin}/token"),
                "userinfo_endpoint": format!("{origin}/userinfo"),
                "jwks_uri": format!("{origin}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "code_challenge_methods_supported": ["S256"],
                "authorization_response_iss_parameter_supported": s.iss_parameter_supported,
            }),
        );
    }
    match req.path.as_str() {
        "/jwks" => {
            s.jwks_fetches += 1;
            if let Some(next) = s.publish_pending.take() {
                s.published = vec![next];
            }
            let keys: Vec<Value> = s.published.iter().map(Key::jwk).collect();
            FakeResponse::json(200, &json!({ "keys": keys }))
        }
        "/token" => {
            s.token_requests.push(req.clone());
            if let Some((status, body)) = s.token_override.clone() {
                return FakeResponse::json(status, &body);
            }
            // A pending rotation signs with the new key before it is published: the
            // client must refetch the JWKS to verify.
            let claims = s.id_token_claims.clone();
            let id_token = match (s.signing, &s.publish_pending) {
                (Signing::Published, Some(next)) => next.sign(&claims),
                (Signing::Published, None) => s.published[0].sign(&claims),
                (Signing::ForgedSameKid, _) => {
                    let forged = Key {
                        kid: s.published[0].kid.clone(),
                        pair: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                            .unwrap_or_else(|_| panic!("keygen")),
                    };
                    forged.sign(&claims)
                }
                (Signing::UnpublishedKid, _) => s.rogue.sign(&claims),
            };
            s.refresh_counter += 1;
            FakeResponse::json(
                200,
                &json!({
                    "access_token": ACCESS_TOKEN,
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "id_token": id_token,
                    "refresh_token": format!("fake-refresh-{}", s.refresh_counter),
                }),
            )
        }
        "/userinfo" => match &s.userinfo {
            Some(info) => FakeResponse::json(200, info),
            None => FakeResponse::text(404, "no userinfo"),
        },
        _ => FakeResponse::text(404, "not found"),
    }
}

/// The `at_hash` of an access token for ES256 (left half of its SHA-256).
pub fn at_hash(access_token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
}
