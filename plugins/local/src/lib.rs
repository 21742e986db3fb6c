//! Local username/password provider: static users from config and users kept by the
//! broker, with argon2id password hashes.
//!
//! The provider knows nothing of the broker's store: the broker hands it an
//! [`AccountDirectory`] to look users up. A failed login costs one argon2 verification
//! whether or not the user exists, so timing does not tell who has an account.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use async_trait::async_trait;
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;
use switchboard_plugin_api::{
    Identity, Password, PasswordLogin, PasswordRequest, Provider, ProviderContext, ProviderError,
    ProviderFactory,
};
use tokio::sync::Semaphore;

/// The `type` of this provider in config.
pub const PROVIDER_TYPE: &str = "local";

/// A user kept by the broker, as the local provider needs to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAccount {
    /// The broker's user id; becomes the identity's subject.
    pub user_id: String,
    /// Login name.
    pub username: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// Whether the broker considers the email verified.
    pub email_verified: bool,
    /// Display name.
    pub name: Option<String>,
    /// PHC string of the argon2id hash.
    pub password_hash: Option<String>,
}

/// Looks up users kept by the broker, by username or email.
#[async_trait]
pub trait AccountDirectory: Send + Sync + fmt::Debug {
    /// Finds the account `login` names, case-insensitively: the one whose verified
    /// email it is, else the one whose username it is. An unverified email names
    /// nobody (anyone may claim one).
    async fn find(&self, login: &str) -> Result<Option<LocalAccount>, ProviderError>;
}

/// A user declared in the config file (hash only, never a password).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticUser {
    /// Fixed user id, the `sub` apps see.
    pub id: String,
    /// Login name.
    #[serde(default)]
    pub username: Option<String>,
    /// Email address (also accepted as the login).
    pub email: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// argon2id PHC string, as printed by `broker hash-password`.
    pub hash: String,
    /// Groups this user belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalConfig {
    #[serde(default)]
    static_users: Vec<StaticUser>,
}

/// Errors of hashing a new password.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The password is empty.
    #[error("the password is empty")]
    Empty,
    /// argon2 failed.
    #[error("hashing failed: {0}")]
    Hashing(String),
}

/// Hashes a password with argon2id and a fresh random salt (CPU-heavy: call off the
/// async workers).
pub fn hash_password(password: &str) -> Result<String, HashError> {
    if password.is_empty() {
        return Err(HashError::Empty);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hashing(e.to_string()))
}

/// Checks that `hash` is an argon2id PHC string.
pub fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not a PHC hash string: {e}"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "hash algorithm is {}, expected argon2id",
            parsed.algorithm.as_str()
        ));
    }
    Ok(())
}

/// Whether `password` matches the argon2id PHC string `hash` (CPU-heavy: call off
/// the async workers).
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// Builds local providers. Holds the broker's directory and the hashing limiter that
/// all local providers share.
#[derive(Debug, Clone)]
pub struct LocalFactory {
    directory: Option<Arc<dyn AccountDirectory>>,
    hashing: Arc<Semaphore>,
}

impl LocalFactory {
    /// `directory` serves users kept by the broker; `max_parallel_hashes` bounds the
    /// argon2 verifications running at once (memory-hard: 19 MiB each).
    pub fn new(directory: Option<Arc<dyn AccountDirectory>>, max_parallel_hashes: usize) -> Self {
        LocalFactory {
            directory,
            hashing: Arc::new(Semaphore::new(max_parallel_hashes.max(1))),
        }
    }
}

impl ProviderFactory for LocalFactory {
    fn provider_type(&self) -> &str {
        PROVIDER_TYPE
    }

    fn create(&self, context: ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let config: LocalConfig = context.parse_config()?;
        for (i, user) in config.static_users.iter().enumerate() {
            let key = format!("providers.{}.static_users[{i}]", context.id);
            if user.id.trim().is_empty() {
                return Err(ProviderError::Misconfigured {
                    detail: format!("{key}.id is empty"),
                });
            }
            check_hash(&user.hash).map_err(|e| ProviderError::Misconfigured {
                detail: format!("{key}.hash: {e}"),
            })?;
        }
        // A fixed hash to verify against when the user is unknown, so that path costs
        // the same as a wrong password.
        let dummy_hash = hash_password("switchboard-timing-equaliser").map_err(|e| {
            ProviderError::Misconfigured {
                detail: e.to_string(),
            }
        })?;
        Ok(Arc::new(LocalProvider {
            id: context.id,
            static_users: config.static_users,
            directory: self.directory.clone(),
            hashing: self.hashing.clone(),
            dummy_hash,
        }))
    }
}

/// The local provider.
pub struct LocalProvider {
    id: String,
    static_users: Vec<StaticUser>,
    directory: Option<Arc<dyn AccountDirectory>>,
    hashing: Arc<Semaphore>,
    dummy_hash: String,
}

impl fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalProvider")
            .field("id", &self.id)
            .field("static_users", &self.static_users.len())
            .finish_non_exhaustive()
    }
}

impl Provider for LocalProvider {
    fn password(&self) -> Option<&dyn PasswordLogin> {
        Some(self)
    }
}

struct Candidate {
    identity: Identity,
    hash: Option<String>,
}

