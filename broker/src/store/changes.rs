//! Telling caches that what a live token depends on has changed.
//!
//! Introspection, userinfo and the APIs that take bearer tokens cache what they learnt
//! about a live access token (see `tokens::live`). Such an answer must stop at once
//! when a write could end the token or change what is said about it: a revoked grant
//! or denied `jti`, a disabled, changed or deleted user, a role grant, a managed group
//! or a membership. [`WatchedStore`] wraps the real store and moves a [`ChangeEpoch`]
//! after every such write that changed something; a cached answer is good only for the
//! epoch it was read in.
//!
//! Other processes on the same database learn of it through [`ChangeFeed`]: PostgreSQL
//! sends a `NOTIFY` that every replica `LISTEN`s for; a store only one process uses has
//! nobody to tell. A lost notification connection moves the epoch too, since changes
//! may have been missed meanwhile; the cache's lifetime bounds what remains (a change
//! made while a replica was cut off from the database, or by the CLI on SQLite).
//!
//! Profile updates and identity links, written at every login, do not move the epoch:
//! they change claims, not whether a token lives, and show within the cache's lifetime.
//!
//! Standing between the broker and its store, it also times every call for the
//! metrics, by operation.

use super::{
    AccountTokenPurpose, AccountTokenRecord, AccountTokenStore, ApiKeyRecord, ApiKeyStore,
    AuditEvent, AuditFilter, AuditStore, AuthRequestRecord, CheckedGroupWrite, CheckedWrite,
    CodeRecord, Confirmation, DeviceCodeRecord, DeviceCodeStore, DevicePoll, GrantRecord,
    GrantStore, GroupRecord, GroupStore, HeldResourceRole, Holder, IdentityLink, KeyStore,
    LoginStore, LogoutDelivery, LogoutNotice, LogoutOutbox, MailDelivery, MailOutbox, Maintenance,
    Membership, MfaStore, OutgoingMail, PageCursor, PendingRegistration, RedeemOutcome,
    RedeemedToken, RefreshTokenRecord, ResourceGrantCursor, ResourceGrantRecord,
    ResourceGrantStore, ResourceGrantWrite, ResourceRef, RevocationStore, RoleGrantRecord,
    RoleGrantStore, RotateOutcome, SealedColumn, SealedRewrite, SealedRow, SealedStore,
    SealedValue, SessionRecord, SessionStore, SharedStore, SigningKeyRecord, StoreResult,
    ThrottleStore, TotpRecord, UnixTime, UserFilter, UserRecord, UserResource, UserStatus,
    UserStore,
};
use crate::metrics::Metrics;
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A counter that moves whenever something a live token depends on may have changed.
#[derive(Debug, Default)]
pub struct ChangeEpoch(AtomicU64);

impl ChangeEpoch {
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    pub fn advance(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// How the processes sharing one database tell each other about changes.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// Tells the other processes that something a live token depends on changed.
    async fn announce_change(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Calls `changed` whenever another process announces a change, and whenever
    /// announcements may have been missed; runs until the process ends. Returns at
    /// once for a store that has no channel between processes.
    async fn follow_changes(&self, changed: &(dyn Fn() + Send + Sync)) -> StoreResult<()> {
        let _ = changed;
        Ok(())
    }
}

/// The store as the broker uses it: every call goes to `inner`; the writes that can end
/// a token or change what is said about it also advance `epoch` and are announced.
#[derive(Debug)]
pub struct WatchedStore {
    inner: SharedStore,
    epoch: Arc<ChangeEpoch>,
    metrics: Arc<Metrics>,
}

impl WatchedStore {
    pub fn new(inner: SharedStore, epoch: Arc<ChangeEpoch>, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            epoch,
            metrics,
        }
    }

    /// Follows the other processes' announcements until the process ends (spawn it).
    pub async fn follow(inner: SharedStore, epoch: Arc<ChangeEpoch>) {
        let advance = move || epoch.advance();
        if let Err(e) = inner.follow_changes(&advance).await {
            tracing::warn!(error = %e, "following other replicas' changes stopped; cached token answers now expire by their lifetime only");
        }
    }

    /// After a write that changed something: local caches at once, others by the feed.
    async fn changed(&self) {
        self.epoch.advance();
        if let Err(e) = self.inner.announce_change().await {
            // The write itself stands; other replicas learn by their caches' lifetime.
            tracing::warn!(error = %e, "announcing a change to other replicas failed");
        }
    }

    async fn changed_if<T>(
        &self,
        result: StoreResult<T>,
        did: impl Fn(&T) -> bool,
    ) -> StoreResult<T> {
        if let Ok(value) = &result
            && did(value)
        {
            self.changed().await;
        }
        result
    }
}

/// Implements a store trait for [`WatchedStore`] by handing every call to the inner
/// store. Methods listed after `watch` advance the epoch when their result matches the
/// pattern after `if`: something changed.
macro_rules! forward {
    (
        $trait:ident {
            $( fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty; )*
        }
        $( watch {
            $( fn $wname:ident(&self $(, $warg:ident: $wty:ty)* $(,)?) -> $wret:ty,
                if { $changed:pat }; )*
        } )?
    ) => {
        #[async_trait]
        impl $trait for WatchedStore {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    let started = Instant::now();
                    let result = self.inner.$name($($arg),*).await;
                    self.metrics.store_call(stringify!($name), started.elapsed());
                    result
                }
            )*
            $( $(
                // `if { true }`: whatever it returned, it may have changed something.
                #[allow(clippy::redundant_pattern_matching)]
                async fn $wname(&self $(, $warg: $wty)*) -> $wret {
                    let started = Instant::now();
                    let result = self.inner.$wname($($warg),*).await;
                    self.metrics.store_call(stringify!($wname), started.elapsed());
                    self.changed_if(result, |r| matches!(r, $changed)).await
                }
            )* )?
        }
    };
}

