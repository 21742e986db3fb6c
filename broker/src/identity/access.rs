//! Access: the roles and permissions a user holds, computed by [`crate::roles`] from the
//! identity a link stored and the user's direct grants (for tokens, userinfo,
//! introspection and `broker roles explain`), and the checked, audited granting and
//! revoking of roles.

use super::IdentityError;
use super::links::{identity_of_link, linked_identity};
use crate::config::Config;
use crate::roles::{self, Access, Explanation, RolePolicy, Subject};
use crate::store::{GrantRecord, RoleGrantRecord, SharedStore, UnixTime, UserRecord};
use switchboard_plugin_api::Identity;

/// The roles and permissions a user holds toward `client_id` when logged in through
/// `provider_id`: recomputed from the stored identity and the direct grants each time.
pub async fn access_for(
    store: &SharedStore,
    policy: &RolePolicy,
    user_id: &str,
    provider_id: &str,
    client_id: Option<&str>,
) -> Result<Access, IdentityError> {
    let identity = linked_identity(store, user_id, provider_id).await?;
    let direct = store.list_role_grants(user_id).await?;
    let managed_groups = managed_group_names(store, user_id).await?;
    let subject = Subject {
        identity: identity.as_ref(),
        direct: &direct,
        managed_groups: &managed_groups,
        machine_client: None,
    };
    Ok(roles::access(policy, &subject, client_id))
}

/// The permissions a user holds now toward `client_id` (or no client in particular),
/// outside any login: through the provider of their most recent login.
pub async fn current_access(
    store: &SharedStore,
    policy: &RolePolicy,
    user_id: &str,
    client_id: Option<&str>,
) -> Result<Access, IdentityError> {
    let links = store.list_user_identities(user_id).await?;
    let provider = links
        .iter()
        .max_by_key(|l| l.updated_at)
        .map_or("", |l| l.provider_id.as_str());
    access_for(store, policy, user_id, provider, client_id).await
}

/// The roles and permissions of a client acting as itself (client credentials): what
/// `client_id` rules give it, toward itself.
pub fn machine_access(policy: &RolePolicy, client_id: &str) -> Access {
    let subject = Subject {
        identity: None,
        direct: &[],
        managed_groups: &[],
        machine_client: Some(client_id),
    };
    roles::access(policy, &subject, Some(client_id))
}

/// The names of the managed groups `user_id` is a member of.
async fn managed_group_names(
    store: &SharedStore,
    user_id: &str,
) -> Result<Vec<String>, IdentityError> {
    Ok(store
        .list_user_groups(user_id)
        .await?
        .into_iter()
        .map(|g| g.name)
        .collect())
}

/// The user as tokens and userinfo show them: their upstream groups (namespaced by
/// provider at login) and, when `scopes` ask for `groups`, their managed groups as
/// `managed/<name>` (read from the store only then).
pub async fn with_managed_groups(
    store: &SharedStore,
    mut user: UserRecord,
    scopes: &[String],
) -> Result<UserRecord, IdentityError> {
    if !scopes.iter().any(|s| s == "groups") {
        return Ok(user);
    }
    for name in managed_group_names(store, &user.id).await? {
        user.groups
            .push(format!("{}/{name}", roles::MANAGED_GROUP_NAMESPACE));
    }
    Ok(user)
}

/// The scopes that ask for roles or permissions.
pub fn wants_access(scopes: &[String]) -> bool {
    scopes.iter().any(|s| s == "roles" || s == "permissions")
}

/// The access of a grant's user toward its client, if its scopes ask for it.
pub async fn grant_access(
    store: &SharedStore,
    policy: &RolePolicy,
    grant: &GrantRecord,
) -> Result<Option<Access>, IdentityError> {
    if !wants_access(&grant.scopes) {
        return Ok(None);
    }
    access_for(
        store,
        policy,
        &grant.user_id,
        &grant.provider_id,
        Some(&grant.client_id),
    )
    .await
    .map(Some)
}

