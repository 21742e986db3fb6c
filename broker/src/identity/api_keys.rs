//! API keys: a person's long-lived credential for programs (scripts, CI, a CLI), made
//! on the account page or by an administrator, and verified by apps through
//! introspection.
//!
//! - The secret is `sbk_` and 256 random bits in base64url: recognisable by secret
//!   scanners, shown once when the key is made, stored only as its SHA-256 hash (a fast
//!   hash is right for a secret that cannot be guessed). A presented secret is found
//!   by its hash and the stored hash is compared again in constant time.
//! - Every key has an expiry, at most `api_keys.max_lifetime` away.
//! - A key's scopes are permissions the person held when it was made. What it holds
//!   at use is recomputed then: each scope the person's permissions still allow, or the
//!   narrower permissions the person still holds within it. A lost role counts at once.
//! - A key is live while it is unrevoked, unexpired, and its user is active.
//! - Failed verifications (an `sbk_` secret that is no key) count against the
//!   presenting address; past `api_keys.max_failures_per_ip` in a window every key from
//!   that address is refused, so the window bounds guessing, whatever its odds.
//! - Making and revoking a key are audited (`api_key_created`, `api_key_revoked`) with
//!   who did it; use is recorded coarsely as `last_used_at`.

use super::IdentityError;
use crate::config::{ApiKeySettings, Config};
use crate::roles::{Access, Permission};
use crate::secrets::{self, SecretString};
use crate::store::{ApiKeyRecord, SharedStore, StoreError, UnixTime, UserRecord, UserStatus};
use serde_json::json;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// What every API key's secret starts with.
pub const SECRET_PREFIX: &str = "sbk_";
/// A key's use is recorded at most this often (seconds).
pub const LAST_USED_COARSENESS: i64 = 300;
/// The longest key name.
pub const MAX_NAME_CHARS: usize = 100;
/// The most scopes one key may name.
pub const MAX_SCOPES: usize = 64;

/// Whether `token` has the shape of an API key's secret (it may still be no key).
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(SECRET_PREFIX)
}

/// Why a key could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRequestError {
    #[error("a key name has 1 to {MAX_NAME_CHARS} characters, none of them control characters")]
    Name,
    #[error("the expiry must be between 1 second and {max} seconds away")]
    Lifetime { max: i64 },
    #[error("{0}")]
    Scope(String),
    #[error("this account already holds {0} keys; revoke one first")]
    TooMany(u32),
}

/// What a new key is made of, as asked.
#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    pub name: &'a str,
    pub scopes: &'a [String],
    /// Seconds from now.
    pub lifetime: i64,
}

/// A key just made: the record, and the secret, which exists nowhere else.
#[derive(Debug)]
pub struct CreatedApiKey {
    pub key: ApiKeyRecord,
    pub secret: SecretString,
}

/// A live key and what it holds now.
#[derive(Debug, Clone)]
pub struct LiveApiKey {
    pub key: ApiKeyRecord,
    pub user: UserRecord,
    /// The key's scopes as the person's permissions allow them now, sorted.
    pub scopes: Vec<String>,
}

/// The outcome of presenting a secret.
#[derive(Debug, Clone)]
pub enum Verified {
    Live(Box<LiveApiKey>),
    /// Unknown, revoked, expired, or of a user who is disabled or gone.
    Inactive,
    /// The presenting address failed too often: nothing from it is checked for now.
    Throttled,
}

/// What the key scopes `wanted` hold under `access`: a scope the person's
/// permissions allow stays as it is; one they no longer allow in full is narrowed to
/// the permissions they hold within it (`admin:*` held as only `admin:users:read`
/// becomes that). Sorted, without duplicates.
pub fn effective_scopes(wanted: &[String], access: &Access) -> Vec<String> {
    let mut held = BTreeSet::new();
    for scope in wanted {
        if access.allows(scope) {
            held.insert(scope.clone());
            continue;
        }
        let Ok(pattern) = Permission::parse(scope) else {
            continue;
        };
        held.extend(
            access
                .permissions
                .iter()
                .filter(|p| pattern.allows(p))
                .cloned(),
        );
    }
    held.into_iter().collect()
}

