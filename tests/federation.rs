//! Federation through the broker: app → broker → upstream login at a certified OpenID
//! Provider (npm `oidc-provider`) → broker's `/callback/{provider}` → app, for the
//! generic OIDC, Google and Microsoft providers; and what the broker does with a bad
//! callback (unknown state, another browser, another provider's path) or an upstream
//! that refuses or is down.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

use reqwest::StatusCode;
use serde_json::json;
use switchboard_e2e::{
    AuthorizeRequest, Broker, Browser, PluginDir, WEB_APP, as_plugin_section, built_plugin,
    free_port, jwt_claims,
};
use switchboard_provider_testkit::browser::{Browser as UpstreamBrowser, Choice};
use switchboard_provider_testkit::peer::{OidcPeer, PeerOptions};
use switchboard_provider_testkit::require_peer;
use url::Url;

const TID: &str = "9b1c3f0e-1111-4a2b-8c3d-123456789abc";

struct Federation {
    broker: Broker,
    _peer: OidcPeer,
    provider: &'static str,
}

/// A broker on a pre-chosen port whose provider `provider` (section `section`) points
/// at a fresh peer that has the broker's callback registered.
async fn federation(
    provider: &'static str,
    mut options: PeerOptions,
    section: impl Fn(&OidcPeer) -> String,
) -> Federation {
    let port = free_port();
    options.redirect_uris = vec![format!("http://127.0.0.1:{port}/callback/{provider}")];
    let peer = OidcPeer::start(&options)
        .await
        .unwrap_or_else(|e| panic!("peer: {e}"));
    let broker = Broker::setup()
        .port(port)
        .extra(&section(&peer))
        .start()
        .await;
    Federation {
        broker,
        _peer: peer,
        provider,
    }
}

fn oidc_section(peer: &OidcPeer) -> String {
    format!(
        r#"[providers.corp]
type = "oidc"
name = "Corporate SSO"
issuer = "{}"
client_id = "switchboard"
client_secret = "switchboard-secret"
scopes = ["openid", "profile", "email", "groups"]
offline_access = true
trust_email = true"#,
        peer.issuer
    )
}

impl Federation {
    /// Starts a login at the app and returns the upstream authorization URL the broker
    /// sent the browser to.
    async fn begin(&self, browser: &Browser, request: &AuthorizeRequest) -> Url {
        let mut url = request.url(&self.broker);
        for _ in 0..4 {
            let res = browser.get_raw(&url).await;
            assert_eq!(res.status(), StatusCode::SEE_OTHER, "at {url}");
            let location = res.headers()["location"].to_str().unwrap().to_string();
            url = url.join(&location).unwrap();
            if !url.as_str().starts_with(&self.broker.url("/").to_string()) {
                return url;
            }
        }
        panic!("the broker never sent the browser upstream (last: {url})");
    }

    /// The upstream login: returns the callback URL upstream redirected to.
    async fn upstream(&self, upstream_url: &Url, login: &str, choice: Choice) -> Url {
        let callback = self.broker.url(&format!("/callback/{}", self.provider));
        UpstreamBrowser::new()
            .authorize(upstream_url.as_str(), login, callback.as_str(), choice)
            .await
            .unwrap_or_else(|e| panic!("upstream login: {e}"))
            .url
    }

    /// A whole login for `login`; returns the redeemed tokens' body.
    async fn log_in(&self, login: &str) -> serde_json::Value {
        let browser = Browser::new(&self.broker);
        let request = AuthorizeRequest::new(WEB_APP)
            .scope("openid profile email groups offline_access")
            .param("provider", self.provider);
        let upstream = self.begin(&browser, &request).await;
        let callback = self.upstream(&upstream, login, Choice::Approve).await;
        let res = browser.get_raw(&callback).await;
        assert_eq!(
            res.status(),
            StatusCode::SEE_OTHER,
            "{}",
            res.text().await.unwrap()
        );
        let location = Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
        assert!(
            location.as_str().starts_with(WEB_APP.redirect_uri),
            "{location}"
        );
        let code = location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| panic!("no code in {location}"));
        let tokens = self
            .broker
            .redeem(&WEB_APP, &code, request.verifier())
            .await;
        tokens.assert_ok();
        tokens.body.clone()
    }
}

