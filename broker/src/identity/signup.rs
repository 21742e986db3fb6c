//! Self-service accounts of the local provider: registration (confirmed by a mailed
//! link, or active at once with `auto_activate`), verifying an email address, and a
//! person changing their own email or password.
//!
//! A registration answers the same whether or not its address already has an
//! account: that address's owner gets a mail saying so instead of a link, so the
//! form cannot be used to learn who has an account. A username, which shows in
//! tokens and is chosen, not proven, is reported as taken.

use super::{IdentityError, audit, update_user};
use crate::config::AccountPolicy;
use crate::email::{Mail, MailKind};
use crate::identity::policy::PolicyViolation;
use crate::secrets;
use crate::store::{
    AccountTokenPurpose, AccountTokenRecord, Confirmation, LogoutNotice, PendingRegistration,
    SharedStore, StoreError, UnixTime, UserRecord, UserStatus,
};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error(transparent)]
    Policy(#[from] PolicyViolation),
    #[error("the username is taken")]
    UsernameTaken,
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("too many wrong passwords; wait a few minutes")]
    Throttled,
    #[error("this is already the account's verified email")]
    SameEmail,
    #[error("the link is unknown, used or expired")]
    InvalidLink,
    #[error("another account took the {0} meanwhile")]
    Taken(&'static str),
    #[error("hashing the password failed: {0}")]
    Hash(String),
    #[error("no [email] section: confirmation links cannot be sent")]
    NoMail,
    #[error("rendering the mail failed: {0}")]
    Mail(#[from] crate::email::MailError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
}

impl From<StoreError> for SignupError {
    fn from(e: StoreError) -> Self {
        SignupError::Identity(e.into())
    }
}

/// Where the mails' links point and for how long they work.
#[derive(Debug, Clone, Copy)]
pub struct Links<'a> {
    pub issuer: &'a str,
    /// The page that takes the token (`?token=` is appended).
    pub page: &'a str,
    /// Seconds a link works.
    pub lifetime: i64,
}

/// What a person typed into the registration form.
#[derive(Debug)]
pub struct NewAccount<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub password: String,
}

/// What a registration did (for the page; both answers look alike to a person
/// whose address is taken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// A confirmation link (or an "already registered" notice) is on its way.
    MailSent,
    /// `auto_activate`: the account exists and may sign in; `verification_sent`
    /// when a link to verify its address is on its way.
    Active { verification_sent: bool },
}

/// Registers `account` under `policy`. With `auto_activate` the user exists at once
/// (its email unverified); otherwise only a pending registration and its link.
pub async fn register(
    store: &SharedStore,
    mail: Option<&Mail>,
    policy: &AccountPolicy,
    account: NewAccount<'_>,
    auto_activate: bool,
    links: Links<'_>,
    now: UnixTime,
) -> Result<Registered, SignupError> {
    let username = account.username.trim();
    let email = account.email.trim();
    let name = account.name.map(str::trim).filter(|n| !n.is_empty());
    policy.check_username(username)?;
    policy.check_email(email)?;
    let inputs = [username, email, name.unwrap_or_default()];
    policy.check_password(&account.password, &inputs)?;
    if store.find_user_by_login(username).await?.is_some() {
        return Err(SignupError::UsernameTaken);
    }
    let owner = store
        .find_user_by_login(email)
        .await?
        .filter(|u| u.email_verified && same_address(u.email.as_deref(), email));
    let hash = hash_off_thread(account.password).await?;
    let greeting = name.unwrap_or(username);
    if let Some(owner) = &owner
        && let Some(mail) = mail
    {
        tell_owner(store, mail, owner, email, links.issuer, now).await?;
    }
    if auto_activate {
        let user = UserRecord {
            id: secrets::random_id()?,
            username: Some(username.to_string()),
            email: Some(email.to_string()),
            email_verified: false,
            name: name.map(str::to_string),
            given_name: None,
            family_name: None,
            picture: None,
            groups: Vec::new(),
            status: UserStatus::Active,
            password_hash: Some(hash),
            created_at: now,
            updated_at: now,
            last_login_at: None,
            revision: 1,
        };
        match store.create_user(&user).await {
            Ok(()) => {}
            Err(StoreError::Conflict { what: "username" }) => {
                return Err(SignupError::UsernameTaken);
            }
            Err(e) => return Err(e.into()),
        }
        audit(
            store,
            &user.id,
            "self:registration",
            "user_registered",
            json!({ "username": username, "confirmed": false }),
            now,
        )
        .await?;
        let verification_sent = match mail {
            Some(mail) => {
                // The address of another account's owner cannot become this one's.
                if owner.is_none() {
                    send_verification(store, mail, &user, email, greeting, links, now).await?;
                }
                true
            }
            None => false,
        };
        return Ok(Registered::Active { verification_sent });
    }
    let Some(mail) = mail else {
        // Config validation makes confirmation without mail impossible.
        return Err(SignupError::NoMail);
    };
    if owner.is_some() {
        return Ok(Registered::MailSent);
    }
    let token = secrets::random_token()?;
    let registration = PendingRegistration {
        token_hash: secrets::hash_secret(&token),
        user_id: secrets::random_id()?,
        username: username.to_string(),
        email: email.to_string(),
        name: name.map(str::to_string),
        password_hash: hash,
        created_at: now,
        expires_at: now + links.lifetime,
    };
    let mail_id = secrets::random_id()?;
    let message = mail.compose(
        &mail_id,
        MailKind::ConfirmRegistration,
        email,
        minijinja::context! {
            name => greeting,
            issuer => links.issuer,
            hours => hours(links.lifetime),
            link => format!("{}?token={token}", links.page),
        },
    )?;
    store
        .issue_registration(&registration, &mail_id, &message)
        .await?;
    mail.queued();
    Ok(Registered::MailSent)
}

