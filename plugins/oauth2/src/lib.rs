//! A configurable plain OAuth 2.0 provider for Switchboard, and an example of a
//! provider loaded at run time: this crate builds a `cdylib` that the broker loads
//! with `type = "plugin"`, and it depends only on `switchboard-plugin-api` and
//! ordinary crates, never on the broker.
//!
//! It is for upstreams that speak OAuth 2.0 but not OpenID Connect: an authorization
//! endpoint, a token endpoint and a JSON user API. The flow is the authorization-code
//! grant with the broker's `state` and (by default) its S256 PKCE challenge; the
//! access token then reads the user API (`Authorization: Bearer`), and configured
//! claim paths turn its JSON into the identity. The whole JSON answer is kept as the
//! identity's raw claims, for claim-based role rules.
//!
//! At refresh the provider uses what it kept in `provider_data` (stored encrypted by
//! the broker): the refresh token when the upstream issued one (trading it for a new
//! access token and keeping the rotated one, if the upstream rotates), otherwise the
//! access token itself. Either way the user API is read again, so a person removed
//! upstream (`invalid_grant`, or a 401/403 from the user API) loses access. Keeping
//! only the access token works until it expires upstream; then the refresh is denied
//! and the person logs in again.
//!
//! ```toml
//! [providers.acme]
//! type = "plugin"
//! name = "Acme"
//! library = "/opt/switchboard/plugins/libswitchboard_oauth2.so"
//! sha256 = "<sha256 of the file>"
//! [providers.acme.config]
//! client_id = "..."
//! client_secret_env = "ACME_CLIENT_SECRET"
//! authorize_url = "https://acme.example/oauth/authorize"
//! token_url = "https://acme.example/oauth/token"
//! userinfo_url = "https://api.acme.example/me"
//! scopes = ["profile"]
//! [providers.acme.config.claims]
//! subject = "id"
//! groups = "teams"
//! ```
//!
//! The keys of `[providers.<id>.config]`:
//!
//! - `client_id`, and exactly one of `client_secret`, `client_secret_file`,
//!   `client_secret_env`.
//! - `authorize_url`, `token_url`, `userinfo_url`: https, or http on a loopback host
//!   (or in the broker's development mode).
//! - `scopes`: a list, default empty (no `scope` parameter is sent).
//! - `pkce`: default `true`.
//! - `token_auth`: `client_secret_post` (default) or `client_secret_basic`.
//! - `[claims]`: `subject` (default `id`, a string or an integer), `username`
//!   (`login`), `email` (`email`), `email_verified` (unset: emails are unverified),
//!   `name` (`name`), `groups` (unset: no groups; else a list of strings). Each is a
//!   member name or a dotted path such as `data.user.id`.
//!
//! Unknown keys are errors. Tokens, codes and the client secret never reach a log
//! event or an error.

pub mod claims;
pub mod config;
pub mod http;
pub mod provider;

pub use config::{OAuth2Config, OAuth2Settings};
pub use provider::OAuth2Provider;

use std::sync::Arc;
use switchboard_plugin_api::{Provider, ProviderContext, ProviderError, ProviderFactory};

/// The `type` of this provider (the name it is exported under).
pub const PROVIDER_TYPE: &str = "oauth2";

/// Builds OAuth 2.0 providers.
#[derive(Debug, Clone, Copy, Default)]
pub struct OAuth2Factory;

impl ProviderFactory for OAuth2Factory {
    fn provider_type(&self) -> &str {
        PROVIDER_TYPE
    }

    fn create(&self, context: ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let config: OAuth2Config = context.parse_config()?;
        let settings = config.into_settings(&context)?;
        Ok(Arc::new(OAuth2Provider::new(settings)?))
    }
}

switchboard_plugin_api::export_plugin! {
    name: "oauth2",
    factory: OAuth2Factory,
    capabilities: [redirect, refresh],
}
