//! Configuration: one TOML file plus `BROKER_`-prefixed environment overrides (nested
//! keys joined by `__`), validated once at start into typed values. Every error names
//! the key and the file.

mod raw;
mod redirect_uri;
mod roles;

pub use redirect_uri::{RedirectUri, RedirectUriError};
pub use roles::{ProfileSync, ProviderPolicy, Registration, Signup};

use crate::secrets::SecretString;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use ipnet::IpNet;
use raw::{RawClient, RawConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use url::Url;

/// Scopes the broker understands.
pub const SUPPORTED_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "groups",
    "roles",
    "permissions",
    "offline_access",
];

/// The device authorization grant (RFC 8628) at the token endpoint.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The token-exchange grant (RFC 8693) at the token endpoint.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// Grants a client may be allowed.
pub const SUPPORTED_GRANTS: &[&str] = &[
    "authorization_code",
    "refresh_token",
    "client_credentials",
    DEVICE_CODE_GRANT,
    TOKEN_EXCHANGE_GRANT,
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Parse {
        file: String,
        #[source]
        source: Box<figment::Error>,
    },
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

/// JWS algorithms Switchboard signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SigningAlg {
    Rs256,
    Es256,
    EdDsa,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 3] = [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa];

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => "RS256",
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Lifetimes, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub access_token: i64,
    pub id_token: i64,
    pub refresh_token_idle: i64,
    pub refresh_token_absolute: i64,
}

#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub default_alg: SigningAlg,
    pub lifetimes: Lifetimes,
    pub refresh_reuse_grace: i64,
    /// How long what was learnt about a live access token is kept (0: not at all).
    pub status_cache_lifetime: i64,
    pub code_lifetime: i64,
    pub key_rotation_period: i64,
    pub jwks_cache_lifetime: i64,
    /// The lifetime of a token made by token exchange (RFC 8693), in seconds; never
    /// past the subject token's own expiry.
    pub exchange_token_lifetime: i64,
}

/// `[device]`: the device authorization grant (RFC 8628).
#[derive(Debug, Clone)]
pub struct DeviceSettings {
    /// How long a device code and its user code live, in seconds.
    pub code_lifetime: i64,
    /// The polling interval a device is told, in seconds.
    pub interval: i64,
    /// Wrong user codes one person may enter within `login.throttle_window` before
    /// the page refuses every code.
    pub user_code_tries: u32,
}

#[derive(Debug, Clone)]
pub struct LoginSettings {
    pub request_lifetime: i64,
    pub throttle_window: i64,
    pub max_failures_per_account: u32,
    pub max_failures_per_ip: u32,
    /// Logins one client address may start per minute: each start stores a row, so
    /// anonymous requests must not be able to fill the store.
    pub max_starts_per_ip: u32,
    /// Bound on every call into a provider (password check, upstream exchange).
    pub provider_timeout: std::time::Duration,
}

/// `[api_keys]`: people's long-lived keys for programs.
#[derive(Debug, Clone)]
pub struct ApiKeySettings {
    /// The longest expiry a key may be given, in seconds (every key has one).
    pub max_lifetime: i64,
    /// Keys one person may hold at once (revoked ones count until they expire).
    pub max_per_user: u32,
    /// Failed key verifications (an `sbk_` secret that is no key) one client address
    /// may make in `failure_window` before every key it presents is refused.
    pub max_failures_per_ip: u32,
    pub failure_window: i64,
}

/// `[backchannel_logout]`: how logout tokens reach clients (OpenID Back-Channel
/// Logout 1.0). Notices wait in the store's outbox until delivered.
#[derive(Debug, Clone)]
pub struct BackchannelSettings {
    /// Seconds one POST to a client may take.
    pub timeout: i64,
    /// Attempts before a notice is given up (with an error in the log).
    pub max_attempts: u32,
    /// Seconds before the first retry; each further retry waits twice as long (at
    /// most an hour).
    pub retry_delay: i64,
    /// Seconds a replica holds the notices it took before another may take them.
    pub lease: i64,
}

/// How the broker reaches its SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: plain connection upgraded with STARTTLS, which is required.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    ImplicitTls,
    /// `smtp+plain://`: no TLS at all; accepted only for a loopback host.
    Plain,
}

/// Where SMTP mail goes, read from `smtp_url` and the credentials.
struct SmtpTarget {
    host: String,
    port: u16,
    security: SmtpSecurity,
    credentials: Option<(SecretString, SecretString)>,
}

/// `[email]`: outgoing mail. Mails wait in the store's outbox until the SMTP server
/// took them.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// SMTP AUTH; both or neither.
    pub credentials: Option<(SecretString, SecretString)>,
    /// `directory`: mails are written there as `.eml` files instead of sent (dev
    /// mode only; the SMTP fields are then unused).
    pub directory: Option<PathBuf>,
    /// The `From` mailbox, checked at load (`Name <addr>` or `addr`).
    pub from: String,
    /// Seconds one SMTP conversation may take.
    pub timeout: i64,
    /// Attempts before a mail is given up (with an error in the log).
    pub max_attempts: u32,
    /// Seconds before the first retry; each further retry waits twice as long (at
    /// most an hour).
    pub retry_delay: i64,
    /// Seconds a replica holds the mails it took before another may take them.
    pub lease: i64,
}

/// `[admin]`: the admin API.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Whether an API key (`Authorization: Token sbk_…` or `Bearer sbk_…`) may call
    /// the admin API, with the key's permissions. Off by default.
    pub accept_api_keys: bool,
    /// Where the admin API is served instead of `server.listen`; `None`: there.
    pub listen: Option<SocketAddr>,
}

/// How a client proves who it is at the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// Public client (native app, SPA): no secret, PKCE mandatory.
    None,
    Secret(SecretString),
}

