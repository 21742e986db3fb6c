//! A browser: a cookie jar, redirects followed by hand while they stay at the broker,
//! and the HTML login form filled in and posted as a person would.

use crate::HTTP_TIMEOUT;
use crate::broker::Broker;
use crate::clients::TestUser;
use reqwest::StatusCode;
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use std::collections::BTreeMap;
use std::sync::Arc;
use url::Url;

/// At most this many redirects between two pages, as browsers bound them too.
const MAX_REDIRECTS: usize = 10;

/// Where a navigation ended.
#[derive(Debug)]
pub enum Landing {
    /// Redirected back to the client: an authorization response.
    Client(AuthResponse),
    /// The broker's password form.
    LoginForm(LoginForm),
    /// Any other page of the broker (an error page, the provider choice).
    Page(Page),
}

impl Landing {
    /// The authorization response; panics on a page.
    pub fn expect_client(self) -> AuthResponse {
        match self {
            Landing::Client(r) => r,
            Landing::LoginForm(f) => panic!(
                "expected a redirect to the client, got the login form:\n{}",
                f.page.body
            ),
            Landing::Page(p) => panic!(
                "expected a redirect to the client, got a page {}:\n{}",
                p.status, p.body
            ),
        }
    }

    /// The login form; panics otherwise.
    pub fn expect_form(self) -> LoginForm {
        match self {
            Landing::LoginForm(f) => f,
            Landing::Client(r) => panic!("expected the login form, got a redirect to {}", r.url),
            Landing::Page(p) => panic!(
                "expected the login form, got a page {}:\n{}",
                p.status, p.body
            ),
        }
    }

    /// A page that is not the login form; panics otherwise.
    pub fn expect_page(self) -> Page {
        match self {
            Landing::Page(p) => p,
            Landing::LoginForm(f) => {
                panic!("expected a page, got the login form:\n{}", f.page.body)
            }
            Landing::Client(r) => panic!("expected a page, got a redirect to {}", r.url),
        }
    }
}

/// An HTML page the broker served.
#[derive(Debug)]
pub struct Page {
    pub url: Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The password form, as served.
#[derive(Debug)]
pub struct LoginForm {
    pub page: Page,
    /// Where the form posts.
    pub action: Url,
    /// The hidden `req` field: the pending authorization request.
    pub req: String,
    /// The hidden `csrf` field.
    pub csrf: String,
}

/// The redirect back to the client. Constructing one checks RFC 9207: `iss` is present
/// and byte-equal to the issuer, on successes and errors alike.
#[derive(Debug, Clone)]
pub struct AuthResponse {
    pub url: Url,
    pub params: BTreeMap<String, String>,
    /// The `Set-Cookie` headers of the redirect itself.
    pub set_cookies: Vec<String>,
}

impl AuthResponse {
    fn new(url: Url, issuer: &str, headers: &HeaderMap) -> Self {
        let mut params = BTreeMap::new();
        for (k, v) in url.query_pairs() {
            let repeated = params.insert(k.to_string(), v.to_string()).is_some();
            assert!(!repeated, "parameter {k} repeated in {url}");
        }
        assert_eq!(
            params.get("iss").map(String::as_str),
            Some(issuer),
            "every authorization response carries iss = the issuer: {url}"
        );
        let set_cookies = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        AuthResponse {
            url,
            params,
            set_cookies,
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    pub fn error(&self) -> Option<&str> {
        self.param("error")
    }

    pub fn state(&self) -> Option<&str> {
        self.param("state")
    }

    /// The authorization code; panics on an error response.
    pub fn code(&self) -> &str {
        assert_eq!(self.error(), None, "authorization failed: {}", self.url);
        self.param("code")
            .unwrap_or_else(|| panic!("no code in {}", self.url))
    }

    /// Panics unless this is the error `code`, with no authorization code.
    pub fn assert_error(&self, code: &str) {
        assert_eq!(
            self.error(),
            Some(code),
            "expected error {code}: {}",
            self.url
        );
        assert_eq!(
            self.param("code"),
            None,
            "an error response has no code: {}",
            self.url
        );
    }
}

/// One browser: its own cookie jar, shared by all its navigations.
#[derive(Debug, Clone)]
pub struct Browser {
    http: reqwest::Client,
    jar: Arc<Jar>,
    issuer: String,
    /// Where the broker is reached.
    base: Url,
}

impl Browser {
    pub fn new(broker: &Broker) -> Self {
        Self::at(broker.issuer(), broker.url("/"))
    }

    /// A browser for a broker this harness did not start: its issuer, and where it
    /// listens.
    pub fn at(issuer: &str, base: Url) -> Self {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .expect("build the browser's HTTP client");
        Browser {
            http,
            jar,
            issuer: issuer.to_string(),
            base,
        }
    }

    /// The `Cookie` header this browser sends to the broker.
    pub fn cookies(&self) -> String {
        self.jar
            .cookies(&self.base)
            .and_then(|v| v.to_str().ok().map(str::to_string))
            .unwrap_or_default()
    }

    /// The value of this browser's cookie `name` for the broker.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies().split(';').find_map(|c| {
            let (n, v) = c.trim().split_once('=')?;
            (n == name).then(|| v.to_string())
        })
    }

