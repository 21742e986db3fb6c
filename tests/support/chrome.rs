//! A real browser: Debian's headless Chromium driven over the W3C WebDriver protocol
//! (chromedriver on a random loopback port). It types into the broker's HTML forms
//! and clicks their buttons as a person would, runs the pages' scripts, and follows
//! redirects wherever they lead (to an app's loopback listener too).
//!
//! The WebDriver calls are the dozen JSON requests below, made with the suite's
//! reqwest: the `fantoccini` crate would pull `webdriver` 0.53 and with it ICU 1.x,
//! whose derive macros change the features of `syn` and so rebuild the whole
//! workspace for a test helper.
//!
//! Without chromedriver the tests that need it are skipped with a visible line on
//! stderr, or fail when `SWITCHBOARD_REQUIRE_PEERS=1` (scripts/test installs the Debian
//! package `chromium-driver`).

use crate::broker::{free_port, workspace_root};
use crate::clients::TestUser;
use base64::Engine;
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use url::Url;

/// How long chromedriver may take to listen, and a page or a wait in it may take.
const STARTUP: Duration = Duration::from_secs(20);
const PAGE_WAIT: Duration = Duration::from_secs(15);
/// The key under which WebDriver names an element (W3C WebDriver §12.1).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The chromedriver to run, or why none runs (a panic when peers are required).
fn chromedriver(test: &str) -> Option<&'static str> {
    let runs = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if runs("chromedriver") {
        return Some("chromedriver");
    }
    if std::env::var("SWITCHBOARD_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!(
            "chromedriver is required (Debian packages `chromium` and `chromium-driver`; \
             scripts/test installs them)"
        );
    }
    eprintln!("SKIPPED {test}: chromedriver is not installed");
    None
}

/// The Chromium binary chromedriver starts: Debian's, else whatever `chromium` is.
fn chromium_binary() -> String {
    let debian = "/usr/bin/chromium";
    if std::path::Path::new(debian).exists() {
        debian.to_string()
    } else {
        "chromium".to_string()
    }
}

/// A chromedriver process leading its own process group, which holds the Chromium it
/// starts: on drop the whole group is killed, so a test that fails before
/// [`Chrome::close`] leaves no browser behind.
#[derive(Debug)]
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One headless Chromium session with its own profile. Call [`Chrome::close`] at the
/// end; dropping it kills chromedriver all the same.
pub struct Chrome {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Chrome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chrome")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// An element of the current page.
#[derive(Debug)]
pub struct Element<'a> {
    chrome: &'a Chrome,
    id: String,
}

impl Chrome {
    /// Starts chromedriver on a free loopback port and a headless Chromium session;
    /// `None` (after a `SKIPPED test` line) when chromedriver is not installed.
    pub async fn start(test: &str) -> Option<Chrome> {
        let driver = chromedriver(test)?;
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver(child);
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        wait_for_driver(&http, &base).await;

        let profile = tempfile::tempdir().expect("a browser profile directory");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium_binary(),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--window-size=1024,768",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let res = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("POST /session to chromedriver");
        let status = res.status();
        let body: Value = res.json().await.expect("a JSON answer from chromedriver");
        assert!(status.is_success(), "no Chromium session: {status} {body}");
        let id = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {body}"));
        Some(Chrome {
            http,
            session: format!("{base}/session/{id}"),
            _driver: driver,
            _profile: profile,
        })
    }