/// Uses a registration link: the account now exists, its email verified.
pub async fn confirm_registration(
    store: &SharedStore,
    token: &str,
    now: UnixTime,
) -> Result<UserRecord, SignupError> {
    match store
        .confirm_registration(&secrets::hash_secret(token), now)
        .await?
    {
        Confirmation::Created(user) => {
            audit(
                store,
                &user.id,
                "self:registration",
                "user_registered",
                json!({ "username": user.username, "confirmed": true }),
                now,
            )
            .await?;
            Ok(*user)
        }
        Confirmation::Unknown => Err(SignupError::InvalidLink),
        Confirmation::Taken { what } => Err(SignupError::Taken(what)),
    }
}

/// Starts a change of `user`'s email to `new_email`: a link to the new address,
/// which counts only once it is used. When another account owns the address, that
/// owner is told instead; the person sees the same either way.
pub async fn request_email_change(
    store: &SharedStore,
    mail: &Mail,
    policy: &AccountPolicy,
    user: &UserRecord,
    new_email: &str,
    links: Links<'_>,
    now: UnixTime,
) -> Result<(), SignupError> {
    let new_email = new_email.trim();
    policy.check_email(new_email)?;
    if user.email_verified && same_address(user.email.as_deref(), new_email) {
        return Err(SignupError::SameEmail);
    }
    let owner = store
        .find_user_by_login(new_email)
        .await?
        .filter(|u| u.email_verified && same_address(u.email.as_deref(), new_email));
    if let Some(owner) = owner {
        if owner.id != user.id {
            tell_owner(store, mail, &owner, new_email, links.issuer, now).await?;
        }
        return Ok(());
    }
    let greeting = greeting(user);
    send_verification(store, mail, user, new_email, &greeting, links, now).await
}

/// Uses an email link: the address it was sent to becomes the user's verified
/// email (the old address, if verified, is told).
pub async fn verify_email(
    store: &SharedStore,
    mail: Option<&Mail>,
    token: &str,
    issuer: &str,
    now: UnixTime,
) -> Result<UserRecord, SignupError> {
    let redeemed = store
        .redeem_account_token(
            &secrets::hash_secret(token),
            AccountTokenPurpose::VerifyEmail,
            now,
        )
        .await?
        .ok_or(SignupError::InvalidLink)?;
    let address = redeemed.detail.ok_or(SignupError::InvalidLink)?;
    let before = store
        .get_user(&redeemed.user_id)
        .await?
        .ok_or(SignupError::InvalidLink)?;
    let edited = UserRecord {
        email: Some(address.clone()),
        email_verified: true,
        ..before.clone()
    };
    let written = match update_user(store, &before, &edited, "self:email", now).await {
        Ok(u) => u,
        Err(IdentityError::Taken(what)) => return Err(SignupError::Taken(what)),
        Err(e) => return Err(e.into()),
    };
    if let (Some(mail), Some(old)) = (mail, before.email.as_deref())
        && before.email_verified
        && !same_address(Some(old), &address)
    {
        let mail_id = secrets::random_id()?;
        let message = mail.compose(
            &mail_id,
            MailKind::EmailChanged,
            old,
            minijinja::context! { name => greeting(&written), issuer, email => &address },
        )?;
        store.queue_mail(&mail_id, &message, now).await?;
        mail.queued();
    }
    Ok(written)
}

/// Failed "current password" checks a user may make per window before changes
/// are refused for a while.
const MAX_WRONG_PASSWORDS: u32 = 5;
const WRONG_PASSWORD_WINDOW: i64 = 300;

/// What changing a password needs besides the new one.
#[derive(Debug)]
pub struct PasswordChange<'a> {
    /// The current password; `None` is accepted only with `recent_login`.
    pub current: Option<String>,
    /// The session's login is recent enough to stand in for the current password.
    pub recent_login: bool,
    /// The session that asked, which stays signed in.
    pub keep_session: &'a str,
    pub new_password: String,
}

