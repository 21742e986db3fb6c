//! Forgotten passwords of local accounts: a single-use link by email, and setting a
//! new password with it (which ends every session and grant of the user, through
//! [`set_password`](super::set_password), and is audited).

use super::policy::PolicyViolation;
use super::{IdentityError, set_password};
use crate::config::AccountPolicy;
use crate::email::{Mail, MailKind};
use crate::secrets;
use crate::store::{AccountTokenPurpose, AccountTokenRecord, SharedStore, UnixTime, UserStatus};

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(transparent)]
    Policy(#[from] PolicyViolation),
    #[error("the link is unknown, used or expired")]
    InvalidLink,
    #[error("hashing the password failed: {0}")]
    Hash(String),
    #[error("rendering the mail failed: {0}")]
    Mail(#[from] crate::email::MailError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
}

impl From<crate::store::StoreError> for ResetError {
    fn from(e: crate::store::StoreError) -> Self {
        ResetError::Identity(e.into())
    }
}

/// What a reset request needs to know about where it happens.
#[derive(Debug)]
pub struct ResetRequest<'a> {
    /// What the person typed: a username or a verified email.
    pub login: &'a str,
    /// The page the link opens, without the token.
    pub reset_page: &'a str,
    pub issuer: &'a str,
    /// Seconds the link works.
    pub lifetime: i64,
    pub now: UnixTime,
}

/// Queues a reset link for the account `login` names, when there is one that can
/// use it (active, with a password and a verified email). Answers the same either
/// way, so the caller cannot tell who has an account. Returns whether a mail was
/// queued (for the log, never for the page).
pub async fn request_reset(
    store: &SharedStore,
    mail: &Mail,
    req: &ResetRequest<'_>,
) -> Result<bool, ResetError> {
    let Some(user) = store.find_user_by_login(req.login.trim()).await? else {
        return Ok(false);
    };
    let email = match (&user.email, user.email_verified) {
        (Some(e), true) => e.clone(),
        // An unverified address may be anybody's: no link goes there.
        _ => return Ok(false),
    };
    if user.status != UserStatus::Active || user.password_hash.is_none() {
        return Ok(false);
    }
    let token = secrets::random_token()?;
    let record = AccountTokenRecord {
        token_hash: secrets::hash_secret(&token),
        purpose: AccountTokenPurpose::PasswordReset,
        user_id: user.id.clone(),
        detail: None,
        created_at: req.now,
        expires_at: req.now + req.lifetime,
    };
    let link = format!("{}?token={token}", req.reset_page);
    let name = user
        .name
        .clone()
        .or_else(|| user.username.clone())
        .unwrap_or_else(|| email.clone());
    let mail_id = secrets::random_id()?;
    let message = mail.compose(
        &mail_id,
        MailKind::PasswordReset,
        &email,
        minijinja::context! {
            name,
            issuer => req.issuer,
            minutes => (req.lifetime + 59) / 60,
            link,
        },
    )?;
    store
        .issue_account_token(&record, &mail_id, &message)
        .await?;
    mail.queued();
    Ok(true)
}

/// Uses up the link `token` and sets `password` for its user; every session and
/// refresh grant of the user ends. Returns the user id.
pub async fn reset_password(
    store: &SharedStore,
    policy: &AccountPolicy,
    token: &str,
    password: String,
    now: UnixTime,
) -> Result<String, ResetError> {
    policy.check_password(&password, &[])?;
    let user_id = store
        .redeem_account_token(
            &secrets::hash_secret(token),
            AccountTokenPurpose::PasswordReset,
            now,
        )
        .await?
        .ok_or(ResetError::InvalidLink)?
        .user_id;
    // argon2id off the async workers: it is slow on purpose.
    let hash = tokio::task::spawn_blocking(move || switchboard_local::hash_password(&password))
        .await
        .map_err(|e| ResetError::Hash(e.to_string()))?
        .map_err(|e| ResetError::Hash(e.to_string()))?;
    set_password(store, &user_id, &hash, "self:password_reset", now).await?;
    Ok(user_id)
}
