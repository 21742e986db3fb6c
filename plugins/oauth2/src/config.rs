//! The provider's config section and its validation into [`OAuth2Settings`]: errors
//! name the key as `providers.<id>.<key>` and never contain the client secret.

use crate::claims::ClaimMap;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use switchboard_plugin_api::{ClaimPath, Password, ProviderContext, ProviderError, secret};
use url::Url;

fn yes() -> bool {
    true
}

/// The config section of an OAuth 2.0 provider (`[providers.<id>.config]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// Client id registered upstream.
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
    /// The authorization endpoint the browser is sent to.
    pub authorize_url: String,
    /// The token endpoint (code and refresh grants).
    pub token_url: String,
    /// The JSON user API, read with the access token as a bearer token.
    pub userinfo_url: String,
    /// Scopes to ask for (default none: the upstream's default grant).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Send the broker's S256 PKCE challenge and verifier (default true).
    #[serde(default = "yes")]
    pub pkce: bool,
    /// Where the identity's fields are in the user API's JSON.
    #[serde(default)]
    pub claims: ClaimsConfig,
    /// How the client authenticates at the token endpoint: `client_secret_post`
    /// (default) or `client_secret_basic`.
    #[serde(default)]
    pub token_auth: Option<String>,
}

/// `[providers.<id>.config.claims]`: member names, or dotted paths into nested objects
/// (`data.user.id`; a numeric segment indexes an array).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimsConfig {
    /// The stable subject, a string or an integer (default `id`).
    pub subject: String,
    /// The login name (default `login`).
    pub username: String,
    /// The email address (default `email`).
    pub email: String,
    /// A boolean saying the email is verified; unset, emails are unverified.
    pub email_verified: Option<String>,
    /// The display name (default `name`).
    pub name: String,
    /// A list of group names; unset, no groups.
    pub groups: Option<String>,
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        ClaimsConfig {
            subject: "id".into(),
            username: "login".into(),
            email: "email".into(),
            email_verified: None,
            name: "name".into(),
            groups: None,
        }
    }
}

/// How the client authenticates at the token endpoint (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuth {
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// HTTP Basic with the url-encoded id and secret.
    ClientSecretBasic,
}

/// Validated settings of one provider instance.
#[derive(Clone)]
pub struct OAuth2Settings {
    /// The provider's id in the broker's config.
    pub provider_id: String,
    /// Client id registered upstream.
    pub client_id: String,
    /// Client secret (never printed).
    pub client_secret: Password,
    /// Authorization endpoint.
    pub authorize_url: Url,
    /// Token endpoint.
    pub token_url: Url,
    /// User API.
    pub userinfo_url: Url,
    /// Scopes to ask for.
    pub scopes: Vec<String>,
    /// Whether PKCE is used.
    pub pkce: bool,
    /// Where the identity's fields are.
    pub claims: ClaimMap,
    /// Client authentication at the token endpoint.
    pub token_auth: TokenAuth,
}

impl fmt::Debug for OAuth2Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Settings")
            .field("provider_id", &self.provider_id)
            .field("client_id", &self.client_id)
            .field("authorize_url", &self.authorize_url.as_str())
            .field("token_url", &self.token_url.as_str())
            .field("userinfo_url", &self.userinfo_url.as_str())
            .field("scopes", &self.scopes)
            .field("pkce", &self.pkce)
            .field("token_auth", &self.token_auth)
            .finish_non_exhaustive()
    }
}

/// True for `localhost` and loopback addresses.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Checks an upstream endpoint: `https`, or `http` on a loopback host (tests, a local
/// proxy) or in development mode, as the other upstream providers do. A query is kept
/// (some user APIs select fields with one); a fragment or credentials are refused. The
/// URL is echoed only once it is known to hold no credentials.
///
/// (Like its HTTP client, this is the standalone example's own copy on purpose: the
/// built-in providers use `switchboard_upstream::check_upstream_url`, which also
/// refuses a query.)
pub fn check_upstream_url(key: &str, raw: &str, dev_mode: bool) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("{key} is not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{key} must not hold credentials"));
    }
    match url.scheme() {
        "https" => {}
        "http" if dev_mode || is_loopback(&url) => {}
        _ => {
            return Err(format!(
                "{key} `{raw}` must use https (http only on a loopback host)"
            ));
        }
    }
    if url.host().is_none() {
        return Err(format!("{key} `{raw}` has no host"));
    }
    if url.fragment().is_some() {
        return Err(format!("{key} `{raw}` must not have a fragment"));
    }
    Ok(url)
}

impl ClaimsConfig {
    fn into_map(self) -> Result<ClaimMap, String> {
        let path =
            |key: &str, raw: &str| ClaimPath::parse(raw).map_err(|e| format!("claims.{key}: {e}"));
        Ok(ClaimMap {
            subject: path("subject", &self.subject)?,
            username: path("username", &self.username)?,
            email: path("email", &self.email)?,
            email_verified: self
                .email_verified
                .as_deref()
                .map(|p| path("email_verified", p))
                .transpose()?,
            name: path("name", &self.name)?,
            groups: self
                .groups
                .as_deref()
                .map(|p| path("groups", p))
                .transpose()?,
        })
    }
}