/// Why a user holds each role: one explanation per linked identity (as if they logged
/// in through that provider), or only for `provider_id` when given; a user with no
/// linked identity gets one explanation without any.
pub async fn explain_user(
    store: &SharedStore,
    policy: &RolePolicy,
    user_id: &str,
    provider_id: Option<&str>,
    client_id: Option<&str>,
) -> Result<Vec<Explanation>, IdentityError> {
    if store.get_user(user_id).await?.is_none() {
        return Err(IdentityError::NoSuchUser);
    }
    let mut identities = Vec::new();
    for link in store.list_user_identities(user_id).await? {
        if provider_id.is_none_or(|p| p == link.provider_id) {
            identities.push(identity_of_link(link)?);
        }
    }
    if let Some(p) = provider_id
        && identities.is_empty()
    {
        return Err(IdentityError::NotLinked(p.to_string()));
    }
    let direct = store.list_role_grants(user_id).await?;
    let managed_groups = managed_group_names(store, user_id).await?;
    let explain = |identity: Option<&Identity>| {
        roles::explain(
            policy,
            &Subject {
                identity,
                direct: &direct,
                managed_groups: &managed_groups,
                machine_client: None,
            },
            client_id,
        )
    };
    if identities.is_empty() {
        return Ok(vec![explain(None)]);
    }
    Ok(identities.iter().map(|i| explain(Some(i))).collect())
}

/// Checks that `role` may be granted as asked: a valid name, a configured client, and
/// no mix-up between a global role and a client's (one name is one role).
fn check_grant(config: &Config, role: &str, client_id: Option<&str>) -> Result<(), IdentityError> {
    roles::check_role_name(role).map_err(IdentityError::BadRoleGrant)?;
    let scoped = config.roles.client_scoped_roles();
    match client_id {
        Some(c) if !config.clients.contains_key(c) => Err(IdentityError::BadRoleGrant(format!(
            "no client {c:?} is configured"
        ))),
        Some(c) if config.roles.global_roles().contains(role) => {
            Err(IdentityError::BadRoleGrant(format!(
                "{role:?} is a global role; grant it without a client (a client role may not shadow a global one, not even for {c})"
            )))
        }
        None if scoped.contains_key(role) => {
            let clients: Vec<&str> = scoped[role].iter().copied().collect();
            Err(IdentityError::BadRoleGrant(format!(
                "{role:?} is a client role (of {}); name the client",
                clients.join(", ")
            )))
        }
        _ => Ok(()),
    }
}

/// Grants a role directly; returns false if the user already had it. Takes effect at
/// the next token, refresh, userinfo or introspection.
pub async fn grant_role(
    store: &SharedStore,
    config: &Config,
    user_id: &str,
    role: &str,
    client_id: Option<&str>,
    actor: &str,
    now: UnixTime,
) -> Result<bool, IdentityError> {
    check_grant(config, role, client_id)?;
    if store.get_user(user_id).await?.is_none() {
        return Err(IdentityError::NoSuchUser);
    }
    let new = store
        .grant_role(&RoleGrantRecord {
            user_id: user_id.to_string(),
            role: role.to_string(),
            client_id: client_id.map(str::to_string),
            granted_at: now,
        })
        .await?;
    if new {
        let granted = RoleChange {
            user_id,
            role,
            client_id,
        };
        audit_role(store, "role_granted", &granted, actor, now).await?;
    }
    Ok(new)
}

/// One direct grant, as an audit event tells it.
struct RoleChange<'a> {
    user_id: &'a str,
    role: &'a str,
    client_id: Option<&'a str>,
}

async fn audit_role(
    store: &SharedStore,
    kind: &str,
    change: &RoleChange<'_>,
    actor: &str,
    now: UnixTime,
) -> Result<(), IdentityError> {
    let detail = serde_json::json!({ "role": change.role, "client": change.client_id });
    super::audit(store, change.user_id, actor, kind, detail, now).await
}

