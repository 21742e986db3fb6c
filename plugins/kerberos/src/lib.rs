//! Kerberos provider plugin (`libswitchboard_kerberos.so`, loaded as `type = "plugin"`).
//!
//! - **Single sign-on (SPNEGO)**, the header-login capability: a request without
//!   `Authorization: Negotiate` gets the challenge `WWW-Authenticate: Negotiate`; a
//!   token is accepted with the service's keytab (MIT krb5's replay cache refuses a
//!   token seen before) and the mutual-authentication token goes back in the final
//!   `WWW-Authenticate`.
//! - **Kerberos passwords**, for browsers without a ticket: the password gets a TGT
//!   from the KDC (in memory, through `gss_acquire_cred_with_password`; never a
//!   `kinit` process, file or environment variable), then a service ticket for the
//!   broker's own principal, which is accepted with the keytab. A KDC that is not the
//!   realm's cannot forge that ticket, so it cannot forge a login. The password is
//!   never logged or kept.
//! - **Identity**: subject = the principal (`ada@EXAMPLE.COM`), username = its name
//!   without the realm, claims `principal` and `realm` (for role rules by realm), an
//!   email when the realm has a configured domain. Only single-component principals
//!   of the allowed realms log in (never `HTTP/host` or `ada/admin`).
//! - **No refresh**: Kerberos cannot re-check a person later, so the broker's
//!   `max_session_without_recheck` of the provider bounds the session.
//!
//! Every refusal is [`ProviderError::InvalidCredentials`] (one message for the person)
//! with the reason logged as a warning.

mod gss;

use serde::Deserialize;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use switchboard_plugin_api::{
    HeaderAnswer, HeaderLogin, HeaderRequest, Identity, PasswordLogin, PasswordRequest, Provider,
    ProviderContext, ProviderError, ProviderFactory, ResponseHeader,
};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Longest `Authorization` value read (a ticket with a large PAC is a few KB).
const MAX_TOKEN_CHARS: usize = 64 * 1024;

/// The provider's config (the plugin's `config` table).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The broker's service principal, e.g. `HTTP/sso.example.com@EXAMPLE.COM`.
    service_principal: String,
    /// The keytab holding its keys: owned by the broker's user, mode 0600 or 0400.
    keytab: PathBuf,
    /// Realms whose people may log in.
    allowed_realms: Vec<String>,
    /// The realm of a typed username without `@REALM` (default: the first allowed).
    #[serde(default)]
    default_realm: Option<String>,
    /// Realm → email domain: `ada@EXAMPLE.COM` gets `ada@<domain>`.
    #[serde(default)]
    email_domains: BTreeMap<String, String>,
    /// Whether those emails are the person's verified addresses.
    #[serde(default)]
    email_verified: bool,
    /// libkrb5 replay cache for accepted tokens, e.g. `file2:/var/lib/switchboard/rcache`
    /// (default: libkrb5's, in `KRB5RCACHEDIR` or `/var/tmp`). Never `none`.
    #[serde(default)]
    replay_cache: Option<String>,
    /// Offer the Kerberos password form to browsers without a ticket.
    #[serde(default = "yes")]
    password_login: bool,
}

fn yes() -> bool {
    true
}

/// One configured Kerberos provider.
#[derive(Debug)]
pub struct Kerberos {
    service: String,
    acceptor: Arc<gss::Cred>,
    people: People,
    password_login: bool,
}

/// Who may log in, and what their identity says: the part of the config that needs
/// no KDC and no keytab.
#[derive(Debug)]
struct People {
    allowed_realms: Vec<String>,
    default_realm: String,
    email_domains: BTreeMap<String, String>,
    email_verified: bool,
}

fn misconfigured(id: &str, key: &str, detail: impl std::fmt::Display) -> ProviderError {
    ProviderError::Misconfigured {
        detail: format!("providers.{id}.config.{key}: {detail}"),
    }
}

