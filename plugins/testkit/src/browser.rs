//! A scripted browser: a cookie jar, no automatic redirects, and just enough HTML
//! reading to submit `oidc-provider`'s devInteractions login and consent forms.

use std::collections::BTreeMap;
use url::Url;

/// Where the browser ended up: the redirect to the callback URL.
#[derive(Debug, Clone)]
pub struct CallbackHit {
    /// The full callback URL.
    pub url: Url,
    /// Its query parameters.
    pub params: BTreeMap<String, String>,
}

/// One browser with its own cookies.
#[derive(Debug, Clone)]
pub struct Browser {
    client: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

/// What to do on the upstream's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Log in and consent.
    Approve,
    /// Press "Cancel" on the first page.
    Cancel,
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(
        tag[start..end]
            .replace("&amp;", "&")
            .replace("&#x2F;", "/")
            .replace("&#47;", "/")
            .replace("&quot;", "\""),
    )
}

fn form_action(html: &str) -> Option<String> {
    let start = html.find("<form")?;
    let end = html[start..].find('>')? + start;
    attribute(&html[start..end], "action")
}

fn cancel_link(html: &str) -> Option<String> {
    let at = html.find("[ Cancel ]")?;
    let start = html[..at].rfind("<a ")?;
    attribute(&html[start..at], "href")
}

impl Browser {
    /// A fresh browser.
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_else(|e| panic!("reqwest client: {e}"));
        Browser { client }
    }

    /// Opens `authorization_url`, logs in as `login` (any password) and consents, or
    /// cancels, and returns the redirect to a URL starting with `callback_url`. At most
    /// 20 steps.
    pub async fn authorize(
        &self,
        authorization_url: &str,
        login: &str,
        callback_url: &str,
        choice: Choice,
    ) -> Result<CallbackHit, String> {
        let mut url = Url::parse(authorization_url).map_err(|e| e.to_string())?;
        let mut form: Option<Vec<(String, String)>> = None;
        for _ in 0..20 {
            if url.as_str().starts_with(callback_url) {
                return Ok(CallbackHit {
                    params: crate::query_map(&url),
                    url,
                });
            }
            let request = match form.take() {
                Some(fields) => self.client.post(url.clone()).form(&fields),
                None => self.client.get(url.clone()),
            };
            let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| format!("{url}: redirect without location"))?;
                url = url.join(location).map_err(|e| e.to_string())?;
                continue;
            }
            let body = response.text().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("{url}: HTTP {status}: {body}"));
            }
            if choice == Choice::Cancel {
                let href = cancel_link(&body).ok_or_else(|| format!("{url}: no cancel link"))?;
                url = url.join(&href).map_err(|e| e.to_string())?;
                continue;
            }
            let action = form_action(&body).ok_or_else(|| format!("{url}: no form in {body}"))?;
            let fields = if body.contains("name=\"login\"") {
                vec![
                    ("prompt".to_string(), "login".to_string()),
                    ("login".to_string(), login.to_string()),
                    ("password".to_string(), "any password".to_string()),
                ]
            } else if body.contains("value=\"consent\"") {
                vec![("prompt".to_string(), "consent".to_string())]
            } else {
                return Err(format!("{url}: unknown page: {body}"));
            };
            url = url.join(&action).map_err(|e| e.to_string())?;
            form = Some(fields);
        }
        Err("no callback after 20 steps".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_form_actions_and_cancel_links() {
        let html = r#"<form autocomplete="off" action="/interaction/abc&amp;x=1" method="post"></form>
            <div><a href="/interaction/abc/abort">[ Cancel ]</a></div>"#;
        assert_eq!(form_action(html).unwrap(), "/interaction/abc&x=1");
        assert_eq!(cancel_link(html).unwrap(), "/interaction/abc/abort");
    }
}