/// Which access tokens a client may introspect (`clients.ID.introspection`). Refresh
/// tokens are never subject to it: only their own client sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntrospectionPolicy {
    /// The tokens issued to the client, and those whose `aud` is the client's id or
    /// its configured `audience`.
    OwnAudience,
    /// Every access token: a trusted resource server.
    All,
}

impl IntrospectionPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "own_audience" => Some(IntrospectionPolicy::OwnAudience),
            "all" => Some(IntrospectionPolicy::All),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub auth: ClientAuth,
    /// As written: compared as strings (see [`RedirectUri`]).
    pub redirect_uris: Vec<RedirectUri>,
    /// `/authorize` requires a PKCE S256 challenge (always true for public clients).
    pub require_pkce: bool,
    /// Every sign-in for it needs a second factor (an SSO session without one steps up).
    pub require_mfa: bool,
    pub scopes: BTreeSet<String>,
    pub grants: BTreeSet<String>,
    pub cors_origins: BTreeSet<String>,
    pub id_token_alg: SigningAlg,
    pub audience: Option<String>,
    pub resources: BTreeSet<String>,
    pub lifetimes: Lifetimes,
    /// Exact URIs a person may be sent to after RP-initiated logout.
    /// As written: compared as strings, like `redirect_uris`.
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    pub backchannel_logout_uri: Option<Url>,
    pub backchannel_logout_session_required: bool,
    /// Which access tokens it may introspect (confidential clients only).
    pub introspection: IntrospectionPolicy,
    /// The audiences it may exchange a person's access token for (RFC 8693).
    pub exchange_audiences: BTreeSet<String>,
}

impl Client {
    pub fn is_public(&self) -> bool {
        matches!(self.auth, ClientAuth::None)
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grants.contains(grant)
    }

    /// Whether this client may ask for tokens for `resource` (RFC 8707): its own
    /// `audience` or one of its `resources`.
    pub fn allows_resource(&self, resource: &str) -> bool {
        self.audience.as_deref() == Some(resource) || self.resources.contains(resource)
    }
}

#[derive(Debug, Clone)]
pub struct ProviderSection {
    pub id: String,
    pub kind: String,
    pub name: String,
    /// The broker's keys of the section.
    pub policy: ProviderPolicy,
    /// The provider's own keys, for its factory.
    pub options: serde_json::Value,
}

#[derive(Debug, Clone)]
pub enum StoreSettings {
    Sqlite {
        path: PathBuf,
    },
    /// Shared by several replicas. The URL may hold a password: it is a secret.
    Postgres {
        url: SecretString,
        schema: String,
        max_connections: u32,
    },
}

/// The PostgreSQL pool's size when `store.max_connections` is not set.
pub const DEFAULT_POSTGRES_CONNECTIONS: u32 = 10;

#[derive(Debug, Clone)]
pub enum MasterKeySource {
    Inline(SecretString),
    File(PathBuf),
    Env(String),
    /// Dev mode only: generated on first start.
    GeneratedFile(PathBuf),
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    /// Byte-equal to the `iss` of every token; never derived from a request.
    pub issuer: String,
    pub issuer_url: Url,
    pub dev_mode: bool,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub workers: Option<usize>,
    /// Seconds in-flight requests get to finish after SIGTERM or SIGINT.
    pub shutdown_timeout: i64,
    /// Proxies whose `X-Forwarded-For` is believed: addresses (as /32 or /128) and
    /// CIDR ranges.
    pub trusted_proxies: Vec<IpNet>,
    pub max_body_bytes: usize,
    pub store: StoreSettings,
    pub master_key: MasterKeySource,
    /// Previous master keys (files): they open what they sealed during a rotation.
    pub previous_master_keys: Vec<PathBuf>,
    pub tokens: TokenSettings,
    pub session_lifetime: i64,
    pub login: LoginSettings,
    pub clients: BTreeMap<String, Client>,
    pub providers: Vec<ProviderSection>,
    /// Role rules, permissions, default and admin roles.
    pub roles: crate::roles::RolePolicy,
    pub api_keys: ApiKeySettings,
    pub admin: AdminSettings,
    pub device: DeviceSettings,
    pub backchannel: BackchannelSettings,
    /// `[email]`; `None` when no mail is sent.
    pub email: Option<EmailSettings>,
    pub ui: UiSettings,
    pub account_policy: AccountPolicy,
}

/// `[ui]`: where an operator's theme is and the default language of the pages. The
/// theme itself is read and checked when the pages are built (`web::Pages::load`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSettings {
    pub theme_dir: Option<PathBuf>,
    /// A lowercase BCP 47 tag (`en`, `de`, `pt-br`).
    pub default_locale: String,
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings {
            theme_dir: None,
            default_locale: "en".to_string(),
        }
    }
}

/// `[account_policy]`: what a username, an email, a password and a managed group's
/// name may be (checked by `identity::policy`). Patterns match whole values.
#[derive(Debug, Clone)]
pub struct AccountPolicy {
    pub username_pattern: Option<regex::Regex>,
    pub email_pattern: Option<regex::Regex>,
    pub password_pattern: Option<regex::Regex>,
    pub group_name_pattern: Option<regex::Regex>,
    pub min_password_length: usize,
    pub reject_common_passwords: bool,
    /// The operator's banned passwords, lowercased.
    pub banned_passwords: std::collections::HashSet<String>,
}

impl Default for AccountPolicy {
    fn default() -> Self {
        AccountPolicy {
            username_pattern: None,
            email_pattern: None,
            password_pattern: None,
            group_name_pattern: None,
            min_password_length: 8,
            reject_common_passwords: true,
            banned_passwords: Default::default(),
        }
    }
}

impl Config {
    /// True when the issuer is plain http on a loopback address: the only case where
    /// cookies go without `Secure`.
    pub fn is_loopback_http(&self) -> bool {
        self.issuer_url.scheme() == "http" && is_loopback_host(&self.issuer_url)
    }
}

pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Loads `file` with `BROKER_*` environment overrides and validates it.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    // BROKER_LOG and BROKER_LOG_JSON configure logging, not the broker.
    load_with_env(
        file,
        Env::prefixed("BROKER_")
            .ignore(&["log", "log_json"])
            .split("__"),
    )
}

fn load_with_env(file: &Path, env: Env) -> Result<Config, ConfigError> {
    let shown = file.display().to_string();
    if !file.is_file() {
        return Err(ConfigError::Invalid {
            file: shown,
            key: "(file)".into(),
            message: "no such config file".into(),
        });
    }
    let raw: RawConfig = Figment::new()
        .merge(Toml::file_exact(file))
        .merge(env)
        .extract()
        .map_err(|e| ConfigError::Parse {
            file: shown.clone(),
            source: Box::new(e),
        })?;
    Validator { file: shown }.validate(file, raw)
}

struct Validator {
    file: String,
}

impl Validator {
    /// `[store]`: which backend, and its keys (another backend's keys are an error, so
    /// a half-edited section does not silently run on the wrong store).
    fn store(&self, raw: &RawConfig) -> Result<StoreSettings, ConfigError> {
        let s = &raw.store;
        let has_postgres_keys = s.url.is_some()
            || s.url_file.is_some()
            || s.url_env.is_some()
            || s.schema.is_some()
            || s.max_connections.is_some();
        match s.backend.as_deref().unwrap_or("sqlite") {
            "sqlite" => {
                if has_postgres_keys {
                    return Err(self.err(
                        "store",
                        "url, url_file, url_env, schema and max_connections are for backend = \"postgres\"",
                    ));
                }
                Ok(StoreSettings::Sqlite {
                    path: s
                        .path
                        .clone()
                        .unwrap_or_else(|| raw.data_dir.join("switchboard.db")),
                })
            }
            "postgres" => {
                if s.path.is_some() {
                    return Err(self.err(
                        "store.path",
                        "is for backend = \"sqlite\"; PostgreSQL is reached by url, url_file or url_env",
                    ));
                }
                // The errors name the key, never the URL itself.
                let url = resolve_secret(
                    "store.url",
                    s.url.as_deref(),
                    s.url_file.as_deref(),
                    s.url_env.as_deref(),
                )
                .map_err(|m| self.err("store.url", m))?
                .ok_or_else(|| {
                    self.err(
                        "store.url",
                        "backend = \"postgres\" needs one of url, url_file, url_env",
                    )
                })?;
                let schema = s.schema.clone().unwrap_or_else(|| "public".to_owned());
                if !crate::store::valid_schema_name(&schema) {
                    return Err(self.err(
                        "store.schema",
                        "must be a lowercase identifier (a-z, 0-9, _; not starting with a digit or pg_), at most 63 bytes",
                    ));
                }
                let max_connections = s.max_connections.unwrap_or(DEFAULT_POSTGRES_CONNECTIONS);
                if max_connections == 0 {
                    return Err(self.err("store.max_connections", "must be at least 1"));
                }
                Ok(StoreSettings::Postgres {
                    url,
                    schema,
                    max_connections,
                })
            }
            other => Err(self.err(
                "store.backend",
                format!("unknown backend {other:?}; use \"sqlite\" or \"postgres\""),
            )),
        }
    }

    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn duration(&self, key: &str, value: Option<&str>, default: &str) -> Result<i64, ConfigError> {
        let text = value.unwrap_or(default);
        let d = humantime::parse_duration(text)
            .map_err(|e| self.err(key, format!("not a duration ({e}); write e.g. \"10m\"")))?;
        i64::try_from(d.as_secs()).map_err(|_| self.err(key, "duration too large"))
    }

    fn positive(&self, key: &str, value: Option<&str>, default: &str) -> Result<i64, ConfigError> {
        let secs = self.duration(key, value, default)?;
        if secs <= 0 {
            return Err(self.err(key, "must be at least one second"));
        }
        Ok(secs)
    }

    fn alg(
        &self,
        key: &str,
        value: Option<&str>,
        default: SigningAlg,
    ) -> Result<SigningAlg, ConfigError> {
        match value {
            None => Ok(default),
            Some(v) => SigningAlg::parse(v).ok_or_else(|| {
                self.err(
                    key,
                    format!("unknown algorithm {v:?}; use RS256, ES256 or EdDSA"),
                )
            }),
        }
    }

    fn validate(&self, file: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
        let issuer_url =
            Url::parse(&raw.issuer).map_err(|e| self.err("issuer", format!("not a URL: {e}")))?;
        if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
            return Err(self.err("issuer", "must not have a query or fragment"));
        }
        if raw.issuer.ends_with('/') {
            return Err(self.err("issuer", "must not end with '/'"));
        }
        match issuer_url.scheme() {
            "https" => {}
            "http" if is_loopback_host(&issuer_url) || raw.dev_mode => {}
            _ => {
                return Err(self.err(
                    "issuer",
                    "must be https (http only on loopback or in dev_mode)",
                ));
            }
        }

