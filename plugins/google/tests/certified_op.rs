//! The Google preset end to end against the certified OP peer, with the issuer
//! overridden: offline access the Google way, and the `hd` restriction from the ID
//! token.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

use serde_json::{Value, json};
use std::sync::Arc;
use switchboard_google::GoogleFactory;
use switchboard_plugin_api::{
    BeginRequest, Identity, Provider, ProviderContext, ProviderError, ProviderFactory,
    RefreshRequest,
};
use switchboard_provider_testkit::browser::{Browser, Choice};
use switchboard_provider_testkit::peer::{OidcPeer, PeerOptions};
use switchboard_provider_testkit::{LoginSecrets, callback, query_map, require_peer};

const CALLBACK: &str = "http://127.0.0.1:9/callback/google";

fn provider(peer: &OidcPeer, extra: Value) -> Arc<dyn Provider> {
    let mut config = json!({
        "issuer": peer.issuer,
        "client_id": "switchboard",
        "client_secret": "switchboard-secret",
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    GoogleFactory
        .create(ProviderContext::new("google", config, false))
        .unwrap()
}

async fn login(provider: &dyn Provider, who: &str) -> (String, Result<Identity, ProviderError>) {
    let secrets = LoginSecrets::new();
    let begin = provider
        .redirect()
        .unwrap()
        .begin(BeginRequest::new(
            CALLBACK,
            &secrets.state,
            &secrets.nonce,
            &secrets.challenge,
        ))
        .await
        .unwrap();
    let hit = Browser::new()
        .authorize(&begin.url, who, CALLBACK, Choice::Approve)
        .await
        .unwrap();
    let result = provider
        .redirect()
        .unwrap()
        .complete(callback(
            hit.params,
            begin.provider_state,
            CALLBACK,
            &secrets,
        ))
        .await;
    (begin.url, result)
}

async fn peer() -> OidcPeer {
    let mut options = PeerOptions::new(CALLBACK);
    // Google grants refresh tokens on access_type=offline, not on a scope.
    options.always_refresh = true;
    options.accounts = json!({
        "gina": { "hd": "example.com", "email": "gina@example.com" },
        "otto": { "hd": "other.example", "email": "otto@other.example" },
        "gus": { "email": "gus@gmail.example" },
    });
    OidcPeer::start(&options).await.unwrap()
}

#[tokio::test]
async fn a_workspace_account_of_a_hosted_domain_logs_in_and_refreshes() {
    require_peer!();
    let op = peer().await;
    let provider = provider(&op, json!({ "hosted_domains": ["example.com"] }));
    let (url, result) = login(provider.as_ref(), "gina").await;
    let q = query_map(&url::Url::parse(&url).unwrap());
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["prompt"], "consent");
    assert_eq!(q["hd"], "example.com", "hd is sent as a hint");

    let identity = result.unwrap();
    assert_eq!(identity.subject, "gina");
    assert_eq!(identity.email.as_deref(), Some("gina@example.com"));
    assert!(identity.email_verified);
    assert_eq!(identity.claims["hd"], "example.com");
    assert!(
        identity.provider_data.is_some(),
        "offline access gave a refresh token"
    );

    let refreshed = provider
        .refresh()
        .unwrap()
        .refresh(RefreshRequest::new(identity))
        .await
        .unwrap();
    assert_eq!(refreshed.subject, "gina");
}

#[tokio::test]
async fn accounts_outside_the_hosted_domains_are_denied() {
    require_peer!();
    let op = peer().await;
    let provider = provider(&op, json!({ "hosted_domains": ["example.com"] }));
    for who in ["otto", "gus"] {
        let (_, result) = login(provider.as_ref(), who).await;
        match result {
            Err(ProviderError::Denied { reason }) => {
                assert!(reason.contains("example.com"), "{reason}")
            }
            other => panic!("{who}: expected Denied, got {other:?}"),
        }
    }
    // Without a restriction, a consumer account is fine.
    let open = provider_without_restriction(&op);
    let (_, result) = login(open.as_ref(), "gus").await;
    assert_eq!(result.unwrap().subject, "gus");
}

fn provider_without_restriction(op: &OidcPeer) -> Arc<dyn Provider> {
    provider(op, json!({}))
}