#[tokio::test]
async fn generic_oidc_login_gives_normalised_verified_tokens_and_refreshes_upstream() {
    require_peer!();
    generic_oidc_login(oidc_section).await;
}

/// An upstream's `email_verified` reaches apps only from a provider the operator
/// trusts for email: an app linking accounts by email must not inherit the weakest
/// upstream.
#[tokio::test]
async fn a_verified_email_from_a_provider_not_trusted_for_email_reaches_apps_unverified() {
    require_peer!();
    let mut options = PeerOptions::new("unused");
    options.accounts = json!({ "alice": { "name": "Alice A" } });
    let untrusted = |peer: &OidcPeer| oidc_section(peer).replace("\ntrust_email = true", "");
    let f = federation("corp", options, untrusted).await;
    let tokens = f.log_in("alice").await;
    let id = f
        .broker
        .verify_with_jwks(tokens["id_token"].as_str().unwrap())
        .await;
    assert_eq!(id["email"], "alice@example.com", "the email still arrives");
    assert_eq!(id["email_verified"], false, "but not as verified: {id}");
    let info = f
        .broker
        .userinfo(tokens["access_token"].as_str().unwrap())
        .await;
    let info: serde_json::Value = serde_json::from_str(&info.body).unwrap();
    assert_eq!(info["email_verified"], false, "{info}");
}

/// An app forcing a fresh login (`prompt=login`, `max_age=0`) gets one upstream too:
/// the browser is sent to the OP with both, so a silent upstream SSO cannot stand in.
#[tokio::test]
async fn prompt_login_and_max_age_reach_the_upstream() {
    require_peer!();
    let f = federation("corp", PeerOptions::new("unused"), oidc_section).await;
    let browser = Browser::new(&f.broker);
    let upstream_params = |url: Url| -> std::collections::BTreeMap<String, String> {
        url.query_pairs().into_owned().collect()
    };
    let plain = AuthorizeRequest::new(WEB_APP).param("provider", "corp");
    let sent = upstream_params(f.begin(&browser, &plain).await);
    let prompt = |sent: &std::collections::BTreeMap<String, String>| {
        sent.get("prompt")
            .map(|p| p.split(' ').map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert!(!prompt(&sent).contains(&"login".to_string()), "{sent:?}");
    assert!(!sent.contains_key("max_age"), "{sent:?}");

    let forced = AuthorizeRequest::new(WEB_APP)
        .param("provider", "corp")
        .param("prompt", "login")
        .param("max_age", "0");
    let sent = upstream_params(f.begin(&browser, &forced).await);
    assert!(prompt(&sent).contains(&"login".to_string()), "{sent:?}");
    assert!(
        prompt(&sent).contains(&"consent".to_string()),
        "offline access still asks consent: {sent:?}"
    );
    assert_eq!(
        sent.get("max_age").map(String::as_str),
        Some("0"),
        "{sent:?}"
    );
}

/// A provider that cannot re-check a person at refresh (here OIDC without upstream
/// offline access) is believed only `max_session_without_recheck` after the login;
/// then refresh answers invalid_grant and the app sends the person to log in again.
#[tokio::test]
async fn without_an_upstream_recheck_refresh_ends_after_max_session_without_recheck() {
    require_peer!();
    let f = federation("corp", PeerOptions::new("unused"), |peer| {
        oidc_section(peer).replace(
            "offline_access = true",
            "offline_access = false\nmax_session_without_recheck = \"2s\"",
        )
    })
    .await;
    let tokens = f.log_in("alice").await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let early = f.broker.refresh(&WEB_APP, &refresh).await;
    early.assert_ok();
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let late = f.broker.refresh(&WEB_APP, early.refresh_token()).await;
    late.assert_error("invalid_grant");
}

/// A conformant OP puts email and groups in userinfo only (OIDC Core §5.4); with no
/// `use_userinfo` in the config the broker still gets them, so role rules on groups
/// match.
#[tokio::test]
async fn a_conformant_op_s_claims_reach_the_app_through_userinfo_by_default() {
    require_peer!();
    let mut options = PeerOptions::new("unused");
    options.conform_id_token_claims = true;
    options.accounts = json!({ "alice": { "groups": ["staff"], "name": "Alice A" } });
    let f = federation("corp", options, oidc_section).await;
    let tokens = f.log_in("alice").await;
    let id = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["email"], "alice@example.com", "{id}");
    assert_eq!(id["groups"], json!(["corp/staff"]), "{id}");
    assert_eq!(id["name"], "Alice A", "{id}");
    // A login upstream is one factor, said as `fed` (the OP's own methods are not
    // passed on).
    assert_eq!(id["amr"], json!(["fed"]), "{id}");
    assert_eq!(id["acr"], "urn:switchboard:acr:pwd", "{id}");
}

#[tokio::test]
async fn the_oidc_provider_built_as_a_plugin_logs_in_through_the_certified_op() {
    require_peer!();
    let plugins = PluginDir::new();
    let library = plugins.install("liboidc.so", &built_plugin("switchboard_oidc"));
    let f = generic_oidc_login(|peer| as_plugin_section(&oidc_section(peer), &library)).await;
    assert!(
        f.broker.log().contains("plugin loaded"),
        "{}",
        f.broker.log()
    );
}

/// alice logs in through the `corp` provider configured by `section`: normalised,
/// verified tokens; refresh asks upstream; a second login is the same user.
async fn generic_oidc_login(section: impl Fn(&OidcPeer) -> String) -> Federation {
    let mut options = PeerOptions::new("unused");
    options.accounts = json!({ "alice": { "groups": ["staff", "admins"], "name": "Alice A" } });
    let f = federation("corp", options, section).await;
    let tokens = f.log_in("alice").await;

    let id = f
        .broker
        .verify_with_jwks(tokens["id_token"].as_str().unwrap())
        .await;
    assert_eq!(
        id["iss"],
        f.broker.issuer(),
        "the app sees Switchboard, not upstream"
    );
    assert_eq!(id["aud"], WEB_APP.id);
    assert_ne!(id["sub"], "alice", "sub is Switchboard's own id");
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["email_verified"], true);
    assert_eq!(id["name"], "Alice A");
    assert_eq!(
        id["groups"],
        json!(["corp/admins", "corp/staff"]),
        "namespaced by provider"
    );

    // Refresh asks upstream again (with the sealed upstream refresh token).
    let refreshed = f
        .broker
        .refresh(&WEB_APP, tokens["refresh_token"].as_str().unwrap())
        .await;
    refreshed.assert_ok();
    assert_eq!(jwt_claims(refreshed.id_token())["sub"], id["sub"]);

    // The same upstream person logging in again is the same Switchboard user.
    let again = f.log_in("alice").await;
    assert_eq!(
        jwt_claims(again["id_token"].as_str().unwrap())["sub"],
        id["sub"]
    );
    f
}

