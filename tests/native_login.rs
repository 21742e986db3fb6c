#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The client crate's native login helper against the real broker binary (issue 15):
//! a real headless browser (Chromium over WebDriver) is handed the authorize URL,
//! types the user's name and password into the broker's login form, and is
//! redirected back to the helper's loopback listener; the tokens
//! are stored with mode 0600; the session refreshes after expiry without a new login
//! (also after a restart of the app, from the file); logout revokes (introspection
//! says inactive) and forgets the tokens. The helper's device login (RFC 8628)
//! completes while the browser signs in and approves on the broker's `/device` page
//! (that polling too fast gets `slow_down` is shown in device_flow.rs, against the
//! broker directly, and for the helper's reaction in the client crate's unit tests).

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use switchboard_client::Issuer;
use switchboard_client::native::{DevicePrompt, FileStore, NativeLogin, OpenWith, SessionError};
use switchboard_e2e::{ADMIN, Broker, Browser, Chrome, NATIVE_APP, SECOND_APP};
use tokio::sync::mpsc;
use url::Url;

#[tokio::test]
async fn the_native_helper_logs_in_stores_refreshes_and_logs_out() {
    let Some(chrome) = Chrome::start("native_login").await else {
        return;
    };
    let broker = Broker::setup()
        .client(NATIVE_APP.id, "access_token_lifetime = \"3s\"")
        // A resource server allowed to introspect every access token.
        .client(SECOND_APP.id, "introspection = \"all\"")
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cli").join("tokens.json");
    let (urls, mut opened) = mpsc::unbounded_channel::<Url>();
    let login = NativeLogin::new(
        Issuer::new(broker.issuer()).unwrap(),
        NATIVE_APP.id,
        FileStore::new(&file),
    )
    .scopes(["openid", "offline_access"])
    .open_with(OpenWith::Custom(Arc::new(move |url: &Url| {
        let _ = urls.send(url.clone());
    })))
    .refresh_margin(Duration::from_secs(1))
    .timeout(Duration::from_secs(30));

    // The "system browser": headless Chromium opens the URL the helper hands it, the
    // person signs in on the broker's form, and the broker redirects the browser to the
    // helper's loopback listener.
    let drive = async {
        let url = opened.recv().await.expect("the helper opens a URL");
        let params: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(params["code_challenge_method"], "S256");
        assert!(params.contains_key("state") && params.contains_key("nonce"));
        let redirect = Url::parse(&params["redirect_uri"]).unwrap();
        assert_eq!(redirect.host_str(), Some("127.0.0.1"));
        assert_ne!(redirect.port(), None);
        chrome.open(&url).await;
        chrome.wait_for_id("password").await;
        let shot = chrome.screenshot("native_login").await;
        assert!(std::fs::metadata(&shot).unwrap().len() > 0);
        chrome.sign_in(&ADMIN).await;
        let landed = chrome
            .wait_for_url("the helper's loopback listener", |u| {
                u.host_str() == Some("127.0.0.1") && u.port() == redirect.port()
            })
            .await;
        assert_eq!(landed.path(), redirect.path());
        assert!(landed.query_pairs().any(|(k, _)| k == "code"), "{landed}");
        let shown = chrome.wait_for("p").await.text().await;
        assert!(shown.contains("You are logged in"), "{shown}");
    };
    let (session, ()) = tokio::join!(login.login(), drive);
    let session = session.unwrap();

    // Stored, readable by the owner only.
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "token file mode {mode:o}");
    let stored = std::fs::read_to_string(&file).unwrap();
    let first = session.access_token().await.unwrap();
    assert!(stored.contains(&first));
    assert_eq!(
        broker.userinfo(&first).await.status,
        reqwest::StatusCode::OK
    );

    // After expiry the session refreshes by itself: no new login (nothing is opened).
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let second = session.access_token().await.unwrap();
    assert_ne!(first, second, "a refreshed access token");
    assert_eq!(
        broker.userinfo(&second).await.status,
        reqwest::StatusCode::OK
    );
    assert!(
        std::fs::read_to_string(&file).unwrap().contains(&second),
        "the file holds the new tokens"
    );

    // A restarted app resumes from the file, and refreshes from it too.
    drop(session);
    let resumed = login.session().await.unwrap();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let third = resumed.access_token().await.unwrap();
    assert_ne!(third, second);
    assert!(opened.try_recv().is_err(), "no login was started again");
    let refresh_token =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&file).unwrap())
            .unwrap()["refresh_token"]
            .as_str()
            .unwrap()
            .to_string();

    // Logout revokes: the tokens are inactive at the broker, and gone from the file.
    let done = resumed.logout().await.unwrap();
    assert!(!file.exists(), "logout forgets the stored tokens");
    let introspected = broker.introspect(&SECOND_APP, &third).await;
    assert_eq!(introspected, serde_json::json!({"active": false}));
    let refreshed = broker
        .token_request(
            &NATIVE_APP,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
            ],
        )
        .await;
    refreshed.assert_error("invalid_grant");
    let end = done.end_session_url.expect("an RP-initiated logout URL");
    assert!(
        end.as_str()
            .starts_with(&format!("{}/logout?", broker.issuer()))
    );
    assert!(end.query_pairs().any(|(k, _)| k == "id_token_hint"));
    // Closed last: the 3 s token lifetime (whole seconds, less the 1 s margin) leaves
    // no time for it between the login and the first token.
    chrome.close().await;
}

