//! Persistence: one trait per aggregate, backends behind `Arc<dyn Store>`.
//!
//! One-time operations (`redeem_code`, `rotate_refresh`, `take_auth_request`) are single
//! transactions that report who won, so two replicas (or two requests) racing on the
//! same code or refresh token can never both succeed. Secrets never reach this layer in
//! the clear: codes, session ids and refresh tokens arrive as SHA-256 hashes, private
//! keys and upstream tokens arrive sealed by `secrets`.

pub mod changes;
mod memory;
mod postgres;
mod sqlite;

#[cfg(test)]
mod conformance;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub use changes::{ChangeEpoch, ChangeFeed, WatchedStore};
pub use memory::MemoryStore;
pub use postgres::{PostgresOptions, PostgresStore, valid_schema_name};
pub use sqlite::SqliteStore;

/// Seconds since the Unix epoch. Every time in the store is one of these.
pub type UnixTime = i64;

/// A SHA-256 digest rendered as lowercase hex: how every bearer secret is stored.
pub type SecretHash = String;

/// Errors from any backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is already taken (user id, username, verified email, identity
    /// link); `what` names it.
    #[error("{what} already exists")]
    Conflict { what: &'static str },
    /// The backend failed (I/O, connection, corrupt row).
    #[error("store backend failed: {0}")]
    Backend(String),
    /// A stored row could not be decoded (bad JSON, unknown format version).
    #[error("stored {what} is unreadable: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Whether a user may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(UserStatus::Active),
            "disabled" => Some(UserStatus::Disabled),
            _ => None,
        }
    }
}

/// Switchboard's own user. `id` is the `sub` apps see and never changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: String,
    /// Unique when present (case-insensitive).
    pub username: Option<String>,
    /// Unique among verified emails (case-insensitive): an unverified email is only
    /// a claim, which any number of users may carry beside one verified owner.
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub picture: Option<String>,
    pub groups: Vec<String>,
    pub status: UserStatus,
    /// PHC string (argon2id) for users of the local provider kept in the store.
    pub password_hash: Option<String>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
    pub last_login_at: Option<UnixTime>,
    /// Counts the writes to this user (1 when created; the store sets it): the admin
    /// API's ETag.
    pub revision: i64,
}

/// Which users a page lists: every filter given must hold. Text filters compare
/// whole values, case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    pub email: Option<String>,
    pub username: Option<String>,
    pub status: Option<UserStatus>,
    /// Users with an identity of this provider linked.
    pub provider: Option<String>,
    /// Members of this managed group (by id).
    pub group: Option<String>,
}

/// Where a page starts: after this row in `(created_at, id)` order, which never
/// changes, so a walk sees every row once even while rows are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub created_at: UnixTime,
    pub id: String,
}

/// The outcome of a write that must not lose a concurrent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckedWrite {
    /// Written; the user as stored now (its revision bumped).
    Written(Box<UserRecord>),
    /// The user changed since `expected_revision`: nothing was written.
    Stale,
    NoSuchUser,
}

/// A group the broker itself holds (not an upstream's): managed through the admin API,
/// in tokens as `managed/<name>`, and named by role rules with `managed_group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub id: String,
    /// Unique, case-insensitively.
    pub name: String,
    pub description: Option<String>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
    /// Counts the writes to the group (1 when created; the store sets it).
    pub revision: i64,
}

/// What adding a member did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Added,
    AlreadyMember,
    NoSuchGroup,
    NoSuchUser,
}

/// The outcome of a group write that must not lose a concurrent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckedGroupWrite {
    Written(GroupRecord),
    Stale,
    NoSuchGroup,
}

#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Inserts a group; `Conflict` if the id or the name (case-insensitive) is taken.
    async fn create_group(&self, group: &GroupRecord) -> StoreResult<()>;
    async fn get_group(&self, id: &str) -> StoreResult<Option<GroupRecord>>;
    /// At most `limit` groups after `after`, in `(created_at, id)` order.
    async fn list_groups_page(
        &self,
        after: Option<&PageCursor>,
        limit: u32,
    ) -> StoreResult<Vec<GroupRecord>>;
    /// Renames (and re-describes) a group if its revision is still
    /// `expected_revision`; `Conflict` if the name is taken.
    async fn update_group_checked(
        &self,
        group: &GroupRecord,
        expected_revision: i64,
    ) -> StoreResult<CheckedGroupWrite>;
    /// Deletes a group, its memberships and its resource grants; false if no such group.
    async fn delete_group(&self, id: &str) -> StoreResult<bool>;
    async fn add_member(
        &self,
        group_id: &str,
        user_id: &str,
        now: UnixTime,
    ) -> StoreResult<Membership>;
    /// Returns false if the user was not a member.
    async fn remove_member(&self, group_id: &str, user_id: &str) -> StoreResult<bool>;
    /// The groups a user is a member of, by name.
    async fn list_user_groups(&self, user_id: &str) -> StoreResult<Vec<GroupRecord>>;
}

