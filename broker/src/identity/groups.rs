//! Managed groups: the groups the broker itself holds. Creating, renaming, deleting and
//! changing members, each checked and audited with its actor, for the admin API and
//! the command line alike.

use super::{IdentityError, audit};
use crate::secrets;
use crate::store::{CheckedGroupWrite, GroupRecord, Membership, SharedStore, StoreError, UnixTime};
use serde_json::json;

/// How long a group name may be.
pub const MAX_GROUP_NAME: usize = 64;

/// A name a group may have: it shows in tokens as `managed/<name>`, so no `/`, no
/// spaces at either end, no control characters.
pub fn check_group_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > MAX_GROUP_NAME {
        return Err(format!("a group name has 1 to {MAX_GROUP_NAME} characters"));
    }
    if name.trim() != name {
        return Err("a group name does not start or end with a space".into());
    }
    if name.contains('/') || name.chars().any(char::is_control) {
        return Err("a group name has no '/' and no control characters".into());
    }
    Ok(())
}

/// How audit events name a group they are about.
fn group_subject(id: &str) -> String {
    format!("group:{id}")
}

pub async fn create_group(
    store: &SharedStore,
    name: &str,
    description: Option<&str>,
    actor: &str,
    now: UnixTime,
) -> Result<GroupRecord, IdentityError> {
    check_group_name(name).map_err(IdentityError::BadGroup)?;
    let group = GroupRecord {
        id: secrets::random_id().map_err(|_| IdentityError::Random)?,
        name: name.to_string(),
        description: description.map(str::to_string),
        created_at: now,
        updated_at: now,
        revision: 1,
    };
    match store.create_group(&group).await {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) => return Err(IdentityError::Taken("this group name")),
        Err(e) => return Err(e.into()),
    }
    let detail = json!({ "name": group.name });
    audit(
        store,
        &group_subject(&group.id),
        actor,
        "group_created",
        detail,
        now,
    )
    .await?;
    Ok(group)
}

/// Renames or re-describes a group if nobody changed it since `expected_revision`.
pub async fn update_group(
    store: &SharedStore,
    edited: &GroupRecord,
    expected_revision: i64,
    actor: &str,
    now: UnixTime,
) -> Result<GroupRecord, IdentityError> {
    check_group_name(&edited.name).map_err(IdentityError::BadGroup)?;
    let written = match store.update_group_checked(edited, expected_revision).await {
        Ok(CheckedGroupWrite::Written(group)) => group,
        Ok(CheckedGroupWrite::Stale) => return Err(IdentityError::Stale),
        Ok(CheckedGroupWrite::NoSuchGroup) => return Err(IdentityError::NoSuchGroup),
        Err(StoreError::Conflict { .. }) => return Err(IdentityError::Taken("this group name")),
        Err(e) => return Err(e.into()),
    };
    let detail = json!({ "name": written.name });
    audit(
        store,
        &group_subject(&written.id),
        actor,
        "group_updated",
        detail,
        now,
    )
    .await?;
    Ok(written)
}

/// Deletes a group; its members lose it (and the roles it gave) at their next token.
pub async fn delete_group(
    store: &SharedStore,
    id: &str,
    actor: &str,
    now: UnixTime,
) -> Result<(), IdentityError> {
    let group = store
        .get_group(id)
        .await?
        .ok_or(IdentityError::NoSuchGroup)?;
    if !store.delete_group(id).await? {
        return Err(IdentityError::NoSuchGroup);
    }
    let detail = json!({ "name": group.name });
    audit(
        store,
        &group_subject(id),
        actor,
        "group_deleted",
        detail,
        now,
    )
    .await
}

/// Adds a member; returns false if the user already was one.
pub async fn add_member(
    store: &SharedStore,
    group_id: &str,
    user_id: &str,
    actor: &str,
    now: UnixTime,
) -> Result<bool, IdentityError> {
    match store.add_member(group_id, user_id, now).await? {
        Membership::NoSuchGroup => Err(IdentityError::NoSuchGroup),
        Membership::NoSuchUser => Err(IdentityError::NoSuchUser),
        Membership::AlreadyMember => Ok(false),
        Membership::Added => {
            let detail = json!({ "group": group_id });
            audit(store, user_id, actor, "group_member_added", detail, now).await?;
            Ok(true)
        }
    }
}

/// Removes a member; returns false if the user was not one.
pub async fn remove_member(
    store: &SharedStore,
    group_id: &str,
    user_id: &str,
    actor: &str,
    now: UnixTime,
) -> Result<bool, IdentityError> {
    if store.get_group(group_id).await?.is_none() {
        return Err(IdentityError::NoSuchGroup);
    }
    if !store.remove_member(group_id, user_id).await? {
        return Ok(false);
    }
    let detail = json!({ "group": group_id });
    audit(store, user_id, actor, "group_member_removed", detail, now).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use std::sync::Arc;

    #[test]
    fn names_that_would_confuse_a_token_are_refused() {
        assert!(check_group_name("ops team").is_ok());
        for bad in ["", " ops", "ops ", "a/b", "a\u{7}b", &"x".repeat(65)] {
            assert!(check_group_name(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn every_change_is_audited_with_its_actor() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        store
            .create_user(&crate::identity::test_support::user("u1"))
            .await
            .unwrap();
        let g = create_group(&store, "ops", None, "cli", 1).await.unwrap();
        assert!(matches!(
            create_group(&store, "OPS", None, "cli", 1).await,
            Err(IdentityError::Taken(_))
        ));
        assert!(add_member(&store, &g.id, "u1", "cli", 2).await.unwrap());
        assert!(!add_member(&store, &g.id, "u1", "cli", 2).await.unwrap());
        assert!(matches!(
            add_member(&store, &g.id, "ghost", "cli", 2).await,
            Err(IdentityError::NoSuchUser)
        ));
        assert!(remove_member(&store, &g.id, "u1", "cli", 3).await.unwrap());
        delete_group(&store, &g.id, "cli", 4).await.unwrap();
        let kinds: Vec<String> = store
            .query_audit(&Default::default(), None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                "group_created",
                "group_member_added",
                "group_member_removed",
                "group_deleted"
            ]
        );
    }
}