forward!(UserStore {
    fn create_user(&self, user: &UserRecord) -> StoreResult<()>;
    fn get_user(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    fn find_user_by_login(&self, login: &str) -> StoreResult<Option<UserRecord>>;
    fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    fn list_users_page(&self, filter: &UserFilter, after: Option<&PageCursor>, limit: u32)
        -> StoreResult<Vec<UserRecord>>;
    fn update_profile(&self, user: &UserRecord) -> StoreResult<bool>;
    fn link_identity(&self, link: &IdentityLink) -> StoreResult<()>;
    fn find_identity(&self, provider_id: &str, subject: &str) -> StoreResult<Option<IdentityLink>>;
    fn list_user_identities(&self, user_id: &str) -> StoreResult<Vec<IdentityLink>>;
    fn update_identity(&self, link: &IdentityLink) -> StoreResult<bool>;
}
watch {
    fn update_user_checked(&self, user: &UserRecord, expected_revision: i64)
        -> StoreResult<CheckedWrite>,
        if { CheckedWrite::Written(_) };
    fn delete_user(&self, id: &str) -> StoreResult<bool>,
        if { true };
    fn set_user_status(&self, id: &str, status: UserStatus, now: UnixTime) -> StoreResult<bool>,
        if { true };
    fn set_password_hash(&self, id: &str, hash: &str, now: UnixTime) -> StoreResult<bool>,
        if { true };
    fn unlink_identity(&self, provider_id: &str, subject: &str) -> StoreResult<bool>,
        if { true };
});

forward!(GroupStore {
    fn create_group(&self, group: &GroupRecord) -> StoreResult<()>;
    fn get_group(&self, id: &str) -> StoreResult<Option<GroupRecord>>;
    fn list_groups_page(&self, after: Option<&PageCursor>, limit: u32)
        -> StoreResult<Vec<GroupRecord>>;
    fn list_user_groups(&self, user_id: &str) -> StoreResult<Vec<GroupRecord>>;
}
watch {
    fn update_group_checked(&self, group: &GroupRecord, expected_revision: i64)
        -> StoreResult<CheckedGroupWrite>,
        if { CheckedGroupWrite::Written(_) };
    fn delete_group(&self, id: &str) -> StoreResult<bool>,
        if { true };
    fn add_member(&self, group_id: &str, user_id: &str, now: UnixTime) -> StoreResult<Membership>,
        if { Membership::Added };
    fn remove_member(&self, group_id: &str, user_id: &str) -> StoreResult<bool>,
        if { true };
});

forward!(RoleGrantStore {
    fn list_role_grants(&self, user_id: &str) -> StoreResult<Vec<RoleGrantRecord>>;
}
watch {
    fn grant_role(&self, grant: &RoleGrantRecord) -> StoreResult<bool>,
        if { true };
    fn revoke_role(&self, user_id: &str, role: &str, client_id: Option<&str>) -> StoreResult<bool>,
        if { true };
});

forward!(GrantStore {
    fn create_grant_with_code(&self, grant: &GrantRecord, code: &CodeRecord) -> StoreResult<()>;
    fn redeem_code(&self, code_hash: &str, now: UnixTime) -> StoreResult<RedeemOutcome>;
    fn get_grant(&self, id: &str) -> StoreResult<Option<GrantRecord>>;
    fn list_session_grants(&self, session_id_hash: &str) -> StoreResult<Vec<GrantRecord>>;
    fn put_refresh_token(&self, token_hash: &str, grant_id: &str, expires_at: UnixTime,
        now: UnixTime) -> StoreResult<()>;
    fn refresh_token_grant(&self, token_hash: &str, now: UnixTime)
        -> StoreResult<Option<GrantRecord>>;
    fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>>;
}
watch {
    fn revoke_grant(&self, id: &str, now: UnixTime) -> StoreResult<bool>,
        if { true };
    fn revoke_user_grants(&self, user_id: &str, now: UnixTime) -> StoreResult<u64>,
        if { 1.. };
    // A reused refresh token ends its whole family.
    fn rotate_refresh(&self, old_hash: &str, new_hash: &str, new_expires_at: UnixTime,
        now: UnixTime, reuse_grace_secs: i64) -> StoreResult<RotateOutcome>,
        if { RotateOutcome::Reused { .. } };
});

forward!(RevocationStore {
    fn access_token_denied(&self, jti: &str) -> StoreResult<bool>;
}
watch {
    fn deny_access_token(&self, jti: &str, expires_at: UnixTime, now: UnixTime)
        -> StoreResult<bool>,
        if { true };
});

forward!(AuditStore {
    fn record_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    fn list_audit(&self, user_id: &str) -> StoreResult<Vec<AuditEvent>>;
    fn query_audit(&self, filter: &AuditFilter, after: Option<i64>, limit: u32)
        -> StoreResult<Vec<(i64, AuditEvent)>>;
});

forward!(LoginStore {
    fn put_auth_request(&self, rec: &AuthRequestRecord) -> StoreResult<()>;
    fn get_auth_request(&self, id_hash: &str, now: UnixTime)
        -> StoreResult<Option<AuthRequestRecord>>;
    fn take_auth_request(&self, id_hash: &str, now: UnixTime)
        -> StoreResult<Option<AuthRequestRecord>>;
});

forward!(SessionStore {
    fn create_session(&self, session: &SessionRecord) -> StoreResult<()>;
    fn get_session(&self, id_hash: &str, now: UnixTime) -> StoreResult<Option<SessionRecord>>;
    fn revoke_session(&self, id_hash: &str, now: UnixTime) -> StoreResult<bool>;
    fn revoke_user_sessions(&self, user_id: &str, now: UnixTime) -> StoreResult<u64>;
    fn list_user_sessions(&self, user_id: &str, now: UnixTime)
        -> StoreResult<Vec<SessionRecord>>;
});

forward!(KeyStore {
    fn insert_key_if_absent(&self, key: &SigningKeyRecord) -> StoreResult<bool>;
    fn list_keys(&self, now: UnixTime) -> StoreResult<Vec<SigningKeyRecord>>;
});

forward!(ThrottleStore {
    fn hit(&self, key: &str, window_secs: i64, now: UnixTime) -> StoreResult<u32>;
    fn current(&self, key: &str, now: UnixTime) -> StoreResult<u32>;
    fn clear(&self, key: &str) -> StoreResult<()>;
});

forward!(ApiKeyStore {
    fn create_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()>;
    fn find_api_key(&self, secret_hash: &str) -> StoreResult<Option<ApiKeyRecord>>;
    fn list_user_api_keys(&self, user_id: &str) -> StoreResult<Vec<ApiKeyRecord>>;
    fn revoke_api_key(&self, user_id: &str, id: &str, now: UnixTime) -> StoreResult<bool>;
    fn revoke_user_api_keys(&self, user_id: &str, now: UnixTime) -> StoreResult<u64>;
    fn touch_api_key(&self, id: &str, now: UnixTime, coarseness: i64) -> StoreResult<bool>;
});

forward!(ResourceGrantStore {
    fn grant_resource_role(&self, grant: &ResourceGrantRecord) -> StoreResult<ResourceGrantWrite>;
    fn revoke_resource_role(&self, resource: &ResourceRef, holder: &Holder, role: &str)
        -> StoreResult<bool>;
    fn list_resource_grants(&self, resource: &ResourceRef, after: Option<&ResourceGrantCursor>,
        limit: u32) -> StoreResult<Vec<ResourceGrantRecord>>;
    fn user_resource_roles(&self, user_id: &str, resource: &ResourceRef)
        -> StoreResult<Vec<HeldResourceRole>>;
    fn list_user_resources(&self, user_id: &str, resource_type: &str, after: Option<&str>,
        limit: u32) -> StoreResult<Vec<UserResource>>;
});

// Device codes end no token and change nothing a live token shows.
forward!(DeviceCodeStore {
    fn create_device_code(&self, record: &DeviceCodeRecord) -> StoreResult<()>;
    fn find_device_code(&self, user_code_hash: &str, now: UnixTime)
        -> StoreResult<Option<DeviceCodeRecord>>;
    fn approve_device_code(&self, user_code_hash: &str, grant: &GrantRecord, now: UnixTime)
        -> StoreResult<bool>;
    fn deny_device_code(&self, user_code_hash: &str, now: UnixTime) -> StoreResult<bool>;
    fn poll_device_code(&self, device_code_hash: &str, client_id: &str, now: UnixTime,
        slow_down_secs: i64) -> StoreResult<DevicePoll>;
});

forward!(SealedStore {
    fn list_sealed(&self, column: SealedColumn, after: Option<&SealedRow>, limit: u32)
        -> StoreResult<Vec<SealedValue>>;
    fn rewrite_sealed(&self, rewrites: &[SealedRewrite]) -> StoreResult<u64>;
});

// Ending a browser session does not end a token by itself (`revoke_session` is not
// watched either): the grants it ends are revoked through `revoke_grant`, which is.
forward!(LogoutOutbox {
    fn end_session(&self, id_hash: &str, now: UnixTime, notices: &[LogoutNotice])
        -> StoreResult<bool>;
    fn claim_logout_deliveries(&self, owner: &str, now: UnixTime, lease_until: UnixTime,
        limit: u32) -> StoreResult<Vec<LogoutDelivery>>;
    fn finish_logout_delivery(&self, client_id: &str, sid: &str, owner: &str)
        -> StoreResult<bool>;
    fn defer_logout_delivery(&self, client_id: &str, sid: &str, owner: &str, attempts: u32,
        next_attempt_at: UnixTime) -> StoreResult<bool>;
});

forward!(MailOutbox {
    fn queue_mail(&self, id: &str, mail: &OutgoingMail, now: UnixTime) -> StoreResult<()>;
    fn claim_mail_deliveries(&self, owner: &str, now: UnixTime, lease_until: UnixTime,
        limit: u32) -> StoreResult<Vec<MailDelivery>>;
    fn finish_mail_delivery(&self, id: &str, owner: &str) -> StoreResult<bool>;
    fn defer_mail_delivery(&self, id: &str, owner: &str, attempts: u32,
        next_attempt_at: UnixTime) -> StoreResult<bool>;
});

// Redeeming a link or confirming a registration (a new user) ends no token by itself: the password change that follows
// revokes the user's grants through `revoke_user_grants`, which is watched.
forward!(AccountTokenStore {
    fn issue_account_token(&self, token: &AccountTokenRecord, mail_id: &str,
        mail: &OutgoingMail) -> StoreResult<()>;
    fn redeem_account_token(&self, token_hash: &str, purpose: AccountTokenPurpose,
        now: UnixTime) -> StoreResult<Option<RedeemedToken>>;
    fn issue_registration(&self, registration: &PendingRegistration, mail_id: &str,
        mail: &OutgoingMail) -> StoreResult<()>;
    fn confirm_registration(&self, token_hash: &str, now: UnixTime)
        -> StoreResult<Confirmation>;
});

// A second factor ends no token and changes nothing a live token shows (a grant's
// `amr` is fixed when it is made).
forward!(MfaStore {
    fn put_pending_totp(&self, user_id: &str, sealed_secret: &[u8], now: UnixTime)
        -> StoreResult<bool>;
    fn get_totp(&self, user_id: &str) -> StoreResult<Option<TotpRecord>>;
    fn confirm_totp(&self, user_id: &str, sealed_secret: &[u8], step: i64,
        recovery_hashes: &[String], now: UnixTime) -> StoreResult<bool>;
    fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool>;
    fn delete_totp(&self, user_id: &str) -> StoreResult<bool>;
    fn replace_recovery_codes(&self, user_id: &str, hashes: &[String], now: UnixTime)
        -> StoreResult<bool>;
    fn use_recovery_code(&self, user_id: &str, code_hash: &str) -> StoreResult<bool>;
    fn count_recovery_codes(&self, user_id: &str) -> StoreResult<u32>;
});

forward!(Maintenance {
    fn purge_expired(&self, now: UnixTime) -> StoreResult<u64>;
});

forward!(ChangeFeed {
    fn announce_change(&self) -> StoreResult<()>;
    fn follow_changes(&self, changed: &(dyn Fn() + Send + Sync)) -> StoreResult<()>;
});
