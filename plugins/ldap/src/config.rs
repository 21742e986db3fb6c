//! The provider's config section, parsed strictly and validated into [`Settings`] once
//! at load. Every error names the offending key as `providers.<id>.<key>`.

use crate::connection::SearchScope;
use crate::entry::IdFormat;
use crate::escape::{Placeholder, Target, Template, Values};
use crate::tls::{self, Trust};
use rustls::ClientConfig;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use switchboard_plugin_api::{Password, ProviderError};

/// Default connect timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default timeout of each operation (bind, search).
const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// The matching rule that makes Active Directory follow nested group membership.
pub const AD_IN_CHAIN_RULE: &str = "1.2.840.113556.1.4.1941";

/// A duration written as a number of seconds (`5`) or a humantime string (`"1500ms"`,
/// `"5s"`, `"1m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds or a duration such as \"5s\" or \"1500ms\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ConfigDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(|v| ConfigDuration(Duration::from_secs(v)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Duration::try_from_secs_f64(v)
                    .map(ConfigDuration)
                    .map_err(|_| E::custom("not a usable number of seconds"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                humantime::parse_duration(v.trim())
                    .map(ConfigDuration)
                    .map_err(|e| E::custom(format!("not a duration ({e}); write e.g. \"5s\"")))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Search scope as written in config: `base`, `one` or `sub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawScope {
    Base,
    #[serde(alias = "onelevel")]
    One,
    #[default]
    #[serde(alias = "subtree")]
    Sub,
}

impl From<RawScope> for SearchScope {
    fn from(s: RawScope) -> Self {
        match s {
            RawScope::Base => SearchScope::Base,
            RawScope::One => SearchScope::One,
            RawScope::Sub => SearchScope::Sub,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUserSearch {
    base_dn: String,
    filter: String,
    #[serde(default)]
    scope: RawScope,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroupSearch {
    base_dn: String,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    scope: RawScope,
    #[serde(default = "default_group_name_attribute")]
    name_attribute: String,
    #[serde(default)]
    ad_nested_groups: bool,
}

fn default_group_name_attribute() -> String {
    "cn".into()
}

fn default_id_attribute() -> String {
    "entryUUID".into()
}

fn default_username_attribute() -> String {
    "uid".into()
}

fn default_email_attribute() -> String {
    "mail".into()
}

fn default_name_attribute() -> String {
    "cn".into()
}

/// The config section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    url: String,
    #[serde(default)]
    start_tls: bool,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: bool,
    #[serde(default)]
    connect_timeout: Option<ConfigDuration>,
    #[serde(default)]
    operation_timeout: Option<ConfigDuration>,
    #[serde(default)]
    bind_dn: Option<String>,
    #[serde(default)]
    bind_password: Option<Password>,
    #[serde(default)]
    bind_password_file: Option<PathBuf>,
    #[serde(default)]
    bind_password_env: Option<String>,
    #[serde(default)]
    user_search: Option<RawUserSearch>,
    #[serde(default)]
    user_dn_template: Option<String>,
    #[serde(default = "default_id_attribute")]
    id_attribute: String,
    #[serde(default = "default_username_attribute")]
    username_attribute: String,
    #[serde(default = "default_email_attribute")]
    email_attribute: String,
    #[serde(default = "default_name_attribute")]
    name_attribute: String,
    #[serde(default)]
    email_verified: bool,
    #[serde(default)]
    group_search: Option<RawGroupSearch>,
    #[serde(default)]
    required_group: Option<String>,
    #[serde(default)]
    group_prefix: Option<String>,
}

/// How the person's entry is found.
#[derive(Debug, Clone)]
pub enum UserLookup {
    /// Search as the service account, then bind as the entry found.
    Search {
        /// Where to search.
        base_dn: String,
        /// Filter with `{username}`.
        filter: Template,
        /// Scope.
        scope: SearchScope,
    },
    /// Bind directly as the DN the template gives.
    Direct {
        /// DN with `{username}`.
        template: Template,
    },
}

/// Which attributes the identity is made of.
#[derive(Debug, Clone)]
pub struct AttributeMap {
    /// Stable id: the identity's subject.
    pub id: String,
    /// How the id is rendered.
    pub id_format: IdFormat,
    /// Login name.
    pub username: String,
    /// Email.
    pub email: String,
    /// Display name.
    pub name: String,
}

/// How groups are found.
#[derive(Debug, Clone)]
pub struct GroupSearch {
    /// Where to search.
    pub base_dn: String,
    /// Filter with `{dn}` and/or `{username}`.
    pub filter: Template,
    /// Scope.
    pub scope: SearchScope,
    /// The attribute that names a group.
    pub name_attribute: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Server URL (`ldap://` or `ldaps://`).
    pub url: String,
    /// Upgrade `ldap://` with StartTLS.
    pub start_tls: bool,
    /// TLS client configuration, for `ldaps://` and StartTLS.
    pub tls: Option<Arc<ClientConfig>>,
    /// Certificate checks are off.
    pub insecure_skip_verify: bool,
    /// Whether the connection is encrypted.
    pub encrypted: bool,
    /// Whether the server is on a loopback address.
    pub loopback: bool,
    /// Connect timeout (TCP, TLS and StartTLS).
    pub connect_timeout: Duration,
    /// Timeout of each operation.
    pub operation_timeout: Duration,
    /// Service account: bind DN and password.
    pub service_account: Option<(String, Password)>,
    /// How users are found.
    pub lookup: UserLookup,
    /// Attribute mapping.
    pub attributes: AttributeMap,
    /// Whether the email is treated as verified.
    pub email_verified: bool,
    /// Group search.
    pub groups: Option<GroupSearch>,
    /// Group a person must be in to log in.
    pub required_group: Option<String>,
    /// Only groups whose name starts with this travel into the identity.
    pub group_prefix: Option<String>,
}

/// Reads the environment; a seam for tests.
pub trait Environment {
    /// The value of variable `name`, if set and valid Unicode.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

struct Keys<'a> {
    id: &'a str,
}

impl Keys<'_> {
    fn err(&self, key: &str, message: impl fmt::Display) -> ProviderError {
        ProviderError::Misconfigured {
            detail: format!("providers.{}.{key}: {message}", self.id),
        }
    }
}