/// A link between an upstream identity and a user. `(provider_id, subject)` is unique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityLink {
    pub provider_id: String,
    pub subject: String,
    pub user_id: String,
    /// Raw claims of the last login, as JSON text.
    pub claims: serde_json::Value,
    /// Provider data sealed by `secrets` (may hold upstream tokens).
    pub sealed_provider_data: Option<Vec<u8>>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts a user; `Conflict` if the id (`what` = "user"), the username
    /// ("username") or, for a verified email, another user's verified email ("email")
    /// is taken, case-insensitively. Unverified emails never conflict.
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()>;
    async fn get_user(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    /// The user `login` names, case-insensitively: the one whose *verified* email it
    /// is, else the one whose username it is. An unverified email never names anyone
    /// (anybody may claim one), and a verified email wins over a username because
    /// usernames come first-come from upstreams and may look like addresses: a
    /// stranger who took `bob@corp.example` as a username must not capture Bob's login.
    async fn find_user_by_login(&self, login: &str) -> StoreResult<Option<UserRecord>>;
    /// All users ordered by `created_at`, then `id`.
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// At most `limit` users matching `filter`, after `after`, in `(created_at, id)`
    /// order.
    async fn list_users_page(
        &self,
        filter: &UserFilter,
        after: Option<&PageCursor>,
        limit: u32,
    ) -> StoreResult<Vec<UserRecord>>;
    /// Replaces the profile fields and status of `user` if its stored revision is
    /// still `expected_revision`; `Conflict` if the username or email is taken.
    async fn update_user_checked(
        &self,
        user: &UserRecord,
        expected_revision: i64,
    ) -> StoreResult<CheckedWrite>;
    /// Deletes a user and everything that hangs off it: identity links, grants (with
    /// their codes and refresh tokens), sessions, role grants, resource grants and API
    /// keys. Audit events stay. Returns false if no such user.
    async fn delete_user(&self, id: &str) -> StoreResult<bool>;
    /// Replaces profile fields, groups, `updated_at` and `last_login_at` of an existing
    /// user (not status or password). Returns false if no such user; `Conflict` as
    /// `create_user` if the username or verified email is another user's.
    async fn update_profile(&self, user: &UserRecord) -> StoreResult<bool>;
    /// Returns false if no such user.
    async fn set_user_status(
        &self,
        id: &str,
        status: UserStatus,
        now: UnixTime,
    ) -> StoreResult<bool>;
    /// Returns false if no such user.
    async fn set_password_hash(&self, id: &str, hash: &str, now: UnixTime) -> StoreResult<bool>;
    /// Inserts a link; `Conflict` if `(provider_id, subject)` is already linked.
    async fn link_identity(&self, link: &IdentityLink) -> StoreResult<()>;
    async fn find_identity(
        &self,
        provider_id: &str,
        subject: &str,
    ) -> StoreResult<Option<IdentityLink>>;
    /// Every identity linked to a user, ordered by provider id, then subject.
    async fn list_user_identities(&self, user_id: &str) -> StoreResult<Vec<IdentityLink>>;
    /// Replaces claims, sealed provider data and `updated_at` of an existing link.
    async fn update_identity(&self, link: &IdentityLink) -> StoreResult<bool>;
    /// Removes a link; returns false if `(provider_id, subject)` was not linked.
    async fn unlink_identity(&self, provider_id: &str, subject: &str) -> StoreResult<bool>;
}

/// A role given to a user directly (by an operator), not by a rule. A grant with a
/// `client_id` is that client's role only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleGrantRecord {
    pub user_id: String,
    pub role: String,
    pub client_id: Option<String>,
    pub granted_at: UnixTime,
}

#[async_trait]
pub trait RoleGrantStore: Send + Sync {
    /// Records a grant; returns false if the user already had it (same role and
    /// client). Fails if the user does not exist.
    async fn grant_role(&self, grant: &RoleGrantRecord) -> StoreResult<bool>;
    /// Removes a grant; returns false if there was none.
    async fn revoke_role(
        &self,
        user_id: &str,
        role: &str,
        client_id: Option<&str>,
    ) -> StoreResult<bool>;
    /// The user's grants: global ones first, then by client id, then by role.
    async fn list_role_grants(&self, user_id: &str) -> StoreResult<Vec<RoleGrantRecord>>;
}

/// Something that happened to a user's account that an operator may have to answer
/// for later: identities linked, roles granted or revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub user_id: String,
    /// Who did it: `user:ID`, `client:ID` or `cli`; `None` for the broker itself.
    pub actor: Option<String>,
    /// What happened, e.g. `identity_linked`, `role_granted`.
    pub kind: String,
    /// The details, as JSON (never a secret).
    pub detail: serde_json::Value,
    pub at: UnixTime,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an event (events are never changed or removed by the broker).
    async fn record_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    /// A user's events, oldest first (in recording order within one second).
    async fn list_audit(&self, user_id: &str) -> StoreResult<Vec<AuditEvent>>;
    /// At most `limit` events matching `filter` with a sequence number above `after`,
    /// oldest first, each with its sequence number (the paging cursor).
    async fn query_audit(
        &self,
        filter: &AuditFilter,
        after: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<(i64, AuditEvent)>>;
}

/// Which audit events a query returns: every filter given must hold; `since` and
/// `until` bound `at` (inclusive, exclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub user_id: Option<String>,
    pub actor: Option<String>,
    pub kind: Option<String>,
    pub since: Option<UnixTime>,
    pub until: Option<UnixTime>,
}

