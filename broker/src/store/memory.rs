//! In-memory backend for unit tests: every table is a map behind one mutex, so each
//! operation, one-time operations included, runs as if it were one transaction.
//!
//! It follows the SQLite backend's rules exactly (the conformance suite runs against
//! both): usernames and emails compare case-insensitively in ASCII (SQLite's `NOCASE`),
//! only verified emails are unique, rows that point at a user or grant require it to exist, and something is expired
//! when `expires_at <= now`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    AccountTokenPurpose, AccountTokenRecord, AccountTokenStore, ApiKeyRecord, ApiKeyStore,
    AuditEvent, AuditFilter, AuditStore, AuthRequestRecord, CheckedGroupWrite, CheckedWrite,
    CodeRecord, Confirmation, DeviceCodeRecord, DeviceCodeState, DeviceCodeStore, DevicePoll,
    GrantRecord, GrantStore, GroupRecord, GroupStore, HeldResourceRole, Holder, IdentityLink,
    KeyStore, LoginStore, LogoutDelivery, LogoutNotice, LogoutOutbox, MailDelivery, MailOutbox,
    Maintenance, Membership, MfaStore, OutgoingMail, PageCursor, PendingRegistration,
    RedeemOutcome, RedeemedToken, RefreshTokenRecord, ResourceGrantCursor, ResourceGrantRecord,
    ResourceGrantStore, ResourceGrantWrite, ResourceRef, RevocationStore, RoleGrantRecord,
    RoleGrantStore, RotateOutcome, SealedColumn, SealedRewrite, SealedRow, SealedStore,
    SealedValue, SessionRecord, SessionStore, SigningKeyRecord, StoreError, StoreResult,
    ThrottleStore, TotpRecord, UnixTime, UserFilter, UserRecord, UserResource, UserStatus,
    UserStore,
};

/// In-memory [`Store`](super::Store). Nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    users: HashMap<String, UserRecord>,
    /// Keyed by `(provider_id, subject)`.
    links: HashMap<(String, String), IdentityLink>,
    /// Direct role grants, keyed by `(user_id, client_id, role)`.
    role_grants: HashMap<(String, Option<String>, String), RoleGrantRecord>,
    /// Audit events in recording order.
    audit: Vec<AuditEvent>,
    auth_requests: HashMap<String, AuthRequestRecord>,
    grants: HashMap<String, GrantRecord>,
    codes: HashMap<String, StoredCode>,
    refresh_tokens: HashMap<String, RefreshTokenRecord>,
    sessions: HashMap<String, SessionRecord>,
    /// Keyed by `kid`; `(alg, epoch)` is kept unique by `insert_key_if_absent`.
    keys: HashMap<String, SigningKeyRecord>,
    throttle: HashMap<String, ThrottleWindow>,
    /// Denied access tokens: `jti` to the token's expiry.
    denied_access_tokens: HashMap<String, UnixTime>,
    groups: HashMap<String, GroupRecord>,
    /// `(group_id, user_id)` memberships.
    members: HashSet<(String, String)>,
    /// API keys by id; `secret_hash` is kept unique by `create_api_key`.
    api_keys: HashMap<String, ApiKeyRecord>,
    /// Resource grants, keyed by `(resource, holder, role)`.
    resource_grants: HashMap<(ResourceRef, Holder, String), ResourceGrantRecord>,
    /// Device authorizations by device-code hash; user-code hashes are kept unique.
    device_codes: HashMap<String, DeviceCodeRecord>,
    /// Back-channel logout notices, keyed by `(client_id, sid)`.
    logout_outbox: BTreeMap<(String, String), OutboxRow>,
    /// Mails waiting to be sent, by id.
    mail_outbox: BTreeMap<String, MailRow>,
    /// Single-use account links by token hash.
    account_tokens: HashMap<String, AccountTokenRecord>,
    /// Registrations waiting for their link, by token hash.
    registrations: HashMap<String, PendingRegistration>,
    /// TOTP enrolments by user id.
    totp: HashMap<String, TotpRecord>,
    /// Unused recovery codes: `(user_id, code_hash)`.
    recovery_codes: HashSet<(String, String)>,
}

#[derive(Debug)]
struct MailRow {
    delivery: MailDelivery,
    next_attempt_at: UnixTime,
    lease: Option<(String, UnixTime)>,
}

#[derive(Debug)]
struct OutboxRow {
    delivery: LogoutDelivery,
    next_attempt_at: UnixTime,
    lease: Option<(String, UnixTime)>,
}

#[derive(Debug)]
struct StoredCode {
    code: CodeRecord,
    used_at: Option<UnixTime>,
}

#[derive(Debug)]
struct ThrottleWindow {
    count: u32,
    expires_at: UnixTime,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> StoreResult<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock is poisoned".to_owned()))
    }
}

/// SQLite's `NOCASE`: ASCII letters fold, nothing else does.
fn same_login(stored: Option<&str>, wanted: &str) -> bool {
    stored.is_some_and(|s| s.eq_ignore_ascii_case(wanted))
}

fn missing(what: &str) -> StoreError {
    StoreError::Backend(format!("{what} does not exist"))
}