fn check_request(
    new: &NewApiKey<'_>,
    settings: &ApiKeySettings,
    access: &Access,
) -> Result<Vec<String>, KeyRequestError> {
    let name = new.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(KeyRequestError::Name);
    }
    if !(1..=settings.max_lifetime).contains(&new.lifetime) {
        return Err(KeyRequestError::Lifetime {
            max: settings.max_lifetime,
        });
    }
    if new.scopes.len() > MAX_SCOPES {
        return Err(KeyRequestError::Scope(format!(
            "a key names at most {MAX_SCOPES} scopes"
        )));
    }
    let mut scopes = BTreeSet::new();
    for scope in new.scopes {
        Permission::parse(scope).map_err(|e| KeyRequestError::Scope(e.to_string()))?;
        if !access.allows(scope) {
            return Err(KeyRequestError::Scope(format!(
                "{scope:?} is not a permission this person holds"
            )));
        }
        scopes.insert(scope.clone());
    }
    Ok(scopes.into_iter().collect())
}

async fn audit(
    store: &SharedStore,
    key: &ApiKeyRecord,
    actor: &str,
    kind: &str,
    now: UnixTime,
) -> Result<(), IdentityError> {
    let detail = json!({
        "key_id": key.id,
        "name": key.name,
        "scopes": key.scopes,
        "expires_at": key.expires_at,
    });
    super::audit(store, &key.user_id, actor, kind, detail, now).await
}

/// Makes a key for an active user, whose scopes must be permissions the user holds
/// now. `Ok(Err(_))` when the request itself is at fault.
pub async fn create_api_key(
    store: &SharedStore,
    config: &Config,
    user_id: &str,
    new: &NewApiKey<'_>,
    actor: &str,
    now: UnixTime,
) -> Result<Result<CreatedApiKey, KeyRequestError>, IdentityError> {
    let user = store
        .get_user(user_id)
        .await?
        .ok_or(IdentityError::NoSuchUser)?;
    if user.status != UserStatus::Active {
        return Err(IdentityError::Disabled);
    }
    let access = super::current_access(store, &config.roles, user_id, None).await?;
    let scopes = match check_request(new, &config.api_keys, &access) {
        Ok(scopes) => scopes,
        Err(e) => return Ok(Err(e)),
    };
    let held = store.list_user_api_keys(user_id).await?.len();
    if held >= config.api_keys.max_per_user as usize {
        return Ok(Err(KeyRequestError::TooMany(config.api_keys.max_per_user)));
    }
    let random = secrets::random_token().map_err(|_| IdentityError::Random)?;
    let secret = SecretString::new(format!("{SECRET_PREFIX}{random}"));
    let key = ApiKeyRecord {
        id: secrets::random_id().map_err(|_| IdentityError::Random)?,
        user_id: user_id.to_string(),
        name: new.name.trim().to_string(),
        secret_hash: secrets::hash_secret(secret.expose()),
        scopes,
        created_at: now,
        expires_at: now + new.lifetime,
        last_used_at: None,
        revoked_at: None,
        created_by: actor.to_string(),
    };
    match store.create_api_key(&key).await {
        Ok(()) => {}
        // 256 random bits collide never; a backend that says so is broken.
        Err(StoreError::Conflict { .. }) => return Err(IdentityError::Random),
        Err(e) => return Err(e.into()),
    }
    audit(store, &key, actor, "api_key_created", now).await?;
    Ok(Ok(CreatedApiKey { key, secret }))
}

/// A user's keys, oldest first (revoked and expired ones until they are purged).
pub async fn list_api_keys(
    store: &SharedStore,
    user_id: &str,
) -> Result<Vec<ApiKeyRecord>, IdentityError> {
    if store.get_user(user_id).await?.is_none() {
        return Err(IdentityError::NoSuchUser);
    }
    Ok(store.list_user_api_keys(user_id).await?)
}

