//! Identity links: which provider identity belongs to which user. Linking one to a
//! signed-in user and unlinking it (the account page), reading the identity a link
//! keeps, and the link's stored form: the normalised identity in the clear, the
//! provider's own data sealed under the master key.

use super::IdentityError;
use crate::providers::ProviderEntry;
use crate::secrets::MasterKey;
use crate::store::{AuditEvent, IdentityLink, SharedStore, StoreError, UnixTime, UserStatus};
use switchboard_plugin_api::Identity;

/// The table and format version sealed provider data is bound to.
pub const LINK_TABLE: &str = "identity_links";
pub const LINK_FORMAT: u32 = 1;

pub(super) fn seal_provider_data(
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

pub(super) fn open_provider_data(
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
pub(super) fn stored_identity(identity: &Identity) -> serde_json::Value {
    let mut shown = identity.clone();
    shown.provider_data = None;
    serde_json::to_value(&shown).unwrap_or(serde_json::Value::Null)
}

pub(super) fn identity_of_link(link: IdentityLink) -> Result<Identity, IdentityError> {
    let mut identity: Identity =
        serde_json::from_value(link.claims).map_err(|e| IdentityError::Corrupt(e.to_string()))?;
    identity.provider_id = link.provider_id;
    identity.subject = link.subject;
    Ok(identity)
}

/// The identity of `provider_id` linked to a user, as its last login or refresh left
/// it; `None` if that provider has no identity linked to the user.
pub async fn linked_identity(
    store: &SharedStore,
    user_id: &str,
    provider_id: &str,
) -> Result<Option<Identity>, IdentityError> {
    let Some(link) = store
        .list_user_identities(user_id)
        .await?
        .into_iter()
        .find(|l| l.provider_id == provider_id)
    else {
        return Ok(None);
    };
    identity_of_link(link).map(Some)
}

/// Links the identity a login through `entry` produced to an existing, signed-in user
/// (the account page), and records it. Never creates a user and never moves a link:
/// an identity linked to someone else, or a local account of someone else, is
/// refused, as is a second identity of a provider the user already has.
pub async fn link_to_user(
    store: &SharedStore,
    master: &MasterKey,
    entry: &ProviderEntry,
    user_id: &str,
    mut identity: Identity,
    now: UnixTime,
) -> Result<(), IdentityError> {
    identity.provider_id = entry.id.clone();
    let user = store
        .get_user(user_id)
        .await?
        .ok_or(IdentityError::NoSuchUser)?;
    if user.status != UserStatus::Active {
        return Err(IdentityError::Disabled);
    }
    if let Some(existing) = store.find_identity(&entry.id, &identity.subject).await? {
        if existing.user_id != user.id {
            return Err(IdentityError::LinkedElsewhere);
        }
        // Already this user's: nothing changes.
        return Ok(());
    }
    // A local subject is a user id: someone else's account is not ours to take.
    if entry.subject_is_user_id()
        && identity.subject != user.id
        && store.get_user(&identity.subject).await?.is_some()
    {
        return Err(IdentityError::LinkedElsewhere);
    }
    if store
        .list_user_identities(&user.id)
        .await?
        .iter()
        .any(|l| l.provider_id == entry.id)
    {
        return Err(IdentityError::ProviderAlreadyLinked(entry.id.clone()));
    }
    let sealed = seal_provider_data(
        master,
        &entry.id,
        &identity.subject,
        &identity.provider_data,
    )?;
    let link = IdentityLink {
        provider_id: entry.id.clone(),
        subject: identity.subject.clone(),
        user_id: user.id.clone(),
        claims: stored_identity(&identity),
        sealed_provider_data: sealed,
        created_at: now,
        updated_at: now,
    };
    match store.link_identity(&link).await {
        Ok(()) => {}
        // Linked by someone else in the meantime.
        Err(StoreError::Conflict { .. }) => return Err(IdentityError::LinkedElsewhere),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(provider = %entry.id, user = %user.id, "identity linked from the account page");
    audit_linked(
        store,
        &user.id,
        &entry.id,
        &identity.subject,
        "account_page",
        None,
        now,
    )
    .await
}

/// The `identity_linked` audit event: who, which identity, and how (`by`; the email
/// that vouched when linked by verified email).
pub(super) async fn audit_linked(
    store: &SharedStore,
    user_id: &str,
    provider_id: &str,
    subject: &str,
    by: &str,
    email: Option<&str>,
    now: UnixTime,
) -> Result<(), IdentityError> {
    let mut detail = serde_json::json!({ "provider": provider_id, "subject": subject, "by": by });
    if let Some(email) = email {
        detail["email"] = email.into();
    }
    store
        .record_audit(&AuditEvent {
            user_id: user_id.to_string(),
            // Linked on the account page by its owner, or by the broker at a login.
            actor: (by == "account").then(|| format!("user:{user_id}")),
            kind: "identity_linked".into(),
            detail,
            at: now,
        })
        .await?;
    Ok(())
}

/// Removes the user's identity of `provider_id`, unless it is their last way in (their
/// only identity, and no password kept by the broker).
pub async fn unlink_from_user(
    store: &SharedStore,
    user_id: &str,
    provider_id: &str,
    now: UnixTime,
) -> Result<(), IdentityError> {
    let user = store
        .get_user(user_id)
        .await?
        .ok_or(IdentityError::NoSuchUser)?;
    let links = store.list_user_identities(user_id).await?;
    let Some(link) = links.iter().find(|l| l.provider_id == provider_id) else {
        return Err(IdentityError::NotLinked(provider_id.to_string()));
    };
    if links.len() <= 1 && user.password_hash.is_none() {
        return Err(IdentityError::LastWayIn);
    }
    if !store
        .unlink_identity(&link.provider_id, &link.subject)
        .await?
    {
        return Err(IdentityError::NotLinked(provider_id.to_string()));
    }
    tracing::info!(provider = %provider_id, user = %user_id, "identity unlinked");
    store
        .record_audit(&AuditEvent {
            user_id: user_id.to_string(),
            actor: Some(format!("user:{user_id}")),
            kind: "identity_unlinked".into(),
            detail: serde_json::json!({ "provider": link.provider_id, "subject": link.subject }),
            at: now,
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::resolve_login;
    use crate::identity::test_support::{entry, master};
    use crate::store::MemoryStore;
    use std::collections::BTreeSet;
    use std::sync::Arc;

    #[tokio::test]
    async fn explicit_links_never_move_an_identity_and_keep_a_way_in() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let (corp, other, local2) = (
            entry("corp", "oidc"),
            entry("other", "oidc"),
            entry("local2", switchboard_local::PROVIDER_TYPE),
        );
        let none = BTreeSet::new();
        let alice = resolve_login(&store, &master(), &corp, &none, Identity::new("a"), 1)
            .await
            .unwrap();
        let bob = resolve_login(&store, &master(), &other, &none, Identity::new("b"), 1)
            .await
            .unwrap();
        let carol = resolve_login(&store, &master(), &local2, &none, Identity::new("carol"), 1)
            .await
            .unwrap();

        // Bob's identity stays Bob's; Carol's local account cannot be taken either.
        assert!(matches!(
            link_to_user(&store, &master(), &other, &alice.id, Identity::new("b"), 2).await,
            Err(IdentityError::LinkedElsewhere)
        ));
        store.unlink_identity("local2", "carol").await.unwrap();
        assert!(matches!(
            link_to_user(
                &store,
                &master(),
                &local2,
                &alice.id,
                Identity::new("carol"),
                2
            )
            .await,
            Err(IdentityError::LinkedElsewhere)
        ));
        assert_eq!(
            store
                .find_identity("other", "b")
                .await
                .unwrap()
                .unwrap()
                .user_id,
            bob.id
        );
        assert_eq!(carol.id, "carol");

        link_to_user(&store, &master(), &other, &alice.id, Identity::new("a2"), 3)
            .await
            .unwrap();
        assert!(matches!(
            link_to_user(&store, &master(), &other, &alice.id, Identity::new("a3"), 3).await,
            Err(IdentityError::ProviderAlreadyLinked(p)) if p == "other"
        ));
        let again = resolve_login(&store, &master(), &other, &none, Identity::new("a2"), 4)
            .await
            .unwrap();
        assert_eq!(again.id, alice.id, "the linked identity signs in as Alice");

        unlink_from_user(&store, &alice.id, "corp", 5)
            .await
            .unwrap();
        assert!(matches!(
            unlink_from_user(&store, &alice.id, "other", 6).await,
            Err(IdentityError::LastWayIn)
        ));
        assert!(matches!(
            unlink_from_user(&store, &alice.id, "corp", 6).await,
            Err(IdentityError::NotLinked(_))
        ));
        let kinds: Vec<String> = store
            .list_audit(&alice.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, vec!["identity_linked", "identity_unlinked"]);
    }
}