impl State {
    /// The name of the unique key `user` would collide on, ignoring the user `except`.
    fn login_conflict(&self, user: &UserRecord, except: Option<&str>) -> Option<&'static str> {
        let others = self
            .users
            .values()
            .filter(|u| Some(u.id.as_str()) != except);
        for other in others {
            if let Some(username) = &user.username
                && same_login(other.username.as_deref(), username)
            {
                return Some("username");
            }
            // Only verified emails claim uniqueness (SQLite's partial index).
            if let Some(email) = &user.email
                && user.email_verified
                && other.email_verified
                && same_login(other.email.as_deref(), email)
            {
                return Some("email");
            }
        }
        None
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        let mut state = self.lock()?;
        if state.users.contains_key(&user.id) {
            return Err(StoreError::Conflict { what: "user" });
        }
        if let Some(what) = state.login_conflict(user, None) {
            return Err(StoreError::Conflict { what });
        }
        let user = UserRecord {
            revision: 1,
            ..user.clone()
        };
        state.users.insert(user.id.clone(), user);
        Ok(())
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        Ok(self.lock()?.users.get(id).cloned())
    }

    async fn find_user_by_login(&self, login: &str) -> StoreResult<Option<UserRecord>> {
        let state = self.lock()?;
        // Only a verified email names an account, and it wins over a username (see
        // the trait); each matches at most one user.
        let verified_email =
            |u: &UserRecord| u.email_verified && same_login(u.email.as_deref(), login);
        let found = state
            .users
            .values()
            .filter(|u| same_login(u.username.as_deref(), login) || verified_email(u))
            .min_by_key(|u| (!verified_email(u), u.created_at, u.id.clone()));
        Ok(found.cloned())
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        let state = self.lock()?;
        let mut users: Vec<UserRecord> = state.users.values().cloned().collect();
        users.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(users)
    }

    async fn update_profile(&self, user: &UserRecord) -> StoreResult<bool> {
        let mut state = self.lock()?;
        if !state.users.contains_key(&user.id) {
            return Ok(false);
        }
        if let Some(what) = state.login_conflict(user, Some(&user.id)) {
            return Err(StoreError::Conflict { what });
        }
        let Some(stored) = state.users.get_mut(&user.id) else {
            return Ok(false);
        };
        stored.username.clone_from(&user.username);
        stored.email.clone_from(&user.email);
        stored.email_verified = user.email_verified;
        stored.name.clone_from(&user.name);
        stored.given_name.clone_from(&user.given_name);
        stored.family_name.clone_from(&user.family_name);
        stored.picture.clone_from(&user.picture);
        stored.groups.clone_from(&user.groups);
        stored.updated_at = user.updated_at;
        stored.last_login_at = user.last_login_at;
        stored.revision += 1;
        Ok(true)
    }

    async fn list_users_page(
        &self,
        filter: &UserFilter,
        after: Option<&PageCursor>,
        limit: u32,
    ) -> StoreResult<Vec<UserRecord>> {
        let state = self.lock()?;
        let has_provider = |u: &UserRecord, provider: &str| {
            state
                .links
                .values()
                .any(|l| l.user_id == u.id && l.provider_id == provider)
        };
        let mut users: Vec<UserRecord> = state
            .users
            .values()
            .filter(|u| {
                filter
                    .email
                    .as_deref()
                    .is_none_or(|e| same_login(u.email.as_deref(), e))
                    && filter
                        .username
                        .as_deref()
                        .is_none_or(|n| same_login(u.username.as_deref(), n))
                    && filter.status.is_none_or(|s| u.status == s)
                    && filter
                        .provider
                        .as_deref()
                        .is_none_or(|p| has_provider(u, p))
                    && filter
                        .group
                        .as_ref()
                        .is_none_or(|g| state.members.contains(&(g.clone(), u.id.clone())))
                    && after.is_none_or(|a| (u.created_at, u.id.as_str()) > (a.created_at, &a.id))
            })
            .cloned()
            .collect();
        users.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        users.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(users)
    }

    async fn update_user_checked(
        &self,
        user: &UserRecord,
        expected_revision: i64,
    ) -> StoreResult<CheckedWrite> {
        let mut state = self.lock()?;
        match state.users.get(&user.id) {
            None => return Ok(CheckedWrite::NoSuchUser),
            Some(stored) if stored.revision != expected_revision => {
                return Ok(CheckedWrite::Stale);
            }
            Some(_) => {}
        }
        if let Some(what) = state.login_conflict(user, Some(&user.id)) {
            return Err(StoreError::Conflict { what });
        }
        let Some(stored) = state.users.get_mut(&user.id) else {
            return Ok(CheckedWrite::NoSuchUser);
        };
        stored.username.clone_from(&user.username);
        stored.email.clone_from(&user.email);
        stored.email_verified = user.email_verified;
        stored.name.clone_from(&user.name);
        stored.given_name.clone_from(&user.given_name);
        stored.family_name.clone_from(&user.family_name);
        stored.picture.clone_from(&user.picture);
        stored.status = user.status;
        stored.updated_at = user.updated_at;
        stored.revision += 1;
        Ok(CheckedWrite::Written(Box::new(stored.clone())))
    }

    async fn delete_user(&self, id: &str) -> StoreResult<bool> {
        let mut state = self.lock()?;
        if state.users.remove(id).is_none() {
            return Ok(false);
        }
        // What the SQLite foreign keys cascade to; audit events stay.
        state.links.retain(|_, l| l.user_id != id);
        state.role_grants.retain(|_, g| g.user_id != id);
        state.members.retain(|(_, user)| user != id);
        state.sessions.retain(|_, s| s.user_id != id);
        state.api_keys.retain(|_, k| k.user_id != id);
        state.account_tokens.retain(|_, t| t.user_id != id);
        state.totp.remove(id);
        state.recovery_codes.retain(|(user, _)| user != id);
        state
            .resource_grants
            .retain(|(_, holder, _), _| *holder != Holder::User(id.to_owned()));
        let gone: HashSet<String> = state
            .grants
            .values()
            .filter(|g| g.user_id == id)
            .map(|g| g.id.clone())
            .collect();
        state.grants.retain(|g, _| !gone.contains(g));
        state.codes.retain(|_, c| !gone.contains(&c.code.grant_id));
        state
            .refresh_tokens
            .retain(|_, t| !gone.contains(&t.grant_id));
        state
            .device_codes
            .retain(|_, d| d.grant_id.as_ref().is_none_or(|g| !gone.contains(g)));
        Ok(true)
    }

    async fn set_user_status(
        &self,
        id: &str,
        status: UserStatus,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut state = self.lock()?;
        let Some(user) = state.users.get_mut(id) else {
            return Ok(false);
        };
        user.status = status;
        user.updated_at = now;
        user.revision += 1;
        Ok(true)
    }

    async fn set_password_hash(&self, id: &str, hash: &str, now: UnixTime) -> StoreResult<bool> {
        let mut state = self.lock()?;
        let Some(user) = state.users.get_mut(id) else {
            return Ok(false);
        };
        user.password_hash = Some(hash.to_owned());
        user.updated_at = now;
        user.revision += 1;
        Ok(true)
    }

    async fn link_identity(&self, link: &IdentityLink) -> StoreResult<()> {
        let mut state = self.lock()?;
        let key = (link.provider_id.clone(), link.subject.clone());
        if state.links.contains_key(&key) {
            return Err(StoreError::Conflict {
                what: "identity link",
            });
        }
        if !state.users.contains_key(&link.user_id) {
            return Err(missing("the linked user"));
        }
        state.links.insert(key, link.clone());
        Ok(())
    }

    async fn find_identity(
        &self,
        provider_id: &str,
        subject: &str,
    ) -> StoreResult<Option<IdentityLink>> {
        let state = self.lock()?;
        let key = (provider_id.to_owned(), subject.to_owned());
        Ok(state.links.get(&key).cloned())
    }

    async fn list_user_identities(&self, user_id: &str) -> StoreResult<Vec<IdentityLink>> {
        let state = self.lock()?;
        let mut links: Vec<IdentityLink> = state
            .links
            .values()
            .filter(|l| l.user_id == user_id)
            .cloned()
            .collect();
        links.sort_by(|a, b| (&a.provider_id, &a.subject).cmp(&(&b.provider_id, &b.subject)));
        Ok(links)
    }

    async fn update_identity(&self, link: &IdentityLink) -> StoreResult<bool> {
        let mut state = self.lock()?;
        let key = (link.provider_id.clone(), link.subject.clone());
        let Some(stored) = state.links.get_mut(&key) else {
            return Ok(false);
        };
        stored.claims = link.claims.clone();
        stored
            .sealed_provider_data
            .clone_from(&link.sealed_provider_data);
        stored.updated_at = link.updated_at;
        Ok(true)
    }

    async fn unlink_identity(&self, provider_id: &str, subject: &str) -> StoreResult<bool> {
        let mut state = self.lock()?;
        let key = (provider_id.to_owned(), subject.to_owned());
        Ok(state.links.remove(&key).is_some())
    }
}

