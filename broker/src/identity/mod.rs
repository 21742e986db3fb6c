//! From a provider's `Identity` to Switchboard's own user: find the linked user or
//! create one, refresh the profile, refuse disabled users. Also the user-lifecycle
//! operations whose side effects (revoking sessions and grants) must never be
//! forgotten by a caller. Role rules live in [`crate::roles`]; this module feeds them
//! the stored identity and direct grants.

use crate::config::{Config, ProfileSync, Registration};
use crate::providers::ProviderEntry;
use crate::roles::{self, Access, Explanation, RolePolicy, Subject};
use crate::secrets::{self, MasterKey};
use crate::store::{
    AuditEvent, GrantRecord, IdentityLink, RoleGrantRecord, SharedStore, StoreError, UnixTime,
    UserRecord, UserStatus,
};
use async_trait::async_trait;
use std::collections::BTreeSet;
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
    #[error("registration through provider {0} is closed and this person has no account")]
    RegistrationClosed(String),
    #[error("role grant refused: {0}")]
    BadRoleGrant(String),
    #[error("this identity belongs to another account")]
    LinkedElsewhere,
    #[error("the account already has an identity of provider {0}")]
    ProviderAlreadyLinked(String),
    #[error("unlinking would leave the account with no way to sign in")]
    LastWayIn,
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

/// The account a first login through `entry` links to by verified email, if any:
/// only where the provider links by email (and is trusted for email), only for a
/// verified email, only to the one account whose email it is, whose email is verified
/// and was vouched for by a provider trusted for email (one of its linked identities
/// says so), and which has no identity of this provider yet.
async fn email_link_target(
    store: &SharedStore,
    email_trusted: &BTreeSet<String>,
    entry: &ProviderEntry,
    identity: &Identity,
) -> Result<Option<UserRecord>, IdentityError> {
    if !entry.policy.link_by_verified_email || !email_trusted.contains(&entry.id) {
        return Ok(None);
    }
    let Some(email) = identity
        .email
        .as_deref()
        .filter(|_| identity.email_verified)
    else {
        return Ok(None);
    };
    // Emails are unique among users: at most one account can match.
    let Some(user) = store.find_user_by_login(email).await? else {
        return Ok(None);
    };
    let same_email = |e: Option<&str>| e.is_some_and(|e| e.eq_ignore_ascii_case(email));
    if !same_email(user.email.as_deref()) || !user.email_verified {
        return Ok(None);
    }
    let mut vouched = false;
    for link in store.list_user_identities(&user.id).await? {
        if link.provider_id == entry.id {
            // One identity per provider: a second one never joins the account.
            return Ok(None);
        }
        if email_trusted.contains(&link.provider_id) {
            let linked = identity_of_link(link)?;
            vouched |= linked.email_verified && same_email(linked.email.as_deref());
        }
    }
    Ok(vouched.then_some(user))
}

