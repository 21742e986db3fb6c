//! The `type = "oidc"` config section and its validation into [`OidcSettings`].

use crate::claims::UnverifiedEmail;
use crate::settings::{OfflineAccess, OidcSettings, TokenEndpointAuth, UserinfoUse, clean_scopes};
use serde::Deserialize;
use std::path::PathBuf;
use switchboard_plugin_api::{ClaimPath, Password, ProviderContext, ProviderError, secret};

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}
fn default_username_claim() -> String {
    "preferred_username".into()
}
fn default_email_claim() -> String {
    "email".into()
}
fn default_email_verified_claim() -> String {
    "email_verified".into()
}
fn default_name_claim() -> String {
    "name".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}

/// `use_userinfo` as written: `true`, `false` or `"auto"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum UserinfoSetting {
    Flag(bool),
    Mode(String),
}

/// The config section of a generic OpenID Connect provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Issuer URL; discovery is at `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// Client id registered upstream.
    pub client_id: String,
    /// Client secret, inline (prefer `_file` or `_env`).
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
    /// `basic` or `post`.
    #[serde(default)]
    pub token_endpoint_auth: TokenEndpointAuth,
    /// `"auto"` (default): read userinfo when the ID token lacks a claim the
    /// requested scopes stand for; `true`: always; `false`: never.
    #[serde(default)]
    pub use_userinfo: Option<UserinfoSetting>,
    /// Claim giving the login name (dotted path for nested claims).
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Claim giving the email.
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    /// Claim saying the email is verified.
    #[serde(default = "default_email_verified_claim")]
    pub email_verified_claim: String,
    /// Claim giving the display name.
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    /// Claim giving the groups (array of strings or one string).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Let logins with an unverified email through (the email stays unverified).
    #[serde(default)]
    pub insecure_skip_email_verified: bool,
    /// Only members of one of these groups may log in.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Only verified emails in one of these domains may log in.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// Ask for an upstream refresh token (`offline_access` scope, with
    /// `prompt=consent` unless `prompt` is set) and re-check the person upstream at
    /// each broker refresh.
    #[serde(default)]
    pub offline_access: bool,
    /// `prompt` to send upstream (`login`, `consent`, `select_account`, `none`).
    #[serde(default)]
    pub prompt: Option<String>,
}

/// Resolves the three forms of a client secret.
pub fn client_secret(
    context: &ProviderContext,
    inline: Option<&Password>,
    file: Option<&std::path::Path>,
    env: Option<&str>,
) -> Result<Password, ProviderError> {
    secret::resolve("client_secret", inline, file, env).map_err(|e| ProviderError::Misconfigured {
        detail: format!("providers.{}.{e}", context.id),
    })
}

/// Checks an allowed-email-domain list: bare lowercase domains (a leading `@` is
/// dropped).
pub fn clean_domains(key: &str, domains: &[String]) -> Result<Vec<String>, String> {
    domains
        .iter()
        .map(|d| {
            let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
            if d.is_empty() || d.contains(['@', '/', ' ', '*']) || !d.contains('.') {
                Err(format!("{key}: `{d}` is not a domain name"))
            } else {
                Ok(d)
            }
        })
        .collect()
}

/// Checks a `prompt` value: space-separated values from OpenID Connect Core.
pub fn check_prompt(prompt: &str) -> Result<String, String> {
    let values: Vec<&str> = prompt.split_whitespace().collect();
    if values.is_empty()
        || values
            .iter()
            .any(|v| !matches!(*v, "none" | "login" | "consent" | "select_account"))
    {
        return Err(format!(
            "prompt `{prompt}` must be none, login, consent or select_account"
        ));
    }
    Ok(values.join(" "))
}