/// A validated authorization request waiting for the person to log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequestRecord {
    pub id_hash: SecretHash,
    /// A pending login (`flow::PendingLogin`) or an upstream trip, as JSON (opaque here).
    pub request: serde_json::Value,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

#[async_trait]
pub trait LoginStore: Send + Sync {
    async fn put_auth_request(&self, rec: &AuthRequestRecord) -> StoreResult<()>;
    /// Reads without consuming; `None` when absent or expired at `now`.
    async fn get_auth_request(
        &self,
        id_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<AuthRequestRecord>>;
    /// Removes and returns the request in one step: of two concurrent callers exactly
    /// one gets `Some`. `None` when absent or expired.
    async fn take_auth_request(
        &self,
        id_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<AuthRequestRecord>>;
}

/// An authorization code, bound to everything that must match at redemption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    pub code_hash: SecretHash,
    /// The grant this code starts; created together with the code.
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// Who won a redemption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemOutcome {
    /// This caller consumed the code.
    Redeemed(CodeRecord),
    /// The code was consumed before: the caller must revoke `grant_id`.
    AlreadyUsed { grant_id: String },
    /// Unknown or expired.
    Invalid,
}

/// A grant: one login's authorization of one client. It is the refresh-token family
/// and what every access token of that login points back to, so revoking it ends both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub session_id_hash: Option<SecretHash>,
    pub scopes: Vec<String>,
    pub auth_time: UnixTime,
    /// Identity provider the user logged in with.
    pub provider_id: String,
    pub created_at: UnixTime,
    /// End of the family: no refresh past this time.
    pub expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
    /// The resource (RFC 8707) asked for at authorization: the `aud` of the grant's
    /// access tokens. `None`: the client's default audience.
    pub resource: Option<String>,
    /// How the person authenticated for this grant (RFC 8176 `amr` values, copied from
    /// the session): what every ID token of the grant says, refreshed ones included.
    #[serde(default)]
    pub amr: Vec<String>,
}

/// A refresh token as stored, whatever its state: what its own status is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTokenRecord {
    pub token_hash: SecretHash,
    pub grant_id: String,
    /// When it was issued (`iat` in introspection).
    pub created_at: UnixTime,
    /// Its own expiry (idle lifetime, capped by the grant's).
    pub expires_at: UnixTime,
    /// When it was first exchanged for a successor; a spent token is dead.
    pub spent_at: Option<UnixTime>,
    /// The token it replaced (`None` for a family's first token).
    pub parent_hash: Option<SecretHash>,
    /// When a retry of its parent replaced it before it was ever used: dead too, but
    /// never exchanged, so presenting it is no sign of theft.
    pub superseded_at: Option<UnixTime>,
}

impl RefreshTokenRecord {
    /// Spent or superseded: it can never be exchanged again.
    pub fn is_ended(&self) -> bool {
        self.spent_at.is_some() || self.superseded_at.is_some()
    }
}

/// Result of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The old token is spent; the new one is stored. The grant is returned (boxed:
    /// the other outcomes are small).
    Rotated(Box<GrantRecord>),
    /// The token had been spent before, outside the grace window or after its
    /// successor was used: the whole family was revoked in the same transaction.
    Reused { grant_id: String },
    /// The token was replaced by a retry of its parent before it was used. It is
    /// dead, the family lives on.
    Superseded,
    /// Unknown, expired, or its grant is revoked or expired.
    Invalid,
}

#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Stores a new grant and its code in one transaction.
    async fn create_grant_with_code(
        &self,
        grant: &GrantRecord,
        code: &CodeRecord,
    ) -> StoreResult<()>;
    /// Consumes a code: of two concurrent callers exactly one gets `Redeemed`.
    async fn redeem_code(&self, code_hash: &str, now: UnixTime) -> StoreResult<RedeemOutcome>;
    async fn get_grant(&self, id: &str) -> StoreResult<Option<GrantRecord>>;
    /// Returns true if the grant existed and was not already revoked.
    async fn revoke_grant(&self, id: &str, now: UnixTime) -> StoreResult<bool>;
    /// Grants started under a browser session (revoked ones included), oldest first.
    async fn list_session_grants(&self, session_id_hash: &str) -> StoreResult<Vec<GrantRecord>>;
    /// Revokes every grant of a user; returns how many were newly revoked.
    async fn revoke_user_grants(&self, user_id: &str, now: UnixTime) -> StoreResult<u64>;
    /// Stores a refresh token of a grant.
    async fn put_refresh_token(
        &self,
        token_hash: &str,
        grant_id: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<()>;
    /// The live grant a refresh token belongs to, without spending it (so the provider
    /// can be asked before rotation). `None` when the token is unknown or expired, or
    /// its grant is revoked or expired. A spent token still answers: `rotate_refresh`
    /// decides about reuse.
    async fn refresh_token_grant(
        &self,
        token_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<GrantRecord>>;
    /// The refresh token stored under `token_hash` as it is (spent, expired, or of a
    /// revoked grant alike) until `purge_expired` removes it; `None` when unknown.
    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>>;
    /// Spends `old_hash` and stores `new_hash` (whose parent it is) in one
    /// transaction. A spent token presented again within `reuse_grace_secs` of its
    /// first spend, while its successor is still unused, is a client retrying a lost
    /// answer: the unused successor is superseded and `new_hash` takes its place, so
    /// the family never holds two live tokens. Any other second use revokes the
    /// family. Of concurrent callers with a grace of 0, exactly one gets `Rotated`.
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_at: UnixTime,
        now: UnixTime,
        reuse_grace_secs: i64,
    ) -> StoreResult<RotateOutcome>;
}