/// Revokes the key `key_id` of `user_id`, at once. False when the user has no such
/// key or it was revoked already.
pub async fn revoke_api_key(
    store: &SharedStore,
    user_id: &str,
    key_id: &str,
    actor: &str,
    now: UnixTime,
) -> Result<bool, IdentityError> {
    let Some(key) = store
        .list_user_api_keys(user_id)
        .await?
        .into_iter()
        .find(|k| k.id == key_id)
    else {
        return Ok(false);
    };
    if !store.revoke_api_key(user_id, key_id, now).await? {
        return Ok(false);
    }
    audit(store, &key, actor, "api_key_revoked", now).await?;
    Ok(true)
}

/// Revokes the key whose secret is `secret` (whoever holds a secret may end it, as
/// with a leaked token). Returns the key revoked, if any.
pub async fn revoke_by_secret(
    store: &SharedStore,
    secret: &str,
    actor: &str,
    now: UnixTime,
) -> Result<Option<ApiKeyRecord>, IdentityError> {
    let Some(key) = find(store, secret).await? else {
        return Ok(None);
    };
    match revoke_api_key(store, &key.user_id, &key.id, actor, now).await? {
        true => Ok(Some(key)),
        false => Ok(None),
    }
}

/// The stored key whose hash matches `secret`, compared again in constant time.
async fn find(store: &SharedStore, secret: &str) -> Result<Option<ApiKeyRecord>, IdentityError> {
    if !is_api_key(secret) {
        return Ok(None);
    }
    let hash = secrets::hash_secret(secret);
    let key = store.find_api_key(&hash).await?;
    Ok(key.filter(|k| secrets::constant_time_eq(k.secret_hash.as_bytes(), hash.as_bytes())))
}

fn throttle_key(ip: IpAddr) -> String {
    format!("apikey:{ip}")
}

