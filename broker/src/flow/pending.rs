//! [`PendingLogin`]: a login the broker waits on, from the moment it sends the browser
//! to the login pages until the login ends. One type for both of its purposes: signing
//! in for a client, or linking an identity to the signed-in account.
//!
//! The record lives in the store under the hash of a random id that travels in the
//! login URLs (`?req=`), bound to the browser that started it by the hash of its
//! binding cookie, and is consumed exactly once ([`PendingLogin::take`]).

use super::device::DeviceIntent;
use super::request::AuthorizationRequest;
use crate::secrets;
use crate::store::{AuthRequestRecord, StoreError, UnixTime};
use crate::web::{AppState, PageError, browser};
use actix_web::cookie::Cookie;
use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use switchboard_plugin_api::LoginPrompt;

/// What the stored form is. Rows without a version are the format of before
/// `PendingLogin` (an `AuthorizationRequest` with `binding_hash` and `link` inside).
const STORED_VERSION: u32 = 2;
const MAX_ID_LEN: usize = 64;

pub const EXPIRED: &str = "msg.expired";
const OTHER_BROWSER: &str = "msg.other_browser";

/// The account a login started from the account page acts on: whose, from which
/// session, and through which provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountIntent {
    pub user_id: String,
    pub session_hash: String,
    pub provider_id: String,
}

/// Why the login runs.
// A pending login lives for one request and is stored as JSON: the size of the sign-in
// variant costs nothing worth a box (and a box would change every match on it).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Sign in, then answer the client's authorization request.
    SignIn(AuthorizationRequest),
    /// Link the identity to the account of the session that started it.
    Link(AccountIntent),
    /// Authenticate the signed-in person again at their provider (forcing a fresh
    /// login upstream), renewing their session's authentication time.
    Reauthenticate(AccountIntent),
    /// Sign in to approve a device (RFC 8628), then return to the `/device` page.
    Device(DeviceIntent),
    /// The first factor passed; waiting for the second (TOTP or a recovery code),
    /// after which the login goes on with its purpose.
    SecondFactor(Box<SecondFactor>),
}

/// Who passed the first factor of a login, and how, while the second is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondFactor {
    pub user_id: String,
    pub provider_id: String,
    pub auth_time: UnixTime,
    /// The methods of the first factor (`pwd`, `fed`).
    pub amr: Vec<String>,
    /// What the login is for (never itself a second factor).
    pub then: Purpose,
}

impl Purpose {
    /// The authorization request a sign-in answers, if it is one.
    pub fn request(&self) -> Option<&AuthorizationRequest> {
        match self {
            Purpose::SignIn(request) => Some(request),
            Purpose::SecondFactor(step) => step.then.request(),
            Purpose::Link(_) | Purpose::Reauthenticate(_) | Purpose::Device(_) => None,
        }
    }
}

/// A login in progress, loaded for the browser that started it.
#[derive(Debug, Clone)]
pub struct PendingLogin {
    /// The id in the login URLs; only its hash is stored.
    pub id: String,
    /// This browser's binding value (its cookie proved it).
    pub binding: String,
    pub purpose: Purpose,
}

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("the pending login is unknown, expired or used")]
    Expired,
    #[error("the pending login was started in another browser")]
    OtherBrowser,
    #[error("the stored pending login is unreadable: {0}")]
    Unreadable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl From<FlowError> for PageError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Expired => PageError::bad_request(EXPIRED),
            FlowError::OtherBrowser => {
                tracing::warn!("login request used from another browser");
                PageError::bad_request(OTHER_BROWSER)
            }
            FlowError::Unreadable(detail) => {
                tracing::error!(%detail, "stored pending login is unreadable");
                PageError::bad_request(EXPIRED)
            }
            FlowError::Store(e) => {
                tracing::error!(error = %e, "the pending login store failed");
                PageError::internal()
            }
            FlowError::Internal(detail) => {
                tracing::error!(%detail, "starting a login failed");
                PageError::internal()
            }
        }
    }
}

/// The stored form of today.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    version: u32,
    binding_hash: String,
    purpose: Purpose,
}

/// The stored form of before, still read so logins in flight across an upgrade finish.
#[derive(Debug, Deserialize)]
struct StoredBefore {
    #[serde(flatten)]
    request: AuthorizationRequest,
    #[serde(default)]
    binding_hash: String,
    #[serde(default)]
    link: Option<AccountIntent>,
}

impl Stored {
    fn read(value: serde_json::Value) -> Result<Stored, FlowError> {
        let unreadable = |e: serde_json::Error| FlowError::Unreadable(e.to_string());
        if value.get("version").is_none() {
            let before: StoredBefore = serde_json::from_value(value).map_err(unreadable)?;
            let purpose = match before.link {
                Some(intent) => Purpose::Link(intent),
                None => Purpose::SignIn(before.request),
            };
            return Ok(Stored {
                version: STORED_VERSION,
                binding_hash: before.binding_hash,
                purpose,
            });
        }
        let stored: Stored = serde_json::from_value(value).map_err(unreadable)?;
        if stored.version != STORED_VERSION {
            return Err(FlowError::Unreadable(format!(
                "version {} is not {STORED_VERSION}",
                stored.version
            )));
        }
        Ok(stored)
    }
}

