//! The registry of configured identity providers: each config section built by the
//! factory for its `type`. Nothing above this module can tell a built-in provider from
//! one loaded at run time.
//!
//! An entry owns the policy of calling its provider: every call is bounded in time
//! (`login.provider_timeout`) and in number (calls in flight at once), so callers never
//! wrap a provider call themselves.

pub mod plugin;

use crate::config::{ProviderPolicy, ProviderSection};
use crate::metrics::{Metrics, ProviderCallOutcome};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use switchboard_plugin_api::{
    BeginRequest, BeginResponse, Callback, HeaderAnswer, HeaderRequest, Identity, PasswordRequest,
    Provider, ProviderContext, ProviderError, ProviderFactory, RefreshRequest,
};
use tokio::sync::Semaphore;

/// Calls in flight at once per provider. A stalled upstream holds each waiting login
/// until the timeout; past this many, new logins fail at once instead of piling up.
pub const MAX_CALLS_IN_FLIGHT: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("providers.{id}.type: unknown provider type {kind:?} (known: {known})")]
    UnknownType {
        id: String,
        kind: String,
        known: String,
    },
    #[error("{0}")]
    Create(ProviderError),
}

/// Whose namespace a provider's subjects live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subjects {
    /// An upstream's own subject: linked to a user through an identity link.
    Upstream,
    /// The broker's own user id (the local provider reads the broker's users).
    UserIds,
}

/// A provider type the broker can build, and what its subjects are.
#[derive(Clone)]
pub struct ProviderKind {
    pub factory: Arc<dyn ProviderFactory>,
    pub subjects: Subjects,
}

impl std::fmt::Debug for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKind")
            .field("type", &self.factory.provider_type())
            .field("subjects", &self.subjects)
            .finish()
    }
}

impl ProviderKind {
    pub fn upstream(factory: Arc<dyn ProviderFactory>) -> Self {
        ProviderKind {
            factory,
            subjects: Subjects::Upstream,
        }
    }
}