/// Finds or creates the user behind `identity` and records this login.
/// `email_trusted` names the providers trusted for email (see [`email_link_target`]).
pub async fn resolve_login(
    store: &SharedStore,
    master: &MasterKey,
    entry: &ProviderEntry,
    email_trusted: &BTreeSet<String>,
    mut identity: Identity,
    now: UnixTime,
) -> Result<UserRecord, IdentityError> {
    identity.provider_id = entry.id.clone();
    let link = store.find_identity(&entry.id, &identity.subject).await?;
    let local = entry.subject_is_user_id();
    let mut linked_by_email = false;
    let user_id = match &link {
        Some(l) => l.user_id.clone(),
        // A user kept by the broker: the local provider's subject is its id.
        None if local && store.get_user(&identity.subject).await?.is_some() => {
            identity.subject.clone()
        }
        None => match email_link_target(store, email_trusted, entry, &identity).await? {
            Some(target) => {
                linked_by_email = true;
                target.id
            }
            // The local provider's subject is the user id itself (fixed for config users).
            None if local => identity.subject.clone(),
            None => secrets::random_id().map_err(|_| IdentityError::Random)?,
        },
    };
    let mut user = match store.get_user(&user_id).await? {
        Some(u) => u,
        None if entry.policy.registration == Registration::Closed => {
            return Err(IdentityError::RegistrationClosed(entry.id.clone()));
        }
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
    apply_profile(&mut user, &identity, &entry.id, entry.policy.sync);
    user.updated_at = now;
    user.last_login_at = Some(now);
    match store.update_profile(&user).await {
        Ok(_) => {}
        Err(StoreError::Conflict { .. }) => {
            return Err(IdentityError::Taken("this username or email"));
        }
        Err(e) => return Err(e.into()),
    }
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
            if linked_by_email {
                tracing::info!(provider = %entry.id, user = %user.id, "identity linked by verified email");
                store
                    .record_audit(&AuditEvent {
                        user_id: user.id.clone(),
                        kind: "identity_linked".into(),
                        detail: serde_json::json!({
                            "provider": entry.id,
                            "subject": identity.subject,
                            "by": "verified_email",
                            "email": identity.email,
                        }),
                        at: now,
                    })
                    .await?;
            }
        }
    }
    Ok(user)
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
    store
        .record_audit(&AuditEvent {
            user_id: user.id.clone(),
            kind: "identity_linked".into(),
            detail: serde_json::json!({
                "provider": entry.id,
                "subject": identity.subject,
                "by": "account_page",
            }),
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
            kind: "identity_unlinked".into(),
            detail: serde_json::json!({ "provider": link.provider_id, "subject": link.subject }),
            at: now,
        })
        .await?;
    Ok(())
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
    apply_fields(&mut user, identity);
    user.groups = namespaced_groups(&identity.provider_id, &identity.groups);
    user
}

/// Groups always follow the provider (role rules depend on them); profile fields
/// follow it under `sync = "force"` and stay as imported under `sync = "import"`.
fn apply_profile(user: &mut UserRecord, identity: &Identity, provider_id: &str, sync: ProfileSync) {
    if sync == ProfileSync::Force {
        apply_fields(user, identity);
    }
    user.groups = namespaced_groups(provider_id, &identity.groups);
}

