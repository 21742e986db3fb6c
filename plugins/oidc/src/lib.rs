//! Generic OpenID Connect upstream provider for Switchboard, and the library the
//! Google and Microsoft presets are built on.
//!
//! The broker owns `state`, the nonce and PKCE; [`OidcProvider`] sends them upstream
//! unchanged, exchanges the code with the broker's verifier, validates the ID token
//! fully (signature through the upstream JWKS, `iss`, `aud`, `azp`, `exp`, `iat`,
//! `nonce`, `at_hash`), optionally reads userinfo, maps claims to an
//! [`Identity`](switchboard_plugin_api::Identity) and applies the email and filter
//! rules. With `offline_access`, the upstream refresh token is kept in
//! `provider_data` and used at every broker refresh, so a person removed upstream
//! loses access.
//!
//! Presets adjust an [`OidcSettings`] and plug an [`UpstreamProfile`] in.

pub mod claims;
pub mod config;
pub mod discovery;
pub mod provider;
pub mod settings;

pub use claims::{ClaimMapping, LoginRules, UnverifiedEmail};
pub use config::OidcConfig;
pub use provider::OidcProvider;
pub use settings::{OfflineAccess, OidcSettings, TokenEndpointAuth, UpstreamProfile, UserinfoUse};
pub use switchboard_upstream::HttpLimits;

use std::sync::Arc;
use switchboard_plugin_api::{Provider, ProviderContext, ProviderError, ProviderFactory};

/// The `type` of this provider in config.
pub const PROVIDER_TYPE: &str = "oidc";

/// Builds generic OpenID Connect providers.
#[derive(Debug, Clone, Copy, Default)]
pub struct OidcFactory;

impl ProviderFactory for OidcFactory {
    fn provider_type(&self) -> &str {
        PROVIDER_TYPE
    }

    fn create(&self, context: ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let config: OidcConfig = context.parse_config()?;
        let settings = config.into_settings(&context)?;
        Ok(Arc::new(OidcProvider::new(settings, context.dev_mode)?))
    }
}

#[cfg(feature = "cdylib")]
switchboard_plugin_api::export_plugin! {
    name: "oidc",
    factory: OidcFactory,
    capabilities: [redirect, refresh],
}
