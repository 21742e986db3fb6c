//! Roles on one resource (`editor` of list 42): granted to a user or a managed group,
//! checked and audited, and the access decision apps ask for. Such roles never reach
//! tokens (a person may hold millions); an app asks whether a person may do something
//! to one resource, and gets the answer with its reason.
//!
//! A resource role is a role of `[roles.permissions]`: what it allows on the resource
//! is its permissions there. A permission the person holds globally (through their
//! roles toward the asking app) allows it on every resource.

use super::{IdentityError, audit};
use crate::roles::{Permission, RolePolicy};
use crate::store::{
    HeldResourceRole, Holder, ResourceGrantRecord, ResourceGrantWrite, ResourceRef, SharedStore,
    UnixTime, UserStatus,
};
use serde_json::json;

/// How long a resource type may be.
pub const MAX_TYPE_LEN: usize = 64;
/// How long a resource id may be.
pub const MAX_ID_LEN: usize = 256;

/// A resource type is a short lowercase word (`list`, `billing.invoice`): apps name
/// them in code, and a stray case or space would silently split one type in two.
pub fn check_resource(resource: &ResourceRef) -> Result<(), IdentityError> {
    let kind = &resource.resource_type;
    let type_ok = !kind.is_empty()
        && kind.len() <= MAX_TYPE_LEN
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if !type_ok {
        return Err(bad_input(
            "type",
            format!("a resource type has 1 to {MAX_TYPE_LEN} of a-z, 0-9, '_', '.', '-'"),
        ));
    }
    let id = &resource.id;
    if id.is_empty() || id.chars().count() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(bad_input(
            "id",
            format!("a resource id has 1 to {MAX_ID_LEN} characters, none of them control"),
        ));
    }
    Ok(())
}

/// A role may be held on a resource only if it means something there: it has
/// permissions in `[roles.permissions]`.
pub fn check_resource_role(policy: &RolePolicy, role: &str) -> Result<(), IdentityError> {
    match policy.permissions.get(role) {
        Some(permissions) if !permissions.is_empty() => Ok(()),
        _ => Err(bad_input(
            "role",
            format!(
                "{role:?} has no permissions in [roles.permissions]; a resource role needs some"
            ),
        )),
    }
}

/// A permission an app may ask about: one exact permission, no wildcard.
pub fn check_wanted_permission(permission: &str) -> Result<(), IdentityError> {
    Permission::parse(permission).map_err(|why| bad_input("permission", why.to_string()))?;
    if permission.split(':').any(|segment| segment == "*") {
        return Err(bad_input(
            "permission",
            "ask about one permission, without '*'",
        ));
    }
    Ok(())
}

fn bad_input(field: &'static str, why: impl Into<String>) -> IdentityError {
    IdentityError::BadInput {
        field,
        why: why.into(),
    }
}

/// How audit events name the holder: the user's id, or `group:ID`.
fn holder_subject(holder: &Holder) -> String {
    match holder {
        Holder::User(id) => id.clone(),
        Holder::Group(id) => format!("group:{id}"),
    }
}

/// Grants `role` on `resource` to `holder`; false if it was already held.
pub async fn grant_resource_role(
    store: &SharedStore,
    policy: &RolePolicy,
    resource: &ResourceRef,
    holder: &Holder,
    role: &str,
    actor: &str,
    now: UnixTime,
) -> Result<bool, IdentityError> {
    check_resource(resource)?;
    check_resource_role(policy, role)?;
    let grant = ResourceGrantRecord {
        resource: resource.clone(),
        holder: holder.clone(),
        role: role.to_string(),
        granted_at: now,
        granted_by: actor.to_string(),
    };
    match store.grant_resource_role(&grant).await? {
        ResourceGrantWrite::Added => {}
        ResourceGrantWrite::AlreadyGranted => return Ok(false),
        ResourceGrantWrite::NoSuchHolder => return Err(no_such(holder)),
    }
    audit_grant(store, "resource_role_granted", &grant, actor, now).await?;
    Ok(true)
}

/// Revokes `role` on `resource` from `holder`; false if it was not held.
pub async fn revoke_resource_role(
    store: &SharedStore,
    resource: &ResourceRef,
    holder: &Holder,
    role: &str,
    actor: &str,
    now: UnixTime,
) -> Result<bool, IdentityError> {
    check_resource(resource)?;
    if !store.revoke_resource_role(resource, holder, role).await? {
        return Ok(false);
    }
    let grant = ResourceGrantRecord {
        resource: resource.clone(),
        holder: holder.clone(),
        role: role.to_string(),
        granted_at: now,
        granted_by: actor.to_string(),
    };
    audit_grant(store, "resource_role_revoked", &grant, actor, now).await?;
    Ok(true)
}