/// One configured provider.
#[derive(Debug, Clone)]
pub struct ProviderEntry {
    pub id: String,
    pub name: String,
    pub kind: String,
    /// The broker's keys of its section: registration, profile sync, email trust.
    pub policy: ProviderPolicy,
    subjects: Subjects,
    provider: Arc<dyn Provider>,
    timeout: Duration,
    in_flight: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl ProviderEntry {
    pub fn new(
        section: &ProviderSection,
        subjects: Subjects,
        provider: Arc<dyn Provider>,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        ProviderEntry {
            id: section.id.clone(),
            name: section.name.clone(),
            kind: section.kind.clone(),
            policy: section.policy,
            subjects,
            provider,
            timeout,
            in_flight: Arc::new(Semaphore::new(MAX_CALLS_IN_FLIGHT)),
            metrics,
        }
    }

    /// True when this provider's subject is the broker's user id itself, so a first
    /// login never creates a link to someone else's account.
    pub fn subject_is_user_id(&self) -> bool {
        self.subjects == Subjects::UserIds
    }

    pub fn has_password(&self) -> bool {
        self.provider.password().is_some()
    }

    pub fn has_redirect(&self) -> bool {
        self.provider.redirect().is_some()
    }

    pub fn has_refresh(&self) -> bool {
        self.provider.refresh().is_some()
    }

    /// True when the provider logs people in from request headers (Kerberos SPNEGO).
    pub fn has_header(&self) -> bool {
        self.provider.header().is_some()
    }

    /// Runs one call under this entry's bounds, and counts it.
    async fn bounded<T>(
        &self,
        step: &'static str,
        call: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let started = std::time::Instant::now();
        let Ok(_permit) = self.in_flight.try_acquire() else {
            tracing::warn!(provider = %self.id, step, "too many provider calls in flight");
            self.count(step, ProviderCallOutcome::Busy, started);
            return Err(ProviderError::UpstreamUnavailable {
                detail: "too many logins in progress".into(),
            });
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => {
                let outcome = match &answer {
                    // A refusal is the provider doing its work.
                    Ok(_)
                    | Err(ProviderError::InvalidCredentials | ProviderError::Denied { .. }) => {
                        ProviderCallOutcome::Answered
                    }
                    Err(_) => ProviderCallOutcome::Failed,
                };
                self.count(step, outcome, started);
                answer
            }
            Err(_) => {
                tracing::warn!(provider = %self.id, step, "provider timed out");
                self.count(step, ProviderCallOutcome::TimedOut, started);
                Err(ProviderError::UpstreamUnavailable {
                    detail: "timed out".into(),
                })
            }
        }
    }

    fn count(&self, step: &'static str, outcome: ProviderCallOutcome, started: std::time::Instant) {
        self.metrics
            .provider_call(&self.id, step, outcome, started.elapsed());
    }

    fn unsupported(&self, capability: &str) -> ProviderError {
        ProviderError::Misconfigured {
            detail: format!("provider {} has no {capability} login", self.id),
        }
    }

    pub async fn begin(&self, request: BeginRequest) -> Result<BeginResponse, ProviderError> {
        let redirect = self
            .provider
            .redirect()
            .ok_or_else(|| self.unsupported("redirect"))?;
        self.bounded("begin", redirect.begin(request)).await
    }

    pub async fn complete(&self, callback: Callback) -> Result<Identity, ProviderError> {
        let redirect = self
            .provider
            .redirect()
            .ok_or_else(|| self.unsupported("redirect"))?;
        self.bounded("complete", redirect.complete(callback)).await
    }

    pub async fn authenticate(&self, request: PasswordRequest) -> Result<Identity, ProviderError> {
        let password = self
            .provider
            .password()
            .ok_or_else(|| self.unsupported("password"))?;
        self.bounded("authenticate", password.authenticate(request))
            .await
    }

    pub async fn read_headers(
        &self,
        request: HeaderRequest,
    ) -> Result<HeaderAnswer, ProviderError> {
        let header = self
            .provider
            .header()
            .ok_or_else(|| self.unsupported("header"))?;
        self.bounded("header", header.read_headers(request)).await
    }

    /// `None` when the provider cannot re-check a person: what was stored stands.
    pub async fn refresh(
        &self,
        request: RefreshRequest,
    ) -> Option<Result<Identity, ProviderError>> {
        let refresher = self.provider.refresh()?;
        Some(self.bounded("refresh", refresher.refresh(request)).await)
    }
}

#[derive(Debug, Default)]
pub struct ProviderRegistry {
    entries: Vec<ProviderEntry>,
}

impl ProviderRegistry {
    pub fn build(
        sections: &[ProviderSection],
        kinds: &[ProviderKind],
        dev_mode: bool,
        timeout: Duration,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, RegistryError> {
        let by_type: BTreeMap<&str, &ProviderKind> = kinds
            .iter()
            .map(|k| (k.factory.provider_type(), k))
            .collect();
        let mut entries = Vec::new();
        for s in sections {
            let kind = by_type
                .get(s.kind.as_str())
                .ok_or_else(|| RegistryError::UnknownType {
                    id: s.id.clone(),
                    kind: s.kind.clone(),
                    known: by_type.keys().copied().collect::<Vec<_>>().join(", "),
                })?;
            let provider = kind
                .factory
                .create(ProviderContext::new(&s.id, s.options.clone(), dev_mode))
                .map_err(RegistryError::Create)?;
            entries.push(ProviderEntry::new(
                s,
                kind.subjects,
                provider,
                timeout,
                metrics.clone(),
            ));
        }
        Ok(ProviderRegistry { entries })
    }

    pub fn get(&self, id: &str) -> Option<&ProviderEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    pub fn all(&self) -> &[ProviderEntry] {
        &self.entries
    }
}

#[cfg(test)]
impl ProviderEntry {
    /// An entry for unit tests of the layers above, with a generous timeout.
    pub(crate) fn for_tests(
        id: &str,
        subjects: Subjects,
        policy: ProviderPolicy,
        provider: Arc<dyn Provider>,
    ) -> Self {
        let section = ProviderSection {
            id: id.into(),
            name: id.into(),
            kind: "test".into(),
            policy,
            options: serde_json::Value::Null,
        };
        ProviderEntry::new(
            &section,
            subjects,
            provider,
            Duration::from_secs(5),
            Arc::new(Metrics::new()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use switchboard_plugin_api::{Password, PasswordLogin};

    /// A password provider whose upstream never answers.
    #[derive(Debug)]
    struct Stalled;

    #[async_trait]
    impl PasswordLogin for Stalled {
        async fn authenticate(&self, _: PasswordRequest) -> Result<Identity, ProviderError> {
            std::future::pending().await
        }
    }

    impl Provider for Stalled {
        fn password(&self) -> Option<&dyn PasswordLogin> {
            Some(self)
        }
    }

    fn stalled(timeout: Duration) -> ProviderEntry {
        let mut entry = ProviderEntry::for_tests(
            "slow",
            Subjects::Upstream,
            ProviderPolicy::default(),
            Arc::new(Stalled),
        );
        entry.timeout = timeout;
        entry
    }

    fn attempt() -> PasswordRequest {
        PasswordRequest::new("ada", Password::new("pw".to_string()))
    }

    #[tokio::test]
    async fn a_call_that_outlives_the_timeout_is_unavailable() {
        let entry = stalled(Duration::from_millis(50));
        let answer = entry.authenticate(attempt()).await;
        assert!(
            matches!(&answer, Err(ProviderError::UpstreamUnavailable { detail }) if detail == "timed out"),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn past_the_in_flight_bound_a_call_fails_at_once() {
        let entry = stalled(Duration::from_secs(60));
        let mut waiting = Vec::new();
        for _ in 0..MAX_CALLS_IN_FLIGHT {
            let e = entry.clone();
            waiting.push(tokio::spawn(async move { e.authenticate(attempt()).await }));
        }
        // Let every spawned call take its permit.
        while entry.in_flight.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        let answer = entry.authenticate(attempt()).await;
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            matches!(&answer, Err(ProviderError::UpstreamUnavailable { detail }) if detail.contains("too many")),
            "{answer:?}"
        );
        for call in &waiting {
            call.abort();
        }
        for call in waiting {
            let _ = call.await;
        }
        assert_eq!(entry.in_flight.available_permits(), MAX_CALLS_IN_FLIGHT);
    }

    #[tokio::test]
    async fn a_missing_capability_is_a_misconfiguration_not_a_panic() {
        let entry = stalled(Duration::from_secs(1));
        assert!(!entry.has_redirect());
        let begun = entry
            .begin(BeginRequest::new("https://b/cb", "s", "n", "c".to_string()))
            .await;
        assert!(matches!(begun, Err(ProviderError::Misconfigured { .. })));
        assert!(
            entry
                .refresh(RefreshRequest::new(Identity::new("s")))
                .await
                .is_none()
        );
    }
}