/// Sets a new password for `user` (the current one, or a recent login, proves it is
/// them), under `policy`; ends every other session and every grant of the user.
pub async fn change_password(
    store: &SharedStore,
    policy: &AccountPolicy,
    user: &UserRecord,
    change: PasswordChange<'_>,
    now: UnixTime,
) -> Result<(), SignupError> {
    let inputs = [
        user.username.as_deref().unwrap_or_default(),
        user.email.as_deref().unwrap_or_default(),
        user.name.as_deref().unwrap_or_default(),
    ];
    policy.check_password(&change.new_password, &inputs)?;
    let stored = user.password_hash.clone();
    let proven = match (change.current, stored) {
        (Some(current), Some(hash)) if !current.is_empty() => {
            let throttle = format!("pwchange:{}", user.id);
            if store.current(&throttle, now).await? >= MAX_WRONG_PASSWORDS {
                return Err(SignupError::Throttled);
            }
            let ok = tokio::task::spawn_blocking(move || {
                switchboard_local::verify_password(&current, &hash)
            })
            .await
            .map_err(|e| SignupError::Hash(e.to_string()))?;
            if !ok {
                store.hit(&throttle, WRONG_PASSWORD_WINDOW, now).await?;
            }
            ok
        }
        _ => change.recent_login,
    };
    if !proven {
        return Err(SignupError::WrongPassword);
    }
    let hash = hash_off_thread(change.new_password).await?;
    if !store.set_password_hash(&user.id, &hash, now).await? {
        return Err(IdentityError::NoSuchUser.into());
    }
    let mut ended = 0;
    for session in store.list_user_sessions(&user.id, now).await? {
        if session.id_hash == change.keep_session {
            continue;
        }
        // Each app of the session hears of its end (back-channel logout; the sender
        // drops the notices of apps that take none).
        let mut notices: Vec<LogoutNotice> = Vec::new();
        for grant in store.list_session_grants(&session.id_hash).await? {
            if !notices.iter().any(|n| n.client_id == grant.client_id) {
                notices.push(LogoutNotice {
                    client_id: grant.client_id,
                    sid: session.id_hash.clone(),
                    user_id: user.id.clone(),
                });
            }
        }
        if store.end_session(&session.id_hash, now, &notices).await? {
            ended += 1;
        }
    }
    let grants = store.revoke_user_grants(&user.id, now).await?;
    audit(
        store,
        &user.id,
        "self:account",
        "password_changed",
        json!({ "other_sessions_ended": ended, "grants_ended": grants }),
        now,
    )
    .await?;
    Ok(())
}

/// Queues a link that verifies `address` for `user`.
async fn send_verification(
    store: &SharedStore,
    mail: &Mail,
    user: &UserRecord,
    address: &str,
    greeting: &str,
    links: Links<'_>,
    now: UnixTime,
) -> Result<(), SignupError> {
    let token = secrets::random_token()?;
    let record = AccountTokenRecord {
        token_hash: secrets::hash_secret(&token),
        purpose: AccountTokenPurpose::VerifyEmail,
        user_id: user.id.clone(),
        detail: Some(address.to_string()),
        created_at: now,
        expires_at: now + links.lifetime,
    };
    let mail_id = secrets::random_id()?;
    let message = mail.compose(
        &mail_id,
        MailKind::VerifyEmail,
        address,
        minijinja::context! {
            name => greeting,
            issuer => links.issuer,
            email => address,
            hours => hours(links.lifetime),
            link => format!("{}?token={token}", links.page),
        },
    )?;
    store
        .issue_account_token(&record, &mail_id, &message)
        .await?;
    mail.queued();
    Ok(())
}

/// Tells the owner of `address` that someone tried to use it for another account.
async fn tell_owner(
    store: &SharedStore,
    mail: &Mail,
    owner: &UserRecord,
    address: &str,
    issuer: &str,
    now: UnixTime,
) -> Result<(), SignupError> {
    let mail_id = secrets::random_id()?;
    let message = mail.compose(
        &mail_id,
        MailKind::AlreadyRegistered,
        address,
        minijinja::context! { name => greeting(owner), issuer },
    )?;
    store.queue_mail(&mail_id, &message, now).await?;
    mail.queued();
    Ok(())
}

fn greeting(user: &UserRecord) -> String {
    user.name
        .clone()
        .or_else(|| user.username.clone())
        .or_else(|| user.email.clone())
        .unwrap_or_default()
}

fn same_address(a: Option<&str>, b: &str) -> bool {
    a.is_some_and(|a| a.eq_ignore_ascii_case(b))
}

fn hours(seconds: i64) -> i64 {
    (seconds + 3599) / 3600
}

/// argon2id off the async workers: it is slow on purpose.
async fn hash_off_thread(password: String) -> Result<String, SignupError> {
    tokio::task::spawn_blocking(move || switchboard_local::hash_password(&password))
        .await
        .map_err(|e| SignupError::Hash(e.to_string()))?
        .map_err(|e| SignupError::Hash(e.to_string()))
}
