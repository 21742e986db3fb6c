//! Asking the broker about a token (RFC 7662): API keys, and access tokens on routes
//! where a revocation must count at once.

use crate::error::{FetchError, TokenError};
use crate::http;
use crate::issuer::{Issuer, Metadata};
use crate::principal::{Credential, Principal, scopes_of};
use aws_lc_rs::digest;
use moka::future::Cache;
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// A client secret: never printed (`Debug` shows `***`), zeroized on drop.
///
/// ```
/// use switchboard_client::ClientSecret;
/// let secret = ClientSecret::new("s3cret");
/// assert_eq!(format!("{secret:?}"), "***");
/// ```
#[derive(Clone)]
pub struct ClientSecret(Zeroizing<String>);

impl ClientSecret {
    /// Wraps a secret, for example one read from the environment.
    ///
    /// ```
    /// let secret = switchboard_client::ClientSecret::new(
    ///     std::env::var("API_CLIENT_SECRET").unwrap_or_default(),
    /// );
    /// # let _ = secret;
    /// ```
    pub fn new(secret: impl Into<String>) -> Self {
        ClientSecret(Zeroizing::new(secret.into()))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What introspection answered, as the client keeps it.
#[derive(Debug, Deserialize)]
struct Answer {
    active: bool,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    sub: Option<String>,
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
    exp: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
}

/// An active token's caller, or `None` for an inactive one.
type Outcome = Option<Arc<Principal>>;

/// Introspects tokens and API keys at the broker's `/introspect` as a confidential
/// client, caching each answer (active or not) for a short, configured time keyed by
/// a SHA-256 of the token (the token itself is never kept).
///
/// The cache time is the bound on how late a revocation is seen: with the default
/// 5 s, a revoked key or token stops working at most 5 s after the revocation.
///
/// ```no_run
/// use switchboard_client::{ClientSecret, Introspector, Issuer};
/// # async fn run(key: &str) -> Result<(), Box<dyn std::error::Error>> {
/// let issuer = Issuer::new("https://login.example.com")?;
/// let introspector = Introspector::new(issuer, "reports-api", ClientSecret::new("s3cret"));
/// let caller = introspector.api_key(key).await?;
/// println!("{} may {:?}", caller.sub, caller.permissions);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Introspector {
    issuer: Issuer,
    client_id: String,
    secret: ClientSecret,
    cache_for: Duration,
    cache: Cache<[u8; 32], Outcome>,
}

impl fmt::Debug for Introspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspector")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("cache_for", &self.cache_for)
            .finish_non_exhaustive()
    }
}

impl Introspector {
    /// Introspects as the confidential client `client_id`; answers are cached 5 s.
    ///
    /// ```
    /// use switchboard_client::{ClientSecret, Introspector, Issuer};
    /// let issuer = Issuer::new("https://login.example.com")?;
    /// let introspector = Introspector::new(issuer, "reports-api", ClientSecret::new("s3cret"));
    /// # let _ = introspector;
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn new(issuer: Issuer, client_id: impl Into<String>, secret: ClientSecret) -> Self {
        Self::build(issuer, client_id.into(), secret, Duration::from_secs(5))
    }

    /// How long an answer is kept (default 5 s; zero asks the broker every time).
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard_client::{ClientSecret, Introspector, Issuer};
    /// let issuer = Issuer::new("https://login.example.com")?;
    /// let strict = Introspector::new(issuer, "payments-api", ClientSecret::new("s3cret"))
    ///     .cache_for(Duration::ZERO);
    /// # let _ = strict;
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn cache_for(self, cache_for: Duration) -> Self {
        Self::build(self.issuer, self.client_id, self.secret, cache_for)
    }

    fn build(issuer: Issuer, client_id: String, secret: ClientSecret, cache_for: Duration) -> Self {
        let cache = Cache::builder()
            .max_capacity(10_000)
            .time_to_live(cache_for.max(Duration::from_millis(1)))
            .build();
        Introspector {
            issuer,
            client_id,
            secret,
            cache_for,
            cache,
        }
    }

    /// The caller of an API key (`sbk_…`): active, and introspected as an API key.
    ///
    /// ```no_run
    /// use switchboard_client::{ClientSecret, Introspector, Issuer, TokenError};
    /// # async fn run(key: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = Issuer::new("https://login.example.com")?;
    /// let introspector = Introspector::new(issuer, "reports-api", ClientSecret::new("s3cret"));
    /// match introspector.api_key(key).await {
    ///     Ok(caller) => println!("key of {}", caller.sub),
    ///     Err(TokenError::Inactive) => println!("revoked, expired or not an API key"),
    ///     Err(e) => return Err(e.into()),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn api_key(&self, key: &str) -> Result<Principal, TokenError> {
        let principal = self.active(key).await?;
        if principal.credential != Credential::ApiKey {
            return Err(TokenError::Inactive);
        }
        Ok(principal)
    }

    /// Whether the broker still holds `token` live (not revoked, not expired, its
    /// person still active): the caller as introspection describes it.
    ///
    /// ```no_run
    /// use switchboard_client::{ClientSecret, Introspector, Issuer};
    /// # async fn run(token: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = Issuer::new("https://login.example.com")?;
    /// let introspector = Introspector::new(issuer, "payments-api", ClientSecret::new("s3cret"));
    /// let caller = introspector.active(token).await?;
    /// assert!(caller.allows("payments:send"));
    /// # Ok(()) }
    /// ```
    pub async fn active(&self, token: &str) -> Result<Principal, TokenError> {
        let digest = digest::digest(&digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        let outcome = if self.cache_for.is_zero() {
            self.ask(token).await?
        } else {
            match self.cache.get(&key).await {
                Some(outcome) => outcome,
                None => {
                    let outcome = self.ask(token).await?;
                    self.cache.insert(key, outcome.clone()).await;
                    outcome
                }
            }
        };
        let principal = outcome.ok_or(TokenError::Inactive)?;
        // A cached answer never outlives the token.
        if principal.expires_at.is_some_and(|exp| exp <= unix_now()) {
            return Err(TokenError::Inactive);
        }
        Ok((*principal).clone())
    }

    async fn ask(&self, token: &str) -> Result<Outcome, FetchError> {
        let metadata = self.issuer.metadata().await?;
        let url = Metadata::endpoint(&metadata.introspection_endpoint, "introspection_endpoint")?;
        let request = self
            .issuer
            .http()
            .post(url)
            .basic_auth(&self.client_id, Some(self.secret.expose()))
            .form(&[("token", token)]);
        let (status, body) = http::send(url, request).await?;
        if status != 200 {
            return Err(FetchError::Status {
                url: url.to_string(),
                status,
            });
        }
        let answer: Answer = http::parse_json(url, &body)?;
        Ok(principal_of(answer).map(Arc::new))
    }
}

