//! The device authorization grant (RFC 8628): login for a CLI on a machine without
//! a browser. The person opens the verification URL on any device, logs in there and
//! enters the user code; the CLI polls the token endpoint meanwhile.

use super::{LoginError, NativeLogin, token_request, verify_id_token};
use crate::error::{FetchError, TokenError};
use crate::http;
use crate::issuer::Metadata;
use serde::Deserialize;
use std::time::{Duration, Instant};
use url::Url;

/// The grant type a device polls with.
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// How much `slow_down` adds to the interval (RFC 8628 §3.5).
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// What the person is asked to do, handed to
/// [`on_device_prompt`](NativeLogin::on_device_prompt).
///
/// ```
/// use std::sync::Arc;
/// use switchboard_client::Issuer;
/// use switchboard_client::native::{DevicePrompt, MemoryStore, NativeLogin};
/// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", MemoryStore::default())
///     .on_device_prompt(Arc::new(|p: &DevicePrompt| {
///         match &p.verification_uri_complete {
///             Some(link) => eprintln!("Open {link}"),
///             None => eprintln!("Open {} and enter {}", p.verification_uri, p.user_code),
///         }
///     }));
/// # let _ = login;
/// # Ok::<(), switchboard_client::FetchError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DevicePrompt {
    /// The code to enter on the verification page.
    pub user_code: String,
    /// The page to open.
    pub verification_uri: Url,
    /// The page with the code filled in, when the broker offers it.
    pub verification_uri_complete: Option<Url>,
    /// How long the code is good for.
    pub expires_in: Duration,
}

#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
}

impl NativeLogin {
    /// Logs in with the device authorization grant: shows the person where to go and
    /// which code to enter (see [`NativeLogin::on_device_prompt`]; by default printed to
    /// stderr, and the page opened in the system browser where one is set), then
    /// polls until they have approved, honouring `interval` and `slow_down`, for at
    /// most the code's lifetime and the login timeout. The tokens are stored.
    ///
    /// The client needs the grant `urn:ietf:params:oauth:grant-type:device_code` in
    /// the broker's config.
    ///
    /// ```no_run
    /// use switchboard_client::Issuer;
    /// use switchboard_client::native::{FileStore, NativeLogin};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", FileStore::for_app("example-cli")?);
    /// // Prints "To log in, visit http://127.0.0.1:5556/device and enter the code ABCD-EFGH".
    /// let session = login.device_login().await?;
    /// let token = session.access_token().await?;
    /// # let _ = token;
    /// # Ok(()) }
    /// ```
    pub async fn device_login(&self) -> Result<super::Session, LoginError> {
        let metadata = self.issuer.metadata().await?;
        let url = Metadata::endpoint(
            &metadata.device_authorization_endpoint,
            "device_authorization_endpoint",
        )?;
        let scope = self.scopes.join(" ");
        let request = self
            .issuer
            .http()
            .post(url)
            .form(&[("client_id", self.client_id.as_str()), ("scope", &scope)]);
        let (status, body) = http::send(url, request).await?;
        if status != 200 {
            #[derive(Deserialize)]
            struct Refusal {
                error: String,
            }
            return match serde_json::from_slice::<Refusal>(&body) {
                Ok(r) if (400..500).contains(&status) => {
                    Err(LoginError::Refused { error: r.error })
                }
                _ => Err(FetchError::Status {
                    url: url.to_string(),
                    status,
                }
                .into()),
            };
        }
        let grant: DeviceAuthorization = http::parse_json(url, &body)?;
        let bad_url = |u: &str| FetchError::BadUrl {
            url: u.to_string(),
            reason: "not a URL".into(),
        };
        let prompt = DevicePrompt {
            user_code: grant.user_code.clone(),
            verification_uri: Url::parse(&grant.verification_uri)
                .map_err(|_| bad_url(&grant.verification_uri))?,
            verification_uri_complete: grant
                .verification_uri_complete
                .as_deref()
                .and_then(|u| Url::parse(u).ok()),
            expires_in: Duration::from_secs(grant.expires_in),
        };
        self.show_device_prompt(&prompt);

        let token_endpoint = Metadata::endpoint(&metadata.token_endpoint, "token_endpoint")?;
        let deadline = Instant::now() + prompt.expires_in.min(self.timeout);
        let mut interval = Duration::from_secs(grant.interval.unwrap_or(5).max(1));
        loop {
            if Instant::now() + interval > deadline {
                return Err(LoginError::TimedOut);
            }
            tokio::time::sleep(interval).await;
            let answer = token_request(
                &self.issuer,
                token_endpoint,
                &[
                    ("grant_type", DEVICE_CODE_GRANT),
                    ("device_code", &grant.device_code),
                    ("client_id", &self.client_id),
                ],
            )
            .await?;
            let reply = match answer {
                Ok(reply) => reply,
                Err(e) if e == "authorization_pending" => continue,
                Err(e) if e == "slow_down" => {
                    interval += SLOW_DOWN_STEP;
                    continue;
                }
                Err(e) if e == "expired_token" => return Err(LoginError::TimedOut),
                Err(error) => return Err(LoginError::Refused { error }),
            };
            match reply.id_token.as_deref() {
                Some(id_token) => verify_id_token(&self.issuer, &self.client_id, id_token, None)
                    .await
                    .map_err(LoginError::IdToken)?,
                None if self.scopes.iter().any(|s| s == "openid") => {
                    return Err(LoginError::IdToken(TokenError::MissingClaim("id_token")));
                }
                None => {}
            }
            let tokens = reply.into_tokens(None);
            self.store.save(&tokens)?;
            return Ok(self.session_of(tokens));
        }
    }

