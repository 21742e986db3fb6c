//! The config file as written: serde shapes with `deny_unknown_fields`, before
//! validation. `load` turns these into the typed [`super::Config`].

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub issuer: String,
    #[serde(default)]
    pub dev_mode: bool,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub secrets: RawSecrets,
    #[serde(default)]
    pub tokens: RawTokens,
    #[serde(default)]
    pub sessions: RawSessions,
    #[serde(default)]
    pub login: RawLogin,
    #[serde(default)]
    pub clients: BTreeMap<String, RawClient>,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub roles: RawRoles,
    #[serde(default)]
    pub api_keys: RawApiKeys,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub device: RawDevice,
    #[serde(default)]
    pub backchannel_logout: RawBackchannelLogout,
    /// `[email]`: absent means the broker sends no mail.
    pub email: Option<RawEmail>,
    #[serde(default)]
    pub ui: RawUi,
    #[serde(default)]
    pub account_policy: RawAccountPolicy,
}

/// `[ui]`: the pages people see.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUi {
    /// An operator's theme: templates/, style.css, logo.svg|png, locales/.
    pub theme_dir: Option<PathBuf>,
    /// The language of a page when neither ui_locales nor Accept-Language names one
    /// there is a catalogue for.
    pub default_locale: Option<String>,
}

/// `[account_policy]`: what usernames, emails, passwords and group names may be.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccountPolicy {
    pub username_pattern: Option<String>,
    pub email_pattern: Option<String>,
    pub password_pattern: Option<String>,
    pub group_name_pattern: Option<String>,
    pub min_password_length: Option<usize>,
    pub reject_common_passwords: Option<bool>,
    /// One password per line; compared case-insensitively.
    pub banned_passwords_file: Option<PathBuf>,
}

/// `[email]`: outgoing mail over SMTP.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// Development: write mails as `.eml` files into this directory.
    pub directory: Option<PathBuf>,
    pub smtp_url: Option<String>,
    pub smtp_url_file: Option<PathBuf>,
    pub smtp_url_env: Option<String>,
    pub username: Option<String>,
    pub username_file: Option<PathBuf>,
    pub username_env: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub from: Option<String>,
    pub timeout: Option<String>,
    pub max_attempts: Option<u32>,
    pub retry_delay: Option<String>,
    pub lease: Option<String>,
}

/// `[device]`: the device authorization grant (RFC 8628).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    pub code_lifetime: Option<String>,
    pub interval: Option<String>,
    pub user_code_tries: Option<u32>,
}

/// `[backchannel_logout]`: delivering logout tokens to clients.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackchannelLogout {
    pub timeout: Option<String>,
    pub max_attempts: Option<u32>,
    pub retry_delay: Option<String>,
    pub lease: Option<String>,
}

/// `[api_keys]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeys {
    pub max_lifetime: Option<String>,
    pub max_per_user: Option<u32>,
    pub failure_window: Option<String>,
    pub max_failures_per_ip: Option<u32>,
}

