//! The clients and users every test broker is configured with, authorization
//! requests, and what the token and userinfo endpoints answer.

use crate::broker::Broker;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::{CsrfToken, Nonce, PkceCodeChallenge};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use url::Url;

/// A client registered in the test config.
#[derive(Debug, Clone, Copy)]
pub struct TestClient {
    pub id: &'static str,
    /// `None` for a public client.
    pub secret: Option<&'static str>,
    /// The redirect URI this test client sends.
    pub redirect_uri: &'static str,
    /// The redirect URI as registered (differs only in port for native clients).
    pub registered_redirect_uri: &'static str,
    /// The ID-token signing algorithm configured for it.
    pub alg: &'static str,
    /// The browser origin allowed to call it by CORS, if any.
    pub cors_origin: Option<&'static str>,
}

/// A confidential web app, RS256 (the default).
pub const WEB_APP: TestClient = TestClient {
    id: "web-app",
    secret: Some("web-app-secret"),
    redirect_uri: "http://127.0.0.1:9/web-app/callback",
    registered_redirect_uri: "http://127.0.0.1:9/web-app/callback",
    alg: "RS256",
    cors_origin: Some("https://web-app.example"),
};

/// Another confidential app, for single sign-on across clients.
pub const SECOND_APP: TestClient = TestClient {
    id: "second-app",
    secret: Some("second-app-secret"),
    redirect_uri: "https://second.example/callback",
    registered_redirect_uri: "https://second.example/callback",
    alg: "RS256",
    cors_origin: None,
};

/// A confidential app whose ID tokens are ES256.
pub const ES256_APP: TestClient = TestClient {
    id: "es256-app",
    secret: Some("es256-app-secret"),
    redirect_uri: "https://es256.example/callback",
    registered_redirect_uri: "https://es256.example/callback",
    alg: "ES256",
    cors_origin: None,
};

/// A confidential app whose ID tokens are EdDSA (Ed25519).
pub const EDDSA_APP: TestClient = TestClient {
    id: "eddsa-app",
    secret: Some("eddsa-app-secret"),
    redirect_uri: "https://eddsa.example/callback",
    registered_redirect_uri: "https://eddsa.example/callback",
    alg: "EdDSA",
    cors_origin: None,
};

/// A public native app: PKCE, loopback redirect on any port (RFC 8252).
pub const NATIVE_APP: TestClient = TestClient {
    id: "native-cli",
    secret: None,
    redirect_uri: "http://127.0.0.1:49152/callback",
    registered_redirect_uri: "http://127.0.0.1/callback",
    alg: "RS256",
    cors_origin: None,
};

pub(crate) fn all_clients() -> [&'static TestClient; 5] {
    [&WEB_APP, &SECOND_APP, &ES256_APP, &EDDSA_APP, &NATIVE_APP]
}

/// A static user of the local provider.
#[derive(Debug, Clone, Copy)]
pub struct TestUser {
    /// Becomes `sub`.
    pub id: &'static str,
    pub username: &'static str,
    pub email: &'static str,
    pub name: &'static str,
    pub password: &'static str,
    pub hash: &'static str,
    pub groups: &'static [&'static str],
}

/// argon2id of "password", as in `config/broker.toml`.
const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$dL0uCXJvWII5FsUebB5CmA$Bba2qKpU1xbYlyVtuWXTlwQ4NGcD1ZyAM81YaaCYdgo";

pub const ADMIN: TestUser = TestUser {
    id: "user-admin",
    username: "admin",
    email: "admin@example.com",
    name: "Ada Admin",
    password: "password",
    hash: PASSWORD_HASH,
    groups: &["admins"],
};

pub const BOB: TestUser = TestUser {
    id: "user-bob",
    username: "bob",
    email: "bob@example.com",
    name: "Bob Builder",
    password: "password",
    hash: PASSWORD_HASH,
    groups: &[],
};

pub(crate) fn all_static_users() -> [&'static TestUser; 2] {
    [&ADMIN, &BOB]
}

/// A PKCE S256 pair.
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        Pkce {
            verifier: verifier.secret().clone(),
            challenge: challenge.as_str().to_string(),
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// An `/authorize` request: `response_type=code`, random `state` and `nonce`, PKCE S256,
/// scope `openid profile email`, unless the test changes them.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub client: TestClient,
    pub state: String,
    pub nonce: String,
    pub pkce: Option<Pkce>,
    params: Vec<(String, String)>,
}

impl AuthorizeRequest {
    pub fn new(client: TestClient) -> Self {
        let mut r = AuthorizeRequest {
            client,
            state: CsrfToken::new_random().secret().clone(),
            nonce: Nonce::new_random().secret().clone(),
            pkce: Some(Pkce::new()),
            params: Vec::new(),
        };
        r.set("scope", "openid profile email");
        r
    }

    fn set(&mut self, name: &str, value: &str) {
        self.params.retain(|(k, _)| k != name);
        self.params.push((name.to_string(), value.to_string()));
    }

