//! Prometheus metrics, served at `/metrics` (on the admin listener when one is set):
//! requests by route and status with latency histograms, logins by provider and
//! outcome, token-endpoint answers by grant and result, provider calls by provider,
//! step and outcome with their latency, store calls' latency by operation, and cache
//! lookups by cache and result.
//!
//! Label values come only from bounded sets — route templates (never raw paths),
//! configured provider ids, fixed outcome and grant names — so no caller can grow the
//! series without bound.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

/// The media type of the text exposition format `render` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route template (`/admin/api/v1/users/{id}`), or `unmatched`.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    provider: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    grant_type: String,
    /// `issued`, or the OAuth error code.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderStepLabels {
    provider: String,
    step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderCallLabels {
    provider: String,
    step: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignedLabels {
    kind: &'static str,
    alg: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
    result: &'static str,
}

/// How a call to a provider (built in or a plugin) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderCallOutcome {
    Answered,
    /// The provider answered with an error (a refusal counts here too).
    Failed,
    TimedOut,
    /// Refused before calling: too many calls in flight.
    Busy,
}

impl ProviderCallOutcome {
    fn label(self) -> &'static str {
        match self {
            ProviderCallOutcome::Answered => "answered",
            ProviderCallOutcome::Failed => "failed",
            ProviderCallOutcome::TimedOut => "timed_out",
            ProviderCallOutcome::Busy => "busy",
        }
    }
}

/// How a login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Success,
    InvalidCredentials,
    Throttled,
    Disabled,
    RegistrationClosed,
    /// The provider failed or refused for another reason.
    Failed,
}

impl LoginOutcome {
    fn label(self) -> &'static str {
        match self {
            LoginOutcome::Success => "success",
            LoginOutcome::InvalidCredentials => "invalid_credentials",
            LoginOutcome::Throttled => "throttled",
            LoginOutcome::Disabled => "disabled",
            LoginOutcome::RegistrationClosed => "registration_closed",
            LoginOutcome::Failed => "failed",
        }
    }
}

/// The grant types the token endpoint knows; anything else counts as `other`.
const GRANT_TYPES: [&str; 5] = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:device_code",
    "urn:ietf:params:oauth:grant-type:token-exchange",
];

/// The methods a route may be called with; anything else counts as `other`.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

type LatencyHistogram = fn() -> Histogram;

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 8 s: a cached answer to a slow upstream login.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

fn store_histogram() -> Histogram {
    // 50 µs (a primary-key read on SQLite) to about 1.6 s (a stalled database).
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, LatencyHistogram>,
    logins: Family<LoginLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    provider_calls: Family<ProviderCallLabels, Counter>,
    provider_latency: Family<ProviderStepLabels, Histogram, LatencyHistogram>,
    store_latency: Family<StoreLabels, Histogram, LatencyHistogram>,
    cache_lookups: Family<CacheLabels, Counter>,
    tokens_signed: Family<SignedLabels, Counter>,
    /// The request series already resolved, by route: a request counts on handles it
    /// finds here instead of hashing its labels into both families. Bounded as the
    /// labels are (routes, methods, statuses).
    request_handles: RwLock<HashMap<String, RouteHandles>>,
}

