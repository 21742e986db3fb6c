//! ABI 1.x stays compatible: a plugin built against an older `plugin-api` still loads
//! into today's broker and logs people in.
//!
//! The plugin (tests/old-plugin) is compiled by `scripts/test` against plugin-api's
//! source as it was at commit 8ed3af9 (ABI 1.0, before the API additions of issue 11:
//! `ProviderError::denied`, `ClaimPath`, ...), extracted with `git archive`. Each
//! test here fails if that library is missing or the broker does not load it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

use reqwest::StatusCode;
use std::path::PathBuf;
use switchboard_e2e::{
    AuthorizeRequest, Broker, Browser, PluginDir, WEB_APP, built_plugin, inspect_plugin,
    jwt_claims, plugin_section, workspace_root,
};

const PASSWORD: &str = "an old but good password";

/// The library built from tests/old-plugin against the old plugin-api.
fn old_plugin() -> Vec<u8> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("debug/libswitchboard_old_plugin.so");
    assert!(
        path.is_file(),
        "no old plugin at {}: scripts/test builds it (tests/old-plugin against plugin-api \
         extracted from commit 8ed3af9)",
        path.display()
    );
    built_plugin("switchboard_old_plugin")
}

async fn broker_with_old_plugin(dir: &PluginDir) -> Broker {
    let library = dir.install("libold.so", &old_plugin());
    Broker::setup()
        .extra(&plugin_section(
            "legacy",
            &library,
            "name = \"Legacy accounts\"",
            &format!("password = {PASSWORD:?}\ngroup = \"veterans\""),
        ))
        .start()
        .await
}

#[tokio::test]
async fn a_plugin_built_against_the_old_plugin_api_is_read_as_abi_1() {
    let dir = PluginDir::new();
    let path = dir.install("libold.so", &old_plugin());
    let text = inspect_plugin(&path).unwrap_or_else(|e| panic!("inspect refused it: {e}"));
    for line in [
        "name:         old",
        "abi:          1.0",
        "capabilities: password, refresh",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
}

#[tokio::test]
async fn a_plugin_built_against_the_old_plugin_api_logs_people_in_and_refreshes() {
    let dir = PluginDir::new();
    // `start` panics with the broker's log if it refuses to load the library.
    let broker = broker_with_old_plugin(&dir).await;

    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP)
        .scope("openid profile email groups offline_access")
        .param("provider", "legacy");
    let tokens = broker
        .sign_in_with_password(&browser, &request, "ada", PASSWORD)
        .await;
    let claims = jwt_claims(tokens.id_token());
    assert_eq!(claims["preferred_username"], "ada");
    assert_eq!(claims["groups"], serde_json::json!(["legacy/veterans"]));

    // The old plugin's refusals cross the boundary as the host reads them today.
    let refused = |username: &'static str, password: &'static str| {
        let (broker, request) = (&broker, &request);
        async move {
            let browser = Browser::new(broker);
            let form = browser.open(&request.url(broker)).await.expect_form();
            browser
                .submit(&form, username, password)
                .await
                .expect_form()
                .page
        }
    };
    let wrong = refused("ada", "wrong").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.body.contains("Wrong username or password."),
        "{}",
        wrong.body
    );
    let denied = refused("retired", PASSWORD).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(
        denied.body.contains("this account was retired"),
        "{}",
        denied.body
    );

    // Refresh goes through the old plugin's refresh capability.
    broker
        .refresh(&WEB_APP, tokens.refresh_token())
        .await
        .assert_ok();
}
