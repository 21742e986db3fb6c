//! Password logins from an htpasswd-style file: a complete example of a Switchboard
//! provider loaded at run time as a dynamic plugin.
//!
//! # Using it
//!
//! Build the crate (`cargo build --release -p switchboard-htpasswd`), copy
//! `libswitchboard_htpasswd.so` next to the broker, and declare a provider of type
//! `plugin` with the library's path and SHA-256. The provider's own keys go in its
//! `config` table:
//!
//! ```toml
//! [providers.team]
//! type = "plugin"
//! name = "Team accounts"
//! library = "/opt/switchboard/plugins/libswitchboard_htpasswd.so"
//! sha256 = "<sha256 of the file>"
//! [providers.team.config]
//! file = "/etc/switchboard/team.htpasswd"
//! groups = { alice = ["admins"] }
//! # email_domain = "example.com"   # optional: email = <username>@example.com
//! ```
//!
//! | key            | required | meaning                                                   |
//! |----------------|----------|-----------------------------------------------------------|
//! | `file`         | yes      | path of the htpasswd file                                 |
//! | `groups`       | no       | `username -> [group names]`, the identity's groups        |
//! | `email_domain` | no       | if set, email = `username@domain`, never marked verified  |
//!
//! Unknown keys are refused at start, so a typo is not a silent default.
//!
//! # The file
//!
//! One `username:hash` per line; blank lines and lines starting with `#` are
//! ignored. Accepted hashes are bcrypt (`$2a$`, `$2b$`, `$2y$`) and argon2 PHC strings
//! (`$argon2id$`, `$argon2i$`). Make them with
//!
//! ```text
//! htpasswd -nbB alice 'correct horse'      # bcrypt; add -C 10 for a higher cost
//! broker hash-password                     # argon2id; prefix the output with `alice:`
//! ```
//!
//! Fast or unsalted schemes (`$apr1$` MD5, `{SHA}`, DES crypt, plaintext) are refused,
//! as are malformed lines and a username defined twice: the broker does not start, and
//! the error names `providers.<id>.file` and the line number (never the line itself).
//!
//! The file is read again at every login and every token refresh, so users are added,
//! removed or given a new password by editing it, without a restart. If the file
//! becomes unreadable or invalid while the broker runs, logins fail as
//! "upstream unavailable" until it is fixed; nobody is let in by a half-edited file.
//!
//! # Identities
//!
//! The subject is the username: renaming a user in the file makes a new identity, and
//! the old one's links and roles at the broker stay with the old name. Groups come
//! from the `groups` table (the broker prefixes them with the provider id). At a token
//! refresh a user no longer in the file is denied.
//!
//! # How it is written
//!
//! For plugin authors, the parts to copy:
//!
//! - The crate depends on `switchboard-plugin-api` with the `export` feature and on
//!   ordinary crates only, never on the broker. `Cargo.toml` sets
//!   `crate-type = ["cdylib", "rlib"]`: the `cdylib` is what the broker loads, the
//!   `rlib` lets the unit tests call the factory directly.
//! - [`HtpasswdFactory`] implements [`ProviderFactory`]; `export_plugin!` at the end
//!   of this file exports it with the capabilities the instances have.
//! - The config is parsed with [`ProviderContext::parse_config`] into a struct with
//!   `#[serde(deny_unknown_fields)]`, and checked in `create`, so a bad setup fails at
//!   broker start with [`ProviderError::Misconfigured`] naming the key.
//! - Blocking work (file reads, password hashing) runs in
//!   [`tokio::task::spawn_blocking`]; the plugin has its own runtime, and its `tracing`
//!   events reach the broker's log. Passwords and hashes are never logged or put in an
//!   error.
//! - Wrong password and unknown user give the same
//!   [`ProviderError::InvalidCredentials`] after the same amount of hashing work.

mod hashes;
mod users;