/// Checks a presented secret: throttled per client address, then live or not, and
/// what it holds now. A live key's use is recorded (coarsely).
pub async fn verify_api_key(
    store: &SharedStore,
    config: &Config,
    secret: &str,
    ip: Option<IpAddr>,
    now: UnixTime,
) -> Result<Verified, IdentityError> {
    let settings = &config.api_keys;
    if let Some(ip) = ip
        && store.current(&throttle_key(ip), now).await? >= settings.max_failures_per_ip
    {
        return Ok(Verified::Throttled);
    }
    let Some(key) = find(store, secret).await? else {
        if let Some(ip) = ip {
            store
                .hit(&throttle_key(ip), settings.failure_window, now)
                .await?;
        }
        return Ok(Verified::Inactive);
    };
    if key.revoked_at.is_some() || key.expires_at <= now {
        return Ok(Verified::Inactive);
    }
    let Some(user) = store
        .get_user(&key.user_id)
        .await?
        .filter(|u| u.status == UserStatus::Active)
    else {
        return Ok(Verified::Inactive);
    };
    let access = super::current_access(store, &config.roles, &user.id, None).await?;
    let scopes = effective_scopes(&key.scopes, &access);
    // Read first: the store's conditional write would still take the write lock.
    if key
        .last_used_at
        .is_none_or(|at| at <= now - LAST_USED_COARSENESS)
    {
        store
            .touch_api_key(&key.id, now, LAST_USED_COARSENESS)
            .await?;
    }
    Ok(Verified::Live(Box::new(LiveApiKey { key, user, scopes })))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed step should fail the test loudly
mod tests {
    use super::*;
    use crate::identity::{NewLocalUser, add_local_user, delete_user, disable_user, grant_role};
    use crate::store::MemoryStore;
    use std::sync::Arc;

    const NOW: UnixTime = 1_700_000_000;

    fn access(permissions: &[&str]) -> Access {
        Access {
            roles: vec![],
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
            admin: false,
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// A config whose `ops` role holds `admin:users:*` and `reports:read`.
    fn config() -> Config {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.toml");
        std::fs::write(
            &file,
            r#"
issuer = "http://127.0.0.1:5556"
dev_mode = true

[api_keys]
max_lifetime = "30d"
max_per_user = 2
max_failures_per_ip = 3
failure_window = "1m"

[roles.permissions]
ops = ["admin:users:*", "reports:read"]

[providers.local]
type = "local"
"#,
        )
        .unwrap();
        crate::config::load(&file).unwrap()
    }

    async fn person(store: &SharedStore, config: &Config) -> String {
        let user = add_local_user(
            store,
            &NewLocalUser {
                email: "ada@example.com",
                ..Default::default()
            },
            "cli",
            NOW,
        )
        .await
        .unwrap();
        grant_role(store, config, &user.id, "ops", None, "cli", NOW)
            .await
            .unwrap();
        user.id
    }

    fn request<'a>(scopes: &'a [String], lifetime: i64) -> NewApiKey<'a> {
        NewApiKey {
            name: "ci",
            scopes,
            lifetime,
        }
    }

    #[test]
    fn a_scope_lost_in_part_narrows_to_what_is_still_held() {
        let now = access(&["admin:users:read", "reports:read"]);
        assert_eq!(
            effective_scopes(&strings(&["admin:*", "reports:read", "billing:pay"]), &now),
            strings(&["admin:users:read", "reports:read"])
        );
        assert_eq!(
            effective_scopes(&strings(&["admin:users:read"]), &access(&["admin:*"])),
            strings(&["admin:users:read"])
        );
        assert!(effective_scopes(&strings(&["admin:users:read"]), &access(&[])).is_empty());
    }

    #[test]
    fn a_request_is_checked_against_name_lifetime_and_held_permissions() {
        let settings = config().api_keys;
        let held = access(&["admin:users:*"]);
        let ok = strings(&["admin:users:read", "admin:users:read"]);
        assert_eq!(
            check_request(&request(&ok, 60), &settings, &held).unwrap(),
            strings(&["admin:users:read"]),
            "sorted, once"
        );
        let beyond = strings(&["admin:*"]);
        assert!(matches!(
            check_request(&request(&beyond, 60), &settings, &held),
            Err(KeyRequestError::Scope(_))
        ));
        assert!(matches!(
            check_request(&request(&ok, 0), &settings, &held),
            Err(KeyRequestError::Lifetime { .. })
        ));
        assert!(matches!(
            check_request(&request(&ok, 30 * 86_400 + 1), &settings, &held),
            Err(KeyRequestError::Lifetime { .. })
        ));
        let unnamed = NewApiKey {
            name: "  ",
            ..request(&ok, 60)
        };
        assert_eq!(
            check_request(&unnamed, &settings, &held),
            Err(KeyRequestError::Name)
        );
    }

    #[tokio::test]
    async fn a_key_is_live_with_its_scopes_until_revoked() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let config = config();
        let user = person(&store, &config).await;
        let scopes = strings(&["admin:users:read"]);
        let created = create_api_key(&store, &config, &user, &request(&scopes, 60), "cli", NOW)
            .await
            .unwrap()
            .unwrap();
        let secret = created.secret.expose().to_string();
        assert!(
            secret.starts_with("sbk_") && secret.len() == 4 + 43,
            "{secret}"
        );
        assert_ne!(created.key.secret_hash, secret, "only the hash is stored");
        assert_eq!(format!("{:?}", created.secret), "***");

        let Verified::Live(live) = verify_api_key(&store, &config, &secret, None, NOW + 1)
            .await
            .unwrap()
        else {
            panic!("the new key should be live");
        };
        assert_eq!(live.scopes, scopes);
        assert_eq!(live.user.id, user);
        assert_eq!(
            store
                .find_api_key(&created.key.secret_hash)
                .await
                .unwrap()
                .unwrap()
                .last_used_at,
            Some(NOW + 1)
        );

        assert!(
            revoke_api_key(&store, &user, &created.key.id, "cli", NOW + 2)
                .await
                .unwrap()
        );
        assert!(matches!(
            verify_api_key(&store, &config, &secret, None, NOW + 3)
                .await
                .unwrap(),
            Verified::Inactive
        ));
        let kinds: Vec<String> = store
            .list_audit(&user)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert!(kinds.ends_with(&strings(&["api_key_created", "api_key_revoked"])));
    }

    #[tokio::test]
    async fn expiry_a_lost_role_a_disabled_or_deleted_user_end_what_a_key_holds() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let config = config();
        let user = person(&store, &config).await;
        let scopes = strings(&["reports:read"]);
        let key = create_api_key(&store, &config, &user, &request(&scopes, 60), "cli", NOW)
            .await
            .unwrap()
            .unwrap();
        let secret = key.secret.expose().to_string();
        let verify = |at| {
            let (store, config, secret) = (store.clone(), config.clone(), secret.clone());
            async move {
                verify_api_key(&store, &config, &secret, None, at)
                    .await
                    .unwrap()
            }
        };
        assert!(
            matches!(verify(NOW + 60).await, Verified::Inactive),
            "expired"
        );

        crate::identity::revoke_role(&store, &user, "ops", None, "cli", NOW)
            .await
            .unwrap();
        let Verified::Live(live) = verify(NOW + 1).await else {
            panic!("a key outlives nothing but its scopes");
        };
        assert!(live.scopes.is_empty(), "the lost role took the scope");

        disable_user(&store, &user, "cli", NOW + 2).await.unwrap();
        assert!(matches!(verify(NOW + 3).await, Verified::Inactive));
        delete_user(&store, &user, "cli", NOW + 4).await.unwrap();
        assert!(matches!(verify(NOW + 5).await, Verified::Inactive));
    }

    #[tokio::test]
    async fn failures_from_one_address_are_throttled_even_for_a_good_key() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let config = config();
        let user = person(&store, &config).await;
        let key = create_api_key(&store, &config, &user, &request(&[], 600), "cli", NOW)
            .await
            .unwrap()
            .unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..3 {
            assert!(matches!(
                verify_api_key(&store, &config, "sbk_guess", Some(ip), NOW)
                    .await
                    .unwrap(),
                Verified::Inactive
            ));
        }
        assert!(matches!(
            verify_api_key(&store, &config, key.secret.expose(), Some(ip), NOW)
                .await
                .unwrap(),
            Verified::Throttled
        ));
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(matches!(
            verify_api_key(&store, &config, key.secret.expose(), Some(other), NOW)
                .await
                .unwrap(),
            Verified::Live(_)
        ));
        assert!(
            matches!(
                verify_api_key(&store, &config, key.secret.expose(), Some(ip), NOW + 60)
                    .await
                    .unwrap(),
                Verified::Live(_)
            ),
            "a new window"
        );
    }

    #[tokio::test]
    async fn a_person_holds_a_bounded_number_of_keys_and_only_their_own_permissions() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let config = config();
        let user = person(&store, &config).await;
        for _ in 0..2 {
            create_api_key(&store, &config, &user, &request(&[], 60), "cli", NOW)
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(
            create_api_key(&store, &config, &user, &request(&[], 60), "cli", NOW)
                .await
                .unwrap()
                .unwrap_err(),
            KeyRequestError::TooMany(2)
        );
        let wide = strings(&["admin:*"]);
        let other = add_local_user(
            &store,
            &NewLocalUser {
                email: "bob@example.com",
                ..Default::default()
            },
            "cli",
            NOW,
        )
        .await
        .unwrap();
        assert!(matches!(
            create_api_key(&store, &config, &other.id, &request(&wide, 60), "cli", NOW)
                .await
                .unwrap(),
            Err(KeyRequestError::Scope(_))
        ));
        assert!(matches!(
            create_api_key(&store, &config, "ghost", &request(&[], 60), "cli", NOW).await,
            Err(IdentityError::NoSuchUser)
        ));
    }
}