/// `[admin]`: the admin API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// A separate address for the admin API alone (absent: the public listener).
    pub listen: Option<String>,
    #[serde(default)]
    pub accept_api_keys: bool,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub max_body_bytes: Option<usize>,
    pub workers: Option<usize>,
    pub shutdown_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub backend: Option<String>,
    /// SQLite: the database file.
    pub path: Option<PathBuf>,
    /// PostgreSQL: the connection URL (a secret), in exactly one of three forms.
    pub url: Option<String>,
    pub url_file: Option<PathBuf>,
    pub url_env: Option<String>,
    /// PostgreSQL: the schema the tables live in.
    pub schema: Option<String>,
    /// PostgreSQL: the pool's size.
    pub max_connections: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecrets {
    pub master_key: Option<String>,
    pub master_key_file: Option<PathBuf>,
    pub master_key_env: Option<String>,
    /// Keys a rotation is moving away from: they open what they sealed, never seal.
    #[serde(default)]
    pub previous_master_key_files: Vec<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokens {
    pub signing_alg: Option<String>,
    pub access_token_lifetime: Option<String>,
    pub id_token_lifetime: Option<String>,
    pub refresh_token_idle_lifetime: Option<String>,
    pub refresh_token_absolute_lifetime: Option<String>,
    pub refresh_reuse_grace: Option<String>,
    pub status_cache_lifetime: Option<String>,
    pub code_lifetime: Option<String>,
    pub key_rotation_period: Option<String>,
    pub jwks_cache_lifetime: Option<String>,
    pub exchange_token_lifetime: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    pub lifetime: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    pub request_lifetime: Option<String>,
    pub throttle_window: Option<String>,
    pub max_failures_per_account: Option<u32>,
    pub max_failures_per_ip: Option<u32>,
    pub max_starts_per_ip: Option<u32>,
    pub provider_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub name: Option<String>,
    #[serde(default)]
    pub public: bool,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub require_pkce: Option<bool>,
    /// A sign-in for this client needs a second factor (TOTP).
    #[serde(default)]
    pub require_mfa: bool,
    pub scopes: Option<Vec<String>>,
    pub grants: Option<Vec<String>>,
    #[serde(default)]
    pub cors_origins: Vec<String>,
    pub id_token_alg: Option<String>,
    pub audience: Option<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    /// "own_audience" (default) or "all".
    pub introspection: Option<String>,
    pub access_token_lifetime: Option<String>,
    pub id_token_lifetime: Option<String>,
    pub refresh_token_idle_lifetime: Option<String>,
    pub refresh_token_absolute_lifetime: Option<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    #[serde(default)]
    pub backchannel_logout_session_required: bool,
    /// Audiences this client may exchange a person's access token for (RFC 8693).
    #[serde(default)]
    pub exchange_audiences: Vec<String>,
}

/// A provider section: the broker's keys, and the provider's own options passed
/// through to its factory (which refuses unknown keys itself). The broker's keys are
/// taken out here, so the factory never sees them.
#[derive(Debug, Deserialize)]
pub struct RawProvider {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: Option<String>,
    /// "open" (default) or "closed".
    pub registration: Option<String>,
    /// "force" (default) or "import".
    pub sync: Option<String>,
    /// Whether this provider's verified emails count for email-domain role rules.
    pub trust_email: Option<bool>,
    /// A first login whose verified email is an existing account's links to it.
    pub link_by_verified_email: Option<bool>,
    /// Without a refresh capability: how long refresh works after the last login.
    pub max_session_without_recheck: Option<String>,
    /// Local provider only: "forgot password" sends a single-use link by email.
    pub allow_password_reset: Option<bool>,
    /// How long a password reset link works (default 30m).
    pub password_reset_lifetime: Option<String>,
    /// Local provider only: people create their own accounts at /register.
    pub allow_registration: Option<bool>,
    /// A new account is active at once (its email unverified until its link is
    /// used) instead of waiting for the confirmation link.
    pub auto_activate: Option<bool>,
    /// How long a confirmation link (registration, new email) works (default 24h).
    pub confirmation_lifetime: Option<String>,
    /// Local provider only: people change their password on /account (default true).
    pub allow_password_change: Option<bool>,
    /// Local provider only: people change their email on /account, confirmed by a
    /// link to the new address.
    pub allow_email_change: Option<bool>,
    #[serde(flatten)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// `[roles]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoles {
    pub admin_role: Option<String>,
    #[serde(default)]
    pub default_roles: Vec<String>,
    #[serde(default)]
    pub permissions: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub rules: Vec<RawRoleRule>,
}

/// One `[[roles.rules]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoleRule {
    pub role: String,
    pub client: Option<String>,
    #[serde(default)]
    pub any: bool,
    pub provider: Option<String>,
    pub group: Option<String>,
    /// A managed group's name (any provider).
    pub managed_group: Option<String>,
    /// The client acting as itself (client credentials).
    pub client_id: Option<String>,
    pub email_domain: Option<String>,
    pub claim: Option<RawClaim>,
}

/// `claim = { path = "...", equals | one_of | regex = ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaim {
    pub path: String,
    pub equals: Option<serde_json::Value>,
    pub one_of: Option<Vec<serde_json::Value>>,
    pub regex: Option<String>,
}