#[async_trait]
impl RoleGrantStore for MemoryStore {
    async fn grant_role(&self, grant: &RoleGrantRecord) -> StoreResult<bool> {
        let mut state = self.lock()?;
        if !state.users.contains_key(&grant.user_id) {
            return Err(missing("the granted user"));
        }
        let key = (
            grant.user_id.clone(),
            grant.client_id.clone(),
            grant.role.clone(),
        );
        if state.role_grants.contains_key(&key) {
            return Ok(false);
        }
        state.role_grants.insert(key, grant.clone());
        Ok(true)
    }

    async fn revoke_role(
        &self,
        user_id: &str,
        role: &str,
        client_id: Option<&str>,
    ) -> StoreResult<bool> {
        let mut state = self.lock()?;
        let key = (
            user_id.to_owned(),
            client_id.map(str::to_owned),
            role.to_owned(),
        );
        Ok(state.role_grants.remove(&key).is_some())
    }

    async fn list_role_grants(&self, user_id: &str) -> StoreResult<Vec<RoleGrantRecord>> {
        let state = self.lock()?;
        let mut grants: Vec<RoleGrantRecord> = state
            .role_grants
            .values()
            .filter(|g| g.user_id == user_id)
            .cloned()
            .collect();
        grants.sort_by(|a, b| (&a.client_id, &a.role).cmp(&(&b.client_id, &b.role)));
        Ok(grants)
    }
}

#[async_trait]
impl GroupStore for MemoryStore {
    async fn create_group(&self, group: &GroupRecord) -> StoreResult<()> {
        let mut state = self.lock()?;
        let taken = state.groups.contains_key(&group.id)
            || state
                .groups
                .values()
                .any(|g| g.name.eq_ignore_ascii_case(&group.name));
        if taken {
            return Err(StoreError::Conflict { what: "group" });
        }
        let group = GroupRecord {
            revision: 1,
            ..group.clone()
        };
        state.groups.insert(group.id.clone(), group);
        Ok(())
    }

    async fn get_group(&self, id: &str) -> StoreResult<Option<GroupRecord>> {
        Ok(self.lock()?.groups.get(id).cloned())
    }

    async fn list_groups_page(
        &self,
        after: Option<&PageCursor>,
        limit: u32,
    ) -> StoreResult<Vec<GroupRecord>> {
        let state = self.lock()?;
        let mut groups: Vec<GroupRecord> = state
            .groups
            .values()
            .filter(|g| after.is_none_or(|a| (g.created_at, g.id.as_str()) > (a.created_at, &a.id)))
            .cloned()
            .collect();
        groups.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        groups.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(groups)
    }

    async fn update_group_checked(
        &self,
        group: &GroupRecord,
        expected_revision: i64,
    ) -> StoreResult<CheckedGroupWrite> {
        let mut state = self.lock()?;
        match state.groups.get(&group.id) {
            None => return Ok(CheckedGroupWrite::NoSuchGroup),
            Some(g) if g.revision != expected_revision => return Ok(CheckedGroupWrite::Stale),
            Some(_) => {}
        }
        let taken = state
            .groups
            .values()
            .any(|g| g.id != group.id && g.name.eq_ignore_ascii_case(&group.name));
        if taken {
            return Err(StoreError::Conflict { what: "group" });
        }
        let Some(stored) = state.groups.get_mut(&group.id) else {
            return Ok(CheckedGroupWrite::NoSuchGroup);
        };
        stored.name.clone_from(&group.name);
        stored.description.clone_from(&group.description);
        stored.updated_at = group.updated_at;
        stored.revision += 1;
        Ok(CheckedGroupWrite::Written(stored.clone()))
    }

    async fn delete_group(&self, id: &str) -> StoreResult<bool> {
        let mut state = self.lock()?;
        state.members.retain(|(group, _)| group != id);
        state
            .resource_grants
            .retain(|(_, holder, _), _| *holder != Holder::Group(id.to_owned()));
        Ok(state.groups.remove(id).is_some())
    }

    async fn add_member(
        &self,
        group_id: &str,
        user_id: &str,
        _now: UnixTime,
    ) -> StoreResult<Membership> {
        let mut state = self.lock()?;
        if !state.groups.contains_key(group_id) {
            return Ok(Membership::NoSuchGroup);
        }
        if !state.users.contains_key(user_id) {
            return Ok(Membership::NoSuchUser);
        }
        Ok(
            match state
                .members
                .insert((group_id.to_owned(), user_id.to_owned()))
            {
                true => Membership::Added,
                false => Membership::AlreadyMember,
            },
        )
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> StoreResult<bool> {
        Ok(self
            .lock()?
            .members
            .remove(&(group_id.to_owned(), user_id.to_owned())))
    }

    async fn list_user_groups(&self, user_id: &str) -> StoreResult<Vec<GroupRecord>> {
        let state = self.lock()?;
        let mut groups: Vec<GroupRecord> = state
            .members
            .iter()
            .filter(|(_, u)| u == user_id)
            .filter_map(|(g, _)| state.groups.get(g).cloned())
            .collect();
        // By name, case-insensitively (SQLite's NOCASE).
        groups.sort_by_key(|g| g.name.to_ascii_lowercase());
        Ok(groups)
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn record_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        self.lock()?.audit.push(event.clone());
        Ok(())
    }

    async fn list_audit(&self, user_id: &str) -> StoreResult<Vec<AuditEvent>> {
        let state = self.lock()?;
        let mut events: Vec<AuditEvent> = state
            .audit
            .iter()
            .filter(|e| e.user_id == user_id)
            .cloned()
            .collect();
        // Stable: recording order within one second.
        events.sort_by_key(|e| e.at);
        Ok(events)
    }

    async fn query_audit(
        &self,
        filter: &AuditFilter,
        after: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<(i64, AuditEvent)>> {
        let state = self.lock()?;
        // The sequence number is the position in recording order, from 1.
        Ok(state
            .audit
            .iter()
            .zip(1_i64..)
            .filter(|(e, seq)| {
                *seq > after.unwrap_or(0)
                    && filter.user_id.as_ref().is_none_or(|u| &e.user_id == u)
                    && filter
                        .actor
                        .as_ref()
                        .is_none_or(|a| e.actor.as_ref() == Some(a))
                    && filter.kind.as_ref().is_none_or(|k| &e.kind == k)
                    && filter.since.is_none_or(|s| e.at >= s)
                    && filter.until.is_none_or(|u| e.at < u)
            })
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|(e, seq)| (seq, e.clone()))
            .collect())
    }
}

#[async_trait]
impl LoginStore for MemoryStore {
    async fn put_auth_request(&self, rec: &AuthRequestRecord) -> StoreResult<()> {
        let mut state = self.lock()?;
        if state.auth_requests.contains_key(&rec.id_hash) {
            return Err(StoreError::Conflict {
                what: "auth request",
            });
        }
        state.auth_requests.insert(rec.id_hash.clone(), rec.clone());
        Ok(())
    }