#[tokio::test]
async fn google_preset_logs_in_through_the_peer_with_the_hosted_domain_checked() {
    require_peer!();
    let mut options = PeerOptions::new("unused");
    options.accounts = json!({
        "gina": { "hd": "example.com", "email": "gina@example.com" },
        "otto": { "hd": "other.example", "email": "otto@other.example" },
    });
    let f = federation("google", options, |peer| {
        format!(
            r#"[providers.google]
type = "google"
issuer = "{}"
client_id = "switchboard"
client_secret = "switchboard-secret"
hosted_domains = ["example.com"]"#,
            peer.issuer
        )
    })
    .await;
    let tokens = f.log_in("gina").await;
    let id = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["email"], "gina@example.com");

    // Another domain: a page for the person, access_denied for the app.
    let browser = Browser::new(&f.broker);
    let request = AuthorizeRequest::new(WEB_APP).param("provider", "google");
    let upstream = f.begin(&browser, &request).await;
    let callback = f.upstream(&upstream, "otto", Choice::Approve).await;
    let res = browser.get_raw(&callback).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body = res.text().await.unwrap();
    assert!(body.contains("return-to-app"), "{body}");
    assert!(body.contains("error=access_denied"), "{body}");
}

#[tokio::test]
async fn microsoft_login_through_a_tenant_shaped_issuer() {
    require_peer!();
    let mut options = PeerOptions::new("unused");
    options.issuer_path = Some(format!("/{TID}/v2.0"));
    options.accounts = json!({
        "mia": { "tid": TID, "oid": "oid-mia", "xms_edov": true, "email": "mia@contoso.example" },
    });
    let f = federation("entra", options, |peer| {
        format!(
            r#"[providers.entra]
type = "microsoft"
authority = "{}"
tenant = "{TID}"
client_id = "switchboard"
client_secret = "switchboard-secret"
trust_email = true"#,
            peer.origin
        )
    })
    .await;
    let tokens = f.log_in("mia").await;
    let id = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["email"], "mia@contoso.example");
    assert_eq!(id["email_verified"], true, "proven by xms_edov");
}