    /// One WebDriver command: its `value`, or the WebDriver error (`error`, `message`).
    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.map_err(|e| format!("chromedriver: {e}"))?;
        let status = res.status();
        let body: Value = res
            .json()
            .await
            .map_err(|e| format!("chromedriver answered no JSON: {e}"))?;
        if status.is_success() {
            Ok(body["value"].clone())
        } else {
            Err(format!(
                "{}: {}",
                body["value"]["error"], body["value"]["message"]
            ))
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body))
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Loads `url` (returns once the page has loaded).
    pub async fn open(&self, url: &Url) {
        self.post("/url", json!({"url": url.as_str()})).await;
    }

    /// The address the browser shows now.
    pub async fn current_url(&self) -> Url {
        let url = self.get("/url").await;
        Url::parse(url.as_str().expect("a URL string")).expect("the browser shows a URL")
    }

    /// The HTML of the current page.
    pub async fn source(&self) -> String {
        self.get("/source")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The first element matching the CSS `selector`, if there is one now.
    pub async fn find(&self, selector: &str) -> Option<Element<'_>> {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": selector})),
            )
            .await
            .ok()?;
        let id = found[ELEMENT_KEY].as_str()?.to_string();
        Some(Element { chrome: self, id })
    }

    /// Waits until an element matches the CSS `selector`; panics with the page after
    /// [`PAGE_WAIT`].
    pub async fn wait_for(&self, selector: &str) -> Element<'_> {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            if let Some(element) = self.find(selector).await {
                return element;
            }
            if Instant::now() > deadline {
                panic!(
                    "no {selector} on {} within {PAGE_WAIT:?}:\n{}",
                    self.current_url().await,
                    self.source().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the element with id `id` is on the page.
    pub async fn wait_for_id(&self, id: &str) -> Element<'_> {
        self.wait_for(&format!("#{id}")).await
    }

    /// Waits until the browser shows an address that `done` accepts; that address.
    pub async fn wait_for_url(&self, what: &str, done: impl Fn(&Url) -> bool) -> Url {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let url = self.current_url().await;
            if done(&url) {
                return url;
            }
            if Instant::now() > deadline {
                panic!(
                    "the browser did not reach {what} within {PAGE_WAIT:?}; it shows {url}:\n{}",
                    self.source().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// On the broker's password form (which must be showing or about to): types the
    /// user's name and password and presses "Sign in". Does not wait for the next page.
    pub async fn sign_in(&self, user: &TestUser) {
        self.wait_for_id("username")
            .await
            .send_keys(user.username)
            .await;
        self.wait_for_id("password")
            .await
            .send_keys(user.password)
            .await;
        self.wait_for("button[type=submit]").await.click().await;
    }

    /// Saves a PNG of the page as `target/screenshots/NAME.png`; its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a base64 screenshot"))
            .expect("a base64 screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("create the screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// Ends the browser session (Chromium quits), then chromedriver.
    pub async fn close(self) {
        let _ = self.command(reqwest::Method::DELETE, "", None).await;
    }
}

impl Element<'_> {
    fn path(&self, what: &str) -> String {
        format!("/element/{}/{what}", self.id)
    }

    /// Types `text` into the element.
    pub async fn send_keys(&self, text: &str) {
        self.chrome
            .post(&self.path("value"), json!({"text": text}))
            .await;
    }

    /// Clicks the element.
    pub async fn click(&self) {
        self.chrome.post(&self.path("click"), json!({})).await;
    }

    /// The element's rendered text.
    pub async fn text(&self) -> String {
        let text = self.chrome.get(&self.path("text")).await;
        text.as_str().unwrap_or_default().to_string()
    }

    /// A DOM property (`value` of an input, say), if set.
    pub async fn property(&self, name: &str) -> Option<String> {
        let value = self
            .chrome
            .get(&self.path(&format!("property/{name}")))
            .await;
        value.as_str().map(str::to_string)
    }

    /// A DOM property as WebDriver gives it (a number, a boolean, a string…).
    pub async fn property_json(&self, name: &str) -> Value {
        self.chrome
            .get(&self.path(&format!("property/{name}")))
            .await
    }
}

/// `target/screenshots` in the target directory the tests were built into.
fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("screenshots")
}

/// Polls chromedriver's `/status` until it is ready.
async fn wait_for_driver(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + STARTUP;
    loop {
        let ready = http
            .get(format!("{base}/status"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if let Ok(res) = ready
            && let Ok(body) = res.json::<Value>().await
            && body["value"]["ready"] == true
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not get ready within {STARTUP:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
