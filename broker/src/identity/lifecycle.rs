//! The user lifecycle: disabling and enabling a user, setting a password and adding a
//! user of the local provider, each with the side effects (revoking sessions and
//! grants) a caller must never forget; and the store as the local provider's account
//! directory. Refreshing a user from their provider is in `identity::resolve`, since it
//! applies a login's profile rules.

use super::{IdentityError, audit};
use crate::secrets;
use crate::store::{CheckedWrite, SharedStore, StoreError, UnixTime, UserRecord, UserStatus};
use async_trait::async_trait;
use serde_json::json;
use switchboard_local::{AccountDirectory, LocalAccount};
use switchboard_plugin_api::ProviderError;

/// The unique key a write collided on, as the error names it.
fn taken(what: &str) -> IdentityError {
    IdentityError::Taken(match what {
        "username" => "this username",
        "email" => "this email",
        _ => "this username or email",
    })
}

/// Ends every session and grant of a user.
async fn end_everything(store: &SharedStore, id: &str, now: UnixTime) -> Result<(), IdentityError> {
    store.revoke_user_sessions(id, now).await?;
    store.revoke_user_grants(id, now).await?;
    Ok(())
}

/// Disables a user and ends everything they hold: sessions, grants and API keys (a
/// disabled user's keys are refused anyway; revoking them means re-enabling the user
/// does not bring them back).
pub async fn disable_user(
    store: &SharedStore,
    id: &str,
    actor: &str,
    now: UnixTime,
) -> Result<(), IdentityError> {
    if !store.set_user_status(id, UserStatus::Disabled, now).await? {
        return Err(IdentityError::NoSuchUser);
    }
    end_everything(store, id, now).await?;
    let keys = store.revoke_user_api_keys(id, now).await?;
    audit(
        store,
        id,
        actor,
        "user_disabled",
        json!({ "api_keys_revoked": keys }),
        now,
    )
    .await
}

/// Re-enables a user (their old sessions and grants stay revoked).
pub async fn enable_user(
    store: &SharedStore,
    id: &str,
    actor: &str,
    now: UnixTime,
) -> Result<(), IdentityError> {
    if !store.set_user_status(id, UserStatus::Active, now).await? {
        return Err(IdentityError::NoSuchUser);
    }
    audit(store, id, actor, "user_enabled", json!({}), now).await
}

/// Sets a new password hash and ends every session and grant of the user.
pub async fn set_password(
    store: &SharedStore,
    id: &str,
    hash: &str,
    actor: &str,
    now: UnixTime,
) -> Result<(), IdentityError> {
    if !store.set_password_hash(id, hash, now).await? {
        return Err(IdentityError::NoSuchUser);
    }
    end_everything(store, id, now).await?;
    audit(store, id, actor, "password_set", json!({}), now).await
}

/// Writes `edited` if the stored user is still `before` (its revision); a user
/// disabled by the edit loses every session and grant. Returns the user as stored.
pub async fn update_user(
    store: &SharedStore,
    before: &UserRecord,
    edited: &UserRecord,
    actor: &str,
    now: UnixTime,
) -> Result<UserRecord, IdentityError> {
    let written = match store.update_user_checked(edited, before.revision).await {
        Ok(CheckedWrite::Written(user)) => *user,
        Ok(CheckedWrite::Stale) => return Err(IdentityError::Stale),
        Ok(CheckedWrite::NoSuchUser) => return Err(IdentityError::NoSuchUser),
        Err(StoreError::Conflict { what }) => return Err(taken(what)),
        Err(e) => return Err(e.into()),
    };
    if written.status == UserStatus::Disabled && before.status == UserStatus::Active {
        end_everything(store, &written.id, now).await?;
        store.revoke_user_api_keys(&written.id, now).await?;
    }
    let changed: Vec<&str> = [
        ("username", before.username != written.username),
        ("email", before.email != written.email),
        (
            "email_verified",
            before.email_verified != written.email_verified,
        ),
        ("name", before.name != written.name),
        ("given_name", before.given_name != written.given_name),
        ("family_name", before.family_name != written.family_name),
        ("picture", before.picture != written.picture),
        ("status", before.status != written.status),
    ]
    .into_iter()
    .filter_map(|(field, differs)| differs.then_some(field))
    .collect();
    let detail = json!({ "fields": changed, "status": written.status.as_str() });
    audit(store, &written.id, actor, "user_updated", detail, now).await?;
    Ok(written)
}

/// Deletes a user with everything that hangs off it (links, grants, sessions, role
/// grants); the audit trail stays, with this deletion last.
pub async fn delete_user(
    store: &SharedStore,
    id: &str,
    actor: &str,
    now: UnixTime,
) -> Result<(), IdentityError> {
    let user = store.get_user(id).await?.ok_or(IdentityError::NoSuchUser)?;
    if !store.delete_user(id).await? {
        return Err(IdentityError::NoSuchUser);
    }
    let detail = json!({ "username": user.username, "created_at": user.created_at });
    audit(store, id, actor, "user_deleted", detail, now).await
}

/// Ends a user's browser sessions and grants (every app must sign them in again).
pub async fn end_sessions(
    store: &SharedStore,
    id: &str,
    actor: &str,
    now: UnixTime,
) -> Result<u64, IdentityError> {
    if store.get_user(id).await?.is_none() {
        return Err(IdentityError::NoSuchUser);
    }
    let sessions = store.revoke_user_sessions(id, now).await?;
    let grants = store.revoke_user_grants(id, now).await?;
    let detail = json!({ "sessions": sessions, "grants": grants });
    audit(store, id, actor, "sessions_ended", detail, now).await?;
    Ok(sessions)
}

/// What a new local user is made of.
#[derive(Debug, Clone, Default)]
pub struct NewLocalUser<'a> {
    pub email: &'a str,
    pub username: Option<&'a str>,
    pub name: Option<&'a str>,
    /// `None`: the user cannot sign in with a password until one is set.
    pub password_hash: Option<&'a str>,
}

/// Creates a user of the local provider kept in the store. The email is the
/// operator's word, as a static user's is, so it is verified (and logs in); a
/// username or verified email another account holds is refused, as the operator's
/// choice to make again (unlike a first login, which gives way).
pub async fn add_local_user(
    store: &SharedStore,
    new: &NewLocalUser<'_>,
    actor: &str,
    now: UnixTime,
) -> Result<UserRecord, IdentityError> {
    let user = UserRecord {
        id: secrets::random_id().map_err(|_| IdentityError::Random)?,
        username: new.username.map(str::to_string),
        email: Some(new.email.to_string()),
        // The operator's word, as for static users.
        email_verified: true,
        name: new.name.map(str::to_string),
        given_name: None,
        family_name: None,
        picture: None,
        groups: Vec::new(),
        status: UserStatus::Active,
        password_hash: new.password_hash.map(str::to_string),
        created_at: now,
        updated_at: now,
        last_login_at: None,
        revision: 1,
    };
    match store.create_user(&user).await {
        Ok(()) => {}
        Err(StoreError::Conflict { what }) => return Err(taken(what)),
        Err(e) => return Err(e.into()),
    }
    let detail = json!({ "username": user.username, "password": new.password_hash.is_some() });
    audit(store, &user.id, actor, "user_created", detail, now).await?;
    Ok(user)
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
        disable_user(&store, &u.id, "cli", 2).await.unwrap();
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
            disable_user(&store, "nobody", "cli", 4).await,
            Err(IdentityError::NoSuchUser)
        ));
    }
}
