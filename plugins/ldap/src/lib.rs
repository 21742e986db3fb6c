//! LDAP / Active Directory provider for Switchboard: password login against a
//! directory, and re-reading the person and their groups at refresh.
//!
//! Two ways to find the person:
//!
//! - **search, then bind** (`user_search`): the service account (`bind_dn` plus a
//!   password from config, a file or the environment) searches for the login with an
//!   operator's filter; exactly one entry must match; then a bind as that entry checks
//!   the password.
//! - **direct bind** (`user_dn_template`): the login is placed in a DN template and the
//!   provider binds as it. Without a service account nobody can re-read the person
//!   later, so such a provider has no refresh capability.
//!
//! Logins are escaped for the place they land (RFC 4515 in filters, RFC 4514 in DNs);
//! an empty password is refused before any bind; a wrong password, an unknown user and
//! a user outside `required_group` all give [`ProviderError::InvalidCredentials`] while
//! the log tells the operator which it was. Every network operation has a timeout; a
//! failed StartTLS fails the login (never a fallback to plain text).

mod config;
mod connection;
mod entry;
mod escape;
mod provider;
mod tls;

pub use config::AD_IN_CHAIN_RULE;
pub use escape::escape_filter_bytes;
pub use provider::LdapProvider;

use config::{Environment, ProcessEnvironment};
use std::sync::Arc;
use switchboard_plugin_api::{Provider, ProviderContext, ProviderError, ProviderFactory};

/// The `type` of this provider in config.
pub const PROVIDER_TYPE: &str = "ldap";

/// Builds LDAP providers from their config sections.
#[derive(Debug, Clone, Copy, Default)]
pub struct LdapFactory;

impl LdapFactory {
    /// A factory.
    pub fn new() -> Self {
        LdapFactory
    }

    fn build(
        &self,
        context: ProviderContext,
        env: &dyn Environment,
    ) -> Result<LdapProvider, ProviderError> {
        let settings = config::parse(&context.id, context.config, env)?;
        let id = context.id;
        if settings.insecure_skip_verify {
            tracing::warn!(
                provider = %id,
                url = %settings.url,
                "INSECURE: insecure_skip_verify = true turns off TLS certificate checks; \
                 anyone on the network path can pose as the directory and collect passwords"
            );
        }
        if !settings.encrypted && !settings.loopback {
            tracing::warn!(
                provider = %id,
                url = %settings.url,
                "passwords travel to the LDAP server in clear text; use ldaps:// or start_tls = true"
            );
        }
        if settings.service_account.is_none() {
            tracing::warn!(
                provider = %id,
                "direct bind without a service account (bind_dn): nobody can re-read users, \
                 so this provider has no refresh capability and its logins get no refresh tokens \
                 that are re-checked against the directory"
            );
        }
        Ok(LdapProvider::new(id, settings))
    }
}

impl ProviderFactory for LdapFactory {
    fn provider_type(&self) -> &str {
        PROVIDER_TYPE
    }

    fn create(&self, context: ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(Arc::new(self.build(context, &ProcessEnvironment)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchboard_plugin_api::{Password, PasswordRequest};

    fn create(config: serde_json::Value) -> Result<Arc<dyn Provider>, ProviderError> {
        LdapFactory::new().create(ProviderContext::new("corp", config, false))
    }

    #[test]
    fn the_factory_answers_to_type_ldap() {
        assert_eq!(LdapFactory::new().provider_type(), "ldap");
    }

    #[test]
    fn search_mode_offers_password_and_refresh() {
        let p = create(json!({
            "url": "ldap://127.0.0.1:1",
            "bind_dn": "cn=svc,dc=x",
            "bind_password": "pw",
            "user_search": { "base_dn": "dc=x", "filter": "(uid={username})" },
        }))
        .unwrap();
        let caps = p.capabilities();
        assert!(caps.password && caps.refresh && !caps.redirect);
    }

    #[test]
    fn direct_bind_without_a_service_account_offers_no_refresh() {
        let p = create(json!({
            "url": "ldap://127.0.0.1:1",
            "user_dn_template": "uid={username},dc=x",
        }))
        .unwrap();
        assert!(p.password().is_some());
        assert!(p.refresh().is_none());
        assert!(!p.capabilities().refresh);
    }

    #[test]
    fn direct_bind_with_a_service_account_offers_refresh() {
        let p = create(json!({
            "url": "ldap://127.0.0.1:1",
            "bind_dn": "cn=svc,dc=x",
            "bind_password": "pw",
            "user_dn_template": "uid={username},dc=x",
        }))
        .unwrap();
        assert!(p.refresh().is_some());
    }

    #[test]
    fn config_errors_name_the_provider_and_key() {
        let e = create(json!({ "url": "ldap://h", "user_dn_template": "uid=x" })).unwrap_err();
        assert!(
            e.to_string().contains("providers.corp.user_dn_template"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn empty_username_or_password_is_refused_without_touching_the_network() {
        // Port 1 on loopback: any connection attempt would fail with UpstreamUnavailable,
        // so InvalidCredentials proves no connection was tried.
        let p = create(json!({
            "url": "ldap://127.0.0.1:1",
            "user_dn_template": "uid={username},dc=x",
        }))
        .unwrap();
        let login = p.password().unwrap();
        for (user, pw) in [("ada", ""), ("", "pw"), ("   ", "pw")] {
            let r = login
                .authenticate(PasswordRequest::new(user, Password::new(pw)))
                .await;
            assert_eq!(r, Err(ProviderError::InvalidCredentials), "{user:?}/{pw:?}");
        }
    }
}

#[cfg(feature = "cdylib")]
switchboard_plugin_api::export_plugin! {
    name: "ldap",
    factory: LdapFactory::new(),
    capabilities: [password, refresh],
}