/// A login just started: where to send the browser, and its binding cookie if new.
#[derive(Debug)]
pub struct Started {
    pub login_url: String,
    pub binding_cookie: Option<Cookie<'static>>,
}

impl Started {
    /// The 303 to the login pages, setting the binding cookie when it is new.
    pub fn into_response(self) -> HttpResponse {
        let mut res = crate::web::see_other(&self.login_url);
        if let Some(cookie) = &self.binding_cookie
            && let Err(e) = res.add_cookie(cookie)
        {
            tracing::error!(error = %e, "setting the binding cookie failed");
        }
        res
    }
}

impl PendingLogin {
    /// Stores a new pending login bound to this browser.
    pub async fn start(
        app: &AppState,
        req: &HttpRequest,
        purpose: Purpose,
    ) -> Result<Started, PageError> {
        super::admit_start(app, req).await?;
        let (binding, binding_cookie) = browser::ensure_binding(req, app)?;
        let id = secrets::random_token().map_err(|e| FlowError::Internal(e.to_string()))?;
        let provider = match &purpose {
            Purpose::SignIn(request) => request.provider_hint.clone(),
            Purpose::Link(intent) | Purpose::Reauthenticate(intent) => {
                Some(intent.provider_id.clone())
            }
            Purpose::Device(_) | Purpose::SecondFactor(_) => None,
        };
        let second_factor = matches!(purpose, Purpose::SecondFactor(_));
        let stored = Stored {
            version: STORED_VERSION,
            binding_hash: secrets::hash_secret(&binding),
            purpose,
        };
        let now = app.clock.now();
        let record = AuthRequestRecord {
            id_hash: secrets::hash_secret(&id),
            request: serde_json::to_value(&stored)
                .map_err(|e| FlowError::Internal(e.to_string()))?,
            created_at: now,
            expires_at: now + app.config.login.request_lifetime,
        };
        app.store
            .put_auth_request(&record)
            .await
            .map_err(FlowError::from)?;
        let login_url = match provider {
            _ if second_factor => format!("/second-factor?req={id}"),
            Some(p) => format!("/login/{p}?req={id}"),
            None => format!("/login?req={id}"),
        };
        Ok(Started {
            login_url,
            binding_cookie,
        })
    }

    /// The pending login `id` names, if it is live and this browser started it.
    pub async fn load(
        app: &AppState,
        req: &HttpRequest,
        id: Option<&str>,
    ) -> Result<PendingLogin, FlowError> {
        let id = id
            .filter(|s| !s.is_empty() && s.len() <= MAX_ID_LEN)
            .ok_or(FlowError::Expired)?;
        let record = app
            .store
            .get_auth_request(&secrets::hash_secret(id), app.clock.now())
            .await?
            .ok_or(FlowError::Expired)?;
        let stored = Stored::read(record.request)?;
        if let Purpose::SignIn(request) = &stored.purpose {
            crate::web::i18n::prefer_ui_locales(
                app.pages.catalogues(),
                request.ui_locales.as_deref(),
            );
        }
        let binding = browser::binding(req, app)
            .filter(|b| {
                secrets::constant_time_eq(
                    secrets::hash_secret(b).as_bytes(),
                    stored.binding_hash.as_bytes(),
                )
            })
            .ok_or(FlowError::OtherBrowser)?;
        Ok(PendingLogin {
            id: id.to_string(),
            binding,
            purpose: stored.purpose,
        })
    }

    /// Consumes the pending login: of two submissions racing with it, one goes on.
    pub async fn take(&self, app: &AppState) -> Result<(), FlowError> {
        app.store
            .take_auth_request(&secrets::hash_secret(&self.id), app.clock.now())
            .await?
            .map(|_| ())
            .ok_or(FlowError::Expired)
    }

    /// The authorization request this login answers, if it signs in for a client.
    pub fn request(&self) -> Option<&AuthorizationRequest> {
        self.purpose.request()
    }

    /// What the upstream is asked: the app's `prompt` and `max_age`, or a forced
    /// login when the account page needs proof of the person now.
    pub fn freshness(&self) -> (LoginPrompt, Option<i64>) {
        match &self.purpose {
            Purpose::SignIn(request) => (
                LoginPrompt::new(request.prompt.login, request.prompt.select_account),
                request.max_age,
            ),
            Purpose::Link(_) | Purpose::Reauthenticate(_) => (LoginPrompt::new(true, false), None),
            Purpose::Device(_) | Purpose::SecondFactor(_) => (LoginPrompt::new(false, false), None),
        }
    }

