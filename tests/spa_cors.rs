//! A browser app (SPA) on its own origin finishes the PKCE code exchange at `/token`
//! and calls `/userinfo` with the access token, in a real headless Chromium: the
//! broker answers CORS for the origin the client registered (preflight and the real
//! responses alike) and for no other, so a page from an unregistered origin is
//! refused by the browser itself.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

use std::process::Stdio;
use std::time::Duration;
use switchboard_e2e::{AuthorizeRequest, Broker, Browser, NATIVE_APP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The app: reads the code and verifier from its query, exchanges them, calls
/// userinfo, and writes what happened into `#out`.
const SPA_PAGE: &str = r#"<!doctype html><html><body><pre id="out">pending</pre><script>
const q = new URLSearchParams(location.search);
const out = document.getElementById("out");
(async () => {
  try {
    const form = new URLSearchParams({
      grant_type: "authorization_code", code: q.get("code"), code_verifier: q.get("verifier"),
      redirect_uri: q.get("redirect_uri"), client_id: q.get("client_id"),
    });
    const t = await fetch(q.get("broker") + "/token", { method: "POST", body: form });
    const tokens = await t.json();
    const u = await fetch(q.get("broker") + "/userinfo",
      { headers: { "Authorization": "Bearer " + tokens.access_token } });
    const info = await u.json();
    out.textContent = "OK " + t.status + " " + u.status + " " + info.sub;
  } catch (e) {
    out.textContent = "ERR " + e;
  }
})();
</script></body></html>"#;

/// Serves the page to every GET on a loopback port, until the test ends.
async fn serve_page() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{SPA_PAGE}",
                    SPA_PAGE.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

/// Chromium, or why it cannot run (a failure when peers are required).
fn chromium() -> Option<&'static str> {
    let found = std::process::Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("chromium");
    }
    if std::env::var("SWITCHBOARD_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("chromium is required (Debian package `chromium`; scripts/test installs it)");
    }
    eprintln!("SKIPPED spa_cors: chromium is not installed");
    None
}

/// Loads `url` in headless Chromium until its scripts settle; the text of `#out`.
async fn run_page(chromium: &str, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("chromium finished within a minute")
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = dom
        .find("id=\"out\">")
        .unwrap_or_else(|| panic!("no #out in {dom}"))
        + "id=\"out\">".len();
    let end = dom[start..].find('<').unwrap() + start;
    dom[start..end].to_string()
}

/// A code for the public client, got by a signed-in browser; the page's URL carrying it.
async fn page_url(broker: &Broker, page_port: u16) -> url::Url {
    let browser = Browser::new(broker);
    let request = AuthorizeRequest::new(NATIVE_APP);
    let response = browser
        .log_in(&request.url(broker), &switchboard_e2e::ADMIN)
        .await;
    let code = response.code().to_string();
    let mut url = url::Url::parse(&format!("http://127.0.0.1:{page_port}/app")).unwrap();
    url.query_pairs_mut()
        .append_pair("broker", broker.issuer())
        .append_pair("code", &code)
        .append_pair("verifier", request.verifier().unwrap())
        .append_pair("redirect_uri", NATIVE_APP.redirect_uri)
        .append_pair("client_id", NATIVE_APP.id);
    url
}

#[tokio::test]
async fn a_browser_app_on_a_registered_origin_exchanges_its_code_and_reads_userinfo() {
    let Some(chromium) = chromium() else { return };
    let registered = serve_page().await;
    let unregistered = serve_page().await;
    assert_ne!(registered, unregistered);
    let broker = Broker::setup()
        .client(
            NATIVE_APP.id,
            &format!("cors_origins = [\"http://127.0.0.1:{registered}\"]"),
        )
        .start()
        .await;

    let url = page_url(&broker, registered).await;
    let result = run_page(chromium, url.as_str()).await;
    assert_eq!(
        result,
        format!("OK 200 200 {}", switchboard_e2e::ADMIN.id),
        "the exchange and userinfo from the registered origin"
    );

    let url = page_url(&broker, unregistered).await;
    let result = run_page(chromium, url.as_str()).await;
    assert!(
        result.starts_with("ERR TypeError"),
        "the browser refuses an unregistered origin: {result}"
    );
}