/// Removes a direct grant; returns false if there was none.
pub async fn revoke_role(
    store: &SharedStore,
    user_id: &str,
    role: &str,
    client_id: Option<&str>,
    actor: &str,
    now: UnixTime,
) -> Result<bool, IdentityError> {
    if store.get_user(user_id).await?.is_none() {
        return Err(IdentityError::NoSuchUser);
    }
    let removed = store.revoke_role(user_id, role, client_id).await?;
    if removed {
        let revoked = RoleChange {
            user_id,
            role,
            client_id,
        };
        audit_role(store, "role_revoked", &revoked, actor, now).await?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderPolicy;
    use crate::identity::test_support::{Scripted, entry, master};
    use crate::identity::{refresh_from_provider, resolve_login};
    use crate::providers::{ProviderEntry, Subjects};
    use crate::store::MemoryStore;
    use std::collections::BTreeSet;
    use std::sync::Arc;

    fn roles_config() -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.toml");
        std::fs::write(
            &path,
            r#"
issuer = "http://127.0.0.1:5556"
dev_mode = true
[clients.app]
secret = "app-secret-123"
redirect_uris = ["http://127.0.0.1:5555/callback"]
[clients.other]
secret = "other-secret-1"
redirect_uris = ["http://127.0.0.1:5555/callback"]
[providers.dir]
type = "local"
[roles]
default_roles = ["member"]
[roles.permissions]
ops = ["servers:*"]
[[roles.rules]]
role = "ops"
provider = "dir"
group = "ops"
[[roles.rules]]
role = "approver"
client = "app"
provider = "dir"
"#,
        )
        .unwrap();
        crate::config::load(&path).unwrap()
    }

    #[tokio::test]
    async fn access_follows_the_stored_identity_and_direct_grants() {
        let config = roles_config();
        let store: SharedStore = Arc::new(MemoryStore::new());
        let e = entry("dir", "ldap");
        let u = resolve_login(
            &store,
            &master(),
            &e,
            &BTreeSet::new(),
            Identity::new("s").with_groups(vec!["ops".into()]),
            1,
        )
        .await
        .unwrap();
        let a = access_for(&store, &config.roles, &u.id, "dir", Some("app"))
            .await
            .unwrap();
        assert_eq!(a.roles, vec!["approver", "member", "ops"]);
        assert_eq!(a.permissions, vec!["servers:*"]);
        let a = access_for(&store, &config.roles, &u.id, "dir", Some("other"))
            .await
            .unwrap();
        assert_eq!(
            a.roles,
            vec!["member", "ops"],
            "another client's role never"
        );

        // The group goes away upstream: the next login drops the role.
        resolve_login(
            &store,
            &master(),
            &e,
            &BTreeSet::new(),
            Identity::new("s"),
            2,
        )
        .await
        .unwrap();
        let a = access_for(&store, &config.roles, &u.id, "dir", None)
            .await
            .unwrap();
        assert_eq!(a.roles, vec!["member"]);

        assert!(
            grant_role(&store, &config, &u.id, "auditor", None, "cli", 3)
                .await
                .unwrap()
        );
        assert!(
            !grant_role(&store, &config, &u.id, "auditor", None, "cli", 4)
                .await
                .unwrap()
        );
        grant_role(&store, &config, &u.id, "viewer", Some("other"), "cli", 5)
            .await
            .unwrap();
        let a = access_for(&store, &config.roles, &u.id, "dir", Some("app"))
            .await
            .unwrap();
        assert_eq!(a.roles, vec!["approver", "auditor", "member"]);
        assert!(
            revoke_role(&store, &u.id, "auditor", None, "cli", 6)
                .await
                .unwrap()
        );
        let a = access_for(&store, &config.roles, &u.id, "dir", Some("other"))
            .await
            .unwrap();
        assert_eq!(a.roles, vec!["member", "viewer"]);

        let explained = explain_user(&store, &config.roles, &u.id, None, Some("app"))
            .await
            .unwrap();
        assert_eq!(explained.len(), 1);
        assert_eq!(explained[0].provider.as_deref(), Some("dir"));
        assert!(matches!(
            explain_user(&store, &config.roles, "nobody", None, None).await,
            Err(IdentityError::NoSuchUser)
        ));
        assert!(matches!(
            explain_user(&store, &config.roles, &u.id, Some("github"), None).await,
            Err(IdentityError::NotLinked(p)) if p == "github"
        ));
    }

    #[tokio::test]
    async fn direct_grants_keep_global_and_client_roles_apart() {
        let config = roles_config();
        let store: SharedStore = Arc::new(MemoryStore::new());
        let u = resolve_login(
            &store,
            &master(),
            &entry("dir", "ldap"),
            &BTreeSet::new(),
            Identity::new("s"),
            1,
        )
        .await
        .unwrap();
        let refused =
            |r: Result<bool, IdentityError>| matches!(r, Err(IdentityError::BadRoleGrant(_)));
        assert!(refused(
            grant_role(&store, &config, &u.id, "approver", None, "cli", 2).await
        ));
        assert!(refused(
            grant_role(&store, &config, &u.id, "ops", Some("app"), "cli", 2).await
        ));
        assert!(refused(
            grant_role(&store, &config, &u.id, "member", Some("app"), "cli", 2).await
        ));
        assert!(refused(
            grant_role(&store, &config, &u.id, "x", Some("nope"), "cli", 2).await
        ));
        assert!(refused(
            grant_role(&store, &config, &u.id, "bad name", None, "cli", 2).await
        ));
        assert!(
            grant_role(&store, &config, &u.id, "approver", Some("other"), "cli", 2)
                .await
                .unwrap(),
            "a client role may be granted for another client too"
        );
        assert!(matches!(
            grant_role(&store, &config, "nobody", "ops", None, "cli", 2).await,
            Err(IdentityError::NoSuchUser)
        ));
    }

    #[tokio::test]
    async fn a_group_removed_upstream_removes_its_role_at_the_next_refresh() {
        let config = roles_config();
        let store: SharedStore = Arc::new(MemoryStore::new());
        let with_ops = || {
            let mut i = Identity::new("s1").with_groups(vec!["ops".into()]);
            i.provider_data = Some(serde_json::json!({"dn": "uid=a"}));
            i
        };
        let scripted = Arc::new(Scripted(std::sync::Mutex::new(Ok(with_ops()))));
        let e = ProviderEntry::for_tests(
            "dir",
            Subjects::Upstream,
            ProviderPolicy::default(),
            scripted.clone(),
        );
        let user = resolve_login(&store, &master(), &e, &BTreeSet::new(), with_ops(), 1)
            .await
            .unwrap();
        let roles = |store: SharedStore, id: String| {
            let policy = config.roles.clone();
            async move {
                access_for(&store, &policy, &id, "dir", None)
                    .await
                    .unwrap()
                    .roles
            }
        };
        assert_eq!(
            roles(store.clone(), user.id.clone()).await,
            vec!["member", "ops"]
        );

        let mut without = Identity::new("s1");
        without.provider_data = Some(serde_json::json!({"dn": "uid=a"}));
        *scripted.0.lock().unwrap() = Ok(without);
        let user = refresh_from_provider(&store, &master(), &e, user, 2)
            .await
            .unwrap();
        assert_eq!(roles(store.clone(), user.id.clone()).await, vec!["member"]);
    }

    #[tokio::test]
    async fn role_grants_and_revocations_are_audited() {
        let config = roles_config();
        let store: SharedStore = Arc::new(MemoryStore::new());
        let u = resolve_login(
            &store,
            &master(),
            &entry("dir", "ldap"),
            &BTreeSet::new(),
            Identity::new("s"),
            1,
        )
        .await
        .unwrap();
        grant_role(&store, &config, &u.id, "auditor", None, "cli", 2)
            .await
            .unwrap();
        grant_role(&store, &config, &u.id, "auditor", None, "cli", 3)
            .await
            .unwrap();
        revoke_role(&store, &u.id, "auditor", None, "cli", 4)
            .await
            .unwrap();
        revoke_role(&store, &u.id, "auditor", None, "cli", 5)
            .await
            .unwrap();
        let kinds: Vec<(String, i64)> = store
            .list_audit(&u.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.at))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("role_granted".to_string(), 2),
                ("role_revoked".to_string(), 4)
            ],
            "only changes are recorded"
        );
    }
}