fn no_such(holder: &Holder) -> IdentityError {
    match holder {
        Holder::User(_) => IdentityError::NoSuchUser,
        Holder::Group(_) => IdentityError::NoSuchGroup,
    }
}

async fn audit_grant(
    store: &SharedStore,
    kind: &str,
    grant: &ResourceGrantRecord,
    actor: &str,
    now: UnixTime,
) -> Result<(), IdentityError> {
    let detail = json!({
        "resource_type": grant.resource.resource_type,
        "resource_id": grant.resource.id,
        "role": grant.role,
    });
    audit(
        store,
        &holder_subject(&grant.holder),
        actor,
        kind,
        detail,
        now,
    )
    .await
}

/// Who is asking about: a user, toward the app that asks (its client roles count),
/// through the provider of the login at hand if there is one.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    pub user_id: &'a str,
    pub client_id: Option<&'a str>,
    /// The provider of the token's login; `None` for a check about a user named by
    /// `sub`, which counts their most recent login.
    pub provider_id: Option<&'a str>,
}

/// The answer to "may this person do this to this resource", with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A role of the person's (global toward the app) allows the permission everywhere.
    GlobalRole {
        role: String,
    },
    /// A role held on the resource allows it.
    ResourceRole(HeldResourceRole),
    Denied(Denial),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No role of theirs, here or global, allows it.
    NoGrant,
    UserDisabled,
    UnknownSubject,
}

impl Denial {
    /// How the answer names it.
    pub fn code(self) -> &'static str {
        match self {
            Denial::NoGrant => "no_grant",
            Denial::UserDisabled => "user_disabled",
            Denial::UnknownSubject => "unknown_subject",
        }
    }
}

/// Whether `asker` may do `permission` to `resource`. A disabled user may do nothing;
/// a role held on the resource answers before the person's global roles are read.
pub async fn decide(
    store: &SharedStore,
    policy: &RolePolicy,
    asker: Asker<'_>,
    permission: &str,
    resource: &ResourceRef,
) -> Result<Decision, IdentityError> {
    check_resource(resource)?;
    check_wanted_permission(permission)?;
    let Some(user) = store.get_user(asker.user_id).await? else {
        return Ok(Decision::Denied(Denial::UnknownSubject));
    };
    if user.status != UserStatus::Active {
        return Ok(Decision::Denied(Denial::UserDisabled));
    }
    // The resource's own grants first: one index lookup, where the global roles take
    // several reads.
    let held = store.user_resource_roles(&user.id, resource).await?;
    // Sorted: a direct grant (no group) comes before a group's for the same role.
    if let Some(held) = held
        .into_iter()
        .find(|held| role_allows(policy, &held.role, permission))
    {
        return Ok(Decision::ResourceRole(held));
    }
    let global = match asker.provider_id {
        Some(provider) => {
            super::access_for(store, policy, &user.id, provider, asker.client_id).await?
        }
        None => super::current_access(store, policy, &user.id, asker.client_id).await?,
    };
    Ok(global
        .roles
        .iter()
        .find(|role| role_allows(policy, role, permission))
        .map_or(Decision::Denied(Denial::NoGrant), |role| {
            Decision::GlobalRole { role: role.clone() }
        }))
}