fn non_empty(keys: &Keys<'_>, key: &str, value: &str) -> Result<(), ProviderError> {
    if value.trim().is_empty() {
        Err(keys.err(key, "must not be empty"))
    } else {
        Ok(())
    }
}

fn check_filter(keys: &Keys<'_>, key: &str, template: &Template) -> Result<(), ProviderError> {
    let sample = template.render(Values {
        username: "sample",
        dn: "uid=sample,dc=example,dc=org",
    });
    ldap3::parse_filter(&sample).map(|_| ()).map_err(|()| {
        keys.err(
            key,
            format!("{:?} is not a valid LDAP filter", template.as_str()),
        )
    })
}

fn timeout_or(
    keys: &Keys<'_>,
    key: &str,
    value: Option<ConfigDuration>,
    default: Duration,
) -> Result<Duration, ProviderError> {
    let d = value.map_or(default, |v| v.0);
    if d.is_zero() {
        return Err(keys.err(key, "must be greater than zero"));
    }
    Ok(d)
}

/// Parses and validates a provider's config section.
pub fn parse(
    id: &str,
    config: serde_json::Value,
    env: &dyn Environment,
) -> Result<Settings, ProviderError> {
    let raw: RawConfig =
        serde_json::from_value(config).map_err(|e| ProviderError::Misconfigured {
            detail: format!("providers.{id}: {e}"),
        })?;
    validate(&Keys { id }, raw, env)
}