use async_trait::async_trait;
use hashes::StoredHash;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use switchboard_plugin_api::{
    Identity, PasswordLogin, PasswordRequest, Provider, ProviderContext, ProviderError,
    ProviderFactory, RefreshIdentity, RefreshRequest,
};
use tokio::sync::Semaphore;
use users::{LoadError, UserFile};

/// The plugin's name, and the `provider_type` of its factory.
pub const PROVIDER_TYPE: &str = "htpasswd";

/// How many password verifications one provider runs at once. argon2 takes memory
/// (19 MiB at the default parameters), so a burst of logins waits here instead of
/// filling the blocking pool.
const MAX_PARALLEL_VERIFICATIONS: usize = 4;

/// The provider's config table (`[providers.<id>.config]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HtpasswdConfig {
    /// Path of the htpasswd file.
    file: PathBuf,
    /// username → group names.
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    /// If set, identities get the email `username@email_domain`, unverified.
    #[serde(default)]
    email_domain: Option<String>,
}

/// Builds htpasswd providers.
#[derive(Debug, Clone, Copy, Default)]
pub struct HtpasswdFactory;

impl ProviderFactory for HtpasswdFactory {
    fn provider_type(&self) -> &str {
        PROVIDER_TYPE
    }

    fn create(&self, context: ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let config: HtpasswdConfig = context.parse_config()?;
        let id = context.id;
        let misconfigured = |key: &str, problem: String| ProviderError::Misconfigured {
            detail: format!("providers.{id}.{key}: {problem}"),
        };
        if let Some(domain) = &config.email_domain
            && (domain.is_empty() || domain.contains(['@', ' ']) || domain.trim() != domain)
        {
            return Err(misconfigured(
                "email_domain",
                "expected a bare domain such as `example.com`".into(),
            ));
        }
        for (user, groups) in &config.groups {
            if groups.iter().any(|g| g.trim().is_empty()) {
                return Err(misconfigured(
                    &format!("groups.{user}"),
                    "a group name is empty".into(),
                ));
            }
        }
        // Read once now so a bad file stops the broker at start, not at first login.
        let users = UserFile::load(&config.file)
            .map_err(|e| misconfigured("file", file_problem(&config.file, &e)))?;
        for user in config.groups.keys().filter(|u| !users.contains(u)) {
            tracing::warn!(provider = %id, %user, "groups names a user not in the file");
        }
        let dummy =
            StoredHash::dummy_like(users.first_hash()).map_err(|e| misconfigured("file", e))?;
        tracing::info!(provider = %id, users = users.len(), "htpasswd file loaded");
        Ok(Arc::new(HtpasswdProvider {
            id,
            file: config.file,
            groups: config.groups,
            email_domain: config.email_domain,
            dummy,
            hashing: Arc::new(Semaphore::new(MAX_PARALLEL_VERIFICATIONS)),
        }))
    }
}

/// The file's path and what is wrong with it, for an error detail.
fn file_problem(path: &Path, error: &LoadError) -> String {
    format!("{}: {error}", path.display())
}

/// One htpasswd provider instance.
pub struct HtpasswdProvider {
    id: String,
    file: PathBuf,
    groups: BTreeMap<String, Vec<String>>,
    email_domain: Option<String>,
    /// Verified for unknown users, so they cost what a wrong password costs.
    dummy: StoredHash,
    hashing: Arc<Semaphore>,
}

impl fmt::Debug for HtpasswdProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HtpasswdProvider")
            .field("id", &self.id)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Provider for HtpasswdProvider {
    fn password(&self) -> Option<&dyn PasswordLogin> {
        Some(self)
    }

    fn refresh(&self) -> Option<&dyn RefreshIdentity> {
        Some(self)
    }
}

impl HtpasswdProvider {
    /// The identity of `username`, with groups and email from the config.
    fn identity(&self, username: &str) -> Identity {
        let groups = self.groups.get(username).cloned().unwrap_or_default();
        let mut identity = Identity::new(username)
            .with_username(username)
            .with_groups(groups);
        if let Some(domain) = &self.email_domain {
            identity = identity.with_email(format!("{username}@{domain}"), false);
        }
        identity.provider_id = self.id.clone();
        identity
    }

