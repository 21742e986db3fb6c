//! From a provider's `Identity` to Switchboard's own user, split by concern:
//!
//! - `resolve`: a login to a user (find the linked user, link by verified email, or
//!   create one; apply the profile; refresh it from the provider),
//! - `links`: the stored identity links (link and unlink from the account page, read
//!   a linked identity, seal and open the provider data a link keeps),
//! - `lifecycle`: the user lifecycle whose side effects (revoking sessions and
//!   grants) must never be forgotten by a caller, and the store as the local
//!   provider's account directory,
//! - `access`: roles and grants, computed by [`crate::roles`] from the stored identity
//!   and direct grants, and the audited granting and revoking of roles,
//! - `api_keys`: people's API keys, made, verified and revoked (audited),
//! - `resources`: roles held on one resource, granted (audited) and decided on,
//! - `policy`: what usernames, emails, passwords and group names may be,
//! - `reset` and `signup`: what people do to their own local accounts (forgotten
//!   passwords; registration, email verification and change, password change).
//! - `mfa`: the second factor (TOTP and recovery codes): set up, checked, removed.
//!
//! This module keeps the error they share and re-exports their API, so callers use
//! `crate::identity::X` whatever file `X` lives in.

mod access;
pub mod api_keys;
pub mod groups;
mod lifecycle;
mod links;
pub mod mfa;
pub mod policy;
pub mod reset;
mod resolve;
pub mod resources;
pub mod signup;
#[cfg(test)]
mod test_support;

pub use access::{
    access_for, current_access, explain_user, grant_access, grant_role, machine_access,
    revoke_role, wants_access, with_managed_groups,
};
pub use lifecycle::{
    NewLocalUser, StoreDirectory, add_local_user, delete_user, disable_user, enable_user,
    end_sessions, set_password, update_user,
};
pub use links::{LINK_FORMAT, LINK_TABLE, link_to_user, linked_identity, unlink_from_user};
pub use resolve::{namespaced_groups, refresh_from_provider, resolve_login};

use crate::secrets;
use crate::store::StoreError;
use switchboard_plugin_api::ProviderError;

/// Records what `actor` did to `subject` (a user id, or `group:ID`).
async fn audit(
    store: &crate::store::SharedStore,
    subject: &str,
    actor: &str,
    kind: &str,
    detail: serde_json::Value,
    now: crate::store::UnixTime,
) -> Result<(), IdentityError> {
    store
        .record_audit(&crate::store::AuditEvent {
            user_id: subject.to_string(),
            actor: Some(actor.to_string()),
            kind: kind.to_string(),
            detail,
            at: now,
        })
        .await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the account is disabled")]
    Disabled,
    /// An operator's new user collides with another account (`broker user add`); a
    /// login never gets this, it gives way instead (see `resolve`).
    #[error("another account already uses {0}")]
    Taken(&'static str),
    #[error("no such user")]
    NoSuchUser,
    #[error("no such group")]
    NoSuchGroup,
    #[error("{0}")]
    BadGroup(String),
    #[error("the user was changed since it was read")]
    Stale,
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
    /// A request field that names nothing valid (the admin API reports the field).
    #[error("{field}: {why}")]
    BadInput { field: &'static str, why: String },
    #[error("role grant refused: {0}")]
    BadRoleGrant(String),
    #[error("this identity belongs to another account")]
    LinkedElsewhere,
    #[error("the account already has an identity of provider {0}")]
    ProviderAlreadyLinked(String),
    #[error("unlinking would leave the account with no way to sign in")]
    LastWayIn,
    #[error("provider {0} cannot re-check this person and their last login there is too old")]
    RecheckOverdue(String),
}