impl OidcConfig {
    /// Validates the section into settings; errors name the key.
    pub fn into_settings(self, context: &ProviderContext) -> Result<OidcSettings, ProviderError> {
        let id = &context.id;
        let bad = |detail: String| ProviderError::Misconfigured {
            detail: format!("providers.{id}.{detail}"),
        };
        let secret = client_secret(
            context,
            self.client_secret.as_ref(),
            self.client_secret_file.as_deref(),
            self.client_secret_env.as_deref(),
        )?;
        let mut settings = OidcSettings::new(
            id.clone(),
            &self.issuer,
            self.client_id,
            secret,
            context.dev_mode,
        )?;
        settings.scopes = clean_scopes(&self.scopes).map_err(|e| bad(format!("scopes: {e}")))?;
        if settings.scopes.iter().any(|s| s == "offline_access") {
            return Err(bad(
                "scopes: use offline_access = true instead of the offline_access scope".into(),
            ));
        }
        settings.token_endpoint_auth = self.token_endpoint_auth;
        settings.use_userinfo = match &self.use_userinfo {
            None => UserinfoUse::Auto,
            Some(UserinfoSetting::Flag(true)) => UserinfoUse::Always,
            Some(UserinfoSetting::Flag(false)) => UserinfoUse::Never,
            Some(UserinfoSetting::Mode(mode)) if mode == "auto" => UserinfoUse::Auto,
            Some(UserinfoSetting::Mode(other)) => {
                return Err(bad(format!(
                    "use_userinfo: {other:?} is not one of true, false, \"auto\""
                )));
            }
        };
        let path = |key: &str, value: &str| {
            ClaimPath::parse(value).map_err(|e| bad(format!("{key}: {e}")))
        };
        settings.claims.username = path("username_claim", &self.username_claim)?;
        settings.claims.email = path("email_claim", &self.email_claim)?;
        settings.claims.email_verified = path("email_verified_claim", &self.email_verified_claim)?;
        settings.claims.name = path("name_claim", &self.name_claim)?;
        settings.claims.groups = path("groups_claim", &self.groups_claim)?;
        settings.rules.unverified_email = if self.insecure_skip_email_verified {
            UnverifiedEmail::KeepUnverified
        } else {
            UnverifiedEmail::Deny
        };
        if self.allowed_groups.iter().any(|g| g.trim().is_empty()) {
            return Err(bad("allowed_groups: a group name is empty".into()));
        }
        settings.rules.allowed_groups = self.allowed_groups;
        settings.rules.allowed_email_domains =
            clean_domains("allowed_email_domains", &self.allowed_email_domains).map_err(bad)?;
        settings.offline_access = if self.offline_access {
            OfflineAccess::Scope
        } else {
            OfflineAccess::Off
        };
        settings.prompt = match self.prompt.as_deref() {
            Some(prompt) => Some(check_prompt(prompt).map_err(bad)?),
            // OpenID Connect Core 11: offline access is granted with prompt=consent
            // (certified OPs drop the scope without it).
            None if self.offline_access => Some("consent".into()),
            None => None,
        };
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn context(config: Value) -> ProviderContext {
        ProviderContext::new("corp", config, false)
    }

    fn minimal() -> Value {
        json!({
            "issuer": "https://idp.example.com",
            "client_id": "switchboard",
            "client_secret": "s3cret",
        })
    }

    fn settings(config: Value) -> Result<OidcSettings, ProviderError> {
        let ctx = context(config);
        ctx.parse_config::<OidcConfig>()?.into_settings(&ctx)
    }

    fn err(config: Value) -> String {
        match settings(config).unwrap_err() {
            ProviderError::Misconfigured { detail } => detail,
            other => panic!("expected Misconfigured, got {other:?}"),
        }
    }

    #[test]
    fn minimal_config_gets_the_defaults() {
        let s = settings(minimal()).unwrap();
        assert_eq!(s.scopes, vec!["profile", "email"]);
        assert_eq!(s.token_endpoint_auth, TokenEndpointAuth::Basic);
        assert_eq!(s.rules.unverified_email, UnverifiedEmail::Deny);
        assert_eq!(s.offline_access, OfflineAccess::Off);
        assert_eq!(s.use_userinfo, UserinfoUse::Auto);
        assert_eq!(s.claims.username.as_str(), "preferred_username");
        assert_eq!(
            s.discovery_url.as_str(),
            "https://idp.example.com/.well-known/openid-configuration"
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn full_config_is_applied() {
        let mut c = minimal();
        c["scopes"] = json!(["openid", "email", "groups"]);
        c["token_endpoint_auth"] = json!("post");
        c["use_userinfo"] = json!(true);
        c["groups_claim"] = json!("realm_access.roles");
        c["insecure_skip_email_verified"] = json!(true);
        c["allowed_groups"] = json!(["admins"]);
        c["allowed_email_domains"] = json!(["@Example.com"]);
        c["offline_access"] = json!(true);
        c["prompt"] = json!("consent");
        let s = settings(c).unwrap();
        assert_eq!(s.scopes, vec!["email", "groups"]);
        assert_eq!(s.token_endpoint_auth, TokenEndpointAuth::Post);
        assert_eq!(s.use_userinfo, UserinfoUse::Always);
        assert_eq!(s.claims.groups.as_str(), "realm_access.roles");
        assert_eq!(s.rules.unverified_email, UnverifiedEmail::KeepUnverified);
        assert_eq!(s.rules.allowed_email_domains, vec!["example.com"]);
        assert_eq!(s.offline_access, OfflineAccess::Scope);
        assert_eq!(s.prompt.as_deref(), Some("consent"));
    }

    #[test]
    fn use_userinfo_is_a_flag_or_auto() {
        for (value, expected) in [
            (json!(false), UserinfoUse::Never),
            (json!("auto"), UserinfoUse::Auto),
        ] {
            let mut c = minimal();
            c["use_userinfo"] = value;
            assert_eq!(settings(c).unwrap().use_userinfo, expected);
        }
        let mut c = minimal();
        c["use_userinfo"] = json!("sometimes");
        let e = settings(c).err().unwrap().to_string();
        assert!(e.contains("use_userinfo") && e.contains("sometimes"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let mut c = minimal();
        c["client_secrett"] = json!("x");
        let e = err(c);
        assert!(
            e.contains("providers.corp") && e.contains("client_secrett"),
            "{e}"
        );
    }

    #[test]
    fn exactly_one_secret_form_is_required() {
        let mut c = minimal();
        c["client_secret_env"] = json!("OIDC_SECRET");
        assert!(err(c).contains("only one"));
        let mut c = minimal();
        c.as_object_mut().unwrap().remove("client_secret");
        assert!(err(c).contains("client_secret_file"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("issuer", json!("http://idp.example.com"), "issuer"),
            ("token_endpoint_auth", json!("jwt"), "unknown variant"),
            ("scopes", json!(["email profile"]), "scopes"),
            ("scopes", json!(["offline_access"]), "offline_access = true"),
            ("groups_claim", json!("a..b"), "groups_claim"),
            (
                "allowed_email_domains",
                json!(["*.example.com"]),
                "allowed_email_domains",
            ),
            ("prompt", json!("always"), "prompt"),
            ("client_id", json!(" "), "client_id"),
        ];
        for (key, value, expect) in cases {
            let mut c = minimal();
            c[key] = value;
            let e = err(c);
            assert!(e.contains(expect), "{key}: {e}");
        }
    }

    #[test]
    fn http_issuer_is_allowed_on_loopback() {
        let mut c = minimal();
        c["issuer"] = json!("http://127.0.0.1:9999");
        settings(c).unwrap();
    }
}
