//! Providers loaded at run time from a pinned shared library (`type = "plugin"`).
//!
//! `inspect` reads and checks the file without running it, `library` loads exactly the
//! checked bytes once, and `instance` wraps each configured instance back into the
//! provider traits. A native plugin is trusted code inside the process that holds the
//! signing keys: the operator pins each file by its sha256.

mod inspect;
mod instance;
mod library;

pub use inspect::{InspectError, PluginInfo, inspect};
pub use instance::{CallLimits, PluginProvider};

use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use switchboard_plugin_api::{Provider, ProviderContext, ProviderError, ProviderFactory};

/// The keys of a `type = "plugin"` provider section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginSettings {
    /// Path to the shared library.
    library: PathBuf,
    /// Lowercase hex sha256 of the file: the only file that will be loaded.
    #[serde(default)]
    sha256: Option<String>,
    /// Dev mode only: load whatever file is there.
    #[serde(default)]
    unpinned: bool,
    /// The plugin's own config, handed to it as JSON.
    #[serde(default = "empty_table")]
    config: serde_json::Value,
    /// How long one call may take before it is cancelled (default: the login timeout).
    #[serde(default)]
    call_timeout: Option<String>,
    /// Calls in progress at once; more are refused at once rather than queued.
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
}

fn empty_table() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn default_max_in_flight() -> usize {
    64
}

/// Checks a `type = "plugin"` section's keys and its file as loading would, without
/// running any of the file's code (`broker check-config`).
pub fn check(context: ProviderContext) -> Result<PluginInfo, ProviderError> {
    let id = context.id.clone();
    let settings: PluginSettings = context.parse_config()?;
    let pin = pin(&id, &settings, context.dev_mode)?;
    inspect(&settings.library, pin)
        .map(|file| file.info)
        .map_err(|e| ProviderError::Misconfigured {
            detail: format!("providers.{id}.library: {e}"),
        })
}

/// The sha256 the file must have, or `None` for an unpinned file in dev mode.
fn pin<'a>(
    id: &str,
    settings: &'a PluginSettings,
    dev_mode: bool,
) -> Result<Option<&'a str>, ProviderError> {
    let misconfigured = |key: &str, detail: &str| ProviderError::Misconfigured {
        detail: format!("providers.{id}.{key}: {detail}"),
    };
    match (&settings.sha256, settings.unpinned) {
        (Some(pin), false) => {
            if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(misconfigured("sha256", "must be 64 hex digits"));
            }
            Ok(Some(pin.as_str()))
        }
        (None, true) if dev_mode => Ok(None),
        (None, true) => Err(misconfigured(
            "unpinned",
            "allowed only with dev_mode = true; pin the file with sha256",
        )),
        (Some(_), true) => Err(misconfigured(
            "unpinned",
            "set either sha256 or unpinned, not both",
        )),
        (None, false) => Err(misconfigured(
            "sha256",
            "required: the sha256 of the library (broker plugin inspect prints it)",
        )),
    }
}

/// Builds `type = "plugin"` providers.
#[derive(Debug)]
pub struct PluginFactory {
    default_timeout: Duration,
}

impl PluginFactory {
    /// Calls default to `default_timeout` (the broker's `login.provider_timeout`).
    pub fn new(default_timeout: Duration) -> Self {
        PluginFactory { default_timeout }
    }
}

impl ProviderFactory for PluginFactory {
    fn provider_type(&self) -> &str {
        "plugin"
    }

    fn create(&self, context: ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let id = context.id.clone();
        let misconfigured = |key: &str, detail: String| ProviderError::Misconfigured {
            detail: format!("providers.{id}.{key}: {detail}"),
        };
        let settings: PluginSettings = context.parse_config()?;
        let pin = pin(&id, &settings, context.dev_mode)?;
        if pin.is_none() {
            tracing::warn!(
                provider = %id,
                library = %settings.library.display(),
                "LOADING AN UNPINNED PLUGIN: any code in that file runs inside the broker. \
                 Pin it with sha256 before leaving dev mode."
            );
        }
        let timeout = match &settings.call_timeout {
            None => self.default_timeout,
            Some(text) => humantime::parse_duration(text)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    misconfigured(
                        "call_timeout",
                        format!("{text:?} is not a duration like \"10s\""),
                    )
                })?,
        };
        if settings.max_in_flight == 0 {
            return Err(misconfigured("max_in_flight", "must be at least 1".into()));
        }
        let file =
            inspect(&settings.library, pin).map_err(|e| misconfigured("library", e.to_string()))?;
        let path = file.info.path.display().to_string();
        let library = library::load(file)
            .map_err(|e| misconfigured("library", format!("plugin {path}: {e}")))?;
        let plugin_context = ProviderContext::new(&id, settings.config, context.dev_mode);
        let provider = PluginProvider::create(
            library,
            &plugin_context,
            CallLimits {
                timeout,
                max_in_flight: settings.max_in_flight,
            },
        )
        .map_err(|e| misconfigured("config", format!("plugin {path}: {e}")))?;
        tracing::info!(
            provider = %id,
            plugin = %library.info.name,
            version = %library.info.version,
            sha256 = %library.info.sha256,
            "plugin loaded"
        );
        Ok(Arc::new(provider))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn create(options: serde_json::Value, dev_mode: bool) -> String {
        PluginFactory::new(Duration::from_secs(5))
            .create(ProviderContext::new("team", options, dev_mode))
            .map(|_| "created".to_owned())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn a_pin_is_required_outside_dev_mode() {
        let err = create(json!({"library": "/x/liba.so"}), false);
        assert!(err.contains("providers.team.sha256: required"), "{err}");
        let err = create(json!({"library": "/x/liba.so", "unpinned": true}), false);
        assert!(
            err.contains("providers.team.unpinned: allowed only with dev_mode"),
            "{err}"
        );
    }

    #[test]
    fn a_pin_must_be_a_sha256_and_not_come_with_unpinned() {
        let err = create(json!({"library": "/x/liba.so", "sha256": "abc"}), false);
        assert!(
            err.contains("providers.team.sha256: must be 64 hex digits"),
            "{err}"
        );
        let pin = "a".repeat(64);
        let err = create(
            json!({"library": "/x/liba.so", "sha256": pin, "unpinned": true}),
            true,
        );
        assert!(err.contains("either sha256 or unpinned"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_limits_are_refused_by_name() {
        let pin = "a".repeat(64);
        let err = create(
            json!({"library": "/x/liba.so", "sha256": pin, "libary": 1}),
            false,
        );
        assert!(err.contains("unknown field `libary`"), "{err}");
        let err = create(
            json!({"library": "/x/liba.so", "sha256": pin, "call_timeout": "soon"}),
            false,
        );
        assert!(err.contains("providers.team.call_timeout"), "{err}");
        let err = create(
            json!({"library": "/x/liba.so", "sha256": pin, "max_in_flight": 0}),
            false,
        );
        assert!(
            err.contains("providers.team.max_in_flight: must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn an_unpinned_file_in_dev_mode_is_still_checked() {
        let err = create(
            json!({"library": "/nonexistent/liba.so", "unpinned": true}),
            true,
        );
        assert!(
            err.contains("providers.team.library: plugin /nonexistent/liba.so: cannot open"),
            "{err}"
        );
    }
}