/// Where a device authorization (RFC 8628) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceCodeState {
    /// Waiting for the person to enter the user code and decide.
    Pending,
    /// The person approved: `grant_id` names the grant made then.
    Approved,
    /// The person denied it.
    Denied,
    /// The device got its tokens: the code is spent.
    Redeemed,
}

impl DeviceCodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceCodeState::Pending => "pending",
            DeviceCodeState::Approved => "approved",
            DeviceCodeState::Denied => "denied",
            DeviceCodeState::Redeemed => "redeemed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeviceCodeState::Pending),
            "approved" => Some(DeviceCodeState::Approved),
            "denied" => Some(DeviceCodeState::Denied),
            "redeemed" => Some(DeviceCodeState::Redeemed),
            _ => None,
        }
    }
}

/// A device authorization request: the device polls with the device code, the person
/// types the user code. Both are stored only as hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCodeRecord {
    pub device_code_hash: SecretHash,
    /// The hash of the user code as normalised (upper case, no dash).
    pub user_code_hash: SecretHash,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    /// The polling interval in seconds now (it grows at each `slow_down`).
    pub interval: i64,
    pub last_polled_at: Option<UnixTime>,
    pub state: DeviceCodeState,
    /// The grant made at approval.
    pub grant_id: Option<String>,
}

/// What one poll of a device code found. The store decides it in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePoll {
    /// Unknown, or another client's.
    Unknown,
    /// Past its expiry and not redeemed.
    Expired,
    /// Still waiting for the person.
    Pending,
    /// Polled sooner than the interval allows: the interval grew to this many seconds.
    SlowDown { interval: i64 },
    /// The person denied it.
    Denied,
    /// This poll won the approved code: the caller issues the tokens of the grant.
    Approved(DeviceCodeRecord),
    /// Redeemed before (by this or a concurrent poll).
    AlreadyRedeemed { grant_id: Option<String> },
}

/// The one rule of a poll, shared by every backend: what `record` answers `client_id`
/// at `now`, and the record as it must be written back (`None`: unchanged). A backend
/// reads the row and writes the result in one transaction.
fn device_poll(
    record: &DeviceCodeRecord,
    client_id: &str,
    now: UnixTime,
    slow_down_secs: i64,
) -> (DevicePoll, Option<DeviceCodeRecord>) {
    if record.client_id != client_id {
        return (DevicePoll::Unknown, None);
    }
    if record.state == DeviceCodeState::Redeemed {
        let grant_id = record.grant_id.clone();
        return (DevicePoll::AlreadyRedeemed { grant_id }, None);
    }
    if record.expires_at <= now {
        return (DevicePoll::Expired, None);
    }
    let mut next = record.clone();
    next.last_polled_at = Some(now);
    match record.state {
        DeviceCodeState::Denied => (DevicePoll::Denied, None),
        DeviceCodeState::Approved => {
            next.state = DeviceCodeState::Redeemed;
            (DevicePoll::Approved(next.clone()), Some(next))
        }
        // Handled above; kept for the match to be whole.
        DeviceCodeState::Redeemed => (DevicePoll::AlreadyRedeemed { grant_id: None }, None),
        DeviceCodeState::Pending => {
            let too_soon = record
                .last_polled_at
                .is_some_and(|at| now - at < record.interval);
            if too_soon {
                next.interval = record.interval + slow_down_secs;
                let interval = next.interval;
                (DevicePoll::SlowDown { interval }, Some(next))
            } else {
                (DevicePoll::Pending, Some(next))
            }
        }
    }
}