    /// The file could not be used at run time: logged, and reported without secrets.
    fn unavailable(&self, error: &LoadError) -> ProviderError {
        let detail = file_problem(&self.file, error);
        tracing::warn!(provider = %self.id, error = %detail, "htpasswd file unusable");
        ProviderError::UpstreamUnavailable {
            detail: format!("htpasswd file {detail}"),
        }
    }

    /// Runs `work` on the blocking pool.
    async fn off_thread<T: Send + 'static>(
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ProviderError> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ProviderError::UpstreamUnavailable {
                detail: format!("htpasswd task failed: {e}"),
            })
    }
}

#[async_trait]
impl PasswordLogin for HtpasswdProvider {
    async fn authenticate(&self, request: PasswordRequest) -> Result<Identity, ProviderError> {
        let username = request.username.trim().to_owned();
        let password = request.password;
        let _permit =
            self.hashing
                .acquire()
                .await
                .map_err(|_| ProviderError::UpstreamUnavailable {
                    detail: "hashing limiter closed".into(),
                })?;
        let path = self.file.clone();
        let dummy = self.dummy.clone();
        let checked = Self::off_thread(move || {
            let users = UserFile::load(&path)?;
            // An unknown user is checked against the dummy: same work, never a match.
            let (hash, known) = match users.hash_of(&username) {
                Some(hash) => (hash, true),
                None => (&dummy, false),
            };
            let matches = hash.verify(password.expose());
            let accepted = known && matches && !password.expose().is_empty();
            Ok::<_, LoadError>(accepted.then_some(username))
        })
        .await?
        .map_err(|e| self.unavailable(&e))?;
        match checked {
            Some(username) => Ok(self.identity(&username)),
            None => {
                tracing::debug!(provider = %self.id, "htpasswd login refused");
                Err(ProviderError::InvalidCredentials)
            }
        }
    }
}

#[async_trait]
impl RefreshIdentity for HtpasswdProvider {
    async fn refresh(&self, request: RefreshRequest) -> Result<Identity, ProviderError> {
        let username = request.identity.subject;
        let path = self.file.clone();
        let users = Self::off_thread(move || UserFile::load(&path))
            .await?
            .map_err(|e| self.unavailable(&e))?;
        if users.contains(&username) {
            Ok(self.identity(&username))
        } else {
            tracing::info!(provider = %self.id, "htpasswd user gone at refresh");
            Err(ProviderError::Denied {
                reason: "user no longer exists".into(),
            })
        }
    }
}