    fn show_device_prompt(&self, prompt: &DevicePrompt) {
        if let Some(show) = &self.device_prompt {
            show(prompt);
            return;
        }
        eprintln!(
            "To log in, visit {} and enter the code {}",
            prompt.verification_uri, prompt.user_code
        );
        if let (super::OpenWith::SystemBrowser, Some(url)) =
            (&self.open, &prompt.verification_uri_complete)
            && let Err(e) = webbrowser::open(url.as_str())
        {
            tracing::debug!(error = %e, "no system browser for the device login");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::Issuer;
    use crate::fake_issuer::{FakeIssuer, SigningKey};
    use crate::introspection::unix_now;
    use crate::native::MemoryStore;
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn polling_waits_while_pending_and_slows_down_when_told() {
        let key = SigningKey::p256("k1");
        let fake = FakeIssuer::start(&[&key]).await;
        *fake.device.lock().unwrap() = json!({
            "device_code": "dc", "user_code": "WDJB-MJHT",
            "verification_uri": format!("{}/device", fake.url),
            "verification_uri_complete": format!("{}/device?user_code=WDJB-MJHT", fake.url),
            "expires_in": 60, "interval": 1,
        });
        let id_token = key.sign(
            "JWT",
            &json!({"iss": fake.url, "sub": "user-ann", "aud": "cli", "exp": unix_now() + 60, "iat": unix_now()}),
        );
        let pending = (400, json!({"error": "authorization_pending"}));
        let slow = (400, json!({"error": "slow_down"}));
        let done = (
            200,
            json!({"access_token": "at", "token_type": "Bearer", "expires_in": 300,
                                 "refresh_token": "rt", "id_token": id_token}),
        );
        fake.token_answers
            .lock()
            .unwrap()
            .extend([pending, slow, done]);
        let shown = Arc::new(Mutex::new(None));
        let seen = shown.clone();
        let login = NativeLogin::new(
            Issuer::new(&fake.url).unwrap(),
            "cli",
            MemoryStore::default(),
        )
        .on_device_prompt(Arc::new(move |p: &DevicePrompt| {
            *seen.lock().unwrap() = Some(p.user_code.clone());
        }));
        let session = login.device_login().await.unwrap();
        assert_eq!(shown.lock().unwrap().as_deref(), Some("WDJB-MJHT"));
        assert_eq!(session.access_token().await.unwrap(), "at");
        let calls = fake.token_calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 3);
        // 1 s between the first two polls; 1 + 5 s after slow_down.
        assert!(
            calls[2] - calls[1] >= Duration::from_secs(6),
            "{:?}",
            calls[2] - calls[1]
        );
    }

    #[tokio::test]
    async fn a_denied_or_expired_device_login_ends() {
        let fake = FakeIssuer::start(&[]).await;
        *fake.device.lock().unwrap() = json!({
            "device_code": "dc", "user_code": "X", "verification_uri": format!("{}/device", fake.url),
            "expires_in": 60, "interval": 1,
        });
        fake.token_answers.lock().unwrap().extend([
            (400, json!({"error": "access_denied"})),
            (400, json!({"error": "expired_token"})),
        ]);
        let login = NativeLogin::new(
            Issuer::new(&fake.url).unwrap(),
            "cli",
            MemoryStore::default(),
        )
        .on_device_prompt(Arc::new(|_: &DevicePrompt| {}));
        assert!(
            matches!(login.device_login().await, Err(LoginError::Refused { error }) if error == "access_denied")
        );
        assert!(matches!(
            login.device_login().await,
            Err(LoginError::TimedOut)
        ));
    }
}