fn principal_of(answer: Answer) -> Option<Principal> {
    if !answer.active {
        return None;
    }
    let credential = match answer.token_type.as_deref() {
        Some("api_key") => Credential::ApiKey,
        _ => Credential::AccessToken,
    };
    Some(Principal {
        sub: answer.sub?,
        client_id: answer.client_id,
        scopes: scopes_of(answer.scope.as_deref()),
        roles: answer.roles.unwrap_or_default(),
        permissions: answer.permissions.unwrap_or_default(),
        groups: answer.groups.unwrap_or_default(),
        auth_time: answer.auth_time,
        amr: Vec::new(),
        expires_at: answer.exp,
        token_id: answer.jti,
        credential,
    })
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::fake_issuer::FakeIssuer;
    use serde_json::json;
    use std::sync::atomic::Ordering;

    async fn introspector(cache_for: Duration) -> (FakeIssuer, Introspector) {
        let fake = FakeIssuer::start(&[]).await;
        let issuer = Issuer::new(&fake.url).unwrap();
        let i = Introspector::new(issuer, "api", ClientSecret::new("s")).cache_for(cache_for);
        (fake, i)
    }

    fn key_answer() -> serde_json::Value {
        json!({"active": true, "token_type": "api_key", "sub": "user-bob",
               "scope": "reports:read", "permissions": ["reports:read"],
               "exp": unix_now() + 3600, "jti": "key-1"})
    }

    #[tokio::test]
    async fn an_api_key_is_its_persons_principal_with_the_keys_scopes() {
        let (fake, i) = introspector(Duration::from_secs(5)).await;
        *fake.introspection.lock().unwrap() = key_answer();
        let p = i.api_key("sbk_x").await.unwrap();
        assert_eq!(p.sub, "user-bob");
        assert_eq!(p.credential, Credential::ApiKey);
        assert!(p.allows("reports:read") && !p.allows("reports:write"));
        // An access token is not an API key.
        *fake.introspection.lock().unwrap() =
            json!({"active": true, "sub": "user-bob", "token_type": "Bearer"});
        assert!(matches!(
            i.api_key("eyJ.other").await,
            Err(TokenError::Inactive)
        ));
    }

    #[tokio::test]
    async fn answers_are_cached_for_the_bound_and_no_longer() {
        let (fake, i) = introspector(Duration::from_millis(300)).await;
        *fake.introspection.lock().unwrap() = key_answer();
        i.api_key("sbk_x").await.unwrap();
        i.api_key("sbk_x").await.unwrap();
        assert_eq!(fake.introspections.load(Ordering::SeqCst), 1);
        // Revoked at the broker: still cached within the bound, refused after it.
        *fake.introspection.lock().unwrap() = json!({"active": false});
        i.api_key("sbk_x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(matches!(
            i.api_key("sbk_x").await,
            Err(TokenError::Inactive)
        ));
        assert_eq!(fake.introspections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_cached_answer_never_outlives_the_token_and_zero_means_always_ask() {
        let (fake, i) = introspector(Duration::from_secs(60)).await;
        let mut answer = key_answer();
        answer["exp"] = json!(unix_now() - 1);
        *fake.introspection.lock().unwrap() = answer;
        assert!(matches!(
            i.api_key("sbk_old").await,
            Err(TokenError::Inactive)
        ));
        let (fake, i) = introspector(Duration::ZERO).await;
        *fake.introspection.lock().unwrap() = key_answer();
        i.api_key("sbk_x").await.unwrap();
        i.api_key("sbk_x").await.unwrap();
        assert_eq!(fake.introspections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_unavailable_not_inactive() {
        let issuer = Issuer::new("http://127.0.0.1:9").unwrap();
        let i = Introspector::new(issuer, "api", ClientSecret::new("s"));
        let err = i.api_key("sbk_x").await.unwrap_err();
        assert!(err.is_unavailable(), "{err}");
    }

    #[test]
    fn the_secret_never_prints() {
        assert_eq!(format!("{:?}", ClientSecret::new("hunter2")), "***");
    }
}