        let listen_text = raw.server.listen.as_deref().unwrap_or("127.0.0.1:5556");
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|e| self.err("server.listen", format!("not an address:port ({e})")))?;
        let admin_listen: Option<SocketAddr> = match raw.admin.listen.as_deref() {
            None => None,
            Some(text) => {
                let addr: SocketAddr = text
                    .parse()
                    .map_err(|e| self.err("admin.listen", format!("not an address:port ({e})")))?;
                if addr == listen || (addr.port() == listen.port() && addr.port() != 0) {
                    return Err(self.err(
                        "admin.listen",
                        "must be another port than server.listen (or leave it out to serve the admin API there)",
                    ));
                }
                Some(addr)
            }
        };
        let mut trusted_proxies = Vec::new();
        for (i, p) in raw.server.trusted_proxies.iter().enumerate() {
            trusted_proxies.push(
                trusted_proxy(p)
                    .map_err(|m| self.err(format!("server.trusted_proxies[{i}]"), m))?,
            );
        }

        let store = self.store(&raw)?;

        let s = &raw.secrets;
        let master_key = match (&s.master_key, &s.master_key_file, &s.master_key_env) {
            (Some(v), None, None) => MasterKeySource::Inline(SecretString::new(v.clone())),
            (None, Some(p), None) => MasterKeySource::File(p.clone()),
            (None, None, Some(e)) => MasterKeySource::Env(e.clone()),
            (None, None, None) if raw.dev_mode => {
                MasterKeySource::GeneratedFile(raw.data_dir.join("master.key"))
            }
            (None, None, None) => {
                return Err(self.err(
                    "secrets.master_key",
                    "required outside dev_mode: set master_key_file or master_key_env",
                ));
            }
            _ => {
                return Err(self.err(
                    "secrets",
                    "set only one of master_key, master_key_file, master_key_env",
                ));
            }
        };

        let t = &raw.tokens;
        let default_alg = self.alg(
            "tokens.signing_alg",
            t.signing_alg.as_deref(),
            SigningAlg::Rs256,
        )?;
        let lifetimes = Lifetimes {
            access_token: self.positive(
                "tokens.access_token_lifetime",
                t.access_token_lifetime.as_deref(),
                "10m",
            )?,
            id_token: self.positive(
                "tokens.id_token_lifetime",
                t.id_token_lifetime.as_deref(),
                "1h",
            )?,
            refresh_token_idle: self.positive(
                "tokens.refresh_token_idle_lifetime",
                t.refresh_token_idle_lifetime.as_deref(),
                "14d",
            )?,
            refresh_token_absolute: self.positive(
                "tokens.refresh_token_absolute_lifetime",
                t.refresh_token_absolute_lifetime.as_deref(),
                "90d",
            )?,
        };
        let tokens = TokenSettings {
            default_alg,
            lifetimes,
            refresh_reuse_grace: self.duration(
                "tokens.refresh_reuse_grace",
                t.refresh_reuse_grace.as_deref(),
                "10s",
            )?,
            status_cache_lifetime: self.duration(
                "tokens.status_cache_lifetime",
                t.status_cache_lifetime.as_deref(),
                "5s",
            )?,
            code_lifetime: self.positive(
                "tokens.code_lifetime",
                t.code_lifetime.as_deref(),
                "60s",
            )?,
            key_rotation_period: self.positive(
                "tokens.key_rotation_period",
                t.key_rotation_period.as_deref(),
                "30d",
            )?,
            jwks_cache_lifetime: self.positive(
                "tokens.jwks_cache_lifetime",
                t.jwks_cache_lifetime.as_deref(),
                "1h",
            )?,
            exchange_token_lifetime: self.positive(
                "tokens.exchange_token_lifetime",
                t.exchange_token_lifetime.as_deref(),
                "5m",
            )?,
        };
        if tokens.refresh_reuse_grace > 60 {
            return Err(self.err(
                "tokens.refresh_reuse_grace",
                "at most 60s: a longer grace defeats reuse detection",
            ));
        }
        if tokens.status_cache_lifetime > 300 {
            return Err(self.err(
                "tokens.status_cache_lifetime",
                "at most 5m: a revocation another replica misses shows only after this long",
            ));
        }
        if 2 * tokens.jwks_cache_lifetime >= tokens.key_rotation_period {
            return Err(self.err(
                "tokens.jwks_cache_lifetime",
                "must be less than half of tokens.key_rotation_period (the next key is published that long before it signs)",
            ));
        }

        let session_lifetime =
            self.positive("sessions.lifetime", raw.sessions.lifetime.as_deref(), "24h")?;
        let l = &raw.login;
        let login = LoginSettings {
            request_lifetime: self.positive(
                "login.request_lifetime",
                l.request_lifetime.as_deref(),
                "10m",
            )?,
            throttle_window: self.positive(
                "login.throttle_window",
                l.throttle_window.as_deref(),
                "15m",
            )?,
            max_failures_per_account: l.max_failures_per_account.unwrap_or(5),
            max_failures_per_ip: l.max_failures_per_ip.unwrap_or(50),
            max_starts_per_ip: l.max_starts_per_ip.unwrap_or(300),
            provider_timeout: std::time::Duration::from_secs(self.positive(
                "login.provider_timeout",
                l.provider_timeout.as_deref(),
                "15s",
            )? as u64),
        };
        if login.max_failures_per_account == 0 || login.max_failures_per_ip == 0 {
            return Err(self.err("login", "max_failures_per_* must be at least 1"));
        }
        if login.max_starts_per_ip == 0 {
            return Err(self.err("login.max_starts_per_ip", "must be at least 1"));
        }

        let mut clients = BTreeMap::new();
        for (id, c) in &raw.clients {
            clients.insert(id.clone(), self.client(id, c, &tokens, raw.dev_mode)?);
        }

        let mut providers = Vec::new();
        for (id, p) in &raw.providers {
            let key = format!("providers.{id}");
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(self.err(
                    key,
                    "provider ids may use only letters, digits, '-' and '_'",
                ));
            }
            if id.eq_ignore_ascii_case(crate::roles::MANAGED_GROUP_NAMESPACE) {
                return Err(self.err(
                    key,
                    "this id is reserved: managed groups appear in tokens as \"managed/<name>\"",
                ));
            }
            providers.push(ProviderSection {
                id: id.clone(),
                kind: p.kind.clone(),
                name: p.name.clone().unwrap_or_else(|| id.clone()),
                policy: self.provider_policy(id, p)?,
                options: serde_json::Value::Object(p.options.clone()),
            });
        }
        if providers.is_empty() {
            return Err(self.err("providers", "configure at least one provider"));
        }
        let roles = self.roles(&raw.roles, &clients, &providers)?;
        let api_keys = self.api_keys(&raw.api_keys)?;
        let device = self.device(&raw.device)?;
        let backchannel = self.backchannel(&raw.backchannel_logout)?;
        let email = match &raw.email {
            Some(e) => Some(self.email(e)?),
            None => None,
        };
        if email.is_none() {
            for p in &providers {
                let needs_mail = [
                    (
                        "allow_password_reset",
                        p.policy.password_reset.is_some(),
                        "the reset link goes by mail",
                    ),
                    (
                        "allow_registration",
                        p.policy.signup.is_some_and(|s| !s.auto_activate),
                        "the confirmation link goes by mail (or set auto_activate = true)",
                    ),
                    (
                        "allow_email_change",
                        p.policy.email_change,
                        "the new address is confirmed by mail",
                    ),
                ];
                if let Some((key, _, why)) = needs_mail.iter().find(|(_, on, _)| *on) {
                    return Err(self.err(
                        format!("providers.{}.{key}", p.id),
                        format!("needs an [email] section: {why}"),
                    ));
                }
            }
        }
        if email.as_ref().is_some_and(|e| e.directory.is_some()) && !raw.dev_mode {
            return Err(self.err(
                "email.directory",
                "only with dev_mode = true: in production mail goes over SMTP",
            ));
        }
        let ui = self.ui(&raw.ui)?;
        let account_policy = self.account_policy(&raw.account_policy)?;
        let shutdown_timeout = self.positive(
            "server.shutdown_timeout",
            raw.server.shutdown_timeout.as_deref(),
            "10s",
        )?;

        Ok(Config {
            file: file.to_path_buf(),
            issuer: raw.issuer.clone(),
            issuer_url,
            dev_mode: raw.dev_mode,
            data_dir: raw.data_dir.clone(),
            listen,
            workers: raw.server.workers,
            shutdown_timeout,
            trusted_proxies,
            max_body_bytes: raw.server.max_body_bytes.unwrap_or(64 * 1024),
            store,
            master_key,
            previous_master_keys: raw.secrets.previous_master_key_files.clone(),
            tokens,
            session_lifetime,
            login,
            clients,
            providers,
            roles,
            api_keys,
            admin: AdminSettings {
                listen: admin_listen,
                accept_api_keys: raw.admin.accept_api_keys,
            },
            device,
            backchannel,
            email,
            ui,
            account_policy,
        })
    }

    fn ui(&self, raw: &raw::RawUi) -> Result<UiSettings, ConfigError> {
        if raw
            .theme_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(self.err("ui.theme_dir", "empty: name a directory or leave it out"));
        }
        let default_locale = raw.default_locale.as_deref().unwrap_or("en");
        let valid = !default_locale.is_empty()
            && default_locale.len() <= 35
            && default_locale.split('-').all(|p| {
                !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric())
            });
        if !valid {
            return Err(self.err(
                "ui.default_locale",
                "a language tag such as \"en\", \"de\" or \"pt-BR\"",
            ));
        }
        Ok(UiSettings {
            theme_dir: raw.theme_dir.clone(),
            default_locale: default_locale.to_ascii_lowercase(),
        })
    }

    fn account_policy(&self, raw: &raw::RawAccountPolicy) -> Result<AccountPolicy, ConfigError> {
        let pattern =
            |key: &str, value: &Option<String>| -> Result<Option<regex::Regex>, ConfigError> {
                value
                    .as_deref()
                    .map(|p| {
                        // Anchored by construction: a pattern always matches a whole value.
                        regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                            self.err(
                                format!("account_policy.{key}"),
                                format!("not a valid regex: {e}"),
                            )
                        })
                    })
                    .transpose()
            };
        let min_password_length = raw.min_password_length.unwrap_or(8);
        if !(8..=256).contains(&min_password_length) {
            return Err(self.err(
                "account_policy.min_password_length",
                "between 8 and 256 (NIST SP 800-63B asks for at least 8)",
            ));
        }
        let banned_passwords = match &raw.banned_passwords_file {
            None => Default::default(),
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    self.err(
                        "account_policy.banned_passwords_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?
                .lines()
                .map(|l| l.trim().to_lowercase())
                .filter(|l| !l.is_empty())
                .collect(),
        };
        Ok(AccountPolicy {
            username_pattern: pattern("username_pattern", &raw.username_pattern)?,
            email_pattern: pattern("email_pattern", &raw.email_pattern)?,
            password_pattern: pattern("password_pattern", &raw.password_pattern)?,
            group_name_pattern: pattern("group_name_pattern", &raw.group_name_pattern)?,
            min_password_length,
            reject_common_passwords: raw.reject_common_passwords.unwrap_or(true),
            banned_passwords,
        })
    }

    fn email(&self, raw: &raw::RawEmail) -> Result<EmailSettings, ConfigError> {
        let secret =
            |key: &str, inline: &Option<String>, file: &Option<PathBuf>, env: &Option<String>| {
                resolve_secret(key, inline.as_deref(), file.as_deref(), env.as_deref())
                    .map_err(|m| self.err(key, m))
            };
        if let Some(directory) = &raw.directory {
            let smtp_keys = [
                raw.smtp_url.is_some(),
                raw.smtp_url_file.is_some(),
                raw.smtp_url_env.is_some(),
                raw.username.is_some() || raw.username_file.is_some() || raw.username_env.is_some(),
                raw.password.is_some() || raw.password_file.is_some() || raw.password_env.is_some(),
            ];
            if smtp_keys.iter().any(|set| *set) {
                return Err(self.err(
                    "email.directory",
                    "set either directory (mails written as files, for development) or smtp_url, not both",
                ));
            }
            let smtp = SmtpTarget {
                host: String::new(),
                port: 0,
                security: SmtpSecurity::Plain,
                credentials: None,
            };
            return self.email_settings(raw, smtp, Some(directory.clone()));
        }
        let url = secret(
            "email.smtp_url",
            &raw.smtp_url,
            &raw.smtp_url_file,
            &raw.smtp_url_env,
        )?
        .ok_or_else(|| {
            self.err(
                "email.smtp_url",
                "set one of smtp_url, smtp_url_file, smtp_url_env",
            )
        })?;
        // The errors name the key, never the URL: it is a secret.
        let url = Url::parse(url.expose()).map_err(|_| {
            self.err(
                "email.smtp_url",
                "is not a URL (smtp://host:port, smtps://host:port)",
            )
        })?;
        let security = match url.scheme() {
            "smtp" => SmtpSecurity::StartTls,
            "smtps" => SmtpSecurity::ImplicitTls,
            "smtp+plain" => SmtpSecurity::Plain,
            _ => {
                return Err(self.err(
                    "email.smtp_url",
                    "use smtp:// (STARTTLS) or smtps:// (implicit TLS)",
                ));
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => {
                d.trim_start_matches('[').trim_end_matches(']').to_string()
            }
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(self.err("email.smtp_url", "names no host")),
        };
        if !url.username().is_empty()
            || url.password().is_some()
            || url.path().len() > 1
            || url.query().is_some()
        {
            return Err(self.err(
                "email.smtp_url",
                "only scheme, host and port: credentials go in email.username and email.password",
            ));
        }
        // Non-special schemes keep the host opaque: an address comes back as a domain.
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => {
                d == "localhost"
                    || d.trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|a| a.is_loopback())
            }
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            None => false,
        };
        if security == SmtpSecurity::Plain && !loopback {
            return Err(self.err(
                "email.smtp_url",
                "smtp+plain:// (no TLS) is only for a server on this machine (localhost, 127.0.0.1, ::1)",
            ));
        }
        let port = url.port().unwrap_or(match security {
            SmtpSecurity::ImplicitTls => 465,
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Plain => 25,
        });
        let username = secret(
            "email.username",
            &raw.username,
            &raw.username_file,
            &raw.username_env,
        )?;
        let password = secret(
            "email.password",
            &raw.password,
            &raw.password_file,
            &raw.password_env,
        )?;
        let credentials = match (username, password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => return Err(self.err("email", "set both username and password, or neither")),
        };
        let smtp = SmtpTarget {
            host,
            port,
            security,
            credentials,
        };
        self.email_settings(raw, smtp, None)
    }

    /// The settings every way of delivering mail shares.
    fn email_settings(
        &self,
        raw: &raw::RawEmail,
        smtp: SmtpTarget,
        directory: Option<PathBuf>,
    ) -> Result<EmailSettings, ConfigError> {
        let from = raw
            .from
            .clone()
            .ok_or_else(|| self.err("email.from", "required: the address mails come from"))?;
        if from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(self.err(
                "email.from",
                "is not a mailbox: write \"Name <addr@example.com>\" or \"addr@example.com\"",
            ));
        }
        let settings = EmailSettings {
            host: smtp.host,
            port: smtp.port,
            security: smtp.security,
            credentials: smtp.credentials,
            directory,
            from,
            timeout: self.positive("email.timeout", raw.timeout.as_deref(), "10s")?,
            max_attempts: raw.max_attempts.unwrap_or(10),
            retry_delay: self.positive("email.retry_delay", raw.retry_delay.as_deref(), "30s")?,
            lease: self.positive("email.lease", raw.lease.as_deref(), "120s")?,
        };
        if settings.max_attempts == 0 || settings.max_attempts > 100 {
            return Err(self.err("email.max_attempts", "between 1 and 100"));
        }
        if settings.timeout > 120 {
            return Err(self.err("email.timeout", "at most 120s"));
        }
        if settings.lease < 2 * settings.timeout {
            return Err(self.err(
                "email.lease",
                "must be at least twice the timeout, so a mail is never sent by two replicas at once",
            ));
        }
        Ok(settings)
    }

    fn device(&self, raw: &raw::RawDevice) -> Result<DeviceSettings, ConfigError> {
        let settings = DeviceSettings {
            code_lifetime: self.positive(
                "device.code_lifetime",
                raw.code_lifetime.as_deref(),
                "10m",
            )?,
            interval: self.positive("device.interval", raw.interval.as_deref(), "5s")?,
            user_code_tries: raw.user_code_tries.unwrap_or(5),
        };
        if settings.code_lifetime > 3600 {
            return Err(self.err(
                "device.code_lifetime",
                "at most 1h: a user code is short and must not live long",
            ));
        }
        if settings.interval >= settings.code_lifetime {
            return Err(self.err(
                "device.interval",
                "must be shorter than device.code_lifetime",
            ));
        }
        if settings.user_code_tries == 0 {
            return Err(self.err("device.user_code_tries", "must be at least 1"));
        }
        Ok(settings)
    }

    fn backchannel(
        &self,
        raw: &raw::RawBackchannelLogout,
    ) -> Result<BackchannelSettings, ConfigError> {
        let settings = BackchannelSettings {
            timeout: self.positive("backchannel_logout.timeout", raw.timeout.as_deref(), "5s")?,
            max_attempts: raw.max_attempts.unwrap_or(10),
            retry_delay: self.positive(
                "backchannel_logout.retry_delay",
                raw.retry_delay.as_deref(),
                "5s",
            )?,
            lease: self.positive("backchannel_logout.lease", raw.lease.as_deref(), "60s")?,
        };
        if settings.max_attempts == 0 || settings.max_attempts > 100 {
            return Err(self.err("backchannel_logout.max_attempts", "between 1 and 100"));
        }
        if settings.timeout > 60 {
            return Err(self.err("backchannel_logout.timeout", "at most 60s"));
        }
        if settings.lease < 2 * settings.timeout {
            return Err(self.err(
                "backchannel_logout.lease",
                "must be at least twice the timeout, so a notice is never sent by two replicas at once",
            ));
        }
        Ok(settings)
    }

    fn api_keys(&self, raw: &raw::RawApiKeys) -> Result<ApiKeySettings, ConfigError> {
        let settings = ApiKeySettings {
            max_lifetime: self.positive(
                "api_keys.max_lifetime",
                raw.max_lifetime.as_deref(),
                "90d",
            )?,
            max_per_user: raw.max_per_user.unwrap_or(25),
            failure_window: self.positive(
                "api_keys.failure_window",
                raw.failure_window.as_deref(),
                "10m",
            )?,
            max_failures_per_ip: raw.max_failures_per_ip.unwrap_or(100),
        };
        if settings.max_lifetime > 5 * 365 * 86_400 {
            return Err(self.err(
                "api_keys.max_lifetime",
                "at most 5 years: a key that never ends is a leak waiting to be found",
            ));
        }
        if settings.max_per_user == 0 || settings.max_per_user > 1000 {
            return Err(self.err("api_keys.max_per_user", "between 1 and 1000"));
        }
        if settings.max_failures_per_ip == 0 {
            return Err(self.err("api_keys.max_failures_per_ip", "must be at least 1"));
        }
        Ok(settings)
    }

    fn client(
        &self,
        id: &str,
        c: &RawClient,
        tokens: &TokenSettings,
        dev_mode: bool,
    ) -> Result<Client, ConfigError> {
        let key = |k: &str| format!("clients.{id}.{k}");
        if id.is_empty()
            || id
                .chars()
                .any(|ch| ch.is_control() || ch == ':' || ch.is_whitespace())
        {
            return Err(self.err(
                format!("clients.{id}"),
                "client ids may not be empty or contain ':', spaces or control characters",
            ));
        }
        let secret = resolve_secret(
            &key("secret"),
            c.secret.as_deref(),
            c.secret_file.as_deref(),
            c.secret_env.as_deref(),
        )
        .map_err(|m| self.err(key("secret"), m))?;
        let auth = match (c.public, secret) {
            (true, None) => ClientAuth::None,
            (true, Some(_)) => return Err(self.err(key("secret"), "a public client has no secret")),
            (false, Some(s)) if s.expose().len() < 8 => {
                return Err(self.err(key("secret"), "at least 8 characters"));
            }
            (false, Some(s)) => ClientAuth::Secret(s),
            (false, None) => {
                return Err(self.err(key("secret"), "a confidential client needs secret, secret_file or secret_env (or public = true)"));
            }
        };
        let redirects = c
            .grants
            .as_ref()
            .is_none_or(|g| g.iter().any(|g| g == "authorization_code"));
        if c.redirect_uris.is_empty() && redirects {
            return Err(self.err(
                key("redirect_uris"),
                "at least one redirect URI is required",
            ));
        }
        let mut redirect_uris = Vec::new();
        for (i, u) in c.redirect_uris.iter().enumerate() {
            let k = format!("clients.{id}.redirect_uris[{i}]");
            let uri = RedirectUri::parse(u).map_err(|e| self.err(&k, e.to_string()))?;
            let url = uri.url();
            if url.fragment().is_some() {
                return Err(self.err(&k, "must not have a fragment"));
            }
            match url.scheme() {
                "https" => {}
                "http" if is_loopback_host(url) || dev_mode => {}
                "http" => return Err(self.err(&k, "http is allowed only for loopback addresses or in dev_mode")),
                _ if c.public && url.scheme().contains('.') => {}
                s => return Err(self.err(&k, format!("scheme {s:?} not allowed (https, loopback http, or a reverse-domain scheme for public clients)"))),
            }
            redirect_uris.push(uri);
        }
        let require_pkce = match (c.public, c.require_pkce) {
            (true, Some(false)) => {
                return Err(self.err(
                    key("require_pkce"),
                    "a public client always uses PKCE: it has no secret to prove a code is its own",
                ));
            }
            (_, required) => required.unwrap_or(true),
        };
        let scopes: BTreeSet<String> = match &c.scopes {
            None => SUPPORTED_SCOPES.iter().map(|s| s.to_string()).collect(),
            Some(list) => list.iter().cloned().collect(),
        };
        for s in &scopes {
            if !SUPPORTED_SCOPES.contains(&s.as_str()) {
                return Err(self.err(key("scopes"), format!("unknown scope {s:?}")));
            }
        }
        if !scopes.contains("openid") {
            return Err(self.err(key("scopes"), "must include \"openid\""));
        }
        let grants: BTreeSet<String> = match &c.grants {
            None => ["authorization_code", "refresh_token"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Some(list) => list.iter().cloned().collect(),
        };
        for g in &grants {
            if !SUPPORTED_GRANTS.contains(&g.as_str()) {
                return Err(self.err(key("grants"), format!("unknown or unsupported grant {g:?}")));
            }
        }
        if c.public && grants.contains("client_credentials") {
            return Err(self.err(
                key("grants"),
                "a public client cannot use client_credentials",
            ));
        }
        if c.public && grants.contains(TOKEN_EXCHANGE_GRANT) {
            return Err(self.err(
                key("grants"),
                "a public client cannot use token exchange: it has no secret to prove who asks",
            ));
        }
        let exchange_audiences: BTreeSet<String> = c.exchange_audiences.iter().cloned().collect();
        if exchange_audiences.iter().any(|a| a.trim().is_empty()) {
            return Err(self.err(key("exchange_audiences"), "an audience may not be empty"));
        }
        match (
            grants.contains(TOKEN_EXCHANGE_GRANT),
            exchange_audiences.is_empty(),
        ) {
            (true, true) => {
                return Err(self.err(
                    key("exchange_audiences"),
                    format!(
                        "the grant {TOKEN_EXCHANGE_GRANT:?} needs the audiences it may exchange for"
                    ),
                ));
            }
            (false, false) => {
                return Err(self.err(
                    key("grants"),
                    format!("exchange_audiences needs the grant {TOKEN_EXCHANGE_GRANT:?}"),
                ));
            }
            _ => {}
        }
        let mut post_logout_redirect_uris = Vec::new();
        for (i, u) in c.post_logout_redirect_uris.iter().enumerate() {
            let k = format!("clients.{id}.post_logout_redirect_uris[{i}]");
            let uri = RedirectUri::parse(u).map_err(|e| self.err(&k, e.to_string()))?;
            if uri.url().fragment().is_some() {
                return Err(self.err(&k, "must not have a fragment"));
            }
            post_logout_redirect_uris.push(uri);
        }
        let backchannel_logout_uri = match &c.backchannel_logout_uri {
            None => None,
            Some(u) => {
                let k = key("backchannel_logout_uri");
                let url =
                    Url::parse(u).map_err(|e| self.err(&k, format!("not an absolute URL: {e}")))?;
                match url.scheme() {
                    "https" => {}
                    "http" if is_loopback_host(&url) || dev_mode => {}
                    _ => {
                        return Err(
                            self.err(&k, "must be https (http only on loopback or in dev_mode)")
                        );
                    }
                }
                if url.fragment().is_some() {
                    return Err(self.err(&k, "must not have a fragment"));
                }
                Some(url)
            }
        };
        let mut cors_origins = BTreeSet::new();
        for (i, o) in c.cors_origins.iter().enumerate() {
            let k = format!("clients.{id}.cors_origins[{i}]");
            let url = Url::parse(o).map_err(|e| self.err(&k, format!("not an origin: {e}")))?;
            let origin = url.origin().ascii_serialization();
            if origin == "null"
                || url.path() != "/" && !url.path().is_empty()
                || o.trim_end_matches('/') != origin
            {
                return Err(self.err(&k, format!("must be a bare origin like {origin:?}")));
            }
            cors_origins.insert(origin);
        }
        let introspection = match c.introspection.as_deref() {
            None => IntrospectionPolicy::OwnAudience,
            Some(_) if c.public => {
                return Err(self.err(
                    key("introspection"),
                    "a public client cannot introspect tokens; remove the key",
                ));
            }
            Some(v) => IntrospectionPolicy::parse(v).ok_or_else(|| {
                self.err(
                    key("introspection"),
                    format!("unknown policy {v:?}; use \"own_audience\" (the default) or \"all\""),
                )
            })?,
        };
        let lt = tokens.lifetimes;
        let lifetimes = Lifetimes {
            access_token: match &c.access_token_lifetime {
                Some(v) => self.positive(&key("access_token_lifetime"), Some(v), "")?,
                None => lt.access_token,
            },
            id_token: match &c.id_token_lifetime {
                Some(v) => self.positive(&key("id_token_lifetime"), Some(v), "")?,
                None => lt.id_token,
            },
            refresh_token_idle: match &c.refresh_token_idle_lifetime {
                Some(v) => self.positive(&key("refresh_token_idle_lifetime"), Some(v), "")?,
                None => lt.refresh_token_idle,
            },
            refresh_token_absolute: match &c.refresh_token_absolute_lifetime {
                Some(v) => self.positive(&key("refresh_token_absolute_lifetime"), Some(v), "")?,
                None => lt.refresh_token_absolute,
            },
        };
        if c.require_mfa && grants.contains(DEVICE_CODE_GRANT) {
            return Err(self.err(
                key("require_mfa"),
                "a second factor cannot be required of the device grant yet: remove device_code from grants",
            ));
        }
        if c.require_mfa && !grants.contains("authorization_code") {
            return Err(self.err(
                key("require_mfa"),
                "only a client with the authorization_code grant has people signing in",
            ));
        }
        Ok(Client {
            id: id.to_string(),
            name: c.name.clone().unwrap_or_else(|| id.to_string()),
            auth,
            redirect_uris,
            require_pkce,
            require_mfa: c.require_mfa,
            scopes,
            grants,
            cors_origins,
            id_token_alg: self.alg(
                &key("id_token_alg"),
                c.id_token_alg.as_deref(),
                tokens.default_alg,
            )?,
            audience: c.audience.clone(),
            resources: c.resources.iter().cloned().collect(),
            lifetimes,
            post_logout_redirect_uris,
            backchannel_logout_uri,
            backchannel_logout_session_required: c.backchannel_logout_session_required,
            introspection,
            exchange_audiences,
        })
    }
}

