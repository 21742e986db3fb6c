//! Google upstream provider for Switchboard: a preset over `switchboard-oidc`.
//!
//! - Issuer `https://accounts.google.com` (the `issuer` key overrides it for tests and
//!   proxies); Google's ID tokens may name the issuer with or without `https://`, and
//!   both forms are accepted for the real Google issuer only.
//! - Offline access the Google way: `access_type=offline` and `prompt=consent`, so
//!   Google returns a refresh token and every broker refresh re-checks the account.
//! - `hosted_domains`: only Google Workspace accounts whose ID token `hd` claim names
//!   one of these domains may log in. The `hd` request parameter is sent as a hint for
//!   the account chooser, but the decision is taken from the signed ID token only.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;
use switchboard_oidc::config::{clean_domains, client_secret};
use switchboard_oidc::settings::clean_scopes;
use switchboard_oidc::{OfflineAccess, OidcProvider, OidcSettings, UpstreamProfile};
use switchboard_plugin_api::{
    Identity, Password, Provider, ProviderContext, ProviderError, ProviderFactory,
};

/// The `type` of this provider in config.
pub const PROVIDER_TYPE: &str = "google";

/// Google's issuer.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

fn default_issuer() -> String {
    GOOGLE_ISSUER.into()
}
fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}
fn yes() -> bool {
    true
}

/// The config section of a Google provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleConfig {
    /// Issuer (default `https://accounts.google.com`).
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// OAuth client id from the Google Cloud console.
    pub client_id: String,
    /// Client secret, inline.
    #[serde(default)]
    pub client_secret: Option<Password>,
    /// File holding the client secret.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Scopes (`openid` is always sent).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Only Workspace accounts of these domains (ID token `hd` claim) may log in.
    #[serde(default)]
    pub hosted_domains: Vec<String>,
    /// Ask for a refresh token and re-check the account at each broker refresh
    /// (default true).
    #[serde(default = "yes")]
    pub offline_access: bool,
}

/// Google's adjustments to the generic flow.
#[derive(Debug, Clone)]
pub struct GoogleProfile {
    hosted_domains: Vec<String>,
    real_google: bool,
    issuer: String,
}

impl GoogleProfile {
    fn hd_check(&self, claims: &Map<String, Value>) -> Result<(), ProviderError> {
        if self.hosted_domains.is_empty() {
            return Ok(());
        }
        let hd = claims
            .get("hd")
            .and_then(Value::as_str)
            .map(|d| d.trim().to_ascii_lowercase());
        match hd {
            Some(d) if self.hosted_domains.contains(&d) => Ok(()),
            _ => Err(ProviderError::denied(format!(
                "a Google Workspace account of one of these domains is required: {}",
                self.hosted_domains.join(", ")
            ))),
        }
    }
}

impl UpstreamProfile for GoogleProfile {
    fn exact_token_issuer(&self) -> bool {
        !self.real_google
    }

    fn accept_token_issuer(
        &self,
        _discovered: &str,
        claims: &Map<String, Value>,
    ) -> Result<(), String> {
        if !self.real_google {
            return Ok(());
        }
        match claims.get("iss").and_then(Value::as_str) {
            Some(GOOGLE_ISSUER) | Some("accounts.google.com") => Ok(()),
            other => Err(format!(
                "issuer {other:?} is not Google's ({})",
                self.issuer
            )),
        }
    }

    fn authorization_params(&self) -> Vec<(String, String)> {
        match self.hosted_domains.as_slice() {
            [] => Vec::new(),
            [one] => vec![("hd".into(), one.clone())],
            _ => vec![("hd".into(), "*".into())],
        }
    }

    fn finish(
        &self,
        claims: &Map<String, Value>,
        identity: Identity,
    ) -> Result<Identity, ProviderError> {
        self.hd_check(claims)?;
        Ok(identity)
    }
}

impl GoogleConfig {
    /// Validates the section into generic OIDC settings with the Google profile.
    pub fn into_settings(self, context: &ProviderContext) -> Result<OidcSettings, ProviderError> {
        let bad = |detail: String| ProviderError::Misconfigured {
            detail: format!("providers.{}.{detail}", context.id),
        };
        let secret = client_secret(
            context,
            self.client_secret.as_ref(),
            self.client_secret_file.as_deref(),
            self.client_secret_env.as_deref(),
        )?;
        let mut settings = OidcSettings::new(
            context.id.clone(),
            &self.issuer,
            self.client_id,
            secret,
            context.dev_mode,
        )?;
        settings.scopes = clean_scopes(&self.scopes).map_err(|e| bad(format!("scopes: {e}")))?;
        let hosted_domains = clean_domains("hosted_domains", &self.hosted_domains).map_err(bad)?;
        if self.offline_access {
            settings.offline_access = OfflineAccess::Params(vec![
                ("access_type".into(), "offline".into()),
                ("prompt".into(), "consent".into()),
            ]);
        }
        settings.profile = Arc::new(GoogleProfile {
            hosted_domains,
            real_google: self.issuer.trim_end_matches('/') == GOOGLE_ISSUER,
            issuer: self.issuer,
        });
        Ok(settings)
    }
}