/// The keytab must be a regular file that only the broker's own user can read.
fn check_keytab(id: &str, config: &Config) -> Result<(), ProviderError> {
    let meta = std::fs::metadata(&config.keytab).map_err(|e| {
        misconfigured(
            id,
            "keytab",
            format!("cannot read {}: {e}", config.keytab.display()),
        )
    })?;
    if !meta.is_file() {
        return Err(misconfigured(id, "keytab", "not a regular file"));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(misconfigured(
            id,
            "keytab",
            format!(
                "{} has mode {mode:o}: its keys let anyone who reads it forge logins; \
                 make it readable by the broker's user only (chmod 600)",
                config.keytab.display()
            ),
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Err(misconfigured(
            id,
            "keytab",
            format!(
                "{} is owned by uid {}, not by the broker's user (uid {euid})",
                config.keytab.display(),
                meta.uid()
            ),
        ));
    }
    Ok(())
}

impl Kerberos {
    fn new(context: &ProviderContext) -> Result<Self, ProviderError> {
        let id = context.id.as_str();
        let config: Config = context.parse_config()?;
        let (_, service_realm) = split_principal(&config.service_principal).ok_or_else(|| {
            misconfigured(
                id,
                "service_principal",
                "must be a full principal like HTTP/sso.example.com@EXAMPLE.COM",
            )
        })?;
        if config.allowed_realms.is_empty() {
            return Err(misconfigured(
                id,
                "allowed_realms",
                format!("list at least one realm, e.g. [{service_realm:?}]"),
            ));
        }
        if let Some(rcache) = &config.replay_cache
            && rcache.trim().eq_ignore_ascii_case("none")
        {
            return Err(misconfigured(
                id,
                "replay_cache",
                "\"none\" would accept a replayed ticket",
            ));
        }
        let default_realm = match &config.default_realm {
            Some(realm) if config.allowed_realms.contains(realm) => realm.clone(),
            Some(realm) => {
                return Err(misconfigured(
                    id,
                    "default_realm",
                    format!("{realm:?} is not in allowed_realms"),
                ));
            }
            None => config.allowed_realms[0].clone(),
        };
        check_keytab(id, &config)?;
        let service = gss::Name::principal(&config.service_principal)
            .map_err(|e| misconfigured(id, "service_principal", e))?;
        // Fails when the keytab holds no key of the service principal.
        let acceptor =
            gss::Cred::acceptor(&service, &config.keytab, config.replay_cache.as_deref()).map_err(
                |e| {
                    misconfigured(
                        id,
                        "keytab",
                        format!(
                            "{} for {}: {e}",
                            config.keytab.display(),
                            config.service_principal
                        ),
                    )
                },
            )?;
        Ok(Kerberos {
            service: config.service_principal,
            acceptor: Arc::new(acceptor),
            people: People {
                allowed_realms: config.allowed_realms,
                default_realm,
                email_domains: config.email_domains,
                email_verified: config.email_verified,
            },
            password_login: config.password_login,
        })
    }
}

impl People {
    /// The identity of an authenticated principal, or why it may not log in.
    fn identity(&self, principal: &str) -> Result<Identity, String> {
        let (name, realm) = split_principal(principal)
            .ok_or_else(|| format!("malformed principal {principal:?}"))?;
        if name.contains('/') {
            return Err(format!(
                "principal {principal:?} is a service or admin principal, not a person"
            ));
        }
        if !self.allowed_realms.iter().any(|r| r == realm) {
            return Err(format!("realm {realm:?} of {principal:?} is not allowed"));
        }
        let mut identity = Identity::new(principal).with_username(name);
        if let Some(domain) = self.email_domains.get(realm) {
            identity = identity.with_email(format!("{name}@{domain}"), self.email_verified);
        }
        identity.claims = serde_json::json!({ "principal": principal, "realm": realm });
        Ok(identity)
    }

    /// The principal a typed username means, or why it cannot be one.
    fn typed_principal(&self, username: &str) -> Result<String, String> {
        let username = username.trim();
        if username.is_empty()
            || username.contains(['/', '\0'])
            || username.chars().any(char::is_whitespace)
        {
            return Err("the typed username is not a person's principal".into());
        }
        let principal = match username.rsplit_once('@') {
            Some((name, realm)) if !name.is_empty() && !realm.is_empty() => username.to_owned(),
            Some(_) => return Err("the typed username is not a person's principal".into()),
            None => format!("{username}@{}", self.default_realm),
        };
        Ok(principal)
    }
}

/// `name@REALM` → (`name`, `REALM`), splitting at the last `@`.
fn split_principal(principal: &str) -> Option<(&str, &str)> {
    principal
        .rsplit_once('@')
        .filter(|(name, realm)| !name.is_empty() && !realm.is_empty())
}

/// A refusal: the person sees one message, the log says why.
fn refused(reason: impl std::fmt::Display) -> ProviderError {
    tracing::warn!(reason = %reason, "Kerberos login refused");
    ProviderError::InvalidCredentials
}

fn challenge() -> HeaderAnswer {
    HeaderAnswer::Challenge {
        status: 401,
        headers: vec![ResponseHeader::new("WWW-Authenticate", "Negotiate")],
    }
}

#[async_trait::async_trait]
impl HeaderLogin for Kerberos {
    async fn read_headers(&self, request: HeaderRequest) -> Result<HeaderAnswer, ProviderError> {
        let Some(authorization) = request.header("authorization") else {
            return Ok(challenge());
        };
        let Some((scheme, token)) = authorization.trim().split_once(' ') else {
            return Ok(challenge());
        };
        if !scheme.eq_ignore_ascii_case("negotiate") {
            // Basic or another scheme: not ours to read.
            return Ok(challenge());
        }
        let token = token.trim();
        if token.len() > MAX_TOKEN_CHARS {
            return Err(refused("Negotiate token too long"));
        }
        let token = STANDARD
            .decode(token)
            .map_err(|_| refused("Negotiate token is not base64"))?;
        let acceptor = self.acceptor.clone();
        let accepted = tokio::task::spawn_blocking(move || gss::accept(&acceptor, &token))
            .await
            .map_err(|e| ProviderError::unavailable(format!("GSSAPI task: {e}")))?
            .map_err(|e| refused(format!("ticket for {} not accepted: {e}", self.service)))?;
        let identity = self.people.identity(&accepted.client).map_err(refused)?;
        tracing::info!(principal = %accepted.client, "Kerberos ticket accepted");
        let headers = match accepted.reply {
            Some(reply) => vec![ResponseHeader::new(
                "WWW-Authenticate",
                format!("Negotiate {}", STANDARD.encode(reply)),
            )],
            None => Vec::new(),
        };
        Ok(HeaderAnswer::Identity {
            identity: Box::new(identity),
            headers,
        })
    }
}

#[async_trait::async_trait]
impl PasswordLogin for Kerberos {
    async fn authenticate(&self, request: PasswordRequest) -> Result<Identity, ProviderError> {
        let principal = self
            .people
            .typed_principal(&request.username)
            .map_err(refused)?;
        // Refused before the KDC hears of it: no ticket for a realm we would refuse.
        let identity = self.people.identity(&principal).map_err(refused)?;
        let acceptor = self.acceptor.clone();
        let service = self.service.clone();
        let person = principal.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let name = gss::Name::principal(&person)?;
            let cred = gss::Cred::with_password(&name, request.password.expose().as_bytes())?;
            drop(request);
            let target = gss::Name::principal(&service)?;
            let token = gss::initiate(&cred, &target)?;
            gss::accept(&acceptor, &token)
        })
        .await
        .map_err(|e| ProviderError::unavailable(format!("GSSAPI task: {e}")))?;
        let accepted = match checked {
            Ok(accepted) => accepted,
            Err(e) if e.kdc_unreachable() => {
                return Err(ProviderError::unavailable(format!("Kerberos KDC: {e}")));
            }
            Err(e) => {
                return Err(refused(format!(
                    "password of {principal} not verified: {e}"
                )));
            }
        };
        // The ticket the keytab accepted must be the person's who typed the password.
        if accepted.client != principal {
            return Err(refused(format!(
                "the KDC issued a ticket for {} when asked for {principal}",
                accepted.client
            )));
        }
        tracing::info!(principal = %principal, "Kerberos password verified against the keytab");
        Ok(identity)
    }
}