impl LocalProvider {
    async fn find(&self, login: &str) -> Result<Option<Candidate>, ProviderError> {
        let matches =
            |v: &Option<String>| v.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(login));
        if let Some(user) = self
            .static_users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(login) || matches(&u.username))
        {
            let mut identity = Identity::new(&user.id)
                .with_email(&user.email, true)
                .with_groups(user.groups.clone());
            identity.username = user.username.clone();
            identity.name = user.name.clone();
            return Ok(Some(Candidate {
                identity,
                hash: Some(user.hash.clone()),
            }));
        }
        let Some(directory) = &self.directory else {
            return Ok(None);
        };
        Ok(directory.find(login).await?.map(|account| {
            let mut identity = Identity::new(&account.user_id);
            identity.username = account.username;
            identity.email = account.email;
            identity.email_verified = account.email_verified;
            identity.name = account.name;
            Candidate {
                identity,
                hash: account.password_hash,
            }
        }))
    }

    async fn verify_off_thread(
        &self,
        password: Password,
        hash: String,
    ) -> Result<bool, ProviderError> {
        let _permit =
            self.hashing
                .acquire()
                .await
                .map_err(|_| ProviderError::UpstreamUnavailable {
                    detail: "hashing limiter closed".into(),
                })?;
        tokio::task::spawn_blocking(move || verify_password(password.expose(), &hash))
            .await
            .map_err(|e| ProviderError::UpstreamUnavailable {
                detail: format!("hashing task failed: {e}"),
            })
    }
}

#[async_trait]
impl PasswordLogin for LocalProvider {
    async fn authenticate(&self, request: PasswordRequest) -> Result<Identity, ProviderError> {
        let login = request.username.trim();
        let password = request.password.clone();
        let candidate = if login.is_empty() {
            None
        } else {
            self.find(login).await?
        };
        let (hash, identity) = match candidate {
            Some(Candidate {
                identity,
                hash: Some(hash),
            }) => (hash, Some(identity)),
            // Unknown user, or a user without a password: spend the same work.
            _ => (self.dummy_hash.clone(), None),
        };
        let ok = self.verify_off_thread(password, hash).await?;
        match identity {
            Some(mut identity) if ok && !request.password.expose().is_empty() => {
                identity.provider_id = self.id.clone();
                Ok(identity)
            }
            _ => {
                tracing::debug!(provider = %self.id, "local login refused");
                Err(ProviderError::InvalidCredentials)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct OneAccount(LocalAccount);

    #[async_trait]
    impl AccountDirectory for OneAccount {
        async fn find(&self, login: &str) -> Result<Option<LocalAccount>, ProviderError> {
            let a = &self.0;
            let hit = a.email.as_deref() == Some(login) || a.username.as_deref() == Some(login);
            Ok(hit.then(|| a.clone()))
        }
    }

    fn provider(directory: Option<Arc<dyn AccountDirectory>>) -> Arc<dyn Provider> {
        let hash = hash_password("correct horse").unwrap();
        let config = serde_json::json!({
            "static_users": [{
                "id": "u-static", "email": "Admin@Example.com", "username": "admin",
                "hash": hash, "groups": ["ops"]
            }]
        });
        LocalFactory::new(directory, 2)
            .create(ProviderContext::new("local", config, false))
            .unwrap()
    }

    async fn login(p: &Arc<dyn Provider>, user: &str, pw: &str) -> Result<Identity, ProviderError> {
        p.password()
            .unwrap()
            .authenticate(PasswordRequest::new(user, Password::new(pw)))
            .await
    }

    #[tokio::test]
    async fn static_user_logs_in_by_email_or_username_case_insensitively() {
        let p = provider(None);
        let id = login(&p, "admin@example.com", "correct horse")
            .await
            .unwrap();
        assert_eq!(id.subject, "u-static");
        assert_eq!(id.provider_id, "local");
        assert!(id.email_verified);
        assert_eq!(id.groups, vec!["ops".to_string()]);
        assert_eq!(
            login(&p, "ADMIN", "correct horse").await.unwrap().subject,
            "u-static"
        );
    }

    #[tokio::test]
    async fn wrong_password_and_unknown_user_give_the_same_error() {
        let p = provider(None);
        assert_eq!(
            login(&p, "admin", "wrong").await,
            Err(ProviderError::InvalidCredentials)
        );
        assert_eq!(
            login(&p, "nobody", "wrong").await,
            Err(ProviderError::InvalidCredentials)
        );
        assert_eq!(
            login(&p, "admin", "").await,
            Err(ProviderError::InvalidCredentials)
        );
        assert_eq!(
            login(&p, "", "x").await,
            Err(ProviderError::InvalidCredentials)
        );
    }

    #[tokio::test]
    async fn directory_users_log_in_with_their_stored_hash() {
        let account = LocalAccount {
            user_id: "u-db".into(),
            username: Some("bob".into()),
            email: Some("bob@example.com".into()),
            email_verified: false,
            name: Some("Bob".into()),
            password_hash: Some(hash_password("s3cret").unwrap()),
        };
        let p = provider(Some(Arc::new(OneAccount(account))));
        let id = login(&p, "bob", "s3cret").await.unwrap();
        assert_eq!(id.subject, "u-db");
        assert!(!id.email_verified);
        assert_eq!(
            login(&p, "bob", "nope").await,
            Err(ProviderError::InvalidCredentials)
        );
    }

    #[test]
    fn config_with_a_non_argon2id_hash_is_refused_naming_the_key() {
        let config = serde_json::json!({
            "static_users": [{ "id": "x", "email": "a@b.c", "hash": "plaintext" }]
        });
        let err = LocalFactory::new(None, 1)
            .create(ProviderContext::new("local", config, false))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("providers.local.static_users[0].hash"),
            "{err}"
        );
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        let config = serde_json::json!({ "static_user": [] });
        assert!(
            LocalFactory::new(None, 1)
                .create(ProviderContext::new("local", config, false))
                .is_err()
        );
    }
}

#[cfg(feature = "cdylib")]
switchboard_plugin_api::export_plugin! {
    name: "local",
    factory: LocalFactory::new(None, 2),
    capabilities: [password],
}