    /// Whether this browser holds a cookie named `name` for the broker.
    pub fn has_cookie(&self, name: &str) -> bool {
        self.cookie(name).is_some()
    }

    /// Puts a cookie into the jar as if the broker had set it (`name=value`).
    pub fn add_cookie(&self, cookie: &str) {
        self.jar
            .add_cookie_str(&format!("{cookie}; Path=/"), &self.base);
    }

    fn at_broker(&self, url: &Url) -> bool {
        url.origin() == self.base.origin()
    }

    /// GET `url` and follow redirects while they stay at the broker.
    pub async fn open(&self, url: &Url) -> Landing {
        let res = self
            .http
            .get(url.clone())
            .send()
            .await
            .expect("GET a broker page");
        self.follow(url.clone(), res).await
    }

    async fn follow(&self, mut url: Url, mut res: reqwest::Response) -> Landing {
        for _ in 0..MAX_REDIRECTS {
            if !res.status().is_redirection() {
                return self.landing(url, res).await;
            }
            assert_eq!(
                res.status(),
                StatusCode::SEE_OTHER,
                "the broker redirects with 303 (from {url})"
            );
            let location = res
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("a redirect without Location from {url}"));
            let next = url.join(location).expect("Location is a URL");
            if !self.at_broker(&next) {
                return Landing::Client(AuthResponse::new(next, &self.issuer, res.headers()));
            }
            res = self
                .http
                .get(next.clone())
                .send()
                .await
                .expect("follow a redirect");
            url = next;
        }
        panic!("more than {MAX_REDIRECTS} redirects from {url}");
    }

    async fn landing(&self, url: Url, res: reqwest::Response) -> Landing {
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.text().await.expect("read a page");
        let page = Page {
            url,
            status,
            headers,
            body,
        };
        match parse_form(&page) {
            Some((action, req, csrf)) => Landing::LoginForm(LoginForm {
                page,
                action,
                req,
                csrf,
            }),
            None => Landing::Page(page),
        }
    }

    /// Posts the form with these exact fields (to leave out or forge the hidden ones).
    pub async fn post_form(&self, form: &LoginForm, fields: &[(&str, &str)]) -> Landing {
        let res = self
            .http
            .post(form.action.clone())
            .form(fields)
            .send()
            .await
            .expect("POST the login form");
        self.follow(form.action.clone(), res).await
    }

    /// Fills in the form as a person would and submits it.
    pub async fn submit(&self, form: &LoginForm, username: &str, password: &str) -> Landing {
        self.post_form(
            form,
            &[
                ("req", &form.req),
                ("csrf", &form.csrf),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    /// GET `url` with this browser's cookies; no redirect is followed.
    pub async fn get_raw(&self, url: &Url) -> reqwest::Response {
        self.http.get(url.clone()).send().await.expect("GET")
    }

    /// Follows redirects from `url`, across origins (the broker, an upstream), until
    /// one leads to an address starting with `stop_at`, and returns that address.
    pub async fn follow_redirects_to(&self, url: &Url, stop_at: &str) -> Url {
        let mut url = url.clone();
        for _ in 0..MAX_REDIRECTS {
            let res = self.get_raw(&url).await;
            assert!(
                res.status().is_redirection(),
                "at {url}: {} {}",
                res.status(),
                res.text().await.unwrap_or_default()
            );
            let location = res.headers()[LOCATION].to_str().expect("a text Location");
            let next = url.join(location).expect("a valid Location");
            if next.as_str().starts_with(stop_at) {
                return next;
            }
            url = next;
        }
        panic!("more than {MAX_REDIRECTS} redirects from {url}");
    }

    /// POST a form to `url` with this browser's cookies; no redirect is followed.
    pub async fn post_raw(&self, url: &Url, fields: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(url.clone())
            .form(fields)
            .send()
            .await
            .expect("POST")
    }

    /// Opens `url`, expects the login form, logs in as `user`, and returns the
    /// authorization response.
    pub async fn log_in(&self, url: &Url, user: &TestUser) -> AuthResponse {
        let form = self.open(url).await.expect_form();
        self.submit(&form, user.username, user.password)
            .await
            .expect_client()
    }
}

/// The login form's action and hidden fields, if the page has the form.
fn parse_form(page: &Page) -> Option<(Url, String, String)> {
    let html = &page.body;
    let start = html.find("<form")?;
    let form = &html[start..];
    let action = attribute(&form[..form.find('>')?], "action")?;
    let req = hidden_value(form, "req")?;
    let csrf = hidden_value(form, "csrf")?;
    Some((page.url.join(&action).ok()?, req, csrf))
}

/// The value of the `<input>` named `name`.
pub fn hidden_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\"");
    let at = html.find(&marker)?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    attribute(&html[tag_start..tag_end], "value")
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let marker = format!(" {name}=\"");
    let start = tag.find(&marker)? + marker.len();
    let len = tag[start..].find('"')?;
    Some(unescape(&tag[start..start + len]))
}

/// Undoes HTML escaping of an attribute value.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';') else { break };
        let entity = &rest[1..semi];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_attribute_values_are_read_back() {
        assert_eq!(unescape("a&#x2f;b&amp;c&#47;d&quot;"), "a/b&c/d\"");
        assert_eq!(unescape("no entities"), "no entities");
        assert_eq!(unescape("dangling & here"), "dangling & here");
    }
}