impl Provider for Kerberos {
    fn header(&self) -> Option<&dyn HeaderLogin> {
        Some(self)
    }
    fn password(&self) -> Option<&dyn PasswordLogin> {
        self.password_login.then_some(self as &dyn PasswordLogin)
    }
}

/// Builds `kerberos` providers.
#[derive(Debug, Default)]
pub struct KerberosFactory;

impl ProviderFactory for KerberosFactory {
    fn provider_type(&self) -> &str {
        "kerberos"
    }

    fn create(&self, context: ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(Arc::new(Kerberos::new(&context)?))
    }
}

switchboard_plugin_api::export_plugin! {
    name: "kerberos",
    factory: KerberosFactory,
    capabilities: [header, password],
    headers: ["authorization"],
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn create(config: serde_json::Value) -> String {
        KerberosFactory
            .create(ProviderContext::new("krb", config, false))
            .map(|_| "created".to_owned())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn a_keytab_others_can_read_is_refused_before_it_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let keytab = dir.path().join("http.keytab");
        std::fs::write(&keytab, b"\x05\x02").unwrap();
        std::fs::set_permissions(&keytab, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = create(serde_json::json!({
            "service_principal": "HTTP/localhost@EXAMPLE.TEST",
            "keytab": keytab,
            "allowed_realms": ["EXAMPLE.TEST"],
        }));
        assert!(err.contains("providers.krb.config.keytab"), "{err}");
        assert!(err.contains("mode 644"), "{err}");
    }

    #[test]
    fn a_keytab_without_the_service_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keytab = dir.path().join("http.keytab");
        // An empty keytab (format version 0x0502, no entries).
        std::fs::write(&keytab, b"\x05\x02").unwrap();
        std::fs::set_permissions(&keytab, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = create(serde_json::json!({
            "service_principal": "HTTP/localhost@EXAMPLE.TEST",
            "keytab": keytab,
            "allowed_realms": ["EXAMPLE.TEST"],
        }));
        assert!(err.contains("providers.krb.config.keytab"), "{err}");
        assert!(err.contains("HTTP/localhost@EXAMPLE.TEST"), "{err}");
    }

    fn people() -> People {
        People {
            allowed_realms: vec!["EXAMPLE.COM".into(), "CORP.EXAMPLE.COM".into()],
            default_realm: "EXAMPLE.COM".into(),
            email_domains: [("EXAMPLE.COM".to_owned(), "example.com".to_owned())].into(),
            email_verified: false,
        }
    }

    #[test]
    fn the_subject_is_the_principal_and_the_username_its_name() {
        let ada = people().identity("ada@EXAMPLE.COM").unwrap();
        assert_eq!(ada.subject, "ada@EXAMPLE.COM");
        assert_eq!(ada.username.as_deref(), Some("ada"));
        assert_eq!(ada.email.as_deref(), Some("ada@example.com"));
        assert!(!ada.email_verified);
        assert_eq!(ada.claims["realm"], "EXAMPLE.COM");
        let bob = people().identity("bob@CORP.EXAMPLE.COM").unwrap();
        assert_eq!(bob.email, None, "no domain configured for that realm");
    }

    #[test]
    fn other_realms_and_service_principals_are_refused() {
        let people = people();
        let err = people.identity("ada@EVIL.ORG").unwrap_err();
        assert!(err.contains("\"EVIL.ORG\""), "{err}");
        assert!(people.identity("HTTP/host@EXAMPLE.COM").is_err());
        assert!(people.identity("ada/admin@EXAMPLE.COM").is_err());
        assert!(people.identity("ada@").is_err());
        assert!(people.identity("ada").is_err());
    }

    #[test]
    fn a_typed_username_gets_the_default_realm() {
        let people = people();
        assert_eq!(people.typed_principal(" ada ").unwrap(), "ada@EXAMPLE.COM");
        assert_eq!(
            people.typed_principal("bob@CORP.EXAMPLE.COM").unwrap(),
            "bob@CORP.EXAMPLE.COM"
        );
        for bad in ["", "HTTP/host", "a b", "ada@", "@EXAMPLE.COM", "x\0y"] {
            assert!(people.typed_principal(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_settings_are_named() {
        let base = |extra: serde_json::Value| {
            let mut config = serde_json::json!({
                "service_principal": "HTTP/localhost@EXAMPLE.TEST",
                "keytab": "/nonexistent/http.keytab",
                "allowed_realms": ["EXAMPLE.TEST"],
            });
            for (k, v) in extra.as_object().unwrap() {
                config[k] = v.clone();
            }
            create(config)
        };
        assert!(
            base(serde_json::json!({"service_principal": "HTTP/localhost"}))
                .contains("service_principal")
        );
        assert!(base(serde_json::json!({"allowed_realms": []})).contains("allowed_realms"));
        assert!(base(serde_json::json!({"replay_cache": "none"})).contains("replay_cache"));
        assert!(base(serde_json::json!({"default_realm": "OTHER"})).contains("default_realm"));
        assert!(base(serde_json::json!({"keytabb": "x"})).contains("unknown field"));
        assert!(base(serde_json::json!({})).contains("cannot read /nonexistent/http.keytab"));
    }
}