fn role_allows(policy: &RolePolicy, role: &str, permission: &str) -> bool {
    policy
        .permissions
        .get(role)
        .is_some_and(|granted| granted.iter().any(|p| p.allows(permission)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed step should fail the test loudly
mod tests {
    use super::*;
    use crate::store::{AuditFilter, GroupRecord, MemoryStore};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn policy() -> RolePolicy {
        let mut permissions = BTreeMap::new();
        let parse = |ps: &[&str]| ps.iter().map(|p| Permission::parse(p).unwrap()).collect();
        permissions.insert("list-viewer".to_string(), parse(&["lists:read"]));
        permissions.insert(
            "list-editor".to_string(),
            parse(&["lists:read", "lists:write"]),
        );
        permissions.insert("auditor".to_string(), parse(&["lists:read"]));
        RolePolicy {
            admin_role: None,
            default_roles: Vec::new(),
            permissions,
            rules: Vec::new(),
            email_trusted: Default::default(),
        }
    }

    fn list(id: &str) -> ResourceRef {
        ResourceRef {
            resource_type: "list".into(),
            id: id.into(),
        }
    }

    async fn store_with_alice() -> SharedStore {
        let store: SharedStore = Arc::new(MemoryStore::new());
        store
            .create_user(&crate::identity::test_support::user("alice"))
            .await
            .unwrap();
        store
    }

    fn alice() -> Asker<'static> {
        Asker {
            user_id: "alice",
            client_id: None,
            provider_id: None,
        }
    }

    #[test]
    fn resource_names_are_checked() {
        let bad = |t: &str, id: &str| match check_resource(&ResourceRef {
            resource_type: t.into(),
            id: id.into(),
        }) {
            Err(IdentityError::BadInput { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(bad("List", "1"), "type");
        assert_eq!(bad("", "1"), "type");
        assert_eq!(bad("list", ""), "id");
        assert_eq!(bad("list", "a\nb"), "id");
        assert_eq!(bad(&"x".repeat(65), "1"), "type");
        assert!(check_resource(&list("ünïcode/ok 42")).is_ok());
        assert!(check_wanted_permission("lists:*").is_err());
        assert!(check_wanted_permission("lists:read").is_ok());
        assert!(check_resource_role(&policy(), "nobody").is_err());
    }

    #[tokio::test]
    async fn a_grant_allows_its_permissions_on_that_resource_only() {
        let store = store_with_alice().await;
        let p = policy();
        let new = grant_resource_role(
            &store,
            &p,
            &list("42"),
            &Holder::User("alice".into()),
            "list-viewer",
            "admin",
            10,
        )
        .await
        .unwrap();
        assert!(new);
        let decide = |perm: &'static str, id: &'static str| {
            let (store, p) = (store.clone(), p.clone());
            async move { decide(&store, &p, alice(), perm, &list(id)).await.unwrap() }
        };
        assert_eq!(
            decide("lists:read", "42").await,
            Decision::ResourceRole(HeldResourceRole {
                role: "list-viewer".into(),
                via_group: None
            })
        );
        assert_eq!(
            decide("lists:write", "42").await,
            Decision::Denied(Denial::NoGrant)
        );
        assert_eq!(
            decide("lists:read", "43").await,
            Decision::Denied(Denial::NoGrant)
        );
        let events = store
            .query_audit(&AuditFilter::default(), None, 10)
            .await
            .unwrap();
        assert!(events.iter().any(|(_, e)| e.kind == "resource_role_granted"
            && e.actor.as_deref() == Some("admin")
            && e.detail["resource_id"] == "42"));
    }

    #[tokio::test]
    async fn group_grants_count_while_the_membership_lasts() {
        let store = store_with_alice().await;
        let p = policy();
        store
            .create_group(&GroupRecord {
                id: "g1".into(),
                name: "editors".into(),
                description: None,
                created_at: 1,
                updated_at: 1,
                revision: 1,
            })
            .await
            .unwrap();
        store.add_member("g1", "alice", 1).await.unwrap();
        grant_resource_role(
            &store,
            &p,
            &list("42"),
            &Holder::Group("g1".into()),
            "list-editor",
            "admin",
            10,
        )
        .await
        .unwrap();
        let decision = decide(&store, &p, alice(), "lists:write", &list("42"))
            .await
            .unwrap();
        assert_eq!(
            decision,
            Decision::ResourceRole(HeldResourceRole {
                role: "list-editor".into(),
                via_group: Some("editors".into())
            })
        );
        store.remove_member("g1", "alice").await.unwrap();
        assert_eq!(
            decide(&store, &p, alice(), "lists:write", &list("42"))
                .await
                .unwrap(),
            Decision::Denied(Denial::NoGrant)
        );
    }

    #[tokio::test]
    async fn disabled_unknown_and_missing_holders() {
        let store = store_with_alice().await;
        let p = policy();
        let ghost = grant_resource_role(
            &store,
            &p,
            &list("1"),
            &Holder::Group("ghost".into()),
            "list-viewer",
            "admin",
            1,
        )
        .await;
        assert!(matches!(ghost, Err(IdentityError::NoSuchGroup)));
        let unknown = Asker {
            user_id: "nobody",
            ..alice()
        };
        assert_eq!(
            decide(&store, &p, unknown, "lists:read", &list("1"))
                .await
                .unwrap(),
            Decision::Denied(Denial::UnknownSubject)
        );
        grant_resource_role(
            &store,
            &p,
            &list("1"),
            &Holder::User("alice".into()),
            "list-viewer",
            "admin",
            1,
        )
        .await
        .unwrap();
        store
            .set_user_status("alice", UserStatus::Disabled, 2)
            .await
            .unwrap();
        assert_eq!(
            decide(&store, &p, alice(), "lists:read", &list("1"))
                .await
                .unwrap(),
            Decision::Denied(Denial::UserDisabled)
        );
        assert!(
            !revoke_resource_role(
                &store,
                &list("1"),
                &Holder::User("alice".into()),
                "list-editor",
                "admin",
                3
            )
            .await
            .unwrap()
        );
    }
}