/// One `trusted_proxies` entry: an IP address, or a CIDR range written with its host
/// bits zero (`10.0.0.1/8` is refused: it reads as one proxy but means 16 million).
fn trusted_proxy(text: &str) -> Result<IpNet, String> {
    if !text.contains('/') {
        return text
            .parse::<IpAddr>()
            .map(|ip| IpNet::from(ip.to_canonical()))
            .map_err(|e| format!("{text:?} is not an IP address or CIDR range ({e})"));
    }
    let net: IpNet = text.parse().map_err(|e| {
        format!("{text:?} is not a CIDR range like \"10.0.0.0/8\" or \"fd00::/8\" ({e})")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{text:?} has host bits set: write the range as {:?}, or the address alone",
            net.trunc().to_string()
        ));
    }
    Ok(net)
}

/// Resolves one secret given inline, from a file, or from an environment variable.
/// Exactly one form may be set; `Ok(None)` when none is.
pub fn resolve_secret(
    key: &str,
    inline: Option<&str>,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<SecretString>, String> {
    match (inline, file, env) {
        (None, None, None) => Ok(None),
        (Some(v), None, None) => Ok(Some(SecretString::new(v.to_string()))),
        (None, Some(p), None) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("{key}_file {}: {e}", p.display()))?;
            let value = text.trim_end_matches(['\n', '\r']).to_string();
            if value.is_empty() {
                return Err(format!("{key}_file {} is empty", p.display()));
            }
            Ok(Some(SecretString::new(value)))
        }
        (None, None, Some(name)) => match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(Some(SecretString::new(v))),
            _ => Err(format!("{key}_env names {name}, which is unset or empty")),
        },
        _ => Err(format!("set only one of {key}, {key}_file, {key}_env")),
    }
}

#[cfg(test)]
mod tests;