/// A route's latency histogram and its request counters by method and status (a few).
#[derive(Debug)]
struct RouteHandles {
    latency: Histogram,
    requests: Vec<(&'static str, u16, Counter)>,
}

impl RouteHandles {
    fn counter(&self, method: &str, status: u16) -> Option<&Counter> {
        self.requests
            .iter()
            .find(|(m, s, _)| *s == status && *m == method)
            .map(|(_, _, counter)| counter)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, LatencyHistogram>::new_with_constructor(
            latency_histogram,
        );
        let logins = Family::<LoginLabels, Counter>::default();
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            latency.clone(),
        );
        registry.register(
            "logins",
            "Logins finished, by provider and outcome",
            logins.clone(),
        );
        registry.register(
            "token_requests",
            "Token endpoint answers, by grant type and result (issued or the OAuth error)",
            tokens.clone(),
        );
        let provider_calls = Family::<ProviderCallLabels, Counter>::default();
        let provider_latency =
            Family::<ProviderStepLabels, Histogram, LatencyHistogram>::new_with_constructor(
                latency_histogram,
            );
        let store_latency =
            Family::<StoreLabels, Histogram, LatencyHistogram>::new_with_constructor(
                store_histogram,
            );
        let cache_lookups = Family::<CacheLabels, Counter>::default();
        let tokens_signed = Family::<SignedLabels, Counter>::default();
        registry.register(
            "tokens_signed",
            "Tokens signed, by kind (access_token, id_token) and algorithm",
            tokens_signed.clone(),
        );
        registry.register(
            "provider_calls",
            "Calls to identity providers (built in or plugins), by provider, step and outcome",
            provider_calls.clone(),
        );
        registry.register(
            "provider_call_duration_seconds",
            "Time an identity provider took to answer, by provider and step",
            provider_latency.clone(),
        );
        registry.register(
            "store_call_duration_seconds",
            "Time a store call took, by operation",
            store_latency.clone(),
        );
        registry.register(
            "cache_lookups",
            "Cache lookups, by cache and result (hit or miss)",
            cache_lookups.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            logins,
            tokens,
            provider_calls,
            provider_latency,
            store_latency,
            cache_lookups,
            tokens_signed,
            request_handles: RwLock::default(),
        }
    }

    /// One answered request. `route` is the matched route template, if any.
    pub fn observe_request(
        &self,
        method: &str,
        route: Option<&str>,
        status: u16,
        elapsed: Duration,
    ) {
        let method = METHODS
            .iter()
            .find(|m| **m == method)
            .map_or("other", |m| m);
        let route = route.unwrap_or("unmatched");
        let seconds = elapsed.as_secs_f64();
        {
            let handles = self
                .request_handles
                .read()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(route) = handles.get(route)
                && let Some(counter) = route.counter(method, status)
            {
                counter.inc();
                route.latency.observe(seconds);
                return;
            }
        }
        let (counter, latency) = self.request_handles_for(method, route, status);
        counter.inc();
        latency.observe(seconds);
    }

    /// Resolves (once per route, method and status) the series a request counts on.
    fn request_handles_for(
        &self,
        method: &'static str,
        route: &str,
        status: u16,
    ) -> (Counter, Histogram) {
        let mut handles = self
            .request_handles
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let entry = handles
            .entry(route.to_owned())
            .or_insert_with(|| RouteHandles {
                latency: self
                    .latency
                    .get_or_create(&RouteLabels {
                        route: route.to_owned(),
                    })
                    .clone(),
                requests: Vec::new(),
            });
        if let Some(counter) = entry.counter(method, status) {
            return (counter.clone(), entry.latency.clone());
        }
        let counter = self
            .requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .clone();
        entry.requests.push((method, status, counter.clone()));
        (counter, entry.latency.clone())
    }

    /// A login through `provider` (a configured provider id) ended with `outcome`.
    pub fn login(&self, provider: &str, outcome: LoginOutcome) {
        self.logins
            .get_or_create(&LoginLabels {
                provider: provider.to_string(),
                outcome: outcome.label(),
            })
            .inc();
    }

    /// The token endpoint answered a `grant_type` request: `Ok` when it issued tokens,
    /// else with the OAuth error code.
    pub fn token_request(&self, grant_type: Option<&str>, result: Result<(), &'static str>) {
        let grant_type = grant_type
            .and_then(|g| GRANT_TYPES.iter().find(|known| **known == g))
            .map_or("other", |g| g);
        self.tokens
            .get_or_create(&TokenLabels {
                grant_type: grant_type.to_string(),
                result: result.err().unwrap_or("issued"),
            })
            .inc();
    }

    /// One call to `provider` (a configured provider id) at `step` (`begin`,
    /// `complete`, `authenticate`, `refresh`).
    pub fn provider_call(
        &self,
        provider: &str,
        step: &'static str,
        outcome: ProviderCallOutcome,
        elapsed: Duration,
    ) {
        self.provider_calls
            .get_or_create(&ProviderCallLabels {
                provider: provider.to_string(),
                step,
                outcome: outcome.label(),
            })
            .inc();
        if outcome != ProviderCallOutcome::Busy {
            self.provider_latency
                .get_or_create(&ProviderStepLabels {
                    provider: provider.to_string(),
                    step,
                })
                .observe(elapsed.as_secs_f64());
        }
    }

