//! From a provider's `Identity` to Switchboard's own user: find the linked user or
//! create one, refresh the profile, refuse disabled users. Also the user-lifecycle
//! operations whose side effects (revoking sessions and grants) must never be
//! forgotten by a caller.

use crate::providers::ProviderEntry;
use crate::secrets;
use crate::store::{IdentityLink, SharedStore, StoreError, UnixTime, UserRecord, UserStatus};
use async_trait::async_trait;
use switchboard_local::{AccountDirectory, LocalAccount};
use switchboard_plugin_api::{Identity, ProviderError};

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
    let claims = identity.claims.clone();
    match link {
        Some(mut l) => {
            l.claims = claims;
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
                    sealed_provider_data: None,
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
        let u1 = resolve_login(&store, &e, id.clone(), 10).await.unwrap();
        assert_ne!(u1.id, "upstream-1", "sub is never the upstream id");
        assert_eq!(u1.groups, vec!["corp/eng".to_string()]);
        let u2 = resolve_login(&store, &e, id.with_name("Ada"), 20)
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

    #[tokio::test]
    async fn local_static_user_keeps_its_fixed_id() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let u = resolve_login(
            &store,
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
        let u = resolve_login(&store, &e, Identity::new("u1"), 1)
            .await
            .unwrap();
        disable_user(&store, &u.id, 2).await.unwrap();
        assert!(matches!(
            resolve_login(&store, &e, Identity::new("u1"), 3).await,
            Err(IdentityError::Disabled)
        ));
        assert!(matches!(
            disable_user(&store, "nobody", 4).await,
            Err(IdentityError::NoSuchUser)
        ));
    }
}
