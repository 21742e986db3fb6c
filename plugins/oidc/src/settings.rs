//! The validated settings of one OpenID Connect upstream, and the hooks a preset
//! (Google, Microsoft) uses to adapt the generic flow.

use crate::claims::{ClaimMapping, LoginRules};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use switchboard_plugin_api::{Identity, Password, ProviderError};
use switchboard_upstream::{HttpLimits, check_upstream_url};
use url::Url;

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenEndpointAuth {
    /// `client_secret_basic` (HTTP Basic).
    #[default]
    Basic,
    /// `client_secret_post` (form body).
    Post,
}

/// How upstream refresh tokens are asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfflineAccess {
    /// No refresh tokens: the provider has no refresh capability.
    Off,
    /// The standard `offline_access` scope.
    Scope,
    /// Extra authorization parameters (Google: `access_type=offline`,
    /// `prompt=consent`).
    Params(Vec<(String, String)>),
}

/// Hooks through which a preset adapts the generic flow. Every method has the generic
/// behaviour as its default.
pub trait UpstreamProfile: Send + Sync + fmt::Debug {
    /// Accepts the `issuer` of the discovery document; by default it must equal the
    /// configured issuer exactly.
    fn accept_discovered_issuer(&self, configured: &str, discovered: &str) -> Result<(), String> {
        if configured == discovered {
            Ok(())
        } else {
            Err(format!(
                "the discovery document names issuer `{discovered}`, expected `{configured}`"
            ))
        }
    }

    /// Whether the `iss` claim of ID tokens must equal the discovered issuer exactly
    /// (checked by `openidconnect`). Presets that return false check it in
    /// [`UpstreamProfile::accept_token_issuer`].
    fn exact_token_issuer(&self) -> bool {
        true
    }

    /// Extra check of the `iss` claim of a signature-verified ID token.
    fn accept_token_issuer(
        &self,
        _discovered: &str,
        _claims: &Map<String, Value>,
    ) -> Result<(), String> {
        Ok(())
    }

    /// Accepts the RFC 9207 `iss` authorization-response parameter; by default it must
    /// equal the discovered issuer.
    fn accept_response_issuer(&self, discovered: &str, iss: &str) -> bool {
        discovered == iss
    }

    /// Extra authorization parameters for this login (after the generic ones).
    fn authorization_params(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Adjusts the identity mapped from verified claims (subject, email verification,
    /// groups), or denies the login. Runs before the generic [`LoginRules`].
    fn finish(
        &self,
        _claims: &Map<String, Value>,
        identity: Identity,
    ) -> Result<Identity, ProviderError> {
        Ok(identity)
    }
}

/// The generic profile: nothing added.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenericProfile;

impl UpstreamProfile for GenericProfile {}

/// When the userinfo endpoint is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserinfoUse {
    /// When the ID token lacks a claim that a requested scope stands for (`email`,
    /// `profile`, `groups`) and the upstream has a userinfo endpoint: a conformant
    /// OP puts those claims in userinfo only (OIDC Core §5.4).
    #[default]
    Auto,
    /// On every login and refresh; an upstream without the endpoint is an error.
    Always,
    /// Never: the ID token is all there is.
    Never,
}

/// Everything one OpenID Connect upstream needs. Presets build it with
/// [`OidcSettings::new`] and adjust the public fields.
#[derive(Clone)]
#[non_exhaustive]
pub struct OidcSettings {
    /// The provider's id in the broker's config (for logs and error messages).
    pub provider_id: String,
    /// Issuer as configured.
    pub issuer: String,
    /// Where the discovery document is (default: the issuer's
    /// `/.well-known/openid-configuration`).
    pub discovery_url: Url,
    /// OAuth client id at the upstream.
    pub client_id: String,
    /// OAuth client secret at the upstream.
    pub client_secret: Password,
    /// Scopes besides `openid` (which is always sent).
    pub scopes: Vec<String>,
    /// Token endpoint client authentication.
    pub token_endpoint_auth: TokenEndpointAuth,
    /// When to read the userinfo endpoint (its `sub` must match the ID token's).
    pub use_userinfo: UserinfoUse,
    /// Claim to identity mapping.
    pub claims: ClaimMapping,
    /// Email and filter rules.
    pub rules: LoginRules,
    /// Upstream refresh tokens.
    pub offline_access: OfflineAccess,
    /// `prompt` sent upstream, if any.
    pub prompt: Option<String>,
    /// Outbound HTTP limits.
    pub http: HttpLimits,
    /// How long discovery and JWKS stay cached.
    pub cache_ttl: Duration,
    /// The shortest time between two JWKS refetches forced by an unknown `kid`.
    pub jwks_refetch_interval: Duration,
    /// Clock skew allowed on `exp` and on `iat` in the future.
    pub clock_skew: Duration,
    /// Preset hooks.
    pub profile: Arc<dyn UpstreamProfile>,
}

impl fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcSettings")
            .field("provider_id", &self.provider_id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("scopes", &self.scopes)
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// The discovery URL of an issuer.
pub fn discovery_url_for(issuer: &Url) -> Result<Url, String> {
    let base = issuer.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}/.well-known/openid-configuration"))
        .map_err(|e| format!("cannot build the discovery URL: {e}"))
}

/// Checks a scope list: each a non-empty token without spaces; `openid` is dropped
/// (always sent) and duplicates removed.
pub fn clean_scopes(scopes: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for scope in scopes {
        let scope = scope.trim();
        if scope.is_empty()
            || scope
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '\\')
        {
            return Err(format!("scope `{scope}` is not a single scope token"));
        }
        if scope != "openid" && !out.iter().any(|s| s == scope) {
            out.push(scope.to_string());
        }
    }
    Ok(out)
}