/// Device authorizations (RFC 8628).
#[async_trait]
pub trait DeviceCodeStore: Send + Sync {
    /// Stores a new request; `Conflict` when either code hash is taken.
    async fn create_device_code(&self, record: &DeviceCodeRecord) -> StoreResult<()>;
    /// The pending, unexpired request with this user code, if any.
    async fn find_device_code(
        &self,
        user_code_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<DeviceCodeRecord>>;
    /// Approves the pending, unexpired request with this user code and stores `grant`
    /// in the same transaction. False (and nothing stored) when it is no longer pending.
    async fn approve_device_code(
        &self,
        user_code_hash: &str,
        grant: &GrantRecord,
        now: UnixTime,
    ) -> StoreResult<bool>;
    /// Denies the pending, unexpired request with this user code. False when it is no
    /// longer pending.
    async fn deny_device_code(&self, user_code_hash: &str, now: UnixTime) -> StoreResult<bool>;
    /// One poll by `client_id`: records it, grows the interval by `slow_down_secs` when
    /// it came too soon, and redeems an approved code. Of concurrent polls of one
    /// approved code exactly one gets `Approved`.
    async fn poll_device_code(
        &self,
        device_code_hash: &str,
        client_id: &str,
        now: UnixTime,
        slow_down_secs: i64,
    ) -> StoreResult<DevicePoll>;
}

/// Access tokens revoked before their expiry, by `jti`. An access token is a signed
/// JWT that cannot be recalled, so every check of one (introspection, userinfo) asks
/// here. A denial is kept until the token's own expiry, when the token is refused
/// anyway.
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Denies the access token `jti` until `expires_at` (its `exp`). Returns false if
    /// it was denied already (the first denial stands).
    async fn deny_access_token(
        &self,
        jti: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool>;
    /// Whether `jti` is denied. A denial answers true until `purge_expired` removes it,
    /// which it does only once the token has expired.
    async fn access_token_denied(&self, jti: &str) -> StoreResult<bool>;
}

/// A logged-in browser. Stored under the hash of the id the cookie carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id_hash: SecretHash,
    pub user_id: String,
    pub provider_id: String,
    /// When the person last actually authenticated.
    pub auth_time: UnixTime,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
    /// How the person authenticated (RFC 8176 `amr` values: `pwd`, `otp`, `mfa`, …).
    /// Empty for sessions started before it was recorded.
    #[serde(default)]
    pub amr: Vec<String>,
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()>;
    /// `None` when absent, revoked or expired at `now`.
    async fn get_session(&self, id_hash: &str, now: UnixTime)
    -> StoreResult<Option<SessionRecord>>;
    async fn revoke_session(&self, id_hash: &str, now: UnixTime) -> StoreResult<bool>;
    /// Ends every session of the user and, in the same transaction, queues a
    /// back-channel logout notice (as [`LogoutOutbox::end_session`]) for each client
    /// with a grant in each session that was still live at `now`: the sender drops
    /// those of clients that take no back-channel logout. Returns the sessions ended.
    async fn revoke_user_sessions(&self, user_id: &str, now: UnixTime) -> StoreResult<u64>;
    /// A user's live sessions at `now`, oldest first.
    async fn list_user_sessions(
        &self,
        user_id: &str,
        now: UnixTime,
    ) -> StoreResult<Vec<SessionRecord>>;
}

/// A signing key. `(alg, epoch)` is unique, which makes key creation race-free across
/// replicas: everyone inserts-if-absent, then reads what won.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: String,
    pub epoch: i64,
    /// PKCS#8 private key sealed by `secrets`.
    pub sealed_private_key: Vec<u8>,
    /// The public JWK, as JSON.
    pub public_jwk: serde_json::Value,
    pub created_at: UnixTime,
    /// Starts signing at this time (published in JWKS before).
    pub activate_at: UnixTime,
    /// Stops signing at this time.
    pub retire_at: UnixTime,
    /// Removed from JWKS at this time (after every token it signed has expired).
    pub expires_at: UnixTime,
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Inserts unless a key for `(alg, epoch)` exists; returns true if this one was
    /// inserted.
    async fn insert_key_if_absent(&self, key: &SigningKeyRecord) -> StoreResult<bool>;
    /// Keys whose `expires_at` is after `now`, ordered by `alg`, then `epoch`.
    async fn list_keys(&self, now: UnixTime) -> StoreResult<Vec<SigningKeyRecord>>;
}

#[async_trait]
pub trait ThrottleStore: Send + Sync {
    /// Counts one attempt under `key` in a fixed window of `window_secs` and returns
    /// the count in the current window (1 for the first attempt of a new window).
    async fn hit(&self, key: &str, window_secs: i64, now: UnixTime) -> StoreResult<u32>;
    /// The count in the current window of `key` without counting anything (0 when
    /// there is none or it has ended).
    async fn current(&self, key: &str, now: UnixTime) -> StoreResult<u32>;
    /// Forgets `key` (after a successful login).
    async fn clear(&self, key: &str) -> StoreResult<()>;
}

/// An API key as stored: never the secret, only its SHA-256 hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Not a secret: how the owner, the admin API and the audit trail name the key.
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// SHA-256 hex of the whole secret (`sbk_…`); unique.
    pub secret_hash: SecretHash,
    /// The permissions the key was created with, sorted.
    pub scopes: Vec<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    /// Coarse: see [`ApiKeyStore::touch_api_key`].
    pub last_used_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
    /// The audit actor who created it (`user:ID`, `cli`).
    pub created_by: String,
}

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key; `Conflict` if its id or secret hash is taken. Fails if the
    /// user does not exist.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()>;
    /// The key whose secret hashes to `secret_hash`, whatever its state, until
    /// `purge_expired` removes it after its expiry.
    async fn find_api_key(&self, secret_hash: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// A user's keys (revoked and expired ones included until purged), oldest first.
    async fn list_user_api_keys(&self, user_id: &str) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Revokes the key `id` of `user_id`; false if there is no such key of that user
    /// or it was revoked already (the first revocation stands).
    async fn revoke_api_key(&self, user_id: &str, id: &str, now: UnixTime) -> StoreResult<bool>;
    /// Revokes every live key of a user; returns how many were newly revoked.
    async fn revoke_user_api_keys(&self, user_id: &str, now: UnixTime) -> StoreResult<u64>;
    /// Records a use at `now` unless one was recorded less than `coarseness` seconds
    /// before (so a busy key is not a write per request). True if it wrote.
    async fn touch_api_key(&self, id: &str, now: UnixTime, coarseness: i64) -> StoreResult<bool>;
}

/// One instance of something an app owns (`list` `42`), which resource grants are on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceRef {
    /// The kind of thing, as the app names it (`list`).
    pub resource_type: String,
    pub id: String,
}

