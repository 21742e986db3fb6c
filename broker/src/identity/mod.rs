//! From a provider's `Identity` to Switchboard's own user: find the linked user or
//! create one, refresh the profile, refuse disabled users. Also the user-lifecycle
//! operations whose side effects (revoking sessions and grants) must never be
//! forgotten by a caller.

use crate::providers::ProviderEntry;
use crate::secrets::{self, MasterKey};
use crate::store::{IdentityLink, SharedStore, StoreError, UnixTime, UserRecord, UserStatus};
use async_trait::async_trait;
use switchboard_local::{AccountDirectory, LocalAccount};
use switchboard_plugin_api::{Identity, ProviderError, RefreshRequest};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the account is disabled")]
    Disabled,
    #[error("another account already uses {0}")]
    Taken(&'static str),
    #[error("no such user")]
    NoSuchUser,
    #[error("random generator failed")]
    Random,
    #[error("provider data: {0}")]
    Sealing(#[from] secrets::SecretsError),
    #[error("stored identity is unreadable: {0}")]
    Corrupt(String),
    #[error("the provider refused: {0}")]
    Provider(#[from] ProviderError),
    #[error("no identity of provider {0} is linked to this user")]
    NotLinked(String),
}

const LINK_TABLE: &str = "identity_links";
const LINK_FORMAT: u32 = 1;

fn seal_provider_data(
    master: &MasterKey,
    provider_id: &str,
    subject: &str,
    data: &Option<serde_json::Value>,
) -> Result<Option<Vec<u8>>, IdentityError> {
    let Some(data) = data else { return Ok(None) };
    let plain = serde_json::to_vec(data).map_err(|e| IdentityError::Corrupt(e.to_string()))?;
    Ok(Some(master.seal(
        LINK_TABLE,
        &format!("{provider_id}/{subject}"),
        LINK_FORMAT,
        &plain,
    )?))
}

fn open_provider_data(
    master: &MasterKey,
    link: &IdentityLink,
) -> Result<Option<serde_json::Value>, IdentityError> {
    let Some(sealed) = &link.sealed_provider_data else {
        return Ok(None);
    };
    let plain = master.open(
        LINK_TABLE,
        &format!("{}/{}", link.provider_id, link.subject),
        LINK_FORMAT,
        sealed,
    )?;
    serde_json::from_slice(&plain)
        .map(Some)
        .map_err(|e| IdentityError::Corrupt(e.to_string()))
}

/// What the link keeps of a login: the normalised identity without its provider data
/// (which is sealed separately).
fn stored_identity(identity: &Identity) -> serde_json::Value {
    let mut shown = identity.clone();
    shown.provider_data = None;
    serde_json::to_value(&shown).unwrap_or(serde_json::Value::Null)
}

/// Groups travel namespaced by provider, so a group `admins` of one provider is never
/// the group `admins` of another.
pub fn namespaced_groups(provider_id: &str, groups: &[String]) -> Vec<String> {
    let mut out: Vec<String> = groups
        .iter()
        .map(|g| format!("{provider_id}/{g}"))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Finds or creates the user behind `identity` and records this login.
pub async fn resolve_login(
    store: &SharedStore,
    master: &MasterKey,
    entry: &ProviderEntry,
    mut identity: Identity,
    now: UnixTime,
) -> Result<UserRecord, IdentityError> {
    identity.provider_id = entry.id.clone();
    let link = store.find_identity(&entry.id, &identity.subject).await?;
    let user_id = match &link {
        Some(l) => l.user_id.clone(),
        // The local provider's subject is the user id itself (fixed for config users).
        None if entry.kind == switchboard_local::PROVIDER_TYPE => identity.subject.clone(),
        None => secrets::random_id().map_err(|_| IdentityError::Random)?,
    };
    let mut user = match store.get_user(&user_id).await? {
        Some(u) => u,
        None => {
            let u = new_user(&user_id, &identity, now);
            match store.create_user(&u).await {
                Ok(()) => u,
                Err(StoreError::Conflict { .. }) => {
                    return Err(IdentityError::Taken("this username or email"));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    if user.status != UserStatus::Active {
        return Err(IdentityError::Disabled);
    }
    apply_profile(&mut user, &identity, &entry.id);
    user.updated_at = now;
    user.last_login_at = Some(now);
    store.update_profile(&user).await?;
    let claims = stored_identity(&identity);
    let sealed = seal_provider_data(
        master,
        &entry.id,
        &identity.subject,
        &identity.provider_data,
    )?;
    match link {
        Some(mut l) => {
            l.claims = claims;
            l.sealed_provider_data = sealed;
            l.updated_at = now;
            store.update_identity(&l).await?;
        }
        None => {
            store
                .link_identity(&IdentityLink {
                    provider_id: entry.id.clone(),
                    subject: identity.subject.clone(),
                    user_id: user.id.clone(),
                    claims,
                    sealed_provider_data: sealed,
                    created_at: now,
                    updated_at: now,
                })
                .await?;
        }
    }
    Ok(user)
}

fn new_user(id: &str, identity: &Identity, now: UnixTime) -> UserRecord {
    let mut user = UserRecord {
        id: id.to_string(),
        username: None,
        email: None,
        email_verified: false,
        name: None,
        given_name: None,
        family_name: None,
        picture: None,
        groups: Vec::new(),
        status: UserStatus::Active,
        password_hash: None,
        created_at: now,
        updated_at: now,
        last_login_at: None,
    };
    apply_profile(&mut user, identity, &identity.provider_id);
    user
}

/// Upstream is the source of truth for the profile it sends; absent fields keep what
/// the user had.
fn apply_profile(user: &mut UserRecord, identity: &Identity, provider_id: &str) {
    let keep = |new: &Option<String>, old: &mut Option<String>| {
        if new.is_some() {
            old.clone_from(new);
        }
    };
    keep(&identity.username, &mut user.username);
    if identity.email.is_some() {
        user.email.clone_from(&identity.email);
        user.email_verified = identity.email_verified;
    }
    keep(&identity.name, &mut user.name);
    keep(&identity.given_name, &mut user.given_name);
    keep(&identity.family_name, &mut user.family_name);
    keep(&identity.picture, &mut user.picture);
    user.groups = namespaced_groups(provider_id, &identity.groups);
}

/// Asks the provider the user logged in with whether they may still have tokens, and
/// refreshes their profile and groups from its answer. Providers without the refresh
/// capability keep what was stored.
pub async fn refresh_from_provider(
    store: &SharedStore,
    master: &MasterKey,
    entry: &ProviderEntry,
    user: UserRecord,
    now: UnixTime,
) -> Result<UserRecord, IdentityError> {
    let Some(refresher) = entry.provider.refresh() else {
        return Ok(user);
    };
    let link = store
        .list_user_identities(&user.id)
        .await?
        .into_iter()
        .find(|l| l.provider_id == entry.id)
        .ok_or_else(|| IdentityError::NotLinked(entry.id.clone()))?;
    let mut previous: Identity = serde_json::from_value(link.claims.clone())
        .map_err(|e| IdentityError::Corrupt(e.to_string()))?;
    previous.provider_id = entry.id.clone();
    previous.provider_data = open_provider_data(master, &link)?;
    let mut fresh = refresher.refresh(RefreshRequest::new(previous)).await?;
    fresh.provider_id = entry.id.clone();
    if fresh.subject != link.subject {
        return Err(IdentityError::Provider(ProviderError::UpstreamProtocol {
            detail: "refresh returned another subject".into(),
        }));
    }
    let mut user = user;
    apply_profile(&mut user, &fresh, &entry.id);
    user.updated_at = now;
    store.update_profile(&user).await?;
    let mut updated = link;
    updated.claims = stored_identity(&fresh);
    updated.sealed_provider_data =
        seal_provider_data(master, &entry.id, &fresh.subject, &fresh.provider_data)?;
    updated.updated_at = now;
    store.update_identity(&updated).await?;
    Ok(user)
}

/// Disables a user and ends everything they hold: sessions and grants.
pub async fn disable_user(
    store: &SharedStore,
    id: &str,
    now: UnixTime,
) -> Result<(), IdentityError> {
    if !store.set_user_status(id, UserStatus::Disabled, now).await? {
        return Err(IdentityError::NoSuchUser);
    }
    store.revoke_user_sessions(id, now).await?;
    store.revoke_user_grants(id, now).await?;
    Ok(())
}

/// Re-enables a user (their old sessions and grants stay revoked).
pub async fn enable_user(
    store: &SharedStore,
    id: &str,
    now: UnixTime,
) -> Result<(), IdentityError> {
    if !store.set_user_status(id, UserStatus::Active, now).await? {
        return Err(IdentityError::NoSuchUser);
    }
    Ok(())
}

/// Sets a new password hash and ends every session and grant of the user.
pub async fn set_password(
    store: &SharedStore,
    id: &str,
    hash: &str,
    now: UnixTime,
) -> Result<(), IdentityError> {
    if !store.set_password_hash(id, hash, now).await? {
        return Err(IdentityError::NoSuchUser);
    }
    store.revoke_user_sessions(id, now).await?;
    store.revoke_user_grants(id, now).await?;
    Ok(())
}

/// Creates a user of the local provider kept in the store.
pub async fn add_local_user(
    store: &SharedStore,
    email: &str,
    username: Option<&str>,
    name: Option<&str>,
    password_hash: &str,
    now: UnixTime,
) -> Result<UserRecord, IdentityError> {
    let user = UserRecord {
        id: secrets::random_id().map_err(|_| IdentityError::Random)?,
        username: username.map(str::to_string),
        email: Some(email.to_string()),
        email_verified: false,
        name: name.map(str::to_string),
        given_name: None,
        family_name: None,
        picture: None,
        groups: Vec::new(),
        status: UserStatus::Active,
        password_hash: Some(password_hash.to_string()),
        created_at: now,
        updated_at: now,
        last_login_at: None,
    };
    match store.create_user(&user).await {
        Ok(()) => Ok(user),
        Err(StoreError::Conflict { .. }) => Err(IdentityError::Taken("this username or email")),
        Err(e) => Err(e.into()),
    }
}

/// The store as the local provider's account directory.
#[derive(Debug, Clone)]
pub struct StoreDirectory(pub SharedStore);

#[async_trait]
impl AccountDirectory for StoreDirectory {
    async fn find(&self, login: &str) -> Result<Option<LocalAccount>, ProviderError> {
        let user = self.0.find_user_by_login(login).await.map_err(|e| {
            ProviderError::UpstreamUnavailable {
                detail: e.to_string(),
            }
        })?;
        Ok(user.map(|u| LocalAccount {
            user_id: u.id,
            username: u.username,
            email: u.email,
            email_verified: u.email_verified,
            name: u.name,
            password_hash: u.password_hash,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use std::sync::Arc;
    use switchboard_plugin_api::{PasswordLogin, Provider};

    #[derive(Debug)]
    struct Nothing;
    impl Provider for Nothing {}
    #[async_trait]
    impl PasswordLogin for Nothing {
        async fn authenticate(
            &self,
            _: switchboard_plugin_api::PasswordRequest,
        ) -> Result<Identity, ProviderError> {
            Err(ProviderError::InvalidCredentials)
        }
    }

    fn master() -> MasterKey {
        MasterKey::from_bytes(&[5u8; 32]).unwrap()
    }

    fn entry(id: &str, kind: &str) -> ProviderEntry {
        ProviderEntry {
            id: id.into(),
            name: id.into(),
            kind: kind.into(),
            provider: Arc::new(Nothing),
        }
    }

    #[tokio::test]
    async fn first_login_creates_a_user_and_later_logins_find_the_same_one() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let e = entry("corp", "oidc");
        let id = Identity::new("upstream-1")
            .with_email("a@x.io", true)
            .with_groups(vec!["eng".into()]);
        let u1 = resolve_login(&store, &master(), &e, id.clone(), 10)
            .await
            .unwrap();
        assert_ne!(u1.id, "upstream-1", "sub is never the upstream id");
        assert_eq!(u1.groups, vec!["corp/eng".to_string()]);
        let u2 = resolve_login(&store, &master(), &e, id.with_name("Ada"), 20)
            .await
            .unwrap();
        assert_eq!(u1.id, u2.id);
        assert_eq!(
            store
                .get_user(&u1.id)
                .await
                .unwrap()
                .unwrap()
                .name
                .as_deref(),
            Some("Ada")
        );
    }

    /// A provider whose refresh answer the test sets.
    #[derive(Debug)]
    struct Scripted(std::sync::Mutex<Result<Identity, ProviderError>>);
    impl Provider for Scripted {
        fn refresh(&self) -> Option<&dyn switchboard_plugin_api::RefreshIdentity> {
            Some(self)
        }
    }
    #[async_trait]
    impl switchboard_plugin_api::RefreshIdentity for Scripted {
        async fn refresh(&self, r: RefreshRequest) -> Result<Identity, ProviderError> {
            assert_eq!(
                r.identity.provider_data,
                Some(serde_json::json!({"dn": "uid=a"})),
                "sealed provider data comes back"
            );
            self.0.lock().unwrap().clone()
        }
    }

    #[tokio::test]
    async fn refresh_updates_groups_and_a_denial_is_reported() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let scripted = Arc::new(Scripted(std::sync::Mutex::new(Ok(
            Identity::new("s1").with_groups(vec!["eng".into()])
        ))));
        let e = ProviderEntry {
            id: "dir".into(),
            name: "dir".into(),
            kind: "ldap".into(),
            provider: scripted.clone(),
        };
        let mut first = Identity::new("s1").with_groups(vec!["eng".into(), "admins".into()]);
        first.provider_data = Some(serde_json::json!({"dn": "uid=a"}));
        let user = resolve_login(&store, &master(), &e, first, 1)
            .await
            .unwrap();
        assert_eq!(
            user.groups,
            vec!["dir/admins".to_string(), "dir/eng".to_string()]
        );

        let mut fresh = Identity::new("s1").with_groups(vec!["eng".into()]);
        fresh.provider_data = Some(serde_json::json!({"dn": "uid=a"}));
        *scripted.0.lock().unwrap() = Ok(fresh);
        let user = refresh_from_provider(&store, &master(), &e, user, 2)
            .await
            .unwrap();
        assert_eq!(
            user.groups,
            vec!["dir/eng".to_string()],
            "removed group is gone"
        );
        assert_eq!(
            store.get_user(&user.id).await.unwrap().unwrap().groups,
            user.groups
        );

        *scripted.0.lock().unwrap() = Err(ProviderError::Denied {
            reason: "gone".into(),
        });
        assert!(matches!(
            refresh_from_provider(&store, &master(), &e, user, 3).await,
            Err(IdentityError::Provider(ProviderError::Denied { .. }))
        ));
    }

    #[tokio::test]
    async fn local_static_user_keeps_its_fixed_id() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let u = resolve_login(
            &store,
            &master(),
            &entry("local", "local"),
            Identity::new("fixed-id"),
            1,
        )
        .await
        .unwrap();
        assert_eq!(u.id, "fixed-id");
    }

    #[tokio::test]
    async fn disabled_user_is_refused_and_loses_sessions() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let e = entry("local", "local");
        let u = resolve_login(&store, &master(), &e, Identity::new("u1"), 1)
            .await
            .unwrap();
        disable_user(&store, &u.id, 2).await.unwrap();
        assert!(matches!(
            resolve_login(&store, &master(), &e, Identity::new("u1"), 3).await,
            Err(IdentityError::Disabled)
        ));
        assert!(matches!(
            disable_user(&store, "nobody", 4).await,
            Err(IdentityError::NoSuchUser)
        ));
    }
}