impl OidcSettings {
    /// Settings with the generic defaults: scopes `profile email`, basic auth, claims
    /// `preferred_username` / `email` / `name` / `groups`, unverified emails denied,
    /// no refresh tokens, one hour of discovery cache.
    pub fn new(
        provider_id: impl Into<String>,
        issuer: &str,
        client_id: impl Into<String>,
        client_secret: Password,
        dev_mode: bool,
    ) -> Result<Self, ProviderError> {
        let provider_id = provider_id.into();
        let misconfigured = |detail: String| ProviderError::Misconfigured {
            detail: format!("providers.{provider_id}.{detail}"),
        };
        let issuer_url = check_upstream_url("issuer", issuer, dev_mode).map_err(misconfigured)?;
        let discovery_url = discovery_url_for(&issuer_url).map_err(misconfigured)?;
        let client_id = client_id.into();
        if client_id.trim().is_empty() {
            return Err(misconfigured("client_id is empty".into()));
        }
        if client_secret.expose().is_empty() {
            return Err(misconfigured("client_secret is empty".into()));
        }
        Ok(OidcSettings {
            provider_id,
            issuer: issuer.to_string(),
            discovery_url,
            client_id,
            client_secret,
            scopes: vec!["profile".into(), "email".into()],
            token_endpoint_auth: TokenEndpointAuth::Basic,
            use_userinfo: UserinfoUse::Auto,
            claims: ClaimMapping::default(),
            rules: LoginRules::default(),
            offline_access: OfflineAccess::Off,
            prompt: None,
            http: HttpLimits::default(),
            cache_ttl: Duration::from_secs(3600),
            jwks_refetch_interval: Duration::from_secs(10),
            clock_skew: Duration::from_secs(60),
            profile: Arc::new(GenericProfile),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_url_appends_the_well_known_path() {
        let issuer = Url::parse("https://idp.example.com/realms/x/").unwrap();
        assert_eq!(
            discovery_url_for(&issuer).unwrap().as_str(),
            "https://idp.example.com/realms/x/.well-known/openid-configuration"
        );
    }

    #[test]
    fn scopes_drop_openid_and_duplicates_and_refuse_junk() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            clean_scopes(&s(&["openid", "email", "email", "groups"])).unwrap(),
            s(&["email", "groups"])
        );
        assert!(clean_scopes(&s(&["email profile"])).is_err());
        assert!(clean_scopes(&s(&[""])).is_err());
    }
}
