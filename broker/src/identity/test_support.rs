//! Test fixtures shared by the identity modules' tests: a master key, provider entries
//! with a given policy, and providers that refuse every password or answer a refresh
//! as the test sets.

use crate::config::ProviderPolicy;
use crate::providers::{ProviderEntry, Subjects};
use crate::secrets::MasterKey;
use async_trait::async_trait;
use std::sync::Arc;
use switchboard_plugin_api::{Identity, PasswordLogin, Provider, ProviderError, RefreshRequest};

#[derive(Debug)]
struct Nothing;
impl Provider for Nothing {}
#[async_trait]
impl PasswordLogin for Nothing {
    async fn authenticate(
        &self,
        _: switchboard_plugin_api::PasswordRequest,
    ) -> Result<Identity, ProviderError> {
        Err(ProviderError::InvalidCredentials)
    }
}

pub(super) fn master() -> MasterKey {
    MasterKey::from_bytes(&[5u8; 32]).unwrap()
}

pub(super) fn entry(id: &str, kind: &str) -> ProviderEntry {
    entry_with(id, kind, ProviderPolicy::default())
}

fn subjects_of(kind: &str) -> Subjects {
    if kind == "local" {
        Subjects::UserIds
    } else {
        Subjects::Upstream
    }
}

pub(super) fn entry_with(id: &str, kind: &str, policy: ProviderPolicy) -> ProviderEntry {
    ProviderEntry::for_tests(id, subjects_of(kind), policy, Arc::new(Nothing))
}

/// A provider whose refresh answer the test sets.
#[derive(Debug)]
pub(super) struct Scripted(pub(super) std::sync::Mutex<Result<Identity, ProviderError>>);
impl Provider for Scripted {
    fn refresh(&self) -> Option<&dyn switchboard_plugin_api::RefreshIdentity> {
        Some(self)
    }
}
#[async_trait]
impl switchboard_plugin_api::RefreshIdentity for Scripted {
    async fn refresh(&self, r: RefreshRequest) -> Result<Identity, ProviderError> {
        assert_eq!(
            r.identity.provider_data,
            Some(serde_json::json!({"dn": "uid=a"})),
            "sealed provider data comes back"
        );
        self.0.lock().unwrap().clone()
    }
}

/// An active user with only an id.
pub(super) fn user(id: &str) -> crate::store::UserRecord {
    crate::store::UserRecord {
        id: id.into(),
        username: None,
        email: None,
        email_verified: false,
        name: None,
        given_name: None,
        family_name: None,
        picture: None,
        groups: vec![],
        status: crate::store::UserStatus::Active,
        password_hash: None,
        created_at: 1,
        updated_at: 1,
        last_login_at: None,
        revision: 1,
    }
}
