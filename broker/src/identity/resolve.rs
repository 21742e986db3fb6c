//! Resolving a login to a user: the linked user, an account the login joins by
//! verified email, or a new user (where registration is open); then the profile and
//! groups the provider sent are applied and the link records this login. Refreshing a
//! user from the provider lives here too, as it applies the same profile rules.
//!
//! Nothing another person brought first may block a login: a username another user
//! holds becomes a variant of it (or the user keeps the one they have), and a verified
//! email another user verified first is kept unverified (see [`Yield`]).

use super::IdentityError;
use super::links::{
    audit_linked, identity_of_link, open_provider_data, seal_provider_data, stored_identity,
};
use crate::config::{ProfileSync, Registration};
use crate::providers::ProviderEntry;
use crate::secrets::{self, MasterKey};
use crate::store::{IdentityLink, SharedStore, StoreError, UnixTime, UserRecord, UserStatus};
use std::collections::BTreeSet;
use switchboard_plugin_api::{Identity, ProviderError, RefreshRequest};

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
    // Verified emails are unique among users, and name an account before any
    // username does: at most one account can match.
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
            let mut u = new_user(&user_id, &identity, vouches_for_email(entry), now);
            save_user(store, &mut u, Write::Create, None).await?;
            u
        }
    };
    if user.status != UserStatus::Active {
        return Err(IdentityError::Disabled);
    }
    let current_username = user.username.clone();
    apply_profile(&mut user, &identity, entry);
    user.updated_at = now;
    user.last_login_at = Some(now);
    save_user(store, &mut user, Write::Update, current_username).await?;
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
                let email = identity.email.as_deref();
                let subject = &identity.subject;
                audit_linked(
                    store,
                    &user.id,
                    &entry.id,
                    subject,
                    "verified_email",
                    email,
                    now,
                )
                .await?;
            }
        }
    }
    Ok(user)
}

/// Which store write [`save_user`] makes.
#[derive(Debug, Clone, Copy)]
enum Write {
    Create,
    Update,
}

