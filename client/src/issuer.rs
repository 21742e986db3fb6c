//! One issuer: its discovery document and its signing keys, fetched once and cached.

use crate::error::{FetchError, TokenError};
use crate::http;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use moka::future::Cache;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the client reads of the issuer's discovery document
/// (`/.well-known/openid-configuration`).
///
/// ```no_run
/// # async fn run() -> Result<(), switchboard_client::FetchError> {
/// let issuer = switchboard_client::Issuer::new("https://login.example.com")?;
/// let metadata = issuer.metadata().await?;
/// assert_eq!(metadata.issuer, "https://login.example.com");
/// println!("keys at {}", metadata.jwks_uri);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Metadata {
    /// The issuer, exactly as configured (checked on fetch).
    pub issuer: String,
    /// Where the signing keys are published.
    pub jwks_uri: String,
    /// `/authorize`.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// `/token`.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// `/introspect` (RFC 7662).
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// `/revoke` (RFC 7009).
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// `/logout` (RP-Initiated Logout).
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// `/userinfo`.
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    /// `/device_authorization` (RFC 8628), when the broker offers it.
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    /// Whether authorization responses carry `iss` (RFC 9207): then one without it
    /// is refused.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

impl Metadata {
    /// The endpoint, or [`FetchError::MissingEndpoint`] naming it.
    pub(crate) fn endpoint<'a>(
        field: &'a Option<String>,
        name: &'static str,
    ) -> Result<&'a str, FetchError> {
        field.as_deref().ok_or(FetchError::MissingEndpoint(name))
    }
}

/// A verification key of the issuer, with the one algorithm it is used with.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// The issuer's keys by `kid`.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: HashMap<String, Arc<VerifyKey>>,
    /// Keys without a `kid`, usable only when the token names none and there is one.
    unnamed: Vec<Arc<VerifyKey>>,
}

impl KeySet {
    /// Reads a JWKS: every signature key of an asymmetric type; keys that are not
    /// (encryption keys, symmetric `oct` keys, unknown types, a stated algorithm that
    /// does not fit the key) are left out, never trusted.
    pub(crate) fn from_jwks(jwks: &serde_json::Value) -> KeySet {
        let mut set = KeySet::default();
        let Some(keys) = jwks.get("keys").and_then(|k| k.as_array()) else {
            return set;
        };
        for raw in keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
                continue;
            };
            let Some(key) = verify_key(&jwk) else {
                continue;
            };
            let key = Arc::new(key);
            match jwk.common.key_id {
                Some(kid) => {
                    set.keys.insert(kid, key);
                }
                None => set.unnamed.push(key),
            }
        }
        set
    }

    fn find(&self, kid: Option<&str>) -> Option<Arc<VerifyKey>> {
        match kid {
            Some(kid) => self.keys.get(kid).cloned(),
            None if self.keys.len() + self.unnamed.len() == 1 => {
                self.keys.values().next().or(self.unnamed.first()).cloned()
            }
            None => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len() + self.unnamed.len()
    }
}

/// The algorithm a key is used with: the JWK's `alg`, or where it states none, the
/// one algorithm its type allows (RSA keys without `alg` are taken as RS256). Never
/// the token's choice.
fn verify_key(jwk: &Jwk) -> Option<VerifyKey> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => Algorithm::EdDSA,
            _ => return None,
        },
        // A shared secret in a published key set is never a verification key.
        _ => return None,
    };
    let alg = match &jwk.common.key_algorithm {
        None => implied,
        Some(KeyAlgorithm::HS256 | KeyAlgorithm::HS384 | KeyAlgorithm::HS512) => return None,
        Some(stated) => Algorithm::from_str(&stated.to_string()).ok()?,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    (key.family() == alg.family() && implied.family() == alg.family())
        .then_some(VerifyKey { alg, key })
}

/// How an [`Issuer`] caches and refetches.
///
/// ```
/// use std::time::Duration;
/// use switchboard_client::IssuerOptions;
///
/// let options = IssuerOptions {
///     refetch_interval: Duration::from_secs(10),
///     ..IssuerOptions::default()
/// };
/// assert_eq!(options.jwks_lifetime, Duration::from_secs(3600));
/// // Then: `Issuer::with("https://login.example.com", http_client, options)`.
/// ```
#[derive(Debug, Clone)]
pub struct IssuerOptions {
    /// How long the discovery document is kept (default 1 hour).
    pub metadata_lifetime: Duration,
    /// How long the key set is kept before it is fetched again (default 1 hour). A
    /// token naming an unknown key refetches sooner, see `refetch_interval`.
    pub jwks_lifetime: Duration,
    /// The least time between two fetches of the key set caused by unknown `kid`s
    /// (default 5 s): a flood of tokens with made-up `kid`s costs the broker one
    /// request per interval, not one per token.
    pub refetch_interval: Duration,
}

impl Default for IssuerOptions {
    fn default() -> Self {
        IssuerOptions {
            metadata_lifetime: Duration::from_secs(3600),
            jwks_lifetime: Duration::from_secs(3600),
            refetch_interval: Duration::from_secs(5),
        }
    }
}