    /// Sets (or replaces) one parameter, e.g. `prompt`, `max_age`, `request`.
    pub fn param(mut self, name: &str, value: &str) -> Self {
        self.set(name, value);
        self
    }

    pub fn scope(self, scope: &str) -> Self {
        self.param("scope", scope)
    }

    /// Sends no PKCE challenge.
    pub fn without_pkce(mut self) -> Self {
        self.pkce = None;
        self
    }

    pub fn verifier(&self) -> Option<&str> {
        self.pkce.as_ref().map(|p| p.verifier.as_str())
    }

    /// The request URL: the defaults, with every parameter the test set replacing
    /// the default of the same name (never repeating it).
    pub fn url(&self, broker: &Broker) -> Url {
        self.url_at(&broker.url("/"))
    }

    /// The request URL at a broker listening at `base`.
    pub fn url_at(&self, base: &Url) -> Url {
        let mut pairs: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", self.client.id),
            ("redirect_uri", self.client.redirect_uri),
            ("state", &self.state),
            ("nonce", &self.nonce),
        ];
        if let Some(p) = &self.pkce {
            pairs.push(("code_challenge", &p.challenge));
            pairs.push(("code_challenge_method", "S256"));
        }
        for (name, value) in &self.params {
            match pairs.iter_mut().find(|(k, _)| k == name) {
                Some(pair) => pair.1 = value,
                None => pairs.push((name, value)),
            }
        }
        let mut url = base.join("authorize").expect("a URL under the broker");
        url.query_pairs_mut().extend_pairs(pairs);
        url
    }
}

/// What `/token` answered.
#[derive(Debug)]
pub struct TokenReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

impl TokenReply {
    pub(crate) async fn read(res: reqwest::Response) -> Self {
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("read the /token body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("/token answered {status} with non-JSON: {text}"));
        TokenReply {
            status,
            headers,
            body,
        }
    }

    /// The OAuth `error` code, if this is an error.
    pub fn error(&self) -> Option<&str> {
        self.body["error"].as_str()
    }

    /// Panics unless this is a success.
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "token request failed: {}",
            self.body
        );
        self
    }

    /// Panics unless this is a 400 with `error` = `code`.
    pub fn assert_error(&self, code: &str) {
        assert_eq!(
            self.error(),
            Some(code),
            "expected error {code}, got {} {}",
            self.status,
            self.body
        );
        assert_eq!(self.status, StatusCode::BAD_REQUEST, "{}", self.body);
    }

    fn field(&self, name: &str) -> &str {
        self.assert_ok();
        self.body[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {}", self.body))
    }

    pub fn access_token(&self) -> &str {
        self.field("access_token")
    }

    pub fn id_token(&self) -> &str {
        self.field("id_token")
    }

    pub fn refresh_token(&self) -> &str {
        self.field("refresh_token")
    }
}

/// What `/userinfo` answered.
#[derive(Debug)]
pub struct UserinfoReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl UserinfoReply {
    pub(crate) async fn read(res: reqwest::Response) -> Self {
        UserinfoReply {
            status: res.status(),
            headers: res.headers().clone(),
            body: res.text().await.expect("read the /userinfo body"),
        }
    }

    /// Panics unless the token was refused as RFC 6750 says: 401 with a Bearer
    /// `invalid_token` challenge.
    pub fn assert_invalid_token(&self) {
        assert_eq!(
            self.status,
            StatusCode::UNAUTHORIZED,
            "userinfo accepted the token: {}",
            self.body
        );
        let challenge = self
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
            "WWW-Authenticate: {challenge:?}"
        );
    }
}

fn jwt_part(token: &str, index: usize) -> serde_json::Value {
    let part = token
        .split('.')
        .nth(index)
        .unwrap_or_else(|| panic!("not a JWT: {token}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .expect("JWT parts are base64url");
    serde_json::from_slice(&bytes).expect("JWT parts are JSON")
}

/// The JOSE header of a JWT, decoded without verification (for `kid` and `alg`).
pub fn jwt_header(token: &str) -> serde_json::Value {
    jwt_part(token, 0)
}

/// The claims of a JWT, decoded WITHOUT verification: only for claims a verifier does
/// not expose, on tokens that were verified.
pub fn jwt_claims(token: &str) -> serde_json::Value {
    jwt_part(token, 1)
}

/// A JWT's claims without those that differ at every login (times, nonces, ids of
/// the session and grant): what two logins of the same person must agree on.
pub fn jwt_stable_claims(token: &str) -> serde_json::Value {
    const PER_LOGIN: &[&str] = &[
        "iat",
        "exp",
        "nbf",
        "auth_time",
        "nonce",
        "jti",
        "sid",
        "at_hash",
        "gid",
    ];
    let mut claims = jwt_claims(token);
    if let Some(map) = claims.as_object_mut() {
        for name in PER_LOGIN {
            map.remove(*name);
        }
    }
    claims
}