/// Upstream is the source of truth for the profile it sends; absent fields keep what
/// the user had.
fn apply_fields(user: &mut UserRecord, identity: &Identity) {
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
    if !entry.has_refresh() {
        return Ok(user);
    }
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
    let Some(answer) = entry.refresh(RefreshRequest::new(previous)).await else {
        return Ok(user);
    };
    let mut fresh = answer?;
    fresh.provider_id = entry.id.clone();
    if fresh.subject != link.subject {
        return Err(IdentityError::Provider(ProviderError::UpstreamProtocol {
            detail: "refresh returned another subject".into(),
        }));
    }
    let mut user = user;
    apply_profile(&mut user, &fresh, &entry.id, entry.policy.sync);
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

fn identity_of_link(link: IdentityLink) -> Result<Identity, IdentityError> {
    let mut identity: Identity =
        serde_json::from_value(link.claims).map_err(|e| IdentityError::Corrupt(e.to_string()))?;
    identity.provider_id = link.provider_id;
    identity.subject = link.subject;
    Ok(identity)
}

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
    let subject = Subject {
        identity: identity.as_ref(),
        direct: &direct,
    };
    Ok(roles::access(policy, &subject, client_id))
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
    let explain = |identity: Option<&Identity>| {
        roles::explain(
            policy,
            &Subject {
                identity,
                direct: &direct,
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
        audit_role(store, "role_granted", user_id, role, client_id, now).await?;
    }
    Ok(new)
}

async fn audit_role(
    store: &SharedStore,
    kind: &str,
    user_id: &str,
    role: &str,
    client_id: Option<&str>,
    now: UnixTime,
) -> Result<(), IdentityError> {
    store
        .record_audit(&AuditEvent {
            user_id: user_id.to_string(),
            kind: kind.to_string(),
            detail: serde_json::json!({ "role": role, "client": client_id }),
            at: now,
        })
        .await?;
    Ok(())
}

/// Removes a direct grant; returns false if there was none.
pub async fn revoke_role(
    store: &SharedStore,
    user_id: &str,
    role: &str,
    client_id: Option<&str>,
    now: UnixTime,
) -> Result<bool, IdentityError> {
    if store.get_user(user_id).await?.is_none() {
        return Err(IdentityError::NoSuchUser);
    }
    let removed = store.revoke_role(user_id, role, client_id).await?;
    if removed {
        audit_role(store, "role_revoked", user_id, role, client_id, now).await?;
    }
    Ok(removed)
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
    use crate::config::ProviderPolicy;
    use crate::providers::Subjects;
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
        entry_with(id, kind, ProviderPolicy::default())
    }

    fn subjects_of(kind: &str) -> Subjects {
        if kind == "local" {
            Subjects::UserIds
        } else {
            Subjects::Upstream
        }
    }

    #[tokio::test]
    async fn first_login_creates_a_user_and_later_logins_find_the_same_one() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let e = entry("corp", "oidc");
        let id = Identity::new("upstream-1")
            .with_email("a@x.io", true)
            .with_groups(vec!["eng".into()]);
        let u1 = resolve_login(&store, &master(), &e, &BTreeSet::new(), id.clone(), 10)
            .await
            .unwrap();
        assert_ne!(u1.id, "upstream-1", "sub is never the upstream id");
        assert_eq!(u1.groups, vec!["corp/eng".to_string()]);
        let u2 = resolve_login(
            &store,
            &master(),
            &e,
            &BTreeSet::new(),
            id.with_name("Ada"),
            20,
        )
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
        let e = ProviderEntry::for_tests(
            "dir",
            Subjects::Upstream,
            ProviderPolicy::default(),
            scripted.clone(),
        );
        let mut first = Identity::new("s1").with_groups(vec!["eng".into(), "admins".into()]);
        first.provider_data = Some(serde_json::json!({"dn": "uid=a"}));
        let user = resolve_login(&store, &master(), &e, &BTreeSet::new(), first, 1)
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
            &BTreeSet::new(),
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

    fn entry_with(id: &str, kind: &str, policy: ProviderPolicy) -> ProviderEntry {
        ProviderEntry::for_tests(id, subjects_of(kind), policy, Arc::new(Nothing))
    }

    #[tokio::test]
    async fn closed_registration_refuses_new_people_but_not_known_users() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let closed = ProviderPolicy {
            registration: Registration::Closed,
            ..ProviderPolicy::default()
        };
        let open = entry("corp", "oidc");
        let known = resolve_login(
            &store,
            &master(),
            &open,
            &BTreeSet::new(),
            Identity::new("known"),
            1,
        )
        .await
        .unwrap();
        let corp = entry_with("corp", "oidc", closed);
        assert!(matches!(
            resolve_login(&store, &master(), &corp, &BTreeSet::new(), Identity::new("stranger"), 2).await,
            Err(IdentityError::RegistrationClosed(p)) if p == "corp"
        ));
        assert_eq!(
            store.list_users().await.unwrap().len(),
            1,
            "no user created"
        );
        let again = resolve_login(
            &store,
            &master(),
            &corp,
            &BTreeSet::new(),
            Identity::new("known"),
            3,
        )
        .await
        .unwrap();
        assert_eq!(again.id, known.id, "a linked identity still logs in");

        // Local: a user an operator created exists before its first login; a static
        // user never seen is a new person.
        let local = entry_with("local", "local", closed);
        let added = add_local_user(&store, "c@x.io", Some("carol"), None, "h", 4)
            .await
            .unwrap();
        resolve_login(
            &store,
            &master(),
            &local,
            &BTreeSet::new(),
            Identity::new(&added.id),
            5,
        )
        .await
        .unwrap();
        assert!(matches!(
            resolve_login(
                &store,
                &master(),
                &local,
                &BTreeSet::new(),
                Identity::new("static-1"),
                6
            )
            .await,
            Err(IdentityError::RegistrationClosed(_))
        ));
    }

    #[tokio::test]
    async fn import_keeps_the_first_profile_and_force_refreshes_it_groups_always_follow() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        for (sync, expected_name) in [
            (ProfileSync::Import, "First"),
            (ProfileSync::Force, "Second"),
        ] {
            let e = entry_with(
                &format!("p-{expected_name}"),
                "oidc",
                ProviderPolicy {
                    sync,
                    ..ProviderPolicy::default()
                },
            );
            let first = Identity::new("s")
                .with_name("First")
                .with_groups(vec!["a".into()]);
            let u = resolve_login(&store, &master(), &e, &BTreeSet::new(), first, 1)
                .await
                .unwrap();
            assert_eq!(u.name.as_deref(), Some("First"));
            let second = Identity::new("s")
                .with_name("Second")
                .with_groups(vec!["b".into()]);
            let u = resolve_login(&store, &master(), &e, &BTreeSet::new(), second, 2)
                .await
                .unwrap();
            assert_eq!(u.name.as_deref(), Some(expected_name), "{sync:?}");
            assert_eq!(u.groups, vec![format!("{}/b", e.id)], "{sync:?}");
            let stored = store.get_user(&u.id).await.unwrap().unwrap();
            assert_eq!(stored.name.as_deref(), Some(expected_name));
        }
    }

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
            grant_role(&store, &config, &u.id, "auditor", None, 3)
                .await
                .unwrap()
        );
        assert!(
            !grant_role(&store, &config, &u.id, "auditor", None, 4)
                .await
                .unwrap()
        );
        grant_role(&store, &config, &u.id, "viewer", Some("other"), 5)
            .await
            .unwrap();
        let a = access_for(&store, &config.roles, &u.id, "dir", Some("app"))
            .await
            .unwrap();
        assert_eq!(a.roles, vec!["approver", "auditor", "member"]);
        assert!(
            revoke_role(&store, &u.id, "auditor", None, 6)
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
            grant_role(&store, &config, &u.id, "approver", None, 2).await
        ));
        assert!(refused(
            grant_role(&store, &config, &u.id, "ops", Some("app"), 2).await
        ));
        assert!(refused(
            grant_role(&store, &config, &u.id, "member", Some("app"), 2).await
        ));
        assert!(refused(
            grant_role(&store, &config, &u.id, "x", Some("nope"), 2).await
        ));
        assert!(refused(
            grant_role(&store, &config, &u.id, "bad name", None, 2).await
        ));
        assert!(
            grant_role(&store, &config, &u.id, "approver", Some("other"), 2)
                .await
                .unwrap(),
            "a client role may be granted for another client too"
        );
        assert!(matches!(
            grant_role(&store, &config, "nobody", "ops", None, 2).await,
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

    fn linking() -> (ProviderEntry, ProviderEntry, BTreeSet<String>) {
        let trusted = ProviderPolicy {
            trust_email: true,
            ..ProviderPolicy::default()
        };
        let corp = entry_with("corp", "oidc", trusted);
        let partner = entry_with(
            "partner",
            "oidc",
            ProviderPolicy {
                link_by_verified_email: true,
                ..trusted
            },
        );
        let set = ["corp".to_string(), "partner".to_string()].into();
        (corp, partner, set)
    }

    #[tokio::test]
    async fn a_verified_email_links_a_first_login_to_the_account_it_belongs_to() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let (corp, partner, trusted) = linking();
        let ada = resolve_login(
            &store,
            &master(),
            &corp,
            &trusted,
            Identity::new("c1").with_email("Ada@Example.org", true),
            1,
        )
        .await
        .unwrap();
        let linked = resolve_login(
            &store,
            &master(),
            &partner,
            &trusted,
            Identity::new("p1").with_email("ada@example.org", true),
            2,
        )
        .await
        .unwrap();
        assert_eq!(linked.id, ada.id, "one account, one sub");
        assert_eq!(store.list_user_identities(&ada.id).await.unwrap().len(), 2);
        let audit = store.list_audit(&ada.id).await.unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].kind, "identity_linked");
        assert_eq!(audit[0].detail["provider"], "partner");
        assert_eq!(audit[0].detail["by"], "verified_email");

        // Another identity of the same provider with that email never joins.
        assert!(matches!(
            resolve_login(
                &store,
                &master(),
                &partner,
                &trusted,
                Identity::new("p2").with_email("ada@example.org", true),
                3,
            )
            .await,
            Err(IdentityError::Taken(_))
        ));
        assert_eq!(store.find_identity("partner", "p2").await.unwrap(), None);
    }

    #[tokio::test]
    async fn unverified_or_unvouched_emails_never_link() {
        let (corp, partner, trusted) = linking();
        let github = entry("github", "oidc");
        /// Why; the account's provider and whether it verified the email; the new
        /// login's provider and whether it did; the providers trusted for email.
        type Case = (
            &'static str,
            ProviderEntry,
            bool,
            ProviderEntry,
            bool,
            BTreeSet<String>,
        );
        let cases: Vec<Case> = vec![
            (
                "new email unverified",
                corp.clone(),
                true,
                partner.clone(),
                false,
                trusted.clone(),
            ),
            (
                "account email unverified",
                corp.clone(),
                false,
                partner.clone(),
                true,
                trusted.clone(),
            ),
            (
                "account email vouched by an untrusted provider",
                github,
                true,
                partner.clone(),
                true,
                trusted.clone(),
            ),
            (
                "provider does not link by email",
                corp.clone(),
                true,
                entry_with(
                    "partner",
                    "oidc",
                    ProviderPolicy {
                        trust_email: true,
                        ..ProviderPolicy::default()
                    },
                ),
                true,
                trusted.clone(),
            ),
            (
                "provider not trusted for email",
                corp.clone(),
                true,
                partner.clone(),
                true,
                ["corp".to_string()].into(),
            ),
        ];
        for (why, first, first_verified, second, second_verified, trusted) in cases {
            let store: SharedStore = Arc::new(MemoryStore::new());
            let owner = resolve_login(
                &store,
                &master(),
                &first,
                &trusted,
                Identity::new("a").with_email("ada@example.org", first_verified),
                1,
            )
            .await
            .unwrap();
            let second_login = resolve_login(
                &store,
                &master(),
                &second,
                &trusted,
                Identity::new("b").with_email("ada@example.org", second_verified),
                2,
            )
            .await;
            assert!(
                matches!(second_login, Err(IdentityError::Taken(_))),
                "{why}: {second_login:?}"
            );
            assert_eq!(
                store.list_user_identities(&owner.id).await.unwrap().len(),
                1,
                "{why}"
            );
            assert!(
                store.list_audit(&owner.id).await.unwrap().is_empty(),
                "{why}"
            );
        }
    }

    #[tokio::test]
    async fn linking_to_a_disabled_account_is_refused() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let (corp, partner, trusted) = linking();
        let ada = resolve_login(
            &store,
            &master(),
            &corp,
            &trusted,
            Identity::new("c1").with_email("ada@example.org", true),
            1,
        )
        .await
        .unwrap();
        disable_user(&store, &ada.id, 2).await.unwrap();
        assert!(matches!(
            resolve_login(
                &store,
                &master(),
                &partner,
                &trusted,
                Identity::new("p1").with_email("ada@example.org", true),
                3,
            )
            .await,
            Err(IdentityError::Disabled)
        ));
        assert_eq!(store.find_identity("partner", "p1").await.unwrap(), None);
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
        grant_role(&store, &config, &u.id, "auditor", None, 2)
            .await
            .unwrap();
        grant_role(&store, &config, &u.id, "auditor", None, 3)
            .await
            .unwrap();
        revoke_role(&store, &u.id, "auditor", None, 4)
            .await
            .unwrap();
        revoke_role(&store, &u.id, "auditor", None, 5)
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