/// Who holds a resource grant: a user, or every member of a managed group.
/// Ordered groups first, then users, each by id (the order listings page in; the
/// variants' order is that order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Holder {
    Group(String),
    User(String),
}

impl Holder {
    /// `user` or `group`: how the API and the audit name the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Holder::User(_) => "user",
            Holder::Group(_) => "group",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Holder::User(id) | Holder::Group(id) => id,
        }
    }
}

/// A role held on one resource. Never put in tokens (there can be millions): apps ask
/// `/access/v1/check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGrantRecord {
    pub resource: ResourceRef,
    pub holder: Holder,
    pub role: String,
    pub granted_at: UnixTime,
    /// The audit actor who granted it.
    pub granted_by: String,
}

/// What granting a resource role did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceGrantWrite {
    Added,
    AlreadyGranted,
    /// The user or group does not exist: nothing was written.
    NoSuchHolder,
}

/// A role a user holds on a resource, and how.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HeldResourceRole {
    pub role: String,
    /// The managed group (by name) it comes through; `None` for a grant to the user.
    pub via_group: Option<String>,
}

/// One resource of a user's, with the roles held on it (directly or through groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserResource {
    pub id: String,
    /// Sorted, without duplicates.
    pub roles: Vec<String>,
}

/// Where a page of a resource's grants starts: after this holder's grant of this role
/// (holders ordered groups first, then users, each by id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGrantCursor {
    pub holder: Holder,
    pub role: String,
}

#[async_trait]
pub trait ResourceGrantStore: Send + Sync {
    /// Records a grant unless the holder already has that role on that resource.
    async fn grant_resource_role(
        &self,
        grant: &ResourceGrantRecord,
    ) -> StoreResult<ResourceGrantWrite>;
    /// Removes a grant; false if there was none.
    async fn revoke_resource_role(
        &self,
        resource: &ResourceRef,
        holder: &Holder,
        role: &str,
    ) -> StoreResult<bool>;
    /// At most `limit` grants on one resource after `after`: groups first, then users,
    /// each by holder id, then role.
    async fn list_resource_grants(
        &self,
        resource: &ResourceRef,
        after: Option<&ResourceGrantCursor>,
        limit: u32,
    ) -> StoreResult<Vec<ResourceGrantRecord>>;
    /// The roles a user holds on one resource: granted to them, or to a managed group
    /// they are a member of now. Sorted. An index lookup, never a scan: this answers
    /// every access check.
    async fn user_resource_roles(
        &self,
        user_id: &str,
        resource: &ResourceRef,
    ) -> StoreResult<Vec<HeldResourceRole>>;
    /// At most `limit` resources of one type a user holds a role on (directly or
    /// through groups), by id after `after`, each with its roles.
    async fn list_user_resources(
        &self,
        user_id: &str,
        resource_type: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<UserResource>>;
}

/// A table column that holds values sealed by `secrets` (master-key rotation walks them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedColumn {
    /// `signing_keys.sealed_private_key`, by `kid`.
    SigningKeys,
    /// `identity_links.sealed_provider_data`, by `(provider_id, subject)`; links
    /// without provider data are skipped.
    ProviderData,
    /// `totp_enrolments.sealed_secret`, by user id.
    TotpSecrets,
}

/// The row a sealed value belongs to (its seal is bound to it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SealedRow {
    SigningKey {
        kid: String,
    },
    ProviderData {
        provider_id: String,
        subject: String,
    },
    TotpSecret {
        user_id: String,
    },
}

/// One sealed value as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub row: SealedRow,
    pub sealed: Vec<u8>,
}

/// Replaces `old` by `new` in `row`, only while the row still holds `old`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRewrite {
    pub row: SealedRow,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
}

#[async_trait]
pub trait SealedStore: Send + Sync {
    /// At most `limit` sealed values of `column`, ordered by row, after `after`.
    async fn list_sealed(
        &self,
        column: SealedColumn,
        after: Option<&SealedRow>,
        limit: u32,
    ) -> StoreResult<Vec<SealedValue>>;
    /// Applies the rewrites in one transaction; each one only where the row still
    /// holds its `old` value (a row written meanwhile keeps what was written).
    /// Returns how many rows changed.
    async fn rewrite_sealed(&self, rewrites: &[SealedRewrite]) -> StoreResult<u64>;
}

/// A back-channel logout notice to send: the client, the session (`sid`) and the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutNotice {
    pub client_id: String,
    pub sid: String,
    pub user_id: String,
}

/// A notice in the outbox, claimed by one sender until its lease ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutDelivery {
    pub notice: LogoutNotice,
    pub created_at: UnixTime,
    /// Attempts made before this claim.
    pub attempts: u32,
}