#[tokio::test]
async fn a_session_whose_login_was_revoked_asks_for_a_new_login() {
    let broker = Broker::setup()
        .client(NATIVE_APP.id, "access_token_lifetime = \"1s\"")
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (urls, mut opened) = mpsc::unbounded_channel::<Url>();
    let login = NativeLogin::new(
        Issuer::new(broker.issuer()).unwrap(),
        NATIVE_APP.id,
        FileStore::new(dir.path().join("tokens.json")),
    )
    .open_with(OpenWith::Custom(Arc::new(move |url: &Url| {
        let _ = urls.send(url.clone());
    })))
    .refresh_margin(Duration::ZERO);
    let browser = Browser::new(&broker);
    let drive = async {
        let url = opened.recv().await.unwrap();
        let back = browser.log_in(&url, &ADMIN).await;
        reqwest::get(back.url.clone()).await.unwrap();
    };
    let (session, ()) = tokio::join!(login.login(), drive);
    let session = session.unwrap();
    let token = session.access_token().await.unwrap();
    // The login ends at the broker (its grant is revoked with its access token).
    let revoked = reqwest::Client::new()
        .post(broker.url("/revoke"))
        .form(&[("token", token.as_str()), ("client_id", NATIVE_APP.id)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), reqwest::StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(
        session.access_token().await,
        Err(SessionError::LoginRequired)
    ));
    assert!(
        !dir.path().join("tokens.json").exists(),
        "the dead tokens are forgotten"
    );
}

#[tokio::test]
async fn the_helpers_device_login_completes_with_the_browser_on_the_device_page() {
    const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
    let Some(chrome) = Chrome::start("native_login").await else {
        return;
    };
    let broker = Broker::setup()
        .client(
            NATIVE_APP.id,
            &format!("grants = [\"authorization_code\", \"refresh_token\", {DEVICE_GRANT:?}]"),
        )
        .client(SECOND_APP.id, "introspection = \"all\"")
        .extra("[device]\ninterval = \"1s\"")
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let (prompts, mut shown) = mpsc::unbounded_channel::<DevicePrompt>();
    let (urls, mut opened) = mpsc::unbounded_channel::<Url>();
    let login = NativeLogin::new(
        Issuer::new(broker.issuer()).unwrap(),
        NATIVE_APP.id,
        FileStore::new(&file),
    )
    .scopes(["openid", "offline_access"])
    .open_with(OpenWith::Custom(Arc::new(move |url: &Url| {
        let _ = urls.send(url.clone());
    })))
    .on_device_prompt(Arc::new(move |p: &DevicePrompt| {
        let _ = prompts.send(p.clone());
    }))
    .timeout(Duration::from_secs(60));

    // The person, on another device: opens verification_uri_complete, signs in, finds
    // the code filled in, checks the request and approves.
    let drive = async {
        let prompt = shown.recv().await.expect("the helper shows the prompt");
        assert_eq!(
            prompt.verification_uri.as_str(),
            format!("{}/device", broker.issuer())
        );
        let complete = prompt
            .verification_uri_complete
            .clone()
            .expect("the broker offers verification_uri_complete");
        chrome.open(&complete).await;
        chrome.wait_for_id("password").await;
        chrome.sign_in(&ADMIN).await;
        let code = chrome.wait_for_id("user_code").await;
        assert_eq!(
            code.property("value").await.as_deref(),
            Some(prompt.user_code.as_str()),
            "the code is filled in from the link"
        );
        assert_eq!(chrome.current_url().await.path(), "/device");
        chrome.screenshot("device_login_code").await;
        chrome.wait_for_id("continue").await.click().await;
        let asking = chrome.wait_for_id("device-client").await.text().await;
        assert!(asking.contains(NATIVE_APP.id), "{asking}");
        let shown_code = chrome.wait_for_id("device-user-code").await.text().await;
        assert_eq!(shown_code, prompt.user_code);
        chrome.wait_for_id("approve").await.click().await;
        chrome.wait_for_id("device-approved").await;
        chrome.screenshot("device_login_approved").await;
    };
    let (session, ()) = tokio::join!(login.device_login(), drive);
    let session = session.unwrap();
    chrome.close().await;
    assert!(
        opened.try_recv().is_err(),
        "the device login opens no loopback login"
    );

    // The helper holds the person's tokens, stored like a loopback login's.
    let token = session.access_token().await.unwrap();
    let info = broker.userinfo(&token).await;
    assert_eq!(info.status, reqwest::StatusCode::OK, "{}", info.body);
    let info: serde_json::Value = serde_json::from_str(&info.body).unwrap();
    assert_eq!(info["sub"], ADMIN.id);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "token file mode {mode:o}");
    assert!(std::fs::read_to_string(&file).unwrap().contains(&token));
    let introspected = broker.introspect(&SECOND_APP, &token).await;
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(introspected["client_id"], NATIVE_APP.id);
}