impl OAuth2Config {
    /// Validates the section; errors name the key.
    pub fn into_settings(self, context: &ProviderContext) -> Result<OAuth2Settings, ProviderError> {
        let bad = |detail: String| ProviderError::Misconfigured {
            detail: format!("providers.{}.{detail}", context.id),
        };
        let client_secret = secret::resolve(
            "client_secret",
            self.client_secret.as_ref(),
            self.client_secret_file.as_deref(),
            self.client_secret_env.as_deref(),
        )
        // Its messages start with the key they are about, or say "set one of ...".
        .map_err(|e| {
            if e.starts_with("client_secret") {
                bad(e)
            } else {
                bad(format!("client_secret: {e}"))
            }
        })?;
        if self.client_id.trim().is_empty() {
            return Err(bad("client_id is empty".into()));
        }
        let url = |key: &str, raw: &str| check_upstream_url(key, raw, context.dev_mode);
        let authorize_url = url("authorize_url", &self.authorize_url).map_err(bad)?;
        let token_url = url("token_url", &self.token_url).map_err(bad)?;
        let userinfo_url = url("userinfo_url", &self.userinfo_url).map_err(bad)?;
        for scope in &self.scopes {
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                return Err(bad(format!("scopes: `{scope}` is not a single scope")));
            }
        }
        let token_auth = match self.token_auth.as_deref() {
            None | Some("client_secret_post") => TokenAuth::ClientSecretPost,
            Some("client_secret_basic") => TokenAuth::ClientSecretBasic,
            Some(other) => {
                return Err(bad(format!(
                    "token_auth: `{other}` is not `client_secret_post` or `client_secret_basic`"
                )));
            }
        };
        let claims = self.claims.into_map().map_err(bad)?;
        Ok(OAuth2Settings {
            provider_id: context.id.clone(),
            client_id: self.client_id,
            client_secret,
            authorize_url,
            token_url,
            userinfo_url,
            scopes: self.scopes,
            pkce: self.pkce,
            claims,
            token_auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn settings(config: Value, dev_mode: bool) -> Result<OAuth2Settings, ProviderError> {
        let ctx = ProviderContext::new("acme", config, dev_mode);
        ctx.parse_config::<OAuth2Config>()?.into_settings(&ctx)
    }

    fn minimal() -> Value {
        json!({
            "client_id": "acme-client",
            "client_secret": "hunter2-hunter2",
            "authorize_url": "https://acme.example/oauth/authorize",
            "token_url": "https://acme.example/oauth/token",
            "userinfo_url": "https://api.acme.example/me",
        })
    }

    fn misconfigured(result: Result<OAuth2Settings, ProviderError>) -> String {
        match result {
            Err(ProviderError::Misconfigured { detail }) => detail,
            other => panic!("expected Misconfigured, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_post_auth_pkce_no_scopes_and_github_like_claims() {
        let s = settings(minimal(), false).unwrap();
        assert_eq!(s.token_auth, TokenAuth::ClientSecretPost);
        assert!(s.pkce);
        assert!(s.scopes.is_empty());
        assert_eq!(s.claims.subject, ClaimPath::parse("id").unwrap());
        assert_eq!(s.claims.username, ClaimPath::parse("login").unwrap());
        assert!(s.claims.email_verified.is_none());
        assert!(s.claims.groups.is_none());
    }

    #[test]
    fn plain_http_is_only_for_loopback_hosts_or_dev_mode() {
        for host in ["127.0.0.1:8080", "[::1]", "localhost", "LocalHost:9"] {
            check_upstream_url("token_url", &format!("http://{host}/token"), false).unwrap();
        }
        let err = check_upstream_url("token_url", "http://acme.example/token", false).unwrap_err();
        assert!(err.contains("token_url") && err.contains("https"), "{err}");
        check_upstream_url("token_url", "http://acme.example/token", true).unwrap();
        assert!(check_upstream_url("token_url", "ftp://acme.example/", true).is_err());
        check_upstream_url(
            "userinfo_url",
            "https://graph.example/me?fields=id,name",
            false,
        )
        .unwrap();
    }

    #[test]
    fn urls_with_credentials_are_refused_without_echoing_them() {
        let err = check_upstream_url("token_url", "https://u:pa55word@acme.example/t", false)
            .unwrap_err();
        assert!(
            err.contains("credentials") && !err.contains("pa55word"),
            "{err}"
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        for (key, value, named) in [
            (
                "authorize_url",
                json!("http://acme.example/authorize"),
                "providers.acme.authorize_url",
            ),
            ("token_url", json!("not a url"), "providers.acme.token_url"),
            (
                "userinfo_url",
                json!("https://api.acme.example/me#x"),
                "providers.acme.userinfo_url",
            ),
            ("scopes", json!(["profile email"]), "providers.acme.scopes"),
            (
                "token_auth",
                json!("private_key_jwt"),
                "providers.acme.token_auth",
            ),
            (
                "claims",
                json!({"subject": "data..id"}),
                "providers.acme.claims.subject",
            ),
            ("claims", json!({"subjekt": "id"}), "subjekt"),
            ("client_id", json!(" "), "providers.acme.client_id"),
            ("scope", json!(["profile"]), "unknown field `scope`"),
        ] {
            let mut c = minimal();
            c[key] = value;
            let detail = misconfigured(settings(c, false));
            assert!(detail.contains(named), "{key}: {detail}");
        }
        let err = misconfigured(settings(
            json!({"client_id": "x", "client_secret": "s", "client_secret_env": "X",
                   "authorize_url": "https://a.example", "token_url": "https://a.example",
                   "userinfo_url": "https://a.example"}),
            false,
        ));
        assert!(
            err.starts_with("providers.acme.client_secret: set only one"),
            "{err}"
        );
    }

    #[test]
    fn settings_never_print_the_secret() {
        let shown = format!("{:?}", settings(minimal(), false).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("acme-client"), "{shown}");
    }
}