/// The outbox of back-channel logout notices: at most one row per `(client, sid)`.
#[async_trait]
pub trait LogoutOutbox: Send + Sync {
    /// Revokes a live session and, in the same transaction, queues `notices` (due at
    /// `now`). Returns false, queueing nothing, when the session was not live.
    async fn end_session(
        &self,
        id_hash: &str,
        now: UnixTime,
        notices: &[LogoutNotice],
    ) -> StoreResult<bool>;
    /// Claims at most `limit` due notices (`next_attempt_at <= now`) that no lease
    /// holds at `now`, for `owner` until `lease_until`. Two callers never get the same
    /// row while a lease runs.
    async fn claim_logout_deliveries(
        &self,
        owner: &str,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> StoreResult<Vec<LogoutDelivery>>;
    /// Removes a notice `owner` holds (delivered, or given up). False if the lease was
    /// lost.
    async fn finish_logout_delivery(
        &self,
        client_id: &str,
        sid: &str,
        owner: &str,
    ) -> StoreResult<bool>;
    /// Releases a notice `owner` holds after a failed attempt: `attempts` made so far,
    /// due again at `next_attempt_at`. False if the lease was lost.
    async fn defer_logout_delivery(
        &self,
        client_id: &str,
        sid: &str,
        owner: &str,
        attempts: u32,
        next_attempt_at: UnixTime,
    ) -> StoreResult<bool>;
}

/// A rendered email waiting to be sent: the recipient, the subject and both bodies.
/// It may hold a single-use link, so it is never logged and is removed once sent.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl std::fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bodies may carry a link that signs a person in: never printed.
        f.debug_struct("OutgoingMail")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// A mail in the outbox, claimed by one sender until its lease ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailDelivery {
    /// The outbox row's id (random, chosen by the caller that queued it).
    pub id: String,
    pub mail: OutgoingMail,
    pub created_at: UnixTime,
    /// Attempts made before this claim.
    pub attempts: u32,
}

/// The outbox of emails: written in the request that decides to send one, sent by a
/// background sender under a lease, so a request never waits for SMTP and a mail
/// survives a restart.
#[async_trait]
pub trait MailOutbox: Send + Sync {
    /// Queues `mail` under `id`, due at `now`.
    async fn queue_mail(&self, id: &str, mail: &OutgoingMail, now: UnixTime) -> StoreResult<()>;
    /// Claims at most `limit` due mails (`next_attempt_at <= now`) that no lease holds
    /// at `now`, for `owner` until `lease_until`, oldest first.
    async fn claim_mail_deliveries(
        &self,
        owner: &str,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> StoreResult<Vec<MailDelivery>>;
    /// Removes a mail `owner` holds (sent, or given up). False if the lease was lost.
    async fn finish_mail_delivery(&self, id: &str, owner: &str) -> StoreResult<bool>;
    /// Releases a mail `owner` holds after a failed attempt: `attempts` made so far,
    /// due again at `next_attempt_at`. False if the lease was lost.
    async fn defer_mail_delivery(
        &self,
        id: &str,
        owner: &str,
        attempts: u32,
        next_attempt_at: UnixTime,
    ) -> StoreResult<bool>;
}

/// What a single-use account link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountTokenPurpose {
    PasswordReset,
    /// Proves the address in the token's `detail` belongs to the user (a new
    /// account's address, or an email change's new one).
    VerifyEmail,
}

impl AccountTokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountTokenPurpose::PasswordReset => "password_reset",
            AccountTokenPurpose::VerifyEmail => "verify_email",
        }
    }
}

/// A single-use account link (password reset, email verification), kept by the
/// hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTokenRecord {
    pub token_hash: String,
    pub purpose: AccountTokenPurpose,
    pub user_id: String,
    /// What the link is about beyond its user: the address a `VerifyEmail` proves.
    pub detail: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A used account link: whose it was and its detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeemedToken {
    pub user_id: String,
    pub detail: Option<String>,
}

/// A self-service registration waiting for its confirmation link; no user exists
/// until the link is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRegistration {
    pub token_hash: String,
    /// The id the user will have.
    pub user_id: String,
    pub username: String,
    pub email: String,
    pub name: Option<String>,
    /// PHC string (argon2id), as `UserRecord::password_hash`.
    pub password_hash: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A `pending_registrations` row as the SQL backends read it back, in column order:
/// token_hash, user_id, username, email, name, password_hash, created_at, expires_at.
pub(crate) type PendingColumns = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    UnixTime,
    UnixTime,
);

impl From<PendingColumns> for PendingRegistration {
    fn from(row: PendingColumns) -> Self {
        let (token_hash, user_id, username, email, name, password_hash, created_at, expires_at) =
            row;
        PendingRegistration {
            token_hash,
            user_id,
            username,
            email,
            name,
            password_hash,
            created_at,
            expires_at,
        }
    }
}

impl PendingRegistration {
    /// The user a confirmed registration becomes at `now`: active, its email
    /// verified by the link.
    pub fn into_user(self, now: UnixTime) -> UserRecord {
        UserRecord {
            id: self.user_id,
            username: Some(self.username),
            email: Some(self.email),
            email_verified: true,
            name: self.name,
            given_name: None,
            family_name: None,
            picture: None,
            groups: Vec::new(),
            status: UserStatus::Active,
            password_hash: Some(self.password_hash),
            created_at: now,
            updated_at: now,
            last_login_at: None,
            revision: 1,
        }
    }
}

/// What using a registration link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// The user now exists.
    Created(Box<UserRecord>),
    /// Unknown, used or expired: nothing changed.
    Unknown,
    /// Another account took the username or verified email since; the link is used
    /// up and no user was made.
    Taken { what: &'static str },
}

