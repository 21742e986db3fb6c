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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub backend: Option<String>,
    pub path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecrets {
    pub master_key: Option<String>,
    pub master_key_file: Option<PathBuf>,
    pub master_key_env: Option<String>,
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
    pub code_lifetime: Option<String>,
    pub key_rotation_period: Option<String>,
    pub jwks_cache_lifetime: Option<String>,
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
    pub scopes: Option<Vec<String>>,
    pub grants: Option<Vec<String>>,
    #[serde(default)]
    pub cors_origins: Vec<String>,
    pub id_token_alg: Option<String>,
    pub audience: Option<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    pub access_token_lifetime: Option<String>,
    pub id_token_lifetime: Option<String>,
    pub refresh_token_idle_lifetime: Option<String>,
    pub refresh_token_absolute_lifetime: Option<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    #[serde(default)]
    pub backchannel_logout_session_required: bool,
}

/// A provider section: the broker's keys, and the provider's own options passed
/// through to its factory (which refuses unknown keys itself).
#[derive(Debug, Deserialize)]
pub struct RawProvider {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: Option<String>,
    #[serde(flatten)]
    pub options: serde_json::Map<String, serde_json::Value>,
}