fn validate(
    keys: &Keys<'_>,
    raw: RawConfig,
    env: &dyn Environment,
) -> Result<Settings, ProviderError> {
    // Server and transport.
    let url = url::Url::parse(raw.url.trim())
        .map_err(|e| keys.err("url", format!("{:?} is not a URL: {e}", raw.url)))?;
    let tls_scheme = match url.scheme() {
        "ldap" => false,
        "ldaps" => true,
        other => {
            return Err(keys.err(
                "url",
                format!("scheme {other:?} is not supported; use ldap:// or ldaps://"),
            ));
        }
    };
    let host = url.host().ok_or_else(|| keys.err("url", "has no host"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(keys.err(
            "url",
            "must not hold credentials; use bind_dn and bind_password_*",
        ));
    }
    if !(url.path().is_empty() || url.path() == "/")
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(keys.err(
            "url",
            "must be only scheme, host and port; set search bases in user_search and group_search",
        ));
    }
    let loopback = match host {
        // `ldap:` is not a "special" URL scheme, so an IPv4 address arrives as a name.
        url::Host::Domain(d) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    if raw.start_tls && tls_scheme {
        return Err(keys.err("start_tls", "cannot be used with ldaps:// (already TLS)"));
    }
    let encrypted = tls_scheme || raw.start_tls;
    if !encrypted && raw.ca_file.is_some() {
        return Err(keys.err(
            "ca_file",
            "is set but the connection is plain text; use ldaps:// or start_tls = true",
        ));
    }
    if !encrypted && raw.insecure_skip_verify {
        return Err(keys.err(
            "insecure_skip_verify",
            "is set but the connection is plain text; use ldaps:// or start_tls = true",
        ));
    }
    if raw.insecure_skip_verify && raw.ca_file.is_some() {
        return Err(keys.err(
            "insecure_skip_verify",
            "cannot be combined with ca_file (nothing would check against it)",
        ));
    }
    let tls = if encrypted {
        let trust = match (&raw.ca_file, raw.insecure_skip_verify) {
            (_, true) => Trust::Anyone,
            (Some(path), false) => Trust::CaFile(path),
            (None, false) => Trust::System,
        };
        let key = if raw.ca_file.is_some() {
            "ca_file"
        } else {
            "url"
        };
        Some(tls::client_config(trust).map_err(|e| keys.err(key, e))?)
    } else {
        None
    };
    let connect_timeout = timeout_or(
        keys,
        "connect_timeout",
        raw.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
    )?;
    let operation_timeout = timeout_or(
        keys,
        "operation_timeout",
        raw.operation_timeout,
        DEFAULT_OPERATION_TIMEOUT,
    )?;

    // Service account.
    let sources = [
        raw.bind_password.is_some(),
        raw.bind_password_file.is_some(),
        raw.bind_password_env.is_some(),
    ]
    .iter()
    .filter(|set| **set)
    .count();
    let service_account = match raw.bind_dn {
        None => {
            if sources > 0 {
                return Err(keys.err(
                    "bind_dn",
                    "is missing, but a bind password is set; set both or neither",
                ));
            }
            None
        }
        Some(dn) => {
            non_empty(keys, "bind_dn", &dn)?;
            let password = match (
                raw.bind_password,
                raw.bind_password_file,
                raw.bind_password_env,
            ) {
                (Some(p), None, None) => p,
                (None, Some(path), None) => {
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        keys.err(
                            "bind_password_file",
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?;
                    Password::new(text.trim_end_matches(['\r', '\n']))
                }
                (None, None, Some(var)) => {
                    let value = env.var(&var).ok_or_else(|| {
                        keys.err(
                            "bind_password_env",
                            format!("environment variable {var} is not set"),
                        )
                    })?;
                    Password::new(value)
                }
                _ => {
                    return Err(keys.err(
                        "bind_dn",
                        "needs exactly one of bind_password, bind_password_file, bind_password_env",
                    ));
                }
            };
            // An empty password would make the bind unauthenticated: it "succeeds"
            // anonymously on many servers.
            if password.expose().is_empty() {
                return Err(keys.err("bind_password", "the service account password is empty"));
            }
            Some((dn, password))
        }
    };

    // Finding the user.
    let lookup = match (raw.user_search, raw.user_dn_template) {
        (Some(search), None) => {
            non_empty(keys, "user_search.base_dn", &search.base_dn)?;
            let filter = Template::parse(&search.filter, Target::Filter, &[Placeholder::Username])
                .map_err(|e| keys.err("user_search.filter", e))?;
            check_filter(keys, "user_search.filter", &filter)?;
            if service_account.is_none() {
                return Err(keys.err(
                    "bind_dn",
                    "user_search needs a service account (bind_dn and a bind password)",
                ));
            }
            UserLookup::Search {
                base_dn: search.base_dn,
                filter,
                scope: search.scope.into(),
            }
        }
        (None, Some(template)) => UserLookup::Direct {
            template: Template::parse(&template, Target::Dn, &[Placeholder::Username])
                .map_err(|e| keys.err("user_dn_template", e))?,
        },
        (Some(_), Some(_)) => {
            return Err(keys.err(
                "user_search",
                "set either user_search or user_dn_template, not both",
            ));
        }
        (None, None) => {
            return Err(keys.err(
                "user_search",
                "set either user_search (search, then bind) or user_dn_template (direct bind)",
            ));
        }
    };

    // Attributes.
    for (key, value) in [
        ("id_attribute", &raw.id_attribute),
        ("username_attribute", &raw.username_attribute),
        ("email_attribute", &raw.email_attribute),
        ("name_attribute", &raw.name_attribute),
    ] {
        non_empty(keys, key, value)?;
    }
    let attributes = AttributeMap {
        id_format: IdFormat::for_attribute(&raw.id_attribute),
        id: raw.id_attribute,
        username: raw.username_attribute,
        email: raw.email_attribute,
        name: raw.name_attribute,
    };

    // Groups.
    let groups = match raw.group_search {
        None => None,
        Some(g) => {
            non_empty(keys, "group_search.base_dn", &g.base_dn)?;
            non_empty(keys, "group_search.name_attribute", &g.name_attribute)?;
            let text = match (g.filter, g.ad_nested_groups) {
                (Some(f), false) => f,
                (None, false) => "(member={dn})".to_owned(),
                (None, true) => {
                    format!("(&(objectClass=group)(member:{AD_IN_CHAIN_RULE}:={{dn}}))")
                }
                (Some(f), true) => {
                    if !f.contains(AD_IN_CHAIN_RULE) {
                        return Err(keys.err(
                            "group_search.filter",
                            format!(
                                "ad_nested_groups is on, so the filter must use the \
                                 in-chain rule, e.g. (member:{AD_IN_CHAIN_RULE}:={{dn}}); \
                                 or leave filter unset"
                            ),
                        ));
                    }
                    f
                }
            };
            let filter = Template::parse(
                &text,
                Target::Filter,
                &[Placeholder::Dn, Placeholder::Username],
            )
            .map_err(|e| keys.err("group_search.filter", e))?;
            check_filter(keys, "group_search.filter", &filter)?;
            Some(GroupSearch {
                base_dn: g.base_dn,
                filter,
                scope: g.scope.into(),
                name_attribute: g.name_attribute,
            })
        }
    };
    if let Some(group) = &raw.required_group {
        non_empty(keys, "required_group", group)?;
        if groups.is_none() {
            return Err(keys.err(
                "required_group",
                "needs group_search to find the person's groups",
            ));
        }
    }
    if let Some(prefix) = &raw.group_prefix {
        non_empty(keys, "group_prefix", prefix)?;
        if groups.is_none() {
            return Err(keys.err("group_prefix", "needs group_search"));
        }
    }

    Ok(Settings {
        url: raw.url.trim().to_owned(),
        start_tls: raw.start_tls,
        tls,
        insecure_skip_verify: raw.insecure_skip_verify,
        encrypted,
        loopback,
        connect_timeout,
        operation_timeout,
        service_account,
        lookup,
        attributes,
        email_verified: raw.email_verified,
        groups,
        required_group: raw.required_group,
        group_prefix: raw.group_prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;
    use std::io::Write;

    struct FakeEnv(HashMap<&'static str, &'static str>);

    impl Environment for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| (*v).to_owned())
        }
    }

    fn env() -> FakeEnv {
        FakeEnv(HashMap::from([("LDAP_PW", "from-env")]))
    }

    fn search_mode() -> serde_json::Value {
        json!({
            "url": "ldap://127.0.0.1:389",
            "bind_dn": "cn=svc,dc=example,dc=org",
            "bind_password": "s3cret",
            "user_search": {
                "base_dn": "ou=people,dc=example,dc=org",
                "filter": "(&(objectClass=inetOrgPerson)(uid={username}))"
            },
            "group_search": {
                "base_dn": "ou=groups,dc=example,dc=org",
                "filter": "(&(objectClass=groupOfNames)(member={dn}))"
            },
            "required_group": "allowed_to_login",
            "group_prefix": "API_PERM_"
        })
    }

    fn parse_ok(config: serde_json::Value) -> Settings {
        parse("corp", config, &env()).unwrap()
    }

    fn parse_err(config: serde_json::Value) -> String {
        match parse("corp", config, &env()) {
            Err(ProviderError::Misconfigured { detail }) => detail,
            other => panic!("expected Misconfigured, got {other:?}"),
        }
    }

    #[test]
    fn a_search_mode_config_parses_with_defaults() {
        let s = parse_ok(search_mode());
        assert!(matches!(
            s.lookup,
            UserLookup::Search {
                scope: SearchScope::Sub,
                ..
            }
        ));
        assert_eq!(s.attributes.id, "entryUUID");
        assert_eq!(s.attributes.id_format, IdFormat::Text);
        assert_eq!(s.attributes.username, "uid");
        assert_eq!(s.attributes.email, "mail");
        assert_eq!(s.attributes.name, "cn");
        assert!(!s.email_verified);
        assert_eq!(s.connect_timeout, Duration::from_secs(5));
        assert_eq!(s.operation_timeout, Duration::from_secs(10));
        assert!(s.tls.is_none());
        assert!(s.loopback);
        let (dn, pw) = s.service_account.unwrap();
        assert_eq!(dn, "cn=svc,dc=example,dc=org");
        assert_eq!(pw.expose(), "s3cret");
        let g = s.groups.unwrap();
        assert_eq!(g.name_attribute, "cn");
        assert_eq!(s.required_group.as_deref(), Some("allowed_to_login"));
    }

    #[test]
    fn unknown_keys_are_refused_at_every_level() {
        let mut c = search_mode();
        c["bind_passwd"] = json!("x");
        assert!(parse_err(c).contains("unknown field `bind_passwd`"));
        let mut c = search_mode();
        c["user_search"]["filtr"] = json!("x");
        assert!(parse_err(c).contains("unknown field `filtr`"));
        let mut c = search_mode();
        c["group_search"]["nested"] = json!(true);
        assert!(parse_err(c).contains("unknown field `nested`"));
    }

    #[test]
    fn timeouts_accept_seconds_or_humantime_strings() {
        let mut c = search_mode();
        c["connect_timeout"] = json!(3);
        c["operation_timeout"] = json!("1500ms");
        let s = parse_ok(c);
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
        assert_eq!(s.operation_timeout, Duration::from_millis(1500));
        let mut c = search_mode();
        c["operation_timeout"] = json!(0.25);
        assert_eq!(parse_ok(c).operation_timeout, Duration::from_millis(250));
        let mut c = search_mode();
        c["operation_timeout"] = json!("soon");
        assert!(parse_err(c).contains("not a duration"));
        let mut c = search_mode();
        c["connect_timeout"] = json!(0);
        assert!(parse_err(c).contains("providers.corp.connect_timeout: must be greater than zero"));
        let mut c = search_mode();
        c["connect_timeout"] = json!(-1);
        assert!(parse_err(c).contains("negative"));
    }

    #[test]
    fn the_bind_password_comes_from_exactly_one_source() {
        let mut c = search_mode();
        c["bind_password_env"] = json!("LDAP_PW");
        assert!(parse_err(c).contains("exactly one of"));

        let mut c = search_mode();
        c.as_object_mut().unwrap().remove("bind_password");
        assert!(parse_err(c).contains("exactly one of"));

        let mut c = search_mode();
        c.as_object_mut().unwrap().remove("bind_password");
        c["bind_password_env"] = json!("LDAP_PW");
        assert_eq!(parse_ok(c).service_account.unwrap().1.expose(), "from-env");

        let mut c = search_mode();
        c.as_object_mut().unwrap().remove("bind_password");
        c["bind_password_env"] = json!("UNSET_VAR");
        assert!(parse_err(c).contains("UNSET_VAR is not set"));

        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "from-file").unwrap();
        let mut c = search_mode();
        c.as_object_mut().unwrap().remove("bind_password");
        c["bind_password_file"] = json!(file.path());
        assert_eq!(parse_ok(c).service_account.unwrap().1.expose(), "from-file");

        let mut c = search_mode();
        c.as_object_mut().unwrap().remove("bind_password");
        c["bind_password_file"] = json!("/nonexistent/pw");
        assert!(parse_err(c).contains("providers.corp.bind_password_file: cannot read"));
    }

    #[test]
    fn an_empty_service_password_is_refused() {
        let mut c = search_mode();
        c["bind_password"] = json!("");
        assert!(parse_err(c).contains("password is empty"));
        let empty = tempfile::NamedTempFile::new().unwrap();
        let mut c = search_mode();
        c.as_object_mut().unwrap().remove("bind_password");
        c["bind_password_file"] = json!(empty.path());
        assert!(parse_err(c).contains("password is empty"));
    }

    #[test]
    fn search_mode_needs_a_service_account_and_a_username_placeholder() {
        let mut c = search_mode();
        let o = c.as_object_mut().unwrap();
        o.remove("bind_dn");
        o.remove("bind_password");
        assert!(parse_err(c).contains("needs a service account"));

        let mut c = search_mode();
        c["user_search"]["filter"] = json!("(uid=admin)");
        assert!(parse_err(c).contains("providers.corp.user_search.filter"));

        let mut c = search_mode();
        c["user_search"]["filter"] = json!("(uid={username}");
        assert!(parse_err(c).contains("not a valid LDAP filter"));

        let mut c = search_mode();
        c.as_object_mut().unwrap().remove("bind_dn");
        assert!(parse_err(c).contains("bind_dn: is missing"));
    }

    #[test]
    fn exactly_one_of_user_search_and_user_dn_template() {
        let mut c = search_mode();
        c["user_dn_template"] = json!("uid={username},dc=x");
        assert!(parse_err(c).contains("not both"));
        let mut c = search_mode();
        c.as_object_mut().unwrap().remove("user_search");
        assert!(parse_err(c).contains("set either"));
    }

    #[test]
    fn direct_bind_mode_needs_no_service_account() {
        let c = json!({
            "url": "ldaps://ldap.example.org",
            "insecure_skip_verify": true,
            "user_dn_template": "uid={username},ou=people,dc=example,dc=org",
        });
        let s = parse_ok(c);
        assert!(s.service_account.is_none());
        assert!(s.encrypted);
        assert!(!s.loopback);
        assert!(s.tls.is_some());
        match s.lookup {
            UserLookup::Direct { template } => assert_eq!(
                template.render(Values {
                    username: "a,b",
                    dn: ""
                }),
                // `ldap3::dn_escape` writes RFC 4514 hex pairs: `\2c` is the comma.
                "uid=a\\2cb,ou=people,dc=example,dc=org"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn urls_must_be_ldap_with_a_host_and_nothing_else() {
        for (url, msg) in [
            ("http://x", "not supported"),
            ("ldap://", "no host"),
            ("ldap://u:p@host", "credentials"),
            ("ldap://host/dc=example", "only scheme, host and port"),
            ("not a url", "is not a URL"),
        ] {
            let mut c = search_mode();
            c["url"] = json!(url);
            let e = parse_err(c);
            assert!(
                e.contains("providers.corp.url") && e.contains(msg),
                "{url}: {e}"
            );
        }
    }

    #[test]
    fn tls_options_must_match_the_transport() {
        let mut c = search_mode();
        c["url"] = json!("ldaps://h");
        c["start_tls"] = json!(true);
        assert!(parse_err(c).contains("start_tls"));
        let mut c = search_mode();
        c["ca_file"] = json!("/x.pem");
        assert!(parse_err(c).contains("plain text"));
        let mut c = search_mode();
        c["insecure_skip_verify"] = json!(true);
        assert!(parse_err(c).contains("plain text"));
        let mut c = search_mode();
        c["start_tls"] = json!(true);
        c["ca_file"] = json!("/nonexistent/ca.pem");
        assert!(parse_err(c).contains("providers.corp.ca_file: cannot read"));
    }

    #[test]
    fn group_options_need_group_search() {
        let mut c = search_mode();
        c.as_object_mut().unwrap().remove("group_search");
        assert!(parse_err(c).contains("required_group: needs group_search"));
        let mut c = search_mode();
        c.as_object_mut().unwrap().remove("group_search");
        c.as_object_mut().unwrap().remove("required_group");
        assert!(parse_err(c).contains("group_prefix: needs group_search"));
    }

    #[test]
    fn group_filter_defaults_and_ad_nested_groups() {
        let mut c = search_mode();
        c["group_search"] = json!({ "base_dn": "dc=x" });
        let g = parse_ok(c).groups.unwrap();
        assert_eq!(g.filter.as_str(), "(member={dn})");

        let mut c = search_mode();
        c["group_search"] = json!({ "base_dn": "dc=x", "ad_nested_groups": true });
        let g = parse_ok(c).groups.unwrap();
        assert_eq!(
            g.filter.render(Values {
                username: "u",
                dn: "CN=Ada (x),DC=corp"
            }),
            "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:=CN=Ada \\28x\\29,DC=corp))"
        );

        let mut c = search_mode();
        c["group_search"] =
            json!({ "base_dn": "dc=x", "ad_nested_groups": true, "filter": "(member={dn})" });
        assert!(parse_err(c).contains("in-chain rule"));

        let mut c = search_mode();
        c["group_search"] = json!({ "base_dn": "dc=x", "filter": "(cn=static)" });
        assert!(parse_err(c).contains("group_search.filter"));
    }

    #[test]
    fn object_guid_ids_are_rendered_as_guids() {
        let mut c = search_mode();
        c["id_attribute"] = json!("objectGUID");
        assert_eq!(parse_ok(c).attributes.id_format, IdFormat::Guid);
    }

    #[test]
    fn the_service_password_never_prints() {
        let s = parse_ok(search_mode());
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