/// Single-use account links.
#[async_trait]
pub trait AccountTokenStore: Send + Sync {
    /// Stores `token` and, in the same transaction, queues the mail that carries it
    /// (as [`MailOutbox::queue_mail`] with `mail_id`, due at `token.created_at`).
    async fn issue_account_token(
        &self,
        token: &AccountTokenRecord,
        mail_id: &str,
        mail: &OutgoingMail,
    ) -> StoreResult<()>;
    /// Uses up the token with this hash and purpose if it is unexpired at `now`
    /// (`expires_at > now`), and with it every other token of the same user and
    /// purpose. Returns its user; `None` (changing nothing) for an unknown, used or
    /// expired token. Two callers never both get the user.
    async fn redeem_account_token(
        &self,
        token_hash: &str,
        purpose: AccountTokenPurpose,
        now: UnixTime,
    ) -> StoreResult<Option<RedeemedToken>>;
    /// Stores a registration waiting for its link and, in the same transaction,
    /// queues the mail that carries the link (due at `registration.created_at`).
    async fn issue_registration(
        &self,
        registration: &PendingRegistration,
        mail_id: &str,
        mail: &OutgoingMail,
    ) -> StoreResult<()>;
    /// Uses up the registration whose link has this hash, if unexpired at `now`
    /// (`expires_at > now`), and creates its user ([`PendingRegistration::into_user`])
    /// in the same transaction. Two callers never both create it.
    async fn confirm_registration(
        &self,
        token_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Confirmation>;
}

/// A user's TOTP (RFC 6238) enrolment: pending until the person confirms it with a
/// code, then asked for at every sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpRecord {
    pub user_id: String,
    /// The shared secret, sealed by `secrets` (bound to the user id).
    pub sealed_secret: Vec<u8>,
    pub created_at: UnixTime,
    /// When the person confirmed it; `None` while pending.
    pub confirmed_at: Option<UnixTime>,
    /// The last time step a code was accepted for: that step and earlier ones are
    /// never accepted again (a code cannot be replayed within its window).
    pub last_step: Option<i64>,
}

/// TOTP enrolments and their single-use recovery codes (kept as hashes only).
#[async_trait]
pub trait MfaStore: Send + Sync {
    /// Stores a pending enrolment, replacing an earlier pending one. False (nothing
    /// written) when the user already has a confirmed enrolment. Fails if the user
    /// does not exist.
    async fn put_pending_totp(
        &self,
        user_id: &str,
        sealed_secret: &[u8],
        now: UnixTime,
    ) -> StoreResult<bool>;
    /// The user's enrolment, pending or confirmed.
    async fn get_totp(&self, user_id: &str) -> StoreResult<Option<TotpRecord>>;
    /// Confirms the pending enrolment that holds exactly `sealed_secret`, records
    /// `step` as used and replaces the recovery codes by `recovery_hashes`, in one
    /// transaction. False (nothing written) when there is no such pending enrolment.
    async fn confirm_totp(
        &self,
        user_id: &str,
        sealed_secret: &[u8],
        step: i64,
        recovery_hashes: &[String],
        now: UnixTime,
    ) -> StoreResult<bool>;
    /// Records `step` as used on a confirmed enrolment if it is later than the last
    /// step used. Of callers racing with one step exactly one gets true.
    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool>;
    /// Removes the enrolment (pending or confirmed) and every recovery code. False
    /// when there was none.
    async fn delete_totp(&self, user_id: &str) -> StoreResult<bool>;
    /// Replaces the recovery codes of a confirmed enrolment. False (nothing written)
    /// when the user has none confirmed.
    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[String],
        now: UnixTime,
    ) -> StoreResult<bool>;
    /// Uses up an unused recovery code of a confirmed enrolment. Of callers racing
    /// with one code exactly one gets true.
    async fn use_recovery_code(&self, user_id: &str, code_hash: &str) -> StoreResult<bool>;
    /// How many unused recovery codes the user has.
    async fn count_recovery_codes(&self, user_id: &str) -> StoreResult<u32>;
}

#[async_trait]
pub trait Maintenance: Send + Sync {
    /// Deletes expired auth requests, codes, refresh tokens, grants, sessions, signing
    /// keys, throttle windows, access-token denials, API keys, device codes and
    /// account tokens (`expires_at <= now`).
    /// Returns the number of rows removed.
    async fn purge_expired(&self, now: UnixTime) -> StoreResult<u64>;
}

/// Everything the broker persists.
pub trait Store:
    UserStore
    + GroupStore
    + RoleGrantStore
    + AuditStore
    + LoginStore
    + GrantStore
    + RevocationStore
    + SessionStore
    + KeyStore
    + ThrottleStore
    + ApiKeyStore
    + ResourceGrantStore
    + DeviceCodeStore
    + SealedStore
    + LogoutOutbox
    + MailOutbox
    + AccountTokenStore
    + MfaStore
    + Maintenance
    + ChangeFeed
    + std::fmt::Debug
{
}

impl<T> Store for T where
    T: UserStore
        + GroupStore
        + RoleGrantStore
        + AuditStore
        + LoginStore
        + GrantStore
        + RevocationStore
        + SessionStore
        + KeyStore
        + ThrottleStore
        + ApiKeyStore
        + ResourceGrantStore
        + DeviceCodeStore
        + SealedStore
        + LogoutOutbox
        + MailOutbox
        + AccountTokenStore
        + MfaStore
        + Maintenance
        + ChangeFeed
        + std::fmt::Debug
{
}

pub type SharedStore = Arc<dyn Store>;