/// Writes `user`, yielding (see [`Yield`]) whenever another user already holds its
/// username or verified email, so that someone else's data never refuses a login.
/// `current_username` is the one the user had before this write (`None` for a new
/// user). Returns what the write returned: false for an update of a missing user.
async fn save_user(
    store: &SharedStore,
    user: &mut UserRecord,
    write: Write,
    current_username: Option<String>,
) -> Result<bool, IdentityError> {
    let mut yielding = Yield::new(user.username.clone(), current_username);
    // Bounded: every retry follows a change `Yield` makes at most so many times.
    loop {
        let written = match write {
            Write::Create => store.create_user(user).await.map(|()| true),
            Write::Update => store.update_profile(user).await,
        };
        match written {
            Ok(found) => return Ok(found),
            Err(StoreError::Conflict { what }) if yielding.give_way(user, what)? => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Numbered variants of a taken username, tried in order: `alice-2` … `alice-10`.
const NUMBERED_VARIANTS: u32 = 9;
/// Variants with a random suffix tried after the numbered ones, before giving up.
const RANDOM_VARIANTS: u32 = 3;

/// How a user record gives way to another user's unique data:
///
/// - a username another user holds: the user keeps the username they have (a later
///   login or refresh whose upstream username is taken changes nothing), or, with
///   none yet (a first login), gets the first free of `wanted-2`, `wanted-3`, …
///   `wanted-10`, then `wanted-` and a random suffix;
/// - a verified email another user verified first: kept, but unverified, so it never
///   reaches apps as verified nor joins accounts by email.
///
/// Usernames come first-come from upstreams and unverified emails are anyone's claim;
/// neither may end a real person's first login in an error.
#[derive(Debug)]
struct Yield {
    /// The username the provider sent, that variants are made of.
    wanted: Option<String>,
    /// The username the user had before, given back once when the new one is taken.
    current: Option<String>,
    variants_tried: u32,
}

impl Yield {
    fn new(wanted: Option<String>, current: Option<String>) -> Self {
        Yield {
            wanted,
            current,
            variants_tried: 0,
        }
    }

    /// Changes `user` so that it no longer collides on the key `what`; false when
    /// there is nothing left to try (the store's conflict then stands).
    fn give_way(&mut self, user: &mut UserRecord, what: &str) -> Result<bool, IdentityError> {
        match what {
            "email" if user.email_verified => {
                tracing::info!(
                    user = %user.id,
                    "verified email already verified by another account: stored unverified"
                );
                user.email_verified = false;
                Ok(true)
            }
            "username" => {
                if let Some(current) = self.current.take()
                    && user.username.as_ref() != Some(&current)
                {
                    tracing::info!(user = %user.id, "upstream username taken: the user keeps theirs");
                    user.username = Some(current);
                    return Ok(true);
                }
                let Some(wanted) = &self.wanted else {
                    return Ok(false);
                };
                self.variants_tried += 1;
                let Some(variant) = username_variant(wanted, self.variants_tried)? else {
                    return Ok(false);
                };
                tracing::info!(user = %user.id, username = %variant, "upstream username taken: a variant is given");
                user.username = Some(variant);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// The `attempt`th variant (from 1) of the username `wanted`; `None` past the last.
fn username_variant(wanted: &str, attempt: u32) -> Result<Option<String>, IdentityError> {
    if attempt <= NUMBERED_VARIANTS {
        return Ok(Some(format!("{wanted}-{}", attempt + 1)));
    }
    if attempt <= NUMBERED_VARIANTS + RANDOM_VARIANTS {
        let random = secrets::random_id().map_err(|_| IdentityError::Random)?;
        let suffix: String = random.chars().take(8).collect();
        return Ok(Some(format!("{wanted}-{suffix}")));
    }
    Ok(None)
}

fn new_user(id: &str, identity: &Identity, email_vouched: bool, now: UnixTime) -> UserRecord {
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
        revision: 1,
    };
    apply_fields(&mut user, identity, email_vouched);
    user.groups = namespaced_groups(&identity.provider_id, &identity.groups);
    user
}

/// Whether an email this provider calls verified may reach apps as verified: only
/// from a provider the operator trusts for email (`trust_email`), or from the
/// broker's own users, whose emails the broker itself answers for. Apps that link
/// accounts by email must never inherit the weakest upstream's word.
fn vouches_for_email(entry: &ProviderEntry) -> bool {
    entry.policy.trust_email || entry.subject_is_user_id()
}

/// Groups always follow the provider (role rules depend on them); profile fields
/// follow it under `sync = "force"` and stay as imported under `sync = "import"`.
fn apply_profile(user: &mut UserRecord, identity: &Identity, entry: &ProviderEntry) {
    if entry.policy.sync == ProfileSync::Force {
        apply_fields(user, identity, vouches_for_email(entry));
    }
    user.groups = namespaced_groups(&entry.id, &identity.groups);
}

/// Upstream is the source of truth for the profile it sends; absent fields keep what
/// the user had.
fn apply_fields(user: &mut UserRecord, identity: &Identity, email_vouched: bool) {
    let keep = |new: &Option<String>, old: &mut Option<String>| {
        if new.is_some() {
            old.clone_from(new);
        }
    };
    keep(&identity.username, &mut user.username);
    if identity.email.is_some() {
        user.email.clone_from(&identity.email);
        user.email_verified = identity.email_verified && email_vouched;
    }
    keep(&identity.name, &mut user.name);
    keep(&identity.given_name, &mut user.given_name);
    keep(&identity.family_name, &mut user.family_name);
    keep(&identity.picture, &mut user.picture);
}

// Refresh belongs with resolve rather than lifecycle: it is a login's profile step
// again (the provider's answer goes through the same `apply_profile` and the link is
// rewritten the same way), while lifecycle holds the operator's changes to an
// account's status and password.
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
    // The broker's own users are re-checked by the broker itself (their status).
    if entry.subject_is_user_id() {
        return Ok(user);
    }
    let link = store
        .list_user_identities(&user.id)
        .await?
        .into_iter()
        .find(|l| l.provider_id == entry.id)
        .ok_or_else(|| IdentityError::NotLinked(entry.id.clone()))?;
    if !entry.has_refresh() {
        // Nobody can ask upstream: a login through it (which rewrites the link) is
        // good for so long, then the person must log in again.
        let vouched_at = link.updated_at;
        if now - vouched_at > entry.policy.max_session_without_recheck {
            return Err(IdentityError::RecheckOverdue(entry.id.clone()));
        }
        return Ok(user);
    }
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
    let current_username = user.username.clone();
    apply_profile(&mut user, &fresh, entry);
    user.updated_at = now;
    save_user(store, &mut user, Write::Update, current_username).await?;
    let mut updated = link;
    updated.claims = stored_identity(&fresh);
    updated.sealed_provider_data =
        seal_provider_data(master, &entry.id, &fresh.subject, &fresh.provider_data)?;
    updated.updated_at = now;
    store.update_identity(&updated).await?;
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderPolicy;
    use crate::identity::test_support::{Scripted, entry, entry_with, master};
    use crate::identity::{add_local_user, disable_user};
    use crate::providers::Subjects;
    use crate::store::MemoryStore;
    use std::sync::Arc;

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

    #[tokio::test]
    async fn only_a_provider_trusted_for_email_makes_it_verified_for_apps() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let says_verified =
            |subject: &str, email: &str| Identity::new(subject).with_email(email, true);
        let untrusted = entry("open", "oidc");
        let u = resolve_login(
            &store,
            &master(),
            &untrusted,
            &BTreeSet::new(),
            says_verified("s1", "a@x.io"),
            1,
        )
        .await
        .unwrap();
        assert_eq!(u.email.as_deref(), Some("a@x.io"));
        assert!(
            !u.email_verified,
            "an untrusted upstream's word is not enough"
        );

        let trusted = entry_with(
            "corp",
            "oidc",
            ProviderPolicy {
                trust_email: true,
                ..ProviderPolicy::default()
            },
        );
        let u = resolve_login(
            &store,
            &master(),
            &trusted,
            &BTreeSet::new(),
            says_verified("s2", "b@x.io"),
            1,
        )
        .await
        .unwrap();
        assert!(u.email_verified);

        // The broker's own users: their record is the broker's word.
        let u = resolve_login(
            &store,
            &master(),
            &entry("local", "local"),
            &BTreeSet::new(),
            says_verified("local-1", "c@x.io"),
            1,
        )
        .await
        .unwrap();
        assert!(u.email_verified);
    }

    #[tokio::test]
    async fn a_provider_that_cannot_recheck_is_trusted_only_so_long_after_a_login() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let key = master();
        let limit = ProviderPolicy::default().max_session_without_recheck;
        let corp = entry("corp", "oidc");
        let none = BTreeSet::new();
        let user = resolve_login(&store, &key, &corp, &none, Identity::new("s1"), 10)
            .await
            .unwrap();
        let refresh = |at| refresh_from_provider(&store, &key, &corp, user.clone(), at);
        assert!(refresh(10 + limit).await.is_ok());
        assert!(matches!(
            refresh(11 + limit).await,
            Err(IdentityError::RecheckOverdue(p)) if p == "corp"
        ));
        // A new login through the provider vouches for the person again.
        resolve_login(&store, &key, &corp, &none, Identity::new("s1"), 20 + limit)
            .await
            .unwrap();
        assert!(refresh(21 + limit).await.is_ok());

        // The broker's own users are checked by the broker, never overdue.
        let local = entry("local", "local");
        let own = resolve_login(&store, &key, &local, &none, Identity::new("u-local"), 10)
            .await
            .unwrap();
        let much_later = 10 + 100 * limit;
        assert!(
            refresh_from_provider(&store, &key, &local, own, much_later)
                .await
                .is_ok()
        );
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
        let added = add_local_user(
            &store,
            &crate::identity::NewLocalUser {
                email: "c@x.io",
                username: Some("carol"),
                name: None,
                password_hash: Some("h"),
            },
            "cli",
            4,
        )
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

        // Another identity of the same provider with that email never joins: it is
        // another person, with an account of their own and the email unverified.
        let other = resolve_login(
            &store,
            &master(),
            &partner,
            &trusted,
            Identity::new("p2").with_email("ada@example.org", true),
            3,
        )
        .await
        .unwrap();
        assert_ne!(other.id, ada.id);
        assert!(!other.email_verified);
        assert_eq!(store.list_user_identities(&ada.id).await.unwrap().len(), 2);
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
            // Another account, never this one (and never an error).
            let second_user = second_login.unwrap_or_else(|e| panic!("{why}: {e}"));
            assert_ne!(second_user.id, owner.id, "{why}");
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
        disable_user(&store, &ada.id, "cli", 2).await.unwrap();
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

    /// An open provider: registration open, not trusted for email, profile follows
    /// upstream at every login.
    fn open_provider(id: &str) -> ProviderEntry {
        entry_with(
            id,
            "oidc",
            ProviderPolicy {
                sync: ProfileSync::Force,
                ..ProviderPolicy::default()
            },
        )
    }

    async fn log_in(store: &SharedStore, e: &ProviderEntry, identity: Identity) -> UserRecord {
        resolve_login(store, &master(), e, &BTreeSet::new(), identity, 1)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn someone_elses_username_and_unverified_email_never_block_a_first_login() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        // A stranger logs in first, as `alice`, claiming Bob's address.
        let squatter = log_in(
            &store,
            &open_provider("github"),
            Identity::new("gh-1")
                .with_username("alice")
                .with_email("bob@corp.example", false),
        )
        .await;
        assert_eq!(squatter.username.as_deref(), Some("alice"));

        // The operator still adds Bob with his address, which he then logs in with.
        let bob = add_local_user(
            &store,
            &crate::identity::NewLocalUser {
                email: "bob@corp.example",
                username: Some("bob"),
                name: None,
                password_hash: Some("h"),
            },
            "cli",
            2,
        )
        .await
        .unwrap();
        let found = store
            .find_user_by_login("Bob@corp.example")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            found.id, bob.id,
            "the claim names nobody; Bob's address is his"
        );
        let local = entry("local", "local");
        let bob_login = log_in(
            &store,
            &local,
            Identity::new(&bob.id)
                .with_username("bob")
                .with_email("bob@corp.example", true),
        )
        .await;
        assert_eq!(bob_login.id, bob.id);
        assert!(bob_login.email_verified);

        // The real Alice (a static user) gets in too, under a free variant.
        let alice = log_in(
            &store,
            &local,
            Identity::new("user-alice")
                .with_username("Alice")
                .with_email("alice@corp.example", true),
        )
        .await;
        assert_eq!(alice.username.as_deref(), Some("Alice-2"));
        assert!(alice.email_verified);
        let squatter = store.get_user(&squatter.id).await.unwrap().unwrap();
        assert_eq!(
            squatter.username.as_deref(),
            Some("alice"),
            "nobody is renamed"
        );
    }

    #[tokio::test]
    async fn a_taken_username_becomes_the_first_free_numbered_variant() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let github = open_provider("github");
        let login = |subject: &str| Identity::new(subject).with_username("alice");
        let usernames = [
            log_in(&store, &github, login("1")).await.username,
            log_in(&store, &github, login("2")).await.username,
            log_in(&store, &github, login("3")).await.username,
        ];
        assert_eq!(
            usernames,
            [
                Some("alice".into()),
                Some("alice-2".into()),
                Some("alice-3".into())
            ]
        );
        // A freed number is the next one given: the first free, in order.
        let second = store.find_user_by_login("alice-2").await.unwrap().unwrap();
        let mut renamed = second.clone();
        renamed.username = Some("someone-else".into());
        store.update_profile(&renamed).await.unwrap();
        let fourth = log_in(&store, &github, login("4")).await;
        assert_eq!(fourth.username.as_deref(), Some("alice-2"));
    }

    #[tokio::test]
    async fn after_the_numbered_variants_a_random_suffix_is_given() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let github = open_provider("github");
        for n in 0..=NUMBERED_VARIANTS {
            log_in(
                &store,
                &github,
                Identity::new(format!("s{n}")).with_username("bo"),
            )
            .await;
        }
        let last = log_in(&store, &github, Identity::new("late").with_username("bo")).await;
        let username = last.username.unwrap();
        let suffix = username.strip_prefix("bo-").unwrap();
        assert_eq!(suffix.len(), 8, "not a number: {username}");
        assert_eq!(store.list_users().await.unwrap().len(), 11);
    }

    #[tokio::test]
    async fn a_later_login_or_refresh_with_a_taken_username_keeps_the_current_one() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let scripted = Arc::new(Scripted(std::sync::Mutex::new(Ok(Identity::new("x")))));
        let dir = ProviderEntry::for_tests(
            "dir",
            Subjects::Upstream,
            ProviderPolicy {
                sync: ProfileSync::Force,
                ..ProviderPolicy::default()
            },
            scripted.clone(),
        );
        let with_dn = |identity: Identity| {
            let mut identity = identity;
            identity.provider_data = Some(serde_json::json!({"dn": "uid=a"}));
            identity
        };
        log_in(
            &store,
            &dir,
            with_dn(Identity::new("ann").with_username("ann")),
        )
        .await;
        let bob = log_in(
            &store,
            &dir,
            with_dn(Identity::new("bob").with_username("bob")),
        )
        .await;

        // Bob is renamed `ann` upstream: a taken name changes nothing, the rest applies.
        let renamed = with_dn(Identity::new("bob").with_username("ANN").with_name("Bob B"));
        let again = log_in(&store, &dir, renamed.clone()).await;
        assert_eq!(again.username.as_deref(), Some("bob"));
        assert_eq!(again.name.as_deref(), Some("Bob B"));

        *scripted.0.lock().unwrap() = Ok(renamed.with_groups(vec!["eng".into()]));
        let refreshed = refresh_from_provider(&store, &master(), &dir, bob, 5)
            .await
            .unwrap();
        assert_eq!(refreshed.username.as_deref(), Some("bob"));
        assert_eq!(refreshed.groups, vec!["dir/eng".to_string()]);
        let stored = store.get_user(&refreshed.id).await.unwrap().unwrap();
        assert_eq!(stored.username.as_deref(), Some("bob"));

        // A free name upstream is taken up as before.
        let free = with_dn(Identity::new("bob").with_username("robert"));
        let again = log_in(&store, &dir, free).await;
        assert_eq!(again.username.as_deref(), Some("robert"));
    }

    #[tokio::test]
    async fn a_verified_email_another_account_verified_first_is_kept_unverified() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let trusted = |id: &str| {
            entry_with(
                id,
                "oidc",
                ProviderPolicy {
                    trust_email: true,
                    sync: ProfileSync::Force,
                    ..ProviderPolicy::default()
                },
            )
        };
        let (corp, partner) = (trusted("corp"), trusted("partner"));
        let ada = log_in(
            &store,
            &corp,
            Identity::new("c1").with_email("ada@example.org", true),
        )
        .await;
        assert!(ada.email_verified);

        // A first login with the same verified address: its own account, unverified.
        let second = log_in(
            &store,
            &partner,
            Identity::new("p1").with_email("ADA@example.org", true),
        )
        .await;
        assert_ne!(second.id, ada.id);
        assert_eq!(second.email.as_deref(), Some("ADA@example.org"));
        assert!(!second.email_verified);

        // A later login that brings it: the same.
        let carl = log_in(
            &store,
            &partner,
            Identity::new("p2").with_email("carl@example.org", true),
        )
        .await;
        assert!(carl.email_verified);
        let carl = log_in(
            &store,
            &partner,
            Identity::new("p2").with_email("ada@example.org", true),
        )
        .await;
        assert_eq!(carl.email.as_deref(), Some("ada@example.org"));
        assert!(!carl.email_verified);
        let ada_now = store.get_user(&ada.id).await.unwrap().unwrap();
        assert!(ada_now.email_verified, "the first owner keeps it");
    }

    #[tokio::test]
    async fn an_operator_adding_a_taken_username_or_verified_email_is_refused() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        add_local_user(
            &store,
            &crate::identity::NewLocalUser {
                email: "ann@x.io",
                username: Some("ann"),
                name: None,
                password_hash: Some("h"),
            },
            "cli",
            1,
        )
        .await
        .unwrap();
        assert!(matches!(
            add_local_user(
                &store,
                &crate::identity::NewLocalUser {
                    email: "other@x.io",
                    username: Some("ANN"),
                    name: None,
                    password_hash: Some("h"),
                },
                "cli",
                2,
            )
            .await,
            Err(IdentityError::Taken("this username"))
        ));
        assert!(matches!(
            add_local_user(
                &store,
                &crate::identity::NewLocalUser {
                    email: "Ann@X.io",
                    username: Some("ann2"),
                    name: None,
                    password_hash: Some("h"),
                },
                "cli",
                3,
            )
            .await,
            Err(IdentityError::Taken("this email"))
        ));
        // An address someone only claimed does not stand in the operator's way.
        log_in(
            &store,
            &open_provider("github"),
            Identity::new("gh").with_email("dan@x.io", false),
        )
        .await;
        add_local_user(
            &store,
            &crate::identity::NewLocalUser {
                email: "dan@x.io",
                username: None,
                name: None,
                password_hash: Some("h"),
            },
            "cli",
            4,
        )
        .await
        .unwrap();
    }
}