    pub fn login_hint(&self) -> Option<&str> {
        self.request().and_then(|r| r.login_hint.as_deref())
    }

    /// What the login pages say it is for.
    /// The client's name, or what the login is for in the request's language.
    pub fn heading(&self, app: &AppState) -> String {
        heading_of(&self.purpose, app)
    }

    /// A way back to the client that tells it `error`, for a page that ends the login.
    pub fn back_to_app(&self, app: &AppState, error: &super::OAuthError) -> Option<String> {
        let reply = self.request()?.reply(&app.config).ok()?;
        Some(reply.error_url(error).to_string())
    }
}

fn heading_of(purpose: &Purpose, app: &AppState) -> String {
    match purpose {
        Purpose::SignIn(request) => app
            .config
            .clients
            .get(&request.client_id)
            .map(|c| c.name.clone())
            .unwrap_or_default(),
        Purpose::Link(_) => app.pages.text(&"msg.heading_link".into()),
        Purpose::Reauthenticate(_) => app.pages.text(&"msg.heading_reauthenticate".into()),
        Purpose::Device(_) => app.pages.text(&"msg.heading_device".into()),
        Purpose::SecondFactor(step) => heading_of(&step.then, app),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Prompt;

    fn request() -> AuthorizationRequest {
        AuthorizationRequest {
            client_id: "web-app".into(),
            redirect_uri: "https://app.example/cb".into(),
            state: Some("st".into()),
            nonce: Some("n".into()),
            scopes: vec!["openid".into()],
            code_challenge: None,
            prompt: Prompt::default(),
            max_age: None,
            login_hint: Some("ada".into()),
            hinted_subject: None,
            provider_hint: Some("local".into()),
            resource: None,
            acr_mfa: false,
            ui_locales: None,
        }
    }

    #[test]
    fn the_stored_form_round_trips_with_its_version() {
        let stored = Stored {
            version: STORED_VERSION,
            binding_hash: "bh".into(),
            purpose: Purpose::SignIn(request()),
        };
        let value = serde_json::to_value(&stored).unwrap();
        assert_eq!(value["version"], 2);
        let back = Stored::read(value).unwrap();
        assert_eq!(back.purpose, Purpose::SignIn(request()));
        assert_eq!(back.binding_hash, "bh");
    }

    /// A sign-in row exactly as the broker wrote it before this type existed.
    #[test]
    fn a_sign_in_row_of_the_previous_format_still_loads() {
        let row = serde_json::json!({
            "client_id": "web-app",
            "redirect_uri": "https://app.example/cb",
            "state": "st",
            "nonce": "n",
            "scopes": ["openid"],
            "code_challenge": null,
            "prompt": {"none": false, "login": false, "select_account": false},
            "max_age": null,
            "login_hint": "ada",
            "hinted_subject": null,
            "provider_hint": "local",
            "binding_hash": "bh",
            "link": null
        });
        let stored = Stored::read(row).unwrap();
        assert_eq!(stored.purpose, Purpose::SignIn(request()));
        assert_eq!(stored.binding_hash, "bh");
    }

    /// A link row of the previous format: an authorization request with an empty
    /// client and a `link` inside.
    #[test]
    fn a_link_row_of_the_previous_format_loads_as_a_link() {
        let row = serde_json::json!({
            "client_id": "",
            "redirect_uri": "",
            "state": null,
            "nonce": null,
            "scopes": [],
            "code_challenge": null,
            "prompt": {"none": false, "login": true, "select_account": false},
            "max_age": null,
            "login_hint": null,
            "hinted_subject": null,
            "provider_hint": "github",
            "binding_hash": "bh",
            "link": {"user_id": "u1", "session_hash": "sh", "provider_id": "github"}
        });
        let stored = Stored::read(row).unwrap();
        assert_eq!(
            stored.purpose,
            Purpose::Link(AccountIntent {
                user_id: "u1".into(),
                session_hash: "sh".into(),
                provider_id: "github".into(),
            })
        );
    }

    #[test]
    fn a_second_factor_step_round_trips_with_the_login_it_continues() {
        let step = SecondFactor {
            user_id: "u1".into(),
            provider_id: "local".into(),
            auth_time: 5,
            amr: vec!["pwd".into()],
            then: Purpose::SignIn(request()),
        };
        let stored = Stored {
            version: STORED_VERSION,
            binding_hash: "bh".into(),
            purpose: Purpose::SecondFactor(Box::new(step.clone())),
        };
        let back = Stored::read(serde_json::to_value(&stored).unwrap()).unwrap();
        assert_eq!(back.purpose, Purpose::SecondFactor(Box::new(step)));
        assert_eq!(
            back.purpose.request(),
            Some(&request()),
            "the client's request"
        );
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let row = serde_json::json!({"version": 3, "binding_hash": "bh", "purpose": {}});
        assert!(matches!(Stored::read(row), Err(FlowError::Unreadable(_))));
    }
}
