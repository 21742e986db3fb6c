//! The SSO session: a signed random id in an HttpOnly cookie, the session itself in the
//! store (under the id's hash), so logout and revocation work and a restart loses
//! nothing. Also the pre-login "browser binding" cookie that ties an authorization
//! request and its CSRF token to the browser that started it.

use crate::secrets::{self, MasterKey, SecretsError};
use crate::store::{SessionRecord, SharedStore, StoreError, UnixTime, UserStatus};
use actix_web::cookie::{Cookie, SameSite};

const SESSION_PURPOSE: &str = "session";
const BINDING_PURPOSE: &str = "browser-binding";
const CSRF_PURPOSE: &str = "csrf";

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

/// Cookie names and attributes for this issuer.
#[derive(Debug, Clone)]
pub struct CookiePolicy {
    /// Plain http on loopback: no `Secure`, no `__Host-` prefix.
    pub insecure_loopback: bool,
    pub session_lifetime: i64,
}

impl CookiePolicy {
    pub fn session_name(&self) -> &'static str {
        if self.insecure_loopback {
            "sb_session"
        } else {
            "__Host-sb_session"
        }
    }

    pub fn binding_name(&self) -> &'static str {
        if self.insecure_loopback {
            "sb_browser"
        } else {
            "__Host-sb_browser"
        }
    }

    fn build(&self, name: &'static str, value: String, max_age: Option<i64>) -> Cookie<'static> {
        let mut c = Cookie::build(name, value)
            .path("/")
            .http_only(true)
            .secure(!self.insecure_loopback)
            .same_site(SameSite::Lax)
            .finish();
        if let Some(secs) = max_age {
            c.set_max_age(actix_web::cookie::time::Duration::seconds(secs));
        }
        c
    }

    pub fn session_cookie(&self, value: String) -> Cookie<'static> {
        self.build(self.session_name(), value, Some(self.session_lifetime))
    }

    pub fn binding_cookie(&self, value: String) -> Cookie<'static> {
        // A browser session cookie: it only has to outlive one login.
        self.build(self.binding_name(), value, None)
    }

    pub fn clear_session_cookie(&self) -> Cookie<'static> {
        self.build(self.session_name(), String::new(), Some(0))
    }
}

/// `id.mac`: the MAC keeps forged ids from ever reaching the store.
fn signed(master: &MasterKey, purpose: &str, id: &str) -> String {
    format!("{id}.{}", master.mac(purpose, id))
}

fn unsign<'a>(master: &MasterKey, purpose: &str, value: &'a str) -> Option<&'a str> {
    let (id, mac) = value.rsplit_once('.')?;
    (!id.is_empty() && master.verify_mac(purpose, id, mac)).then_some(id)
}

/// A new random browser-binding value for the cookie.
pub fn new_binding(master: &MasterKey) -> Result<(String, String), SecretsError> {
    let id = secrets::random_token()?;
    Ok((signed(master, BINDING_PURPOSE, &id), id))
}

/// The binding id from a cookie value, if its MAC is good.
pub fn read_binding(master: &MasterKey, cookie_value: &str) -> Option<String> {
    unsign(master, BINDING_PURPOSE, cookie_value).map(str::to_string)
}

/// CSRF token of a login form: bound to the authorization request and the browser.
pub fn csrf_token(master: &MasterKey, request_id: &str, binding: &str) -> String {
    master.mac(CSRF_PURPOSE, &format!("{request_id}:{binding}"))
}

pub fn check_csrf(master: &MasterKey, request_id: &str, binding: &str, token: &str) -> bool {
    master.verify_mac(CSRF_PURPOSE, &format!("{request_id}:{binding}"), token)
}

/// A live session together with the cookie value that names it.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    pub record: SessionRecord,
}

/// How a session's person authenticated: who, through which provider, when, and by
/// which methods (RFC 8176 `amr` values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    pub user_id: String,
    pub provider_id: String,
    pub auth_time: UnixTime,
    pub amr: Vec<String>,
}

/// Starts a new session (always a new id: no fixation) and returns the cookie value.
pub async fn start(
    store: &SharedStore,
    master: &MasterKey,
    auth: &Authentication,
    lifetime: i64,
    now: UnixTime,
) -> Result<(String, SessionRecord), SessionError> {
    let id = secrets::random_token()?;
    let record = SessionRecord {
        id_hash: secrets::hash_secret(&id),
        user_id: auth.user_id.clone(),
        provider_id: auth.provider_id.clone(),
        auth_time: auth.auth_time,
        created_at: now,
        expires_at: now + lifetime,
        revoked_at: None,
        amr: auth.amr.clone(),
    };
    store.create_session(&record).await?;
    Ok((signed(master, SESSION_PURPOSE, &id), record))
}

/// The live session a cookie names, if its MAC is good, it is neither expired nor
/// revoked, and its user is still active.
pub async fn current(
    store: &SharedStore,
    master: &MasterKey,
    cookie_value: Option<&str>,
    now: UnixTime,
) -> Result<Option<ActiveSession>, SessionError> {
    let Some(id) = cookie_value.and_then(|v| unsign(master, SESSION_PURPOSE, v)) else {
        return Ok(None);
    };
    let Some(record) = store.get_session(&secrets::hash_secret(id), now).await? else {
        return Ok(None);
    };
    match store.get_user(&record.user_id).await? {
        Some(user) if user.status == UserStatus::Active => Ok(Some(ActiveSession { record })),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_bytes(&[3u8; 32]).unwrap()
    }

    #[test]
    fn signed_values_round_trip_and_forgeries_fail() {
        let m = master();
        let v = signed(&m, SESSION_PURPOSE, "abc");
        assert_eq!(unsign(&m, SESSION_PURPOSE, &v), Some("abc"));
        assert_eq!(unsign(&m, BINDING_PURPOSE, &v), None, "purpose is bound");
        assert_eq!(unsign(&m, SESSION_PURPOSE, "abc.AAAA"), None);
        assert_eq!(unsign(&m, SESSION_PURPOSE, "no-dot"), None);
    }

    #[test]
    fn csrf_is_bound_to_request_and_browser() {
        let m = master();
        let t = csrf_token(&m, "req1", "browserA");
        assert!(check_csrf(&m, "req1", "browserA", &t));
        assert!(!check_csrf(&m, "req2", "browserA", &t));
        assert!(!check_csrf(&m, "req1", "browserB", &t));
        assert!(!check_csrf(&m, "req1", "browserA", ""));
    }

    #[test]
    fn cookies_are_secure_with_host_prefix_outside_loopback() {
        let p = CookiePolicy {
            insecure_loopback: false,
            session_lifetime: 60,
        };
        let c = p.session_cookie("v".into());
        assert_eq!(c.name(), "__Host-sb_session");
        assert_eq!(c.secure(), Some(true));
        assert_eq!(c.http_only(), Some(true));
        assert_eq!(c.same_site(), Some(SameSite::Lax));
        let local = CookiePolicy {
            insecure_loopback: true,
            session_lifetime: 60,
        };
        assert_eq!(local.session_cookie("v".into()).secure(), Some(false));
    }
}
