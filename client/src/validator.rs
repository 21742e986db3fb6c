//! Local validation of the broker's JWT access tokens (RFC 9068).

use crate::error::TokenError;
use crate::issuer::Issuer;
use crate::principal::{Credential, Principal, scopes_of};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde::Deserialize;
use std::time::Duration;

/// The claims of an access token the principal is built from.
#[derive(Debug, Deserialize)]
struct AccessClaims {
    sub: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    groups: Option<Vec<String>>,
    #[serde(default)]
    auth_time: Option<i64>,
    #[serde(default)]
    amr: Option<Vec<String>>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
}

/// Checks access tokens for one API: signature by a key of the issuer's JWKS (with
/// the algorithm of that key, never the token's choice), `typ: at+jwt`, `iss`, `aud`
/// containing the API's audience, `exp` and `nbf` with a small leeway.
///
/// Tokens default to `aud = issuer` at the broker: give your API its own `audience`
/// (the client's `audience` or one of its `resources` in the broker's config) so that
/// no other app's token is accepted.
///
/// ```no_run
/// use switchboard_client::{Issuer, Validator};
/// # async fn run(token: &str) -> Result<(), Box<dyn std::error::Error>> {
/// let issuer = Issuer::new("https://login.example.com")?;
/// let validator = Validator::new(issuer, "https://api.example.com");
/// let caller = validator.validate(token).await?;
/// if caller.allows("invoices:approve") { /* ... */ }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Validator {
    issuer: Issuer,
    audience: String,
    leeway: Duration,
}

impl Validator {
    /// A validator for tokens whose `aud` contains `audience`; leeway 30 s. Nothing
    /// is fetched until the first token is validated.
    ///
    /// ```
    /// use switchboard_client::{Issuer, Validator};
    /// let validator = Validator::new(Issuer::new("https://login.example.com")?, "reports-api");
    /// assert_eq!(validator.audience(), "reports-api");
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn new(issuer: Issuer, audience: impl Into<String>) -> Self {
        Validator {
            issuer,
            audience: audience.into(),
            leeway: Duration::from_secs(30),
        }
    }

    /// The clock skew tolerated on `exp` and `nbf` (default 30 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard_client::{Issuer, Validator};
    /// let validator = Validator::new(Issuer::new("https://login.example.com")?, "reports-api")
    ///     .leeway(Duration::from_secs(5));
    /// # let _ = validator;
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The issuer tokens are checked against.
    ///
    /// ```
    /// use switchboard_client::{Issuer, Validator};
    /// let validator = Validator::new(Issuer::new("https://login.example.com")?, "reports-api");
    /// assert_eq!(validator.issuer().url(), "https://login.example.com");
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// The audience an accepted token must name.
    ///
    /// ```
    /// use switchboard_client::{Issuer, Validator};
    /// let validator = Validator::new(Issuer::new("https://login.example.com")?, "reports-api");
    /// assert_eq!(validator.audience(), "reports-api");
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Validates `token` and returns its caller. A token that is not a valid access
    /// token for this audience is an error that says why ([`TokenError`]); the
    /// broker being unreachable is told apart by [`TokenError::is_unavailable`].
    ///
    /// ```no_run
    /// use switchboard_client::{Issuer, Validator};
    /// # async fn run(token: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// let validator = Validator::new(Issuer::new("https://login.example.com")?, "reports-api");
    /// match validator.validate(token).await {
    ///     Ok(caller) => println!("{} calls", caller.sub),
    ///     Err(e) if e.is_unavailable() => println!("try again later: {e}"),
    ///     Err(e) => println!("401: {e}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn validate(&self, token: &str) -> Result<Principal, TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        let typ = header
            .typ
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if typ != "at+jwt" && typ != "application/at+jwt" {
            return Err(TokenError::WrongType);
        }
        let key = self.issuer.key(header.kid.as_deref()).await?;
        if header.alg != key.alg {
            return Err(TokenError::AlgorithmMismatch);
        }
        let mut validation = Validation::new(key.alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[self.issuer.url()]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = decode::<AccessClaims>(token, &key.key, &validation)
            .map_err(|e| token_error(e.kind()))?
            .claims;
        let client_id = claims
            .client_id
            .filter(|c| !c.is_empty())
            .ok_or(TokenError::MissingClaim("client_id"))?;
        Ok(Principal {
            sub: claims.sub,
            client_id: Some(client_id),
            scopes: scopes_of(claims.scope.as_deref()),
            roles: claims.roles.unwrap_or_default(),
            permissions: claims.permissions.unwrap_or_default(),
            groups: claims.groups.unwrap_or_default(),
            auth_time: claims.auth_time,
            amr: claims.amr.unwrap_or_default(),
            expires_at: claims.exp,
            token_id: claims.jti,
            credential: Credential::AccessToken,
        })
    }
}

