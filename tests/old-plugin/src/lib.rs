//! A password plugin written against `plugin-api` as it was at commit 8ed3af9 (ABI
//! 1.0), before `ProviderError::denied` and friends or `ClaimPath` existed: it uses
//! only what that version had. tests/old_plugin_abi.rs loads it into today's broker.
//!
//! Config: `password` (the one password every account has) and `group` (the group
//! every account is in). Logins: any username with the password, except `retired`,
//! which is denied with a reason. Refresh re-reads the same identity, and denies
//! `retired` the same way.

use async_trait::async_trait;
use serde::Deserialize;
use std::sync::Arc;
use switchboard_plugin_api::{
    Identity, PasswordLogin, PasswordRequest, Provider, ProviderContext, ProviderError,
    ProviderFactory, RefreshIdentity, RefreshRequest,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    password: String,
    group: String,
}

#[derive(Debug)]
struct OldProvider {
    config: Config,
}

impl OldProvider {
    fn identity(&self, username: &str) -> Result<Identity, ProviderError> {
        if username == "retired" {
            return Err(ProviderError::Denied {
                reason: "this account was retired".into(),
            });
        }
        Ok(Identity::new(format!("old-{username}"))
            .with_username(username)
            .with_groups(vec![self.config.group.clone()]))
    }
}

#[async_trait]
impl PasswordLogin for OldProvider {
    async fn authenticate(&self, request: PasswordRequest) -> Result<Identity, ProviderError> {
        if request.password.expose() != self.config.password {
            return Err(ProviderError::InvalidCredentials);
        }
        self.identity(&request.username)
    }
}

#[async_trait]
impl RefreshIdentity for OldProvider {
    async fn refresh(&self, request: RefreshRequest) -> Result<Identity, ProviderError> {
        let username = request.identity.username.unwrap_or_default();
        self.identity(&username)
    }
}

impl Provider for OldProvider {
    fn password(&self) -> Option<&dyn PasswordLogin> {
        Some(self)
    }

    fn refresh(&self) -> Option<&dyn RefreshIdentity> {
        Some(self)
    }
}

struct OldFactory;

impl ProviderFactory for OldFactory {
    fn provider_type(&self) -> &str {
        "old"
    }

    fn create(&self, context: ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let config: Config = context.parse_config()?;
        Ok(Arc::new(OldProvider { config }))
    }
}

switchboard_plugin_api::export_plugin! {
    name: "old",
    factory: OldFactory,
    capabilities: [password, refresh],
}