    async fn get_auth_request(
        &self,
        id_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<AuthRequestRecord>> {
        let state = self.lock()?;
        Ok(state
            .auth_requests
            .get(id_hash)
            .filter(|r| r.expires_at > now)
            .cloned())
    }

    async fn take_auth_request(
        &self,
        id_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<AuthRequestRecord>> {
        let mut state = self.lock()?;
        let live = state
            .auth_requests
            .get(id_hash)
            .is_some_and(|r| r.expires_at > now);
        // An expired request stays until `purge_expired`, as in SQLite.
        Ok(if live {
            state.auth_requests.remove(id_hash)
        } else {
            None
        })
    }
}

#[async_trait]
impl GrantStore for MemoryStore {
    async fn create_grant_with_code(
        &self,
        grant: &GrantRecord,
        code: &CodeRecord,
    ) -> StoreResult<()> {
        let mut state = self.lock()?;
        if state.grants.contains_key(&grant.id) {
            return Err(StoreError::Conflict { what: "grant" });
        }
        if state.codes.contains_key(&code.code_hash) {
            return Err(StoreError::Conflict { what: "code" });
        }
        if !state.users.contains_key(&grant.user_id) {
            return Err(missing("the grant's user"));
        }
        if code.grant_id != grant.id && !state.grants.contains_key(&code.grant_id) {
            return Err(missing("the code's grant"));
        }
        state.grants.insert(grant.id.clone(), grant.clone());
        state.codes.insert(
            code.code_hash.clone(),
            StoredCode {
                code: code.clone(),
                used_at: None,
            },
        );
        Ok(())
    }

    async fn redeem_code(&self, code_hash: &str, now: UnixTime) -> StoreResult<RedeemOutcome> {
        let mut state = self.lock()?;
        let Some(stored) = state.codes.get_mut(code_hash) else {
            return Ok(RedeemOutcome::Invalid);
        };
        // A used code reports its grant even once expired, so a late replay still
        // revokes what the first redemption issued.
        if stored.used_at.is_some() {
            return Ok(RedeemOutcome::AlreadyUsed {
                grant_id: stored.code.grant_id.clone(),
            });
        }
        if stored.code.expires_at <= now {
            return Ok(RedeemOutcome::Invalid);
        }
        stored.used_at = Some(now);
        Ok(RedeemOutcome::Redeemed(stored.code.clone()))
    }

    async fn get_grant(&self, id: &str) -> StoreResult<Option<GrantRecord>> {
        Ok(self.lock()?.grants.get(id).cloned())
    }

    async fn revoke_grant(&self, id: &str, now: UnixTime) -> StoreResult<bool> {
        let mut state = self.lock()?;
        match state.grants.get_mut(id) {
            Some(grant) if grant.revoked_at.is_none() => {
                grant.revoked_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn revoke_user_grants(&self, user_id: &str, now: UnixTime) -> StoreResult<u64> {
        let mut state = self.lock()?;
        let mut revoked = 0;
        for grant in state.grants.values_mut() {
            if grant.user_id == user_id && grant.revoked_at.is_none() {
                grant.revoked_at = Some(now);
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    async fn put_refresh_token(
        &self,
        token_hash: &str,
        grant_id: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<()> {
        let mut state = self.lock()?;
        if state.refresh_tokens.contains_key(token_hash) {
            return Err(StoreError::Conflict {
                what: "refresh token",
            });
        }
        if !state.grants.contains_key(grant_id) {
            return Err(missing("the refresh token's grant"));
        }
        state.refresh_tokens.insert(
            token_hash.to_owned(),
            RefreshTokenRecord {
                token_hash: token_hash.to_owned(),
                grant_id: grant_id.to_owned(),
                created_at: now,
                expires_at,
                spent_at: None,
                parent_hash: None,
                superseded_at: None,
            },
        );
        Ok(())
    }

    async fn list_session_grants(&self, session_id_hash: &str) -> StoreResult<Vec<GrantRecord>> {
        let state = self.lock()?;
        let mut grants: Vec<GrantRecord> = state
            .grants
            .values()
            .filter(|g| g.session_id_hash.as_deref() == Some(session_id_hash))
            .cloned()
            .collect();
        grants.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(grants)
    }

    async fn refresh_token_grant(
        &self,
        token_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<GrantRecord>> {
        let state = self.lock()?;
        let Some(token) = state.refresh_tokens.get(token_hash) else {
            return Ok(None);
        };
        if token.expires_at <= now {
            return Ok(None);
        }
        Ok(state
            .grants
            .get(&token.grant_id)
            .filter(|g| g.revoked_at.is_none() && g.expires_at > now)
            .cloned())
    }

    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        let state = self.lock()?;
        Ok(state.refresh_tokens.get(token_hash).cloned())
    }

    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_at: UnixTime,
        now: UnixTime,
        reuse_grace_secs: i64,
    ) -> StoreResult<RotateOutcome> {
        let mut state = self.lock()?;
        let state = &mut *state;
        let Some(token) = state.refresh_tokens.get(old_hash) else {
            return Ok(RotateOutcome::Invalid);
        };
        let (spent_at, superseded_at) = (token.spent_at, token.superseded_at);
        let Some(grant) = state.grants.get_mut(&token.grant_id) else {
            return Ok(RotateOutcome::Invalid);
        };
        if token.expires_at <= now || grant.revoked_at.is_some() || grant.expires_at <= now {
            return Ok(RotateOutcome::Invalid);
        }
        if superseded_at.is_some() {
            return Ok(RotateOutcome::Superseded);
        }
        if state.refresh_tokens.contains_key(new_hash) {
            return Err(StoreError::Conflict {
                what: "refresh token",
            });
        }
        match spent_at {
            None => {}
            Some(spent_at) if reuse_grace_secs > 0 && now - spent_at <= reuse_grace_secs => {
                let unused_successor = state.refresh_tokens.values_mut().find(|t| {
                    t.parent_hash.as_deref() == Some(old_hash)
                        && t.spent_at.is_none()
                        && t.superseded_at.is_none()
                });
                match unused_successor {
                    Some(successor) => successor.superseded_at = Some(now),
                    None => {
                        grant.revoked_at = Some(now);
                        return Ok(RotateOutcome::Reused {
                            grant_id: grant.id.clone(),
                        });
                    }
                }
            }
            Some(_) => {
                grant.revoked_at = Some(now);
                return Ok(RotateOutcome::Reused {
                    grant_id: grant.id.clone(),
                });
            }
        }
        let grant = grant.clone();
        if let Some(token) = state.refresh_tokens.get_mut(old_hash)
            && token.spent_at.is_none()
        {
            token.spent_at = Some(now);
        }
        state.refresh_tokens.insert(
            new_hash.to_owned(),
            RefreshTokenRecord {
                token_hash: new_hash.to_owned(),
                grant_id: grant.id.clone(),
                created_at: now,
                expires_at: new_expires_at,
                spent_at: None,
                parent_hash: Some(old_hash.to_owned()),
                superseded_at: None,
            },
        );
        Ok(RotateOutcome::Rotated(Box::new(grant)))
    }
}

#[async_trait]
impl RevocationStore for MemoryStore {
    async fn deny_access_token(
        &self,
        jti: &str,
        expires_at: UnixTime,
        _now: UnixTime,
    ) -> StoreResult<bool> {
        let mut state = self.lock()?;
        if state.denied_access_tokens.contains_key(jti) {
            return Ok(false);
        }
        state
            .denied_access_tokens
            .insert(jti.to_owned(), expires_at);
        Ok(true)
    }

    async fn access_token_denied(&self, jti: &str) -> StoreResult<bool> {
        Ok(self.lock()?.denied_access_tokens.contains_key(jti))
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn list_user_sessions(
        &self,
        user_id: &str,
        now: UnixTime,
    ) -> StoreResult<Vec<SessionRecord>> {
        let state = self.lock()?;
        let mut sessions: Vec<SessionRecord> = state
            .sessions
            .values()
            .filter(|s| s.user_id == user_id && s.revoked_at.is_none() && s.expires_at > now)
            .cloned()
            .collect();
        sessions.sort_by(|a, b| (a.created_at, &a.id_hash).cmp(&(b.created_at, &b.id_hash)));
        Ok(sessions)
    }

    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()> {
        let mut state = self.lock()?;
        if state.sessions.contains_key(&session.id_hash) {
            return Err(StoreError::Conflict { what: "session" });
        }
        if !state.users.contains_key(&session.user_id) {
            return Err(missing("the session's user"));
        }
        state
            .sessions
            .insert(session.id_hash.clone(), session.clone());
        Ok(())
    }

    async fn get_session(
        &self,
        id_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<SessionRecord>> {
        let state = self.lock()?;
        Ok(state
            .sessions
            .get(id_hash)
            .filter(|s| s.revoked_at.is_none() && s.expires_at > now)
            .cloned())
    }

    async fn revoke_session(&self, id_hash: &str, now: UnixTime) -> StoreResult<bool> {
        let mut state = self.lock()?;
        match state.sessions.get_mut(id_hash) {
            Some(session) if session.revoked_at.is_none() => {
                session.revoked_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn revoke_user_sessions(&self, user_id: &str, now: UnixTime) -> StoreResult<u64> {
        let mut state = self.lock()?;
        let state = &mut *state;
        let mut revoked = 0;
        let mut ended_live = Vec::new();
        for session in state.sessions.values_mut() {
            if session.user_id == user_id && session.revoked_at.is_none() {
                session.revoked_at = Some(now);
                revoked += 1;
                if session.expires_at > now {
                    ended_live.push(session.id_hash.clone());
                }
            }
        }
        for grant in state.grants.values() {
            let Some(sid) = &grant.session_id_hash else {
                continue;
            };
            if !ended_live.contains(sid) {
                continue;
            }
            state
                .logout_outbox
                .entry((grant.client_id.clone(), sid.clone()))
                .or_insert_with(|| OutboxRow {
                    delivery: LogoutDelivery {
                        notice: LogoutNotice {
                            client_id: grant.client_id.clone(),
                            sid: sid.clone(),
                            user_id: user_id.to_string(),
                        },
                        created_at: now,
                        attempts: 0,
                    },
                    next_attempt_at: now,
                    lease: None,
                });
        }
        Ok(revoked)
    }
}

#[async_trait]
impl SealedStore for MemoryStore {
    async fn list_sealed(
        &self,
        column: SealedColumn,
        after: Option<&SealedRow>,
        limit: u32,
    ) -> StoreResult<Vec<SealedValue>> {
        let state = self.lock()?;
        let mut values: Vec<SealedValue> = match column {
            SealedColumn::SigningKeys => state
                .keys
                .values()
                .map(|k| SealedValue {
                    row: SealedRow::SigningKey { kid: k.kid.clone() },
                    sealed: k.sealed_private_key.clone(),
                })
                .collect(),
            SealedColumn::ProviderData => state
                .links
                .values()
                .filter_map(|l| {
                    Some(SealedValue {
                        row: SealedRow::ProviderData {
                            provider_id: l.provider_id.clone(),
                            subject: l.subject.clone(),
                        },
                        sealed: l.sealed_provider_data.clone()?,
                    })
                })
                .collect(),
            SealedColumn::TotpSecrets => state
                .totp
                .values()
                .map(|t| SealedValue {
                    row: SealedRow::TotpSecret {
                        user_id: t.user_id.clone(),
                    },
                    sealed: t.sealed_secret.clone(),
                })
                .collect(),
        };
        values.retain(|v| after.is_none_or(|a| v.row > *a));
        values.sort_by(|a, b| a.row.cmp(&b.row));
        values.truncate(limit as usize);
        Ok(values)
    }

    async fn rewrite_sealed(&self, rewrites: &[SealedRewrite]) -> StoreResult<u64> {
        let mut state = self.lock()?;
        let mut changed = 0;
        for r in rewrites {
            let slot = match &r.row {
                SealedRow::SigningKey { kid } => {
                    state.keys.get_mut(kid).map(|k| &mut k.sealed_private_key)
                }
                SealedRow::ProviderData {
                    provider_id,
                    subject,
                } => state
                    .links
                    .get_mut(&(provider_id.clone(), subject.clone()))
                    .and_then(|l| l.sealed_provider_data.as_mut()),
                SealedRow::TotpSecret { user_id } => {
                    state.totp.get_mut(user_id).map(|t| &mut t.sealed_secret)
                }
            };
            if let Some(value) = slot
                && *value == r.old
            {
                value.clone_from(&r.new);
                changed += 1;
            }
        }
        Ok(changed)
    }
}

#[async_trait]
impl LogoutOutbox for MemoryStore {
    async fn end_session(
        &self,
        id_hash: &str,
        now: UnixTime,
        notices: &[LogoutNotice],
    ) -> StoreResult<bool> {
        let mut state = self.lock()?;
        match state.sessions.get_mut(id_hash) {
            Some(session) if session.revoked_at.is_none() => session.revoked_at = Some(now),
            _ => return Ok(false),
        }
        for n in notices {
            state
                .logout_outbox
                .entry((n.client_id.clone(), n.sid.clone()))
                .or_insert_with(|| OutboxRow {
                    delivery: LogoutDelivery {
                        notice: n.clone(),
                        created_at: now,
                        attempts: 0,
                    },
                    next_attempt_at: now,
                    lease: None,
                });
        }
        Ok(true)
    }

    async fn claim_logout_deliveries(
        &self,
        owner: &str,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> StoreResult<Vec<LogoutDelivery>> {
        let mut state = self.lock()?;
        let mut due: Vec<&mut OutboxRow> = state
            .logout_outbox
            .values_mut()
            .filter(|r| r.next_attempt_at <= now && r.lease.as_ref().is_none_or(|l| l.1 <= now))
            .collect();
        due.sort_by_key(|r| r.next_attempt_at);
        Ok(due
            .into_iter()
            .take(limit as usize)
            .map(|r| {
                r.lease = Some((owner.to_string(), lease_until));
                r.delivery.clone()
            })
            .collect())
    }

    async fn finish_logout_delivery(
        &self,
        client_id: &str,
        sid: &str,
        owner: &str,
    ) -> StoreResult<bool> {
        let mut state = self.lock()?;
        let key = (client_id.to_string(), sid.to_string());
        let held = state
            .logout_outbox
            .get(&key)
            .is_some_and(|r| r.lease.as_ref().is_some_and(|l| l.0 == owner));
        if held {
            state.logout_outbox.remove(&key);
        }
        Ok(held)
    }

    async fn defer_logout_delivery(
        &self,
        client_id: &str,
        sid: &str,
        owner: &str,
        attempts: u32,
        next_attempt_at: UnixTime,
    ) -> StoreResult<bool> {
        let mut state = self.lock()?;
        let key = (client_id.to_string(), sid.to_string());
        match state.logout_outbox.get_mut(&key) {
            Some(r) if r.lease.as_ref().is_some_and(|l| l.0 == owner) => {
                r.lease = None;
                r.delivery.attempts = attempts;
                r.next_attempt_at = next_attempt_at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

fn queue_mail_row(state: &mut State, id: &str, mail: &OutgoingMail, now: UnixTime) {
    state
        .mail_outbox
        .entry(id.to_string())
        .or_insert_with(|| MailRow {
            delivery: MailDelivery {
                id: id.to_string(),
                mail: mail.clone(),
                created_at: now,
                attempts: 0,
            },
            next_attempt_at: now,
            lease: None,
        });
}

#[async_trait]
impl MailOutbox for MemoryStore {
    async fn queue_mail(&self, id: &str, mail: &OutgoingMail, now: UnixTime) -> StoreResult<()> {
        let mut state = self.lock()?;
        queue_mail_row(&mut state, id, mail, now);
        Ok(())
    }

    async fn claim_mail_deliveries(
        &self,
        owner: &str,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> StoreResult<Vec<MailDelivery>> {
        let mut state = self.lock()?;
        let mut due: Vec<&mut MailRow> = state
            .mail_outbox
            .values_mut()
            .filter(|r| r.next_attempt_at <= now && r.lease.as_ref().is_none_or(|l| l.1 <= now))
            .collect();
        due.sort_by_key(|r| (r.next_attempt_at, r.delivery.created_at));
        Ok(due
            .into_iter()
            .take(limit as usize)
            .map(|r| {
                r.lease = Some((owner.to_string(), lease_until));
                r.delivery.clone()
            })
            .collect())
    }

    async fn finish_mail_delivery(&self, id: &str, owner: &str) -> StoreResult<bool> {
        let mut state = self.lock()?;
        let held = state
            .mail_outbox
            .get(id)
            .is_some_and(|r| r.lease.as_ref().is_some_and(|l| l.0 == owner));
        if held {
            state.mail_outbox.remove(id);
        }
        Ok(held)
    }

    async fn defer_mail_delivery(
        &self,
        id: &str,
        owner: &str,
        attempts: u32,
        next_attempt_at: UnixTime,
    ) -> StoreResult<bool> {
        let mut state = self.lock()?;
        match state.mail_outbox.get_mut(id) {
            Some(r) if r.lease.as_ref().is_some_and(|l| l.0 == owner) => {
                r.lease = None;
                r.delivery.attempts = attempts;
                r.next_attempt_at = next_attempt_at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl AccountTokenStore for MemoryStore {
    async fn issue_account_token(
        &self,
        token: &AccountTokenRecord,
        mail_id: &str,
        mail: &OutgoingMail,
    ) -> StoreResult<()> {
        let mut state = self.lock()?;
        if state.account_tokens.contains_key(&token.token_hash) {
            return Err(StoreError::Conflict {
                what: "account token",
            });
        }
        state
            .account_tokens
            .insert(token.token_hash.clone(), token.clone());
        queue_mail_row(&mut state, mail_id, mail, token.created_at);
        Ok(())
    }

    async fn redeem_account_token(
        &self,
        token_hash: &str,
        purpose: AccountTokenPurpose,
        now: UnixTime,
    ) -> StoreResult<Option<RedeemedToken>> {
        let mut state = self.lock()?;
        let redeemed = match state.account_tokens.get(token_hash) {
            Some(t) if t.purpose == purpose && t.expires_at > now => RedeemedToken {
                user_id: t.user_id.clone(),
                detail: t.detail.clone(),
            },
            _ => return Ok(None),
        };
        state
            .account_tokens
            .retain(|_, t| !(t.user_id == redeemed.user_id && t.purpose == purpose));
        Ok(Some(redeemed))
    }

    async fn issue_registration(
        &self,
        registration: &PendingRegistration,
        mail_id: &str,
        mail: &OutgoingMail,
    ) -> StoreResult<()> {
        let mut state = self.lock()?;
        if state.registrations.contains_key(&registration.token_hash) {
            return Err(StoreError::Conflict {
                what: "registration",
            });
        }
        state
            .registrations
            .insert(registration.token_hash.clone(), registration.clone());
        queue_mail_row(&mut state, mail_id, mail, registration.created_at);
        Ok(())
    }

    async fn confirm_registration(
        &self,
        token_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Confirmation> {
        let mut state = self.lock()?;
        let live = state
            .registrations
            .get(token_hash)
            .is_some_and(|r| r.expires_at > now);
        let Some(registration) = live
            .then(|| state.registrations.remove(token_hash))
            .flatten()
        else {
            return Ok(Confirmation::Unknown);
        };
        let user = registration.into_user(now);
        if state.users.contains_key(&user.id) {
            return Ok(Confirmation::Taken { what: "user" });
        }
        if let Some(what) = state.login_conflict(&user, None) {
            return Ok(Confirmation::Taken { what });
        }
        state.users.insert(user.id.clone(), user.clone());
        Ok(Confirmation::Created(Box::new(user)))
    }
}

#[async_trait]
impl MfaStore for MemoryStore {
    async fn put_pending_totp(
        &self,
        user_id: &str,
        sealed_secret: &[u8],
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut state = self.lock()?;
        if !state.users.contains_key(user_id) {
            return Err(missing("user"));
        }
        if state
            .totp
            .get(user_id)
            .is_some_and(|t| t.confirmed_at.is_some())
        {
            return Ok(false);
        }
        state.totp.insert(
            user_id.to_owned(),
            TotpRecord {
                user_id: user_id.to_owned(),
                sealed_secret: sealed_secret.to_vec(),
                created_at: now,
                confirmed_at: None,
                last_step: None,
            },
        );
        Ok(true)
    }

    async fn get_totp(&self, user_id: &str) -> StoreResult<Option<TotpRecord>> {
        Ok(self.lock()?.totp.get(user_id).cloned())
    }

    async fn confirm_totp(
        &self,
        user_id: &str,
        sealed_secret: &[u8],
        step: i64,
        recovery_hashes: &[String],
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut state = self.lock()?;
        let Some(t) = state.totp.get_mut(user_id) else {
            return Ok(false);
        };
        if t.confirmed_at.is_some() || t.sealed_secret != sealed_secret {
            return Ok(false);
        }
        t.confirmed_at = Some(now);
        t.last_step = Some(step);
        state.recovery_codes.retain(|(user, _)| user != user_id);
        for h in recovery_hashes {
            state.recovery_codes.insert((user_id.to_owned(), h.clone()));
        }
        Ok(true)
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        let mut state = self.lock()?;
        match state.totp.get_mut(user_id) {
            Some(t) if t.confirmed_at.is_some() && t.last_step.is_none_or(|l| l < step) => {
                t.last_step = Some(step);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete_totp(&self, user_id: &str) -> StoreResult<bool> {
        let mut state = self.lock()?;
        state.recovery_codes.retain(|(user, _)| user != user_id);
        Ok(state.totp.remove(user_id).is_some())
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[String],
        _now: UnixTime,
    ) -> StoreResult<bool> {
        let mut state = self.lock()?;
        if state
            .totp
            .get(user_id)
            .is_none_or(|t| t.confirmed_at.is_none())
        {
            return Ok(false);
        }
        state.recovery_codes.retain(|(user, _)| user != user_id);
        for h in hashes {
            state.recovery_codes.insert((user_id.to_owned(), h.clone()));
        }
        Ok(true)
    }

    async fn use_recovery_code(&self, user_id: &str, code_hash: &str) -> StoreResult<bool> {
        let mut state = self.lock()?;
        if state
            .totp
            .get(user_id)
            .is_none_or(|t| t.confirmed_at.is_none())
        {
            return Ok(false);
        }
        Ok(state
            .recovery_codes
            .remove(&(user_id.to_owned(), code_hash.to_owned())))
    }

    async fn count_recovery_codes(&self, user_id: &str) -> StoreResult<u32> {
        let state = self.lock()?;
        let n = state
            .recovery_codes
            .iter()
            .filter(|(user, _)| user == user_id)
            .count();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn insert_key_if_absent(&self, key: &SigningKeyRecord) -> StoreResult<bool> {
        let mut state = self.lock()?;
        if state
            .keys
            .values()
            .any(|k| k.alg == key.alg && k.epoch == key.epoch)
        {
            return Ok(false);
        }
        if state.keys.contains_key(&key.kid) {
            return Err(StoreError::Conflict {
                what: "signing key",
            });
        }
        state.keys.insert(key.kid.clone(), key.clone());
        Ok(true)
    }

    async fn list_keys(&self, now: UnixTime) -> StoreResult<Vec<SigningKeyRecord>> {
        let state = self.lock()?;
        let mut keys: Vec<SigningKeyRecord> = state
            .keys
            .values()
            .filter(|k| k.expires_at > now)
            .cloned()
            .collect();
        keys.sort_by(|a, b| (&a.alg, a.epoch).cmp(&(&b.alg, b.epoch)));
        Ok(keys)
    }
}

#[async_trait]
impl ThrottleStore for MemoryStore {
    async fn hit(&self, key: &str, window_secs: i64, now: UnixTime) -> StoreResult<u32> {
        let mut state = self.lock()?;
        let window = state
            .throttle
            .entry(key.to_owned())
            .or_insert(ThrottleWindow {
                count: 0,
                expires_at: now.saturating_add(window_secs),
            });
        if window.expires_at <= now {
            window.count = 0;
            window.expires_at = now.saturating_add(window_secs);
        }
        window.count = window.count.saturating_add(1);
        Ok(window.count)
    }

    async fn current(&self, key: &str, now: UnixTime) -> StoreResult<u32> {
        Ok(self
            .lock()?
            .throttle
            .get(key)
            .filter(|w| w.expires_at > now)
            .map_or(0, |w| w.count))
    }

    async fn clear(&self, key: &str) -> StoreResult<()> {
        self.lock()?.throttle.remove(key);
        Ok(())
    }
}

/// Removes the entries `expired` picks and returns how many went.
fn purge<K, V>(map: &mut HashMap<K, V>, expired: impl Fn(&V) -> bool) -> u64 {
    let before = map.len();
    map.retain(|_, v| !expired(v));
    (before - map.len()) as u64
}

#[async_trait]
impl ApiKeyStore for MemoryStore {
    async fn create_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        let mut state = self.lock()?;
        if !state.users.contains_key(&key.user_id) {
            return Err(missing("user"));
        }
        let taken = state.api_keys.contains_key(&key.id)
            || state
                .api_keys
                .values()
                .any(|k| k.secret_hash == key.secret_hash);
        if taken {
            return Err(StoreError::Conflict { what: "API key" });
        }
        state.api_keys.insert(key.id.clone(), key.clone());
        Ok(())
    }

    async fn find_api_key(&self, secret_hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        Ok(self
            .lock()?
            .api_keys
            .values()
            .find(|k| k.secret_hash == secret_hash)
            .cloned())
    }

    async fn list_user_api_keys(&self, user_id: &str) -> StoreResult<Vec<ApiKeyRecord>> {
        let mut keys: Vec<ApiKeyRecord> = self
            .lock()?
            .api_keys
            .values()
            .filter(|k| k.user_id == user_id)
            .cloned()
            .collect();
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(keys)
    }

    async fn revoke_api_key(&self, user_id: &str, id: &str, now: UnixTime) -> StoreResult<bool> {
        let mut state = self.lock()?;
        match state.api_keys.get_mut(id) {
            Some(key) if key.user_id == user_id && key.revoked_at.is_none() => {
                key.revoked_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn revoke_user_api_keys(&self, user_id: &str, now: UnixTime) -> StoreResult<u64> {
        let mut state = self.lock()?;
        let mut revoked = 0;
        for key in state.api_keys.values_mut() {
            if key.user_id == user_id && key.revoked_at.is_none() {
                key.revoked_at = Some(now);
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    async fn touch_api_key(&self, id: &str, now: UnixTime, coarseness: i64) -> StoreResult<bool> {
        let mut state = self.lock()?;
        match state.api_keys.get_mut(id) {
            Some(key) if key.last_used_at.is_none_or(|at| at <= now - coarseness) => {
                key.last_used_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl State {
    /// Every role the user holds on resources of `resource_type`: their own grants and
    /// those of the managed groups they are a member of now.
    fn held_resource_roles<'a>(
        &'a self,
        user_id: &'a str,
        resource_type: &'a str,
    ) -> impl Iterator<Item = (&'a ResourceGrantRecord, Option<&'a str>)> + 'a {
        self.resource_grants
            .values()
            .filter(move |g| g.resource.resource_type == resource_type)
            .filter_map(move |g| match &g.holder {
                Holder::User(id) if id == user_id => Some((g, None)),
                Holder::Group(group_id)
                    if self
                        .members
                        .contains(&(group_id.clone(), user_id.to_owned())) =>
                {
                    let name = self.groups.get(group_id).map(|group| group.name.as_str());
                    name.map(|name| (g, Some(name)))
                }
                _ => None,
            })
    }
}

#[async_trait]
impl ResourceGrantStore for MemoryStore {
    async fn grant_resource_role(
        &self,
        grant: &ResourceGrantRecord,
    ) -> StoreResult<ResourceGrantWrite> {
        let mut state = self.lock()?;
        let holder_exists = match &grant.holder {
            Holder::User(id) => state.users.contains_key(id),
            Holder::Group(id) => state.groups.contains_key(id),
        };
        if !holder_exists {
            return Ok(ResourceGrantWrite::NoSuchHolder);
        }
        let key = (
            grant.resource.clone(),
            grant.holder.clone(),
            grant.role.clone(),
        );
        if state.resource_grants.contains_key(&key) {
            return Ok(ResourceGrantWrite::AlreadyGranted);
        }
        state.resource_grants.insert(key, grant.clone());
        Ok(ResourceGrantWrite::Added)
    }

    async fn revoke_resource_role(
        &self,
        resource: &ResourceRef,
        holder: &Holder,
        role: &str,
    ) -> StoreResult<bool> {
        let key = (resource.clone(), holder.clone(), role.to_owned());
        Ok(self.lock()?.resource_grants.remove(&key).is_some())
    }

    async fn list_resource_grants(
        &self,
        resource: &ResourceRef,
        after: Option<&ResourceGrantCursor>,
        limit: u32,
    ) -> StoreResult<Vec<ResourceGrantRecord>> {
        let state = self.lock()?;
        // `Holder` orders groups before users, each by id: the order the API pages in.
        let mut grants: Vec<&ResourceGrantRecord> = state
            .resource_grants
            .values()
            .filter(|g| g.resource == *resource)
            .filter(|g| after.is_none_or(|c| (&g.holder, &g.role) > (&c.holder, &c.role)))
            .collect();
        grants.sort_by(|a, b| (&a.holder, &a.role).cmp(&(&b.holder, &b.role)));
        Ok(grants.into_iter().take(limit as usize).cloned().collect())
    }

    async fn user_resource_roles(
        &self,
        user_id: &str,
        resource: &ResourceRef,
    ) -> StoreResult<Vec<HeldResourceRole>> {
        let state = self.lock()?;
        let mut held: Vec<HeldResourceRole> = state
            .held_resource_roles(user_id, &resource.resource_type)
            .filter(|(g, _)| g.resource.id == resource.id)
            .map(|(g, via_group)| HeldResourceRole {
                role: g.role.clone(),
                via_group: via_group.map(str::to_owned),
            })
            .collect();
        held.sort();
        Ok(held)
    }

    async fn list_user_resources(
        &self,
        user_id: &str,
        resource_type: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<UserResource>> {
        let state = self.lock()?;
        let mut by_id: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
            std::collections::BTreeMap::new();
        for (grant, _) in state.held_resource_roles(user_id, resource_type) {
            if after.is_none_or(|after| grant.resource.id.as_str() > after) {
                by_id
                    .entry(grant.resource.id.as_str())
                    .or_default()
                    .insert(grant.role.as_str());
            }
        }
        Ok(by_id
            .into_iter()
            .take(limit as usize)
            .map(|(id, roles)| UserResource {
                id: id.to_owned(),
                roles: roles.into_iter().map(str::to_owned).collect(),
            })
            .collect())
    }
}

#[async_trait]
impl DeviceCodeStore for MemoryStore {
    async fn create_device_code(&self, record: &DeviceCodeRecord) -> StoreResult<()> {
        let mut state = self.lock()?;
        let taken = state.device_codes.contains_key(&record.device_code_hash)
            || state
                .device_codes
                .values()
                .any(|d| d.user_code_hash == record.user_code_hash);
        if taken {
            return Err(StoreError::Conflict {
                what: "device code",
            });
        }
        state
            .device_codes
            .insert(record.device_code_hash.clone(), record.clone());
        Ok(())
    }

    async fn find_device_code(
        &self,
        user_code_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<DeviceCodeRecord>> {
        Ok(self
            .lock()?
            .device_codes
            .values()
            .find(|d| {
                d.user_code_hash == user_code_hash
                    && d.state == DeviceCodeState::Pending
                    && d.expires_at > now
            })
            .cloned())
    }

    async fn approve_device_code(
        &self,
        user_code_hash: &str,
        grant: &GrantRecord,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut state = self.lock()?;
        let state = &mut *state;
        if state.grants.contains_key(&grant.id) {
            return Err(StoreError::Conflict { what: "grant" });
        }
        if !state.users.contains_key(&grant.user_id) {
            return Err(missing("the grant's user"));
        }
        let Some(device) = state.device_codes.values_mut().find(|d| {
            d.user_code_hash == user_code_hash
                && d.state == DeviceCodeState::Pending
                && d.expires_at > now
        }) else {
            return Ok(false);
        };
        device.state = DeviceCodeState::Approved;
        device.grant_id = Some(grant.id.clone());
        state.grants.insert(grant.id.clone(), grant.clone());
        Ok(true)
    }

    async fn deny_device_code(&self, user_code_hash: &str, now: UnixTime) -> StoreResult<bool> {
        let mut state = self.lock()?;
        let Some(device) = state.device_codes.values_mut().find(|d| {
            d.user_code_hash == user_code_hash
                && d.state == DeviceCodeState::Pending
                && d.expires_at > now
        }) else {
            return Ok(false);
        };
        device.state = DeviceCodeState::Denied;
        Ok(true)
    }

    async fn poll_device_code(
        &self,
        device_code_hash: &str,
        client_id: &str,
        now: UnixTime,
        slow_down_secs: i64,
    ) -> StoreResult<DevicePoll> {
        let mut state = self.lock()?;
        let Some(device) = state.device_codes.get_mut(device_code_hash) else {
            return Ok(DevicePoll::Unknown);
        };
        let (outcome, next) = super::device_poll(device, client_id, now, slow_down_secs);
        if let Some(next) = next {
            *device = next;
        }
        Ok(outcome)
    }
}

/// One process per store: nobody to tell.
impl super::ChangeFeed for MemoryStore {}

#[async_trait]
impl Maintenance for MemoryStore {
    async fn purge_expired(&self, now: UnixTime) -> StoreResult<u64> {
        let mut state = self.lock()?;
        let state = &mut *state;
        let mut removed = 0;
        let dead_grants: HashSet<String> = state
            .grants
            .values()
            .filter(|g| g.expires_at <= now)
            .map(|g| g.id.clone())
            .collect();
        removed += purge(&mut state.refresh_tokens, |t| {
            t.expires_at <= now || dead_grants.contains(&t.grant_id)
        });
        removed += purge(&mut state.codes, |c| {
            c.code.expires_at <= now || dead_grants.contains(&c.code.grant_id)
        });
        removed += purge(&mut state.grants, |g| g.expires_at <= now);
        removed += purge(&mut state.auth_requests, |r| r.expires_at <= now);
        removed += purge(&mut state.sessions, |s| s.expires_at <= now);
        removed += purge(&mut state.keys, |k| k.expires_at <= now);
        removed += purge(&mut state.throttle, |w| w.expires_at <= now);
        removed += purge(&mut state.denied_access_tokens, |expires_at| {
            *expires_at <= now
        });
        removed += purge(&mut state.api_keys, |k| k.expires_at <= now);
        removed += purge(&mut state.account_tokens, |t| t.expires_at <= now);
        removed += purge(&mut state.registrations, |r| r.expires_at <= now);
        removed += purge(&mut state.device_codes, |d| {
            d.expires_at <= now || d.grant_id.as_ref().is_some_and(|g| dead_grants.contains(g))
        });
        Ok(removed)
    }
}