    /// One token signed: `kind` is `access_token` or `id_token`.
    pub fn token_signed(&self, kind: &'static str, alg: &'static str) {
        self.tokens_signed
            .get_or_create(&SignedLabels { kind, alg })
            .inc();
    }

    /// One store call, named by its trait method.
    pub fn store_call(&self, operation: &'static str, elapsed: Duration) {
        self.store_latency
            .get_or_create(&StoreLabels { operation })
            .observe(elapsed.as_secs_f64());
    }

    /// The counters of one cache's hits and misses, for the cache to keep and count on
    /// without a lookup per use.
    pub fn cache_counters(&self, cache: &'static str) -> CacheCounters {
        let counter = |result| {
            self.cache_lookups
                .get_or_create(&CacheLabels { cache, result })
                .clone()
        };
        CacheCounters {
            hits: counter("hit"),
            misses: counter("miss"),
        }
    }

    /// Every metric in the OpenMetrics text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// A cache's hit and miss counters, shared with the registry.
#[derive(Debug, Clone, Default)]
pub struct CacheCounters {
    hits: Counter,
    misses: Counter,
}

impl CacheCounters {
    pub fn hit(&self) {
        self.hits.inc();
    }

    pub fn miss(&self) {
        self.misses.inc();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed step should fail the test loudly
mod tests {
    use super::*;

    #[test]
    fn counts_render_with_bounded_labels() {
        let metrics = Metrics::new();
        metrics.observe_request("GET", Some("/users/{id}"), 200, Duration::from_millis(3));
        metrics.observe_request("BREW", None, 404, Duration::from_millis(1));
        // Later requests count on the series resolved by the first.
        metrics.observe_request("GET", Some("/users/{id}"), 200, Duration::from_millis(1));
        metrics.observe_request("GET", Some("/users/{id}"), 404, Duration::from_millis(1));
        metrics.observe_request("POST", Some("/users/{id}"), 200, Duration::from_millis(1));
        metrics.login("corp", LoginOutcome::InvalidCredentials);
        metrics.token_request(Some("client_credentials"), Ok(()));
        metrics.token_request(Some("urn:made:up"), Err("unsupported_grant_type"));
        metrics.provider_call(
            "corp",
            "authenticate",
            ProviderCallOutcome::TimedOut,
            Duration::from_secs(5),
        );
        metrics.store_call("get_user", Duration::from_micros(80));
        metrics.token_signed("id_token", "ES256");
        let cache = metrics.cache_counters("token_status");
        cache.hit();
        cache.hit();
        cache.miss();
        let text = metrics.render().unwrap();
        for line in [
            r#"switchboard_http_requests_total{method="GET",route="/users/{id}",status="200"} 2"#,
            r#"switchboard_http_requests_total{method="GET",route="/users/{id}",status="404"} 1"#,
            r#"switchboard_http_requests_total{method="POST",route="/users/{id}",status="200"} 1"#,
            r#"switchboard_http_request_duration_seconds_count{route="/users/{id}"} 4"#,
            r#"switchboard_http_requests_total{method="other",route="unmatched",status="404"} 1"#,
            r#"switchboard_logins_total{provider="corp",outcome="invalid_credentials"} 1"#,
            r#"switchboard_token_requests_total{grant_type="client_credentials",result="issued"} 1"#,
            r#"switchboard_token_requests_total{grant_type="other",result="unsupported_grant_type"} 1"#,
            r#"switchboard_provider_calls_total{provider="corp",step="authenticate",outcome="timed_out"} 1"#,
            r#"switchboard_provider_call_duration_seconds_count{provider="corp",step="authenticate"} 1"#,
            r#"switchboard_store_call_duration_seconds_count{operation="get_user"} 1"#,
            r#"switchboard_tokens_signed_total{kind="id_token",alg="ES256"} 1"#,
            r#"switchboard_cache_lookups_total{cache="token_status",result="hit"} 2"#,
            r#"switchboard_cache_lookups_total{cache="token_status",result="miss"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(text.contains("switchboard_http_request_duration_seconds_bucket"));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