#[tokio::test]
async fn user_denying_consent_upstream_sees_a_page_and_the_app_gets_access_denied() {
    require_peer!();
    let f = federation("corp", PeerOptions::new("unused"), oidc_section).await;
    let browser = Browser::new(&f.broker);
    let request = AuthorizeRequest::new(WEB_APP)
        .param("provider", "corp")
        .param("state", "app-state");
    let upstream = f.begin(&browser, &request).await;
    let callback = f.upstream(&upstream, "alice", Choice::Cancel).await;
    let res = browser.get_raw(&callback).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers().get("location").is_none());
    let body = res.text().await.unwrap();
    assert!(body.contains("access_denied"), "{body}");
    assert!(
        body.contains("state=app-state"),
        "the app's state travels back: {body}"
    );
}

#[tokio::test]
async fn callbacks_with_a_wrong_state_another_browser_or_a_replay_are_refused() {
    require_peer!();
    let f = federation("corp", PeerOptions::new("unused"), oidc_section).await;
    let browser = Browser::new(&f.broker);
    let request = AuthorizeRequest::new(WEB_APP).param("provider", "corp");
    let upstream = f.begin(&browser, &request).await;
    let callback = f.upstream(&upstream, "alice", Choice::Approve).await;

    // A state the broker never issued.
    let mut forged = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            if k == "state" {
                (k.to_string(), "forged".to_string())
            } else {
                (k.to_string(), v.to_string())
            }
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(&pairs);
    let res = browser.get_raw(&forged).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.headers().get("location").is_none());

    // The real callback from another browser (no binding cookie): refused, and the
    // state is spent, so the right browser cannot be raced either.
    let stranger = Browser::new(&f.broker);
    assert_eq!(
        stranger.get_raw(&callback).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        browser.get_raw(&callback).await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_callback_on_another_providers_path_is_refused() {
    require_peer!();
    let f = federation("corp", PeerOptions::new("unused"), |peer| {
        format!(
            "{}\n\n{}",
            oidc_section(peer),
            oidc_section(peer).replace("[providers.corp]", "[providers.other]")
        )
    })
    .await;
    let browser = Browser::new(&f.broker);
    let request = AuthorizeRequest::new(WEB_APP).param("provider", "corp");
    let upstream = f.begin(&browser, &request).await;
    let callback = f.upstream(&upstream, "alice", Choice::Approve).await;
    let mut mixed = callback.clone();
    mixed.set_path("/callback/other");
    let res = browser.get_raw(&mixed).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "mix-up defence");
}

#[tokio::test]
async fn an_upstream_that_is_down_fails_its_own_logins_only() {
    require_peer!();
    let dead_port = free_port();
    let broker = Broker::setup()
        .extra(&format!(
            r#"[providers.down]
type = "oidc"
issuer = "http://127.0.0.1:{dead_port}"
client_id = "switchboard"
client_secret = "switchboard-secret""#
        ))
        .start()
        .await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).param("provider", "down");
    let mut url = request.url(&broker);
    let mut last = None;
    for _ in 0..3 {
        let res = browser.get_raw(&url).await;
        if res.status() != StatusCode::SEE_OTHER {
            last = Some(res);
            break;
        }
        url = url
            .join(res.headers()["location"].to_str().unwrap())
            .unwrap();
    }
    let res = last.expect("a page, not endless redirects");
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("error=server_error"),
        "the app is told: {body}"
    );

    // The local provider keeps working.
    let local = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).param("provider", "local");
    local
        .log_in(&request.url(&broker), &switchboard_e2e::ADMIN)
        .await
        .code();
}
