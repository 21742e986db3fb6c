//! The upstream's discovery document and signing keys, fetched with the provider's
//! bounded HTTP client and cached with `moka` (bounded, with a TTL). An ID token signed
//! with an unknown `kid` forces one JWKS refetch, at most once per short interval.

use crate::settings::OidcSettings;
use moka::future::Cache;
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::http::{HeaderValue, Method, Request, header};
use openidconnect::{AdditionalProviderMetadata, ProviderMetadata};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use switchboard_plugin_api::ProviderError;
use switchboard_upstream::{UpstreamHttp, check_upstream_url};
use url::Url;

/// Provider metadata fields beyond the core ones.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    /// RFC 9207: the upstream sends `iss` in authorization responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

/// The discovery document as parsed.
pub type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// A discovered upstream: its metadata with the JWKS set in, and when the keys were
/// fetched.
#[derive(Debug)]
pub struct Upstream {
    /// Metadata, with `jwks()` filled.
    pub metadata: Metadata,
    /// When the JWKS was fetched.
    pub jwks_fetched_at: Instant,
}

/// Fetches and caches one provider's upstream metadata and keys.
#[derive(Debug)]
pub struct Discovery {
    settings: Arc<OidcSettings>,
    http: UpstreamHttp,
    cache: Cache<String, Arc<Upstream>>,
    last_forced_refetch: Mutex<Option<Instant>>,
    dev_mode: bool,
}

impl Discovery {
    /// A cache for the upstream of `settings`.
    pub fn new(settings: Arc<OidcSettings>, http: UpstreamHttp, dev_mode: bool) -> Self {
        let cache = Cache::builder()
            .max_capacity(4)
            .time_to_live(settings.cache_ttl)
            .build();
        Discovery {
            settings,
            http,
            cache,
            last_forced_refetch: Mutex::new(None),
            dev_mode,
        }
    }

    /// The cached upstream, fetched when missing or expired. Failures are not cached.
    pub async fn upstream(&self) -> Result<Arc<Upstream>, ProviderError> {
        self.cache
            .try_get_with(self.settings.discovery_url.to_string(), self.fetch())
            .await
            .map_err(|e: Arc<ProviderError>| (*e).clone())
    }

    /// Refetches the JWKS after an unknown `kid`, unless one such refetch happened
    /// within the configured interval. Returns the refreshed upstream, or `None` when
    /// throttled.
    pub async fn refetch_keys(
        &self,
        current: &Upstream,
    ) -> Result<Option<Arc<Upstream>>, ProviderError> {
        let interval = self.settings.jwks_refetch_interval;
        {
            let mut last = self
                .last_forced_refetch
                .lock()
                .map_err(|_| ProviderError::protocol("JWKS refetch lock poisoned"))?;
            if last.is_some_and(|t| t.elapsed() < interval) {
                return Ok(None);
            }
            *last = Some(Instant::now());
        }
        let jwks = self.fetch_jwks(current.metadata.jwks_uri().url()).await?;
        let fresh = Arc::new(Upstream {
            metadata: current.metadata.clone().set_jwks(jwks),
            jwks_fetched_at: Instant::now(),
        });
        self.cache
            .insert(self.settings.discovery_url.to_string(), fresh.clone())
            .await;
        tracing::info!(provider = %self.settings.provider_id, "upstream signing keys refetched after an unknown key id");
        Ok(Some(fresh))
    }

    async fn get_json(&self, url: &Url, what: &str) -> Result<Vec<u8>, ProviderError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(url.as_str())
            .header(header::ACCEPT, HeaderValue::from_static("application/json"))
            .body(Vec::new())
            .map_err(|e| ProviderError::protocol(format!("{what}: {e}")))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| e.into_provider_error(what))?;
        if !response.status().is_success() {
            return Err(ProviderError::protocol(format!(
                "{what}: {url} answered HTTP {}",
                response.status().as_u16()
            )));
        }
        Ok(response.into_body())
    }

    async fn fetch_jwks(&self, url: &Url) -> Result<CoreJsonWebKeySet, ProviderError> {
        let body = self.get_json(url, "JWKS").await?;
        let jwks: CoreJsonWebKeySet = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::protocol(format!("JWKS at {url} is not a key set: {e}")))?;
        if jwks.keys().is_empty() {
            return Err(ProviderError::protocol(format!(
                "JWKS at {url} has no usable key"
            )));
        }
        Ok(jwks)
    }

    async fn fetch(&self) -> Result<Arc<Upstream>, ProviderError> {
        let url = &self.settings.discovery_url;
        let body = self.get_json(url, "discovery").await?;
        let metadata: Metadata = serde_json::from_slice(&body).map_err(|e| {
            ProviderError::protocol(format!("discovery document at {url} is invalid: {e}"))
        })?;
        self.settings
            .profile
            .accept_discovered_issuer(&self.settings.issuer, metadata.issuer().as_str())
            .map_err(ProviderError::protocol)?;
        let endpoints = [
            (
                "authorization_endpoint",
                Some(metadata.authorization_endpoint().as_str()),
            ),
            (
                "token_endpoint",
                metadata.token_endpoint().map(|u| u.as_str()),
            ),
            (
                "userinfo_endpoint",
                metadata.userinfo_endpoint().map(|u| u.as_str()),
            ),
            ("jwks_uri", Some(metadata.jwks_uri().as_str())),
        ];
        // An https issuer's endpoints are all https; loopback http only for a loopback
        // issuer (tests) or in development mode.
        let issuer_is_local = self.settings.discovery_url.scheme() == "http";
        for (name, value) in endpoints {
            if let Some(value) = value {
                check_upstream_url(name, value, self.dev_mode && issuer_is_local)
                    .map_err(|e| ProviderError::protocol(format!("discovery document: {e}")))?;
                if !issuer_is_local && !value.starts_with("https://") {
                    return Err(ProviderError::protocol(format!(
                        "discovery document: {name} must use https"
                    )));
                }
            }
        }
        if metadata.token_endpoint().is_none() {
            return Err(ProviderError::protocol(
                "discovery document has no token_endpoint",
            ));
        }
        let jwks = self.fetch_jwks(metadata.jwks_uri().url()).await?;
        tracing::debug!(provider = %self.settings.provider_id, issuer = %metadata.issuer().as_str(), "upstream discovered");
        Ok(Arc::new(Upstream {
            metadata: metadata.set_jwks(jwks),
            jwks_fetched_at: Instant::now(),
        }))
    }
}
