//! The generic OIDC provider against a certified OpenID Provider (npm `oidc-provider`)
//! on a random loopback port: begin → the OP's login and consent forms → callback →
//! complete → refresh.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

use serde_json::{Value, json};
use std::sync::Arc;
use switchboard_oidc::OidcFactory;
use switchboard_plugin_api::{
    BeginRequest, Identity, Provider, ProviderContext, ProviderError, ProviderFactory,
    RefreshRequest,
};
use switchboard_provider_testkit::browser::{Browser, CallbackHit, Choice};
use switchboard_provider_testkit::peer::{OidcPeer, PeerOptions};
use switchboard_provider_testkit::{LoginSecrets, callback, require_peer};

const CALLBACK: &str = "http://127.0.0.1:9/callback/corp";

async fn peer(options: PeerOptions) -> OidcPeer {
    OidcPeer::start(&options)
        .await
        .unwrap_or_else(|e| panic!("peer: {e}"))
}

fn provider(peer: &OidcPeer, extra: Value) -> Arc<dyn Provider> {
    let mut config = json!({
        "issuer": peer.issuer,
        "client_id": "switchboard",
        "client_secret": "switchboard-secret",
        "scopes": ["openid", "profile", "email", "groups"],
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    OidcFactory
        .create(ProviderContext::new("corp", config, false))
        .unwrap()
}

/// Runs begin and the browser; returns the callback hit and the secrets used.
async fn upstream_login(
    provider: &dyn Provider,
    login: &str,
    choice: Choice,
) -> (CallbackHit, LoginSecrets, Value) {
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
        .authorize(&begin.url, login, CALLBACK, choice)
        .await
        .unwrap();
    (hit, secrets, begin.provider_state)
}

async fn login(provider: &dyn Provider, login: &str) -> Result<Identity, ProviderError> {
    let (hit, secrets, state) = upstream_login(provider, login, Choice::Approve).await;
    assert_eq!(
        hit.params.get("state"),
        Some(&secrets.state),
        "state comes back unchanged"
    );
    provider
        .redirect()
        .unwrap()
        .complete(callback(hit.params, state, CALLBACK, &secrets))
        .await
}

fn denied_reason(result: Result<Identity, ProviderError>) -> String {
    match result {
        Err(ProviderError::Denied { reason }) => reason,
        other => panic!("expected Denied, got {other:?}"),
    }
}

#[tokio::test]
async fn login_then_refresh_then_removal_upstream_ends_the_session() {
    require_peer!();
    let op = peer(PeerOptions::new(CALLBACK)).await;
    let provider = provider(&op, json!({ "offline_access": true }));

    let identity = login(provider.as_ref(), "alice").await.unwrap();
    assert_eq!(identity.subject, "alice");
    assert_eq!(identity.username.as_deref(), Some("alice"));
    assert_eq!(identity.email.as_deref(), Some("alice@example.com"));
    assert!(identity.email_verified);
    assert_eq!(identity.name.as_deref(), Some("User alice"));
    assert_eq!(identity.groups, vec!["users"]);
    assert_eq!(identity.claims["iss"], op.issuer.as_str());
    let first_refresh_token = identity.provider_data.as_ref().unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();

    let refreshed = provider
        .refresh()
        .expect("offline_access gives the refresh capability")
        .refresh(RefreshRequest::new(identity.clone()))
        .await
        .unwrap();
    assert_eq!(refreshed.subject, "alice");
    assert_eq!(refreshed.email.as_deref(), Some("alice@example.com"));
    let rotated = refreshed.provider_data.as_ref().unwrap()["refresh_token"]
        .as_str()
        .unwrap();
    assert_ne!(
        rotated, first_refresh_token,
        "the OP rotates refresh tokens"
    );

    op.disable_account("alice").await;
    let err = provider
        .refresh()
        .unwrap()
        .refresh(RefreshRequest::new(refreshed))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Denied {
            reason: "session ended upstream".into()
        }
    );
}

#[tokio::test]
async fn without_offline_access_there_is_no_refresh_capability() {
    require_peer!();
    let op = peer(PeerOptions::new(CALLBACK)).await;
    let provider = provider(&op, json!({}));
    assert!(provider.refresh().is_none());
    let identity = login(provider.as_ref(), "carol").await.unwrap();
    assert!(identity.provider_data.is_none());
}

#[tokio::test]
async fn a_nonce_other_than_the_one_sent_fails() {
    require_peer!();
    let op = peer(PeerOptions::new(CALLBACK)).await;
    let provider = provider(&op, json!({}));
    let (hit, mut secrets, state) =
        upstream_login(provider.as_ref(), "alice", Choice::Approve).await;
    // The broker hands back the nonce it bound to this state; a tampered one fails.
    secrets.nonce = "tampered-nonce".into();
    let err = provider
        .redirect()
        .unwrap()
        .complete(callback(hit.params, state, CALLBACK, &secrets))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::UpstreamProtocol { detail } if detail.contains("nonce")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_code_from_another_login_fails_its_pkce_and_nonce_checks() {
    require_peer!();
    let op = peer(PeerOptions::new(CALLBACK)).await;
    let provider = provider(&op, json!({}));
    let (hit, _, state) = upstream_login(provider.as_ref(), "alice", Choice::Approve).await;
    // The callback lands with another login's state-bound secrets.
    let other = LoginSecrets::new();
    let err = provider
        .redirect()
        .unwrap()
        .complete(callback(hit.params, state, CALLBACK, &other))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::UpstreamProtocol { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn cancelling_upstream_is_denied_with_the_error_code_only() {
    require_peer!();
    let op = peer(PeerOptions::new(CALLBACK)).await;
    let provider = provider(&op, json!({}));
    let (hit, secrets, state) = upstream_login(provider.as_ref(), "alice", Choice::Cancel).await;
    assert_eq!(
        hit.params.get("error").map(String::as_str),
        Some("access_denied")
    );
    let reason = denied_reason(
        provider
            .redirect()
            .unwrap()
            .complete(callback(hit.params, state, CALLBACK, &secrets))
            .await,
    );
    assert!(reason.contains("access_denied"), "{reason}");
    assert!(
        !reason.contains("aborted"),
        "no upstream description: {reason}"
    );
}

#[tokio::test]
async fn an_iss_parameter_from_another_issuer_or_none_is_refused() {
    require_peer!();
    let op = peer(PeerOptions::new(CALLBACK)).await;
    let provider = provider(&op, json!({}));
    let (hit, secrets, state) = upstream_login(provider.as_ref(), "alice", Choice::Approve).await;
    assert_eq!(
        hit.params.get("iss"),
        Some(&op.issuer),
        "the OP sends RFC 9207 iss"
    );
    let mut forged = hit.params.clone();
    forged.insert("iss".into(), "https://evil.example.com".into());
    let err = provider
        .redirect()
        .unwrap()
        .complete(callback(forged, state.clone(), CALLBACK, &secrets))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::UpstreamProtocol { detail } if detail.contains("mix-up")),
        "{err:?}"
    );
    let mut stripped = hit.params.clone();
    stripped.remove("iss");
    let err = provider
        .redirect()
        .unwrap()
        .complete(callback(stripped, state, CALLBACK, &secrets))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::UpstreamProtocol { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn client_secret_post_and_userinfo_work() {
    require_peer!();
    let mut options = PeerOptions::new(CALLBACK);
    options.token_auth = "client_secret_post".into();
    // Only openid-scope claims in the ID token: email and name come from userinfo.
    options.conform_id_token_claims = true;
    let op = peer(options).await;
    let without_userinfo = provider(
        &op,
        json!({ "token_endpoint_auth": "post", "use_userinfo": false }),
    );
    let identity = login(without_userinfo.as_ref(), "dave").await.unwrap();
    assert_eq!(identity.email, None, "the ID token alone has no email");

    // By default the claims the requested scopes stand for are fetched when the ID
    // token lacks them: a conformant OP loses nothing.
    let by_default = provider(
        &op,
        json!({ "token_endpoint_auth": "post", "scopes": ["profile", "email", "groups"] }),
    );
    let identity = login(by_default.as_ref(), "dave").await.unwrap();
    assert_eq!(identity.email.as_deref(), Some("dave@example.com"));
    assert_eq!(identity.groups, vec!["users"]);

    let with_userinfo = provider(
        &op,
        json!({ "token_endpoint_auth": "post", "use_userinfo": true }),
    );
    let identity = login(with_userinfo.as_ref(), "dave").await.unwrap();
    assert_eq!(identity.subject, "dave");
    assert_eq!(identity.email.as_deref(), Some("dave@example.com"));
    assert!(identity.email_verified);
    assert_eq!(identity.groups, vec!["users"]);
}

#[tokio::test]
async fn unverified_email_is_denied_unless_skipped_and_then_stays_unverified() {
    require_peer!();
    let mut options = PeerOptions::new(CALLBACK);
    options.accounts = json!({ "eve": { "email_verified": false } });
    let op = peer(options).await;
    let strict = provider(&op, json!({}));
    let reason = denied_reason(login(strict.as_ref(), "eve").await);
    assert!(reason.contains("not verified"), "{reason}");

    let lax = provider(&op, json!({ "insecure_skip_email_verified": true }));
    let identity = login(lax.as_ref(), "eve").await.unwrap();
    assert_eq!(identity.email.as_deref(), Some("eve@example.com"));
    assert!(!identity.email_verified);

    // An unverified email never satisfies a domain filter, even when skipped.
    let domain = provider(
        &op,
        json!({ "insecure_skip_email_verified": true, "allowed_email_domains": ["example.com"] }),
    );
    let reason = denied_reason(login(domain.as_ref(), "eve").await);
    assert!(reason.contains("example.com"), "{reason}");
}

#[tokio::test]
async fn group_and_domain_filters_deny_naming_the_requirement() {
    require_peer!();
    let mut options = PeerOptions::new(CALLBACK);
    options.accounts = json!({
        "root": { "groups": ["users", "admins"], "email": "root@corp.example" },
    });
    let op = peer(options).await;
    let admins_only = provider(&op, json!({ "allowed_groups": ["admins"] }));
    let reason = denied_reason(login(admins_only.as_ref(), "alice").await);
    assert_eq!(
        reason,
        "membership in one of these groups is required: admins"
    );
    let identity = login(admins_only.as_ref(), "root").await.unwrap();
    assert_eq!(identity.groups, vec!["users", "admins"]);

    let corp_only = provider(&op, json!({ "allowed_email_domains": ["corp.example"] }));
    let reason = denied_reason(login(corp_only.as_ref(), "alice").await);
    assert!(reason.contains("corp.example"), "{reason}");
    login(corp_only.as_ref(), "root").await.unwrap();
}

#[tokio::test]
async fn nested_claims_map_through_dotted_paths() {
    require_peer!();
    let mut options = PeerOptions::new(CALLBACK);
    options.accounts = json!({
        "kim": {
            "realm_access": { "roles": ["editor", "viewer"] },
            "profile_data": { "login": "kim.k" },
        },
    });
    let op = peer(options).await;
    let provider = provider(
        &op,
        json!({
            "groups_claim": "realm_access.roles",
            "username_claim": "profile_data.login",
        }),
    );
    let identity = login(provider.as_ref(), "kim").await.unwrap();
    assert_eq!(identity.subject, "kim");
    assert_eq!(identity.groups, vec!["editor", "viewer"]);
    assert_eq!(identity.username.as_deref(), Some("kim.k"));
}