/// A Switchboard issuer: its discovery document and signing keys, fetched on first
/// use and cached. Cheap to clone; share one per issuer.
///
/// ```no_run
/// # async fn run() -> Result<(), switchboard_client::FetchError> {
/// let issuer = switchboard_client::Issuer::new("https://login.example.com")?;
/// let metadata = issuer.metadata().await?;
/// println!("token endpoint: {:?}", metadata.token_endpoint);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Issuer {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    http: reqwest::Client,
    options: IssuerOptions,
    metadata: Cache<(), Arc<Metadata>>,
    keys: Cache<(), Arc<KeySet>>,
    /// When the key set was last fetched.
    last_fetch: Mutex<Option<Instant>>,
    /// Serialises the decisions to refetch on an unknown `kid`.
    refetch: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("url", &self.inner.url)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// The issuer at `url` (exactly as the broker's `issuer` is configured), with the
    /// default HTTP client and options. Nothing is fetched yet.
    ///
    /// ```
    /// use switchboard_client::Issuer;
    /// let issuer = Issuer::new("https://login.example.com")?;
    /// assert_eq!(issuer.url(), "https://login.example.com");
    /// assert!(Issuer::new("ftp://login.example.com").is_err());
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn new(url: &str) -> Result<Self, FetchError> {
        Self::with(url, http::default_client()?, IssuerOptions::default())
    }

    /// The issuer with your own HTTP client (set its timeouts; do not let it follow
    /// redirects) and caching options. A client built by hand with rustls needs a
    /// crypto provider installed by the app (`Issuer::new` brings its own).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use switchboard_client::{Issuer, IssuerOptions};
    /// let http = reqwest::Client::builder()
    ///     .timeout(Duration::from_secs(5))
    ///     .redirect(reqwest::redirect::Policy::none())
    ///     .build()?;
    /// let issuer = Issuer::with("https://login.example.com", http, IssuerOptions::default())?;
    /// # let _ = issuer;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with(
        url: &str,
        http: reqwest::Client,
        options: IssuerOptions,
    ) -> Result<Self, FetchError> {
        let parsed = url::Url::parse(url).map_err(|e| FetchError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(FetchError::BadUrl {
                url: url.to_string(),
                reason: "an issuer is an http(s) URL".into(),
            });
        }
        let metadata = Cache::builder()
            .max_capacity(1)
            .time_to_live(options.metadata_lifetime)
            .build();
        let keys = Cache::builder()
            .max_capacity(1)
            .time_to_live(options.jwks_lifetime)
            .build();
        Ok(Issuer {
            inner: Arc::new(Inner {
                url: url.to_string(),
                http,
                options,
                metadata,
                keys,
                last_fetch: Mutex::new(None),
                refetch: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The issuer URL, exactly as given (tokens' `iss` must equal it).
    ///
    /// ```
    /// let issuer = switchboard_client::Issuer::new("https://login.example.com/")?;
    /// assert_eq!(issuer.url(), "https://login.example.com/");
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The HTTP client used toward the issuer.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = switchboard_client::Issuer::new("https://login.example.com")?;
    /// let status = issuer.http().get(issuer.url()).send().await?.status();
    /// # let _ = status;
    /// # Ok(()) }
    /// ```
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The discovery document, fetched on first use and cached; concurrent callers
    /// share one fetch. Its `issuer` must be this issuer, exactly.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), switchboard_client::FetchError> {
    /// let issuer = switchboard_client::Issuer::new("https://login.example.com")?;
    /// let metadata = issuer.metadata().await?;
    /// println!("authorize at {:?}", metadata.authorization_endpoint);
    /// # Ok(()) }
    /// ```
    pub async fn metadata(&self) -> Result<Arc<Metadata>, FetchError> {
        self.inner
            .metadata
            .try_get_with((), self.fetch_metadata())
            .await
            .map_err(|e| (*e).clone())
    }

    async fn fetch_metadata(&self) -> Result<Arc<Metadata>, FetchError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.inner.url.trim_end_matches('/')
        );
        let metadata: Metadata = http::get_json(&self.inner.http, &url).await?;
        if metadata.issuer != self.inner.url {
            return Err(FetchError::IssuerMismatch {
                expected: self.inner.url.clone(),
                found: metadata.issuer,
            });
        }
        Ok(Arc::new(metadata))
    }

    async fn key_set(&self) -> Result<Arc<KeySet>, FetchError> {
        self.inner
            .keys
            .try_get_with((), self.fetch_keys())
            .await
            .map_err(|e| (*e).clone())
    }

    async fn fetch_keys(&self) -> Result<Arc<KeySet>, FetchError> {
        let metadata = self.metadata().await?;
        if let Ok(mut last) = self.inner.last_fetch.lock() {
            *last = Some(Instant::now());
        }
        let jwks: serde_json::Value = http::get_json(&self.inner.http, &metadata.jwks_uri).await?;
        let set = KeySet::from_jwks(&jwks);
        tracing::debug!(keys = set.len(), "fetched the issuer's signing keys");
        Ok(Arc::new(set))
    }

    /// The key a token names. An unknown `kid` refetches the key set, unless it was
    /// fetched less than `refetch_interval` ago.
    pub(crate) async fn key(&self, kid: Option<&str>) -> Result<Arc<VerifyKey>, TokenError> {
        if let Some(key) = self.key_set().await?.find(kid) {
            return Ok(key);
        }
        let _turn = self.inner.refetch.lock().await;
        // Another caller may have refetched while this one waited.
        if let Some(key) = self.key_set().await?.find(kid) {
            return Ok(key);
        }
        let recent = self
            .inner
            .last_fetch
            .lock()
            .ok()
            .and_then(|last| *last)
            .is_some_and(|t| t.elapsed() < self.inner.options.refetch_interval);
        if recent {
            return Err(TokenError::UnknownKey);
        }
        self.inner.keys.invalidate(&()).await;
        self.key_set()
            .await?
            .find(kid)
            .ok_or(TokenError::UnknownKey)
    }
}