/// Builds Google providers.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoogleFactory;

impl ProviderFactory for GoogleFactory {
    fn provider_type(&self) -> &str {
        PROVIDER_TYPE
    }

    fn create(&self, context: ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let config: GoogleConfig = context.parse_config()?;
        let settings = config.into_settings(&context)?;
        Ok(Arc::new(OidcProvider::new(settings, context.dev_mode)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(config: Value) -> Result<OidcSettings, ProviderError> {
        let ctx = ProviderContext::new("google", config, false);
        ctx.parse_config::<GoogleConfig>()?.into_settings(&ctx)
    }

    fn minimal() -> Value {
        json!({"client_id": "id.apps.googleusercontent.com", "client_secret": "s"})
    }

    fn profile(domains: &[&str], real: bool) -> GoogleProfile {
        GoogleProfile {
            hosted_domains: domains.iter().map(|d| d.to_string()).collect(),
            real_google: real,
            issuer: GOOGLE_ISSUER.into(),
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn defaults_are_googles_issuer_and_offline_access() {
        let s = settings(minimal()).unwrap();
        assert_eq!(s.issuer, GOOGLE_ISSUER);
        assert_eq!(
            s.discovery_url.as_str(),
            "https://accounts.google.com/.well-known/openid-configuration"
        );
        assert_eq!(
            s.offline_access,
            OfflineAccess::Params(vec![
                ("access_type".into(), "offline".into()),
                ("prompt".into(), "consent".into())
            ])
        );
        assert_eq!(s.scopes, vec!["profile", "email"]);
    }

    #[test]
    fn config_rejects_unknown_keys_and_bad_domains() {
        let mut c = minimal();
        c["hd"] = json!("example.com");
        assert!(
            matches!(settings(c), Err(ProviderError::Misconfigured { detail }) if detail.contains("hd"))
        );
        let mut c = minimal();
        c["hosted_domains"] = json!(["not a domain"]);
        assert!(settings(c).is_err());
        let mut c = minimal();
        c["offline_access"] = json!(false);
        assert_eq!(settings(c).unwrap().offline_access, OfflineAccess::Off);
    }

    #[test]
    fn hosted_domain_comes_from_the_token_claim() {
        let p = profile(&["example.com"], true);
        p.finish(&claims(json!({"hd": "example.com"})), Identity::new("1"))
            .unwrap();
        p.finish(&claims(json!({"hd": "EXAMPLE.com"})), Identity::new("1"))
            .unwrap();
        for bad in [json!({}), json!({"hd": "other.com"}), json!({"hd": 5})] {
            let err = p.finish(&claims(bad), Identity::new("1")).unwrap_err();
            assert!(
                matches!(&err, ProviderError::Denied { reason } if reason.contains("example.com")),
                "{err:?}"
            );
        }
        profile(&[], true)
            .finish(&claims(json!({})), Identity::new("1"))
            .unwrap();
    }

    #[test]
    fn hd_hint_is_one_domain_or_a_wildcard() {
        assert_eq!(
            profile(&["a.com"], true).authorization_params(),
            vec![("hd".to_string(), "a.com".to_string())]
        );
        assert_eq!(
            profile(&["a.com", "b.com"], true).authorization_params(),
            vec![("hd".to_string(), "*".to_string())]
        );
        assert!(profile(&[], true).authorization_params().is_empty());
    }

    #[test]
    fn googles_issuer_is_accepted_with_or_without_scheme_only_for_google() {
        let p = profile(&[], true);
        assert!(!p.exact_token_issuer());
        p.accept_token_issuer("", &claims(json!({"iss": "accounts.google.com"})))
            .unwrap();
        p.accept_token_issuer("", &claims(json!({"iss": "https://accounts.google.com"})))
            .unwrap();
        assert!(
            p.accept_token_issuer("", &claims(json!({"iss": "https://evil.example"})))
                .is_err()
        );
        assert!(profile(&[], false).exact_token_issuer());
    }
}

#[cfg(feature = "cdylib")]
switchboard_plugin_api::export_plugin! {
    name: "google",
    factory: GoogleFactory,
    capabilities: [redirect, refresh],
}