fn token_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidAlgorithm => TokenError::AlgorithmMismatch,
        ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(match claim.as_str() {
            "exp" => "exp",
            "iss" => "iss",
            "aud" => "aud",
            "sub" => "sub",
            _ => "a registered claim",
        }),
        _ => TokenError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::fake_issuer::{FakeIssuer, SigningKey};
    use crate::issuer::IssuerOptions;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;
    use std::sync::atomic::Ordering;

    const API: &str = "https://api.example";

    fn now() -> i64 {
        crate::introspection::unix_now()
    }

    fn claims(iss: &str) -> serde_json::Value {
        json!({
            "iss": iss, "sub": "user-ann", "aud": API, "client_id": "web-app",
            "scope": "openid permissions", "iat": now(), "exp": now() + 600, "jti": "j1",
            "permissions": ["invoices:*"], "roles": ["approver"], "groups": ["local/finance"],
            "auth_time": now() - 5,
        })
    }

    fn validator(issuer: &FakeIssuer, refetch: Duration) -> Validator {
        let options = IssuerOptions {
            refetch_interval: refetch,
            ..IssuerOptions::default()
        };
        let issuer =
            Issuer::with(&issuer.url, crate::http::default_client().unwrap(), options).unwrap();
        Validator::new(issuer, API).leeway(Duration::from_secs(5))
    }

    #[tokio::test]
    async fn a_good_token_gives_its_principal() {
        let key = SigningKey::p256("k1");
        let issuer = FakeIssuer::start(&[&key]).await;
        let principal = validator(&issuer, Duration::from_secs(5))
            .validate(&key.sign("at+jwt", &claims(&issuer.url)))
            .await
            .unwrap();
        assert_eq!(principal.sub, "user-ann");
        assert_eq!(principal.client_id.as_deref(), Some("web-app"));
        assert_eq!(principal.scopes, ["openid", "permissions"]);
        assert!(principal.allows("invoices:approve"));
        assert!(!principal.allows("reports:read"));
        assert_eq!(principal.groups, ["local/finance"]);
        assert_eq!(principal.token_id.as_deref(), Some("j1"));
    }

    #[tokio::test]
    async fn tokens_for_another_audience_issuer_type_or_time_are_refused() {
        let key = SigningKey::p256("k1");
        let issuer = FakeIssuer::start(&[&key]).await;
        let v = validator(&issuer, Duration::from_secs(5));
        let with = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut c = claims(&issuer.url);
            change(&mut c);
            key.sign("at+jwt", &c)
        };
        let cases: Vec<(String, &str)> = vec![
            (
                with(&|c| c["aud"] = json!(issuer.url)),
                "the issuer as audience",
            ),
            (
                with(&|c| c["aud"] = json!("https://other.example")),
                "another API",
            ),
            (
                with(&|c| c["iss"] = json!("https://evil.example")),
                "another issuer",
            ),
            (with(&|c| c["exp"] = json!(now() - 60)), "expired"),
            (with(&|c| c["nbf"] = json!(now() + 60)), "not yet valid"),
            (
                with(&|c| c.as_object_mut().unwrap().retain(|k, _| k != "exp")),
                "no exp",
            ),
            (
                with(&|c| c.as_object_mut().unwrap().retain(|k, _| k != "client_id")),
                "no client_id",
            ),
            (key.sign("JWT", &claims(&issuer.url)), "an ID token's typ"),
        ];
        for (token, what) in cases {
            assert!(v.validate(&token).await.is_err(), "accepted: {what}");
        }
        // aud as an array naming the API is fine; within the leeway too.
        let ok = with(&|c| {
            c["aud"] = json!(["https://other.example", API]);
            c["exp"] = json!(now() - 2);
        });
        v.validate(&ok).await.unwrap();
    }

    #[tokio::test]
    async fn the_algorithm_comes_from_the_key_never_from_the_token() {
        let key = SigningKey::p256("k1");
        let issuer = FakeIssuer::start(&[&key]).await;
        let v = validator(&issuer, Duration::from_secs(5));
        let good = key.sign("at+jwt", &claims(&issuer.url));
        // The same claims as HS256 with the public key's text as the shared secret.
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        header.kid = Some("k1".into());
        let secret = key.jwk.to_string();
        let forged = jsonwebtoken::encode(
            &header,
            &claims(&issuer.url),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        assert!(matches!(
            v.validate(&forged).await,
            Err(TokenError::AlgorithmMismatch)
        ));
        // alg "none": no signature at all.
        let (_, rest) = good.split_once('.').unwrap();
        let payload = rest.split('.').next().unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#);
        let none = format!("{none_header}.{payload}.");
        assert!(v.validate(&none).await.is_err());
        // A signature by another key with the right kid.
        let impostor = SigningKey::p256("k1");
        let faked = impostor.sign("at+jwt", &claims(&issuer.url));
        assert!(matches!(
            v.validate(&faked).await,
            Err(TokenError::BadSignature)
        ));
        v.validate(&good).await.unwrap();
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_the_keys_at_most_once_per_interval() {
        let old = SigningKey::p256("old");
        let issuer = FakeIssuer::start(&[&old]).await;
        let v = validator(&issuer, Duration::from_millis(400));
        v.validate(&old.sign("at+jwt", &claims(&issuer.url)))
            .await
            .unwrap();
        assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 1);
        // Made-up kids: at most one fetch per interval, however many tokens.
        let stranger = SigningKey::p256("made-up");
        for _ in 0..20 {
            let token = stranger.sign("at+jwt", &claims(&issuer.url));
            assert!(matches!(
                v.validate(&token).await,
                Err(TokenError::UnknownKey)
            ));
        }
        assert_eq!(
            issuer.jwks_fetches.load(Ordering::SeqCst),
            1,
            "within the interval"
        );
        // A rotated-in key is found once the interval has passed.
        let new = SigningKey::p256("new");
        *issuer.jwks.lock().unwrap() = json!({"keys": [old.jwk, new.jwk]});
        tokio::time::sleep(Duration::from_millis(450)).await;
        v.validate(&new.sign("at+jwt", &claims(&issuer.url)))
            .await
            .unwrap();
        assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 2);
        v.validate(&old.sign("at+jwt", &claims(&issuer.url)))
            .await
            .unwrap();
        assert_eq!(
            issuer.jwks_fetches.load(Ordering::SeqCst),
            2,
            "known keys need no fetch"
        );
    }

    #[test]
    fn symmetric_and_encryption_keys_are_never_trusted() {
        let set = crate::issuer::KeySet::from_jwks(&json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
            {"kty": "EC", "crv": "P-256", "use": "enc", "kid": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "alg": "RS256", "kid": "mismatch",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "good",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        ]}));
        assert_eq!(set.len(), 1);
    }
}