switchboard_plugin_api::export_plugin! {
    name: "htpasswd",
    factory: HtpasswdFactory,
    capabilities: [password, refresh],
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::hashes::tests::{argon2_hash, bcrypt_hash};
    use switchboard_plugin_api::Password;
    use tempfile::TempDir;

    /// A temporary htpasswd file and the provider reading it.
    struct Fixture {
        dir: TempDir,
        provider: Arc<dyn Provider>,
    }

    impl Fixture {
        fn path(&self) -> PathBuf {
            self.dir.path().join("team.htpasswd")
        }

        fn write(&self, content: &str) {
            std::fs::write(self.path(), content).unwrap();
        }

        async fn login(&self, user: &str, password: &str) -> Result<Identity, ProviderError> {
            self.provider
                .password()
                .unwrap()
                .authenticate(PasswordRequest::new(user, Password::new(password)))
                .await
        }

        async fn refresh(&self, identity: Identity) -> Result<Identity, ProviderError> {
            self.provider
                .refresh()
                .unwrap()
                .refresh(RefreshRequest::new(identity))
                .await
        }
    }

    fn config(path: &Path, extra: serde_json::Value) -> serde_json::Value {
        let mut config = serde_json::json!({ "file": path });
        if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            config.extend(extra.clone());
        }
        config
    }

    fn create(config: serde_json::Value) -> Result<Arc<dyn Provider>, ProviderError> {
        HtpasswdFactory.create(ProviderContext::new("team", config, false))
    }

    fn fixture(content: &str, extra: serde_json::Value) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("team.htpasswd");
        std::fs::write(&path, content).unwrap();
        let provider = create(config(&path, extra)).unwrap();
        Fixture { dir, provider }
    }

    /// Creating a provider over `content` fails; returns the error's detail.
    fn misconfigured(content: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("team.htpasswd");
        std::fs::write(&path, content).unwrap();
        match create(config(&path, serde_json::json!({}))) {
            Err(ProviderError::Misconfigured { detail }) => detail,
            other => panic!("expected Misconfigured, got {other:?}"),
        }
    }

    fn alice_and_bob() -> String {
        format!(
            "# team\nalice:{}\nbob:{}\n",
            bcrypt_hash("alice pw"),
            argon2_hash("bob pw")
        )
    }

    #[tokio::test]
    async fn right_password_gives_the_identity_with_groups_for_bcrypt_and_argon2() {
        let f = fixture(
            &alice_and_bob(),
            serde_json::json!({ "groups": { "alice": ["admins", "ops"] } }),
        );
        let alice = f.login("alice", "alice pw").await.unwrap();
        assert_eq!(alice.subject, "alice");
        assert_eq!(alice.username.as_deref(), Some("alice"));
        assert_eq!(alice.provider_id, "team");
        assert_eq!(alice.groups, vec!["admins".to_string(), "ops".to_string()]);
        assert_eq!(alice.email, None);

        let bob = f.login("bob", "bob pw").await.unwrap();
        assert_eq!(bob.subject, "bob");
        assert!(bob.groups.is_empty());
    }

    #[tokio::test]
    async fn email_domain_gives_an_unverified_email() {
        let f = fixture(
            &alice_and_bob(),
            serde_json::json!({ "email_domain": "example.com" }),
        );
        let alice = f.login("alice", "alice pw").await.unwrap();
        assert_eq!(alice.email.as_deref(), Some("alice@example.com"));
        assert!(!alice.email_verified);
    }

    #[tokio::test]
    async fn wrong_password_and_unknown_user_give_invalid_credentials() {
        let f = fixture(&alice_and_bob(), serde_json::json!({}));
        for (user, password) in [
            ("alice", "bob pw"),
            ("bob", "alice pw"),
            ("Alice", "alice pw"),
            ("carol", "alice pw"),
            ("alice", ""),
            ("", "alice pw"),
        ] {
            assert_eq!(
                f.login(user, password).await,
                Err(ProviderError::InvalidCredentials),
                "{user:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_user_added_to_the_file_can_log_in_without_a_restart() {
        let f = fixture(&alice_and_bob(), serde_json::json!({}));
        assert_eq!(
            f.login("carol", "carol pw").await,
            Err(ProviderError::InvalidCredentials)
        );
        f.write(&format!(
            "{}carol:{}\n",
            alice_and_bob(),
            bcrypt_hash("carol pw")
        ));
        assert_eq!(f.login("carol", "carol pw").await.unwrap().subject, "carol");
    }

    #[tokio::test]
    async fn refresh_follows_the_file_and_denies_a_removed_user() {
        let f = fixture(
            &alice_and_bob(),
            serde_json::json!({ "groups": { "alice": ["admins"] } }),
        );
        let alice = f.login("alice", "alice pw").await.unwrap();
        let refreshed = f.refresh(alice.clone()).await.unwrap();
        assert_eq!(refreshed, alice);

        f.write(&format!("bob:{}\n", argon2_hash("bob pw")));
        assert_eq!(
            f.refresh(alice).await,
            Err(ProviderError::Denied {
                reason: "user no longer exists".into()
            })
        );
        assert_eq!(
            f.login("alice", "alice pw").await,
            Err(ProviderError::InvalidCredentials)
        );
    }

    #[tokio::test]
    async fn a_file_broken_at_run_time_makes_the_upstream_unavailable() {
        let f = fixture(&alice_and_bob(), serde_json::json!({}));
        let alice = f.login("alice", "alice pw").await.unwrap();

        f.write(&format!("{}dave:hunter2\n", alice_and_bob()));
        let err = f.login("alice", "alice pw").await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::UpstreamUnavailable { detail } if detail.contains("line 4")),
            "{err:?}"
        );
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        assert!(!format!("{err:?}").contains("alice pw"), "{err:?}");

        std::fs::remove_file(f.path()).unwrap();
        assert!(matches!(
            f.refresh(alice).await,
            Err(ProviderError::UpstreamUnavailable { .. })
        ));
    }

    #[test]
    fn a_missing_file_is_misconfigured_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.htpasswd");
        let err = create(config(&path, serde_json::json!({}))).unwrap_err();
        let ProviderError::Misconfigured { detail } = err else {
            panic!("{err:?}");
        };
        assert!(detail.starts_with("providers.team.file: "), "{detail}");
        assert!(detail.contains("absent.htpasswd"), "{detail}");
    }

    #[test]
    fn a_malformed_line_is_misconfigured_naming_the_line() {
        let good = bcrypt_hash("alice pw");
        for (content, line) in [
            (format!("alice:{good}\nhunter2\n"), "line 2"),
            (format!("# c\n\n:{good}\n"), "line 3"),
            (format!("alice:{}\n", &good[..30]), "line 1"),
        ] {
            let detail = misconfigured(&content);
            assert!(detail.starts_with("providers.team.file: "), "{detail}");
            assert!(detail.contains(line), "{detail}");
            assert!(!detail.contains("hunter2"), "{detail}");
            assert!(!detail.contains(&good[7..30]), "{detail}");
        }
    }

    #[test]
    fn an_unsupported_scheme_is_misconfigured_naming_the_line_not_the_hash() {
        for (hash, scheme) in [
            ("$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/", "$apr1$"),
            ("{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=", "{SHA}"),
            ("rqXexS6ZhobKA", "DES crypt"),
            ("hunter2", "plaintext"),
        ] {
            let detail = misconfigured(&format!("# c\nalice:{hash}\n"));
            assert!(detail.contains("line 2"), "{detail}");
            assert!(detail.contains("unsupported hash scheme"), "{detail}");
            assert!(detail.contains(scheme), "{detail}");
            assert!(!detail.contains(hash), "{detail}");
        }
    }

    #[test]
    fn a_duplicate_user_is_misconfigured() {
        let detail = misconfigured(&format!(
            "alice:{}\nalice:{}\n",
            bcrypt_hash("a"),
            bcrypt_hash("b")
        ));
        assert!(detail.contains("line 2"), "{detail}");
        assert!(detail.contains("already defined on line 1"), "{detail}");
    }

    #[test]
    fn config_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("team.htpasswd");
        std::fs::write(&path, alice_and_bob()).unwrap();
        for extra in [
            serde_json::json!({ "flie": "typo" }),
            serde_json::json!({ "email_domain": "@example.com" }),
            serde_json::json!({ "groups": { "alice": [""] } }),
        ] {
            assert!(
                matches!(
                    create(config(&path, extra.clone())),
                    Err(ProviderError::Misconfigured { .. })
                ),
                "{extra}"
            );
        }
        assert!(matches!(
            create(serde_json::json!({})),
            Err(ProviderError::Misconfigured { detail }) if detail.contains("file")
        ));
    }

    #[test]
    fn the_provider_offers_password_and_refresh() {
        let f = fixture("", serde_json::json!({}));
        let caps = f.provider.capabilities();
        assert!(caps.password && caps.refresh && !caps.redirect);
        assert_eq!(HtpasswdFactory.provider_type(), "htpasswd");
    }
}
