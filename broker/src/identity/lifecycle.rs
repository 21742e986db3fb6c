//! The user lifecycle: disabling and enabling a user, setting a password and adding a
//! user of the local provider, each with the side effects (revoking sessions and
//! grants) a caller must never forget; and the store as the local provider's account
//! directory. Refreshing a user from their provider is in `identity::resolve`, since it
//! applies a login's profile rules.

use super::IdentityError;
use crate::secrets;
use crate::store::{SharedStore, StoreError, UnixTime, UserRecord, UserStatus};
use async_trait::async_trait;
use switchboard_local::{AccountDirectory, LocalAccount};
use switchboard_plugin_api::ProviderError;

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

/// Creates a user of the local provider kept in the store. The email is the
/// operator's word, as a static user's is, so it is verified (and logs in); a
/// username or verified email another account holds is refused, as the operator's
/// choice to make again (unlike a first login, which gives way).
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
        email_verified: true,
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
        Err(StoreError::Conflict { what: "username" }) => {
            Err(IdentityError::Taken("this username"))
        }
        Err(StoreError::Conflict { what: "email" }) => Err(IdentityError::Taken("this email")),
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
    use crate::identity::resolve_login;
    use crate::identity::test_support::{entry, master};
    use crate::store::MemoryStore;
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use switchboard_plugin_api::Identity;

    #[tokio::test]
    async fn disabled_user_is_refused_and_loses_sessions() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let e = entry("local", "local");
        let u = resolve_login(
            &store,
            &master(),
            &e,
            &BTreeSet::new(),
            Identity::new("u1"),
            1,
        )
        .await
        .unwrap();
        disable_user(&store, &u.id, 2).await.unwrap();
        assert!(matches!(
            resolve_login(
                &store,
                &master(),
                &e,
                &BTreeSet::new(),
                Identity::new("u1"),
                3
            )
            .await,
            Err(IdentityError::Disabled)
        ));
        assert!(matches!(
            disable_user(&store, "nobody", 4).await,
            Err(IdentityError::NoSuchUser)
        ));
    }
}
