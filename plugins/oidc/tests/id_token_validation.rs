//! ID token validation and upstream faults, against a scripted OP on loopback that
//! signs whatever the test asks for (a certified OP will not sign bad tokens).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use switchboard_oidc::{OfflineAccess, OidcProvider, OidcSettings, UserinfoUse};
use switchboard_plugin_api::{
    BeginRequest, Identity, Password, ProviderError, RedirectLogin, RefreshIdentity, RefreshRequest,
};
use switchboard_provider_testkit::fake_op::{ACCESS_TOKEN, FakeOp, Signing, at_hash, now};
use switchboard_provider_testkit::server::{FakeResponse, FakeServer};
use switchboard_provider_testkit::{LoginSecrets, callback};

const CALLBACK: &str = "http://127.0.0.1:9/callback/fake";
const CLIENT: &str = "switchboard";

fn settings(issuer: &str) -> OidcSettings {
    let mut s = OidcSettings::new("fake", issuer, CLIENT, Password::new("secret"), false).unwrap();
    s.jwks_refetch_interval = Duration::ZERO;
    s.offline_access = OfflineAccess::Scope;
    // These tests are about the ID token; the fake's userinfo answers 404 unless set.
    s.use_userinfo = UserinfoUse::Never;
    s
}

/// begin + complete with a made-up code; the fake's token endpoint answers what the
/// test scripted.
async fn login(provider: &OidcProvider, secrets: &LoginSecrets) -> Result<Identity, ProviderError> {
    let begin = provider
        .begin(BeginRequest::new(
            CALLBACK,
            &secrets.state,
            &secrets.nonce,
            &secrets.challenge,
        ))
        .await?;
    let params = BTreeMap::from([
        ("code".to_string(), "code-1".to_string()),
        ("state".to_string(), secrets.state.clone()),
    ]);
    provider
        .complete(callback(params, begin.provider_state, CALLBACK, secrets))
        .await
}

async fn login_with(op: &FakeOp, edit: impl FnOnce(&mut Value)) -> Result<Identity, ProviderError> {
    let provider = OidcProvider::new(settings(&op.origin()), false).unwrap();
    let secrets = LoginSecrets::new();
    let mut claims = op.claims(CLIENT, &secrets.nonce);
    edit(&mut claims);
    op.set_id_token_claims(claims);
    login(&provider, &secrets).await
}

fn protocol_detail(result: Result<Identity, ProviderError>) -> String {
    match result {
        Err(ProviderError::UpstreamProtocol { detail }) => detail,
        other => panic!("expected UpstreamProtocol, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_token_logs_in_and_the_exchange_carries_pkce_and_basic_auth() {
    let op = FakeOp::start().await;
    let provider = OidcProvider::new(settings(&op.origin()), false).unwrap();
    let secrets = LoginSecrets::new();
    op.set_id_token_claims(op.claims(CLIENT, &secrets.nonce));

    let begin = provider
        .begin(BeginRequest::new(
            CALLBACK,
            &secrets.state,
            &secrets.nonce,
            &secrets.challenge,
        ))
        .await
        .unwrap();
    let url = url::Url::parse(&begin.url).unwrap();
    let q = switchboard_provider_testkit::query_map(&url);
    assert!(
        begin
            .url
            .starts_with(&format!("{}/authorize?", op.origin()))
    );
    assert_eq!(q["state"], secrets.state);
    assert_eq!(q["nonce"], secrets.nonce);
    assert_eq!(
        q["code_challenge"], secrets.challenge,
        "the broker's challenge, not our own"
    );
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["redirect_uri"], CALLBACK);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT);
    assert_eq!(q["scope"], "openid profile email offline_access");
    assert!(
        !q.contains_key("prompt"),
        "settings built in code force no prompt"
    );

    let identity = login(&provider, &secrets).await.unwrap();
    assert_eq!(identity.subject, "user-1");
    assert_eq!(identity.email.as_deref(), Some("user1@example.com"));
    assert!(identity.email_verified);
    assert_eq!(
        identity.provider_data.unwrap()["refresh_token"],
        "fake-refresh-1"
    );

    let token_request = op.token_requests().pop().unwrap();
    let form = token_request.form();
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code_verifier"], secrets.verifier);
    assert_eq!(form["redirect_uri"], CALLBACK);
    assert!(
        !form.contains_key("client_secret"),
        "basic auth keeps the secret out of the body"
    );
    assert!(
        token_request
            .header("authorization")
            .unwrap()
            .starts_with("Basic ")
    );
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    let op = FakeOp::start().await;
    op.set_signing(Signing::ForgedSameKid);
    let detail = protocol_detail(login_with(&op, |_| {}).await);
    assert!(detail.contains("ID token rejected"), "{detail}");
}

#[tokio::test]
async fn a_wrong_issuer_is_refused() {
    let op = FakeOp::start().await;
    let detail =
        protocol_detail(login_with(&op, |c| c["iss"] = json!("https://evil.example.com")).await);
    assert!(detail.contains("issuer"), "{detail}");
}

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    let op = FakeOp::start().await;
    let detail = protocol_detail(login_with(&op, |c| c["aud"] = json!("another-client")).await);
    assert!(detail.contains("audiences"), "{detail}");
    let detail =
        protocol_detail(login_with(&op, |c| c["aud"] = json!([CLIENT, "another-client"])).await);
    assert!(detail.contains("another-client"), "{detail}");
}

#[tokio::test]
async fn an_azp_of_another_client_is_refused() {
    let op = FakeOp::start().await;
    let detail = protocol_detail(login_with(&op, |c| c["azp"] = json!("another-client")).await);
    assert!(detail.contains("azp"), "{detail}");
}

#[tokio::test]
async fn a_wrong_or_missing_nonce_is_refused() {
    let op = FakeOp::start().await;
    let detail = protocol_detail(login_with(&op, |c| c["nonce"] = json!("replayed")).await);
    assert!(detail.contains("nonce"), "{detail}");
    let detail = protocol_detail(
        login_with(&op, |c| {
            c.as_object_mut().unwrap().remove("nonce");
        })
        .await,
    );
    assert!(detail.contains("nonce"), "{detail}");
}

#[tokio::test]
async fn an_expired_or_future_token_is_refused() {
    let op = FakeOp::start().await;
    let detail = protocol_detail(
        login_with(&op, |c| {
            c["exp"] = json!(now() - 600);
            c["iat"] = json!(now() - 900);
        })
        .await,
    );
    assert!(detail.contains("expired"), "{detail}");
    let detail = protocol_detail(login_with(&op, |c| c["iat"] = json!(now() + 3600)).await);
    assert!(detail.contains("future"), "{detail}");
}

#[tokio::test]
async fn a_matching_at_hash_passes_and_a_wrong_one_is_refused() {
    let op = FakeOp::start().await;
    login_with(&op, |c| c["at_hash"] = json!(at_hash(ACCESS_TOKEN)))
        .await
        .unwrap();
    let detail =
        protocol_detail(login_with(&op, |c| c["at_hash"] = json!("AAAAAAAAAAAAAAAAAAAAAA")).await);
    assert!(detail.contains("at_hash"), "{detail}");
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_once() {
    let op = FakeOp::start().await;
    let provider = OidcProvider::new(settings(&op.origin()), false).unwrap();
    let secrets = LoginSecrets::new();
    op.set_id_token_claims(op.claims(CLIENT, &secrets.nonce));
    login(&provider, &secrets).await.unwrap();
    assert_eq!(op.jwks_fetches(), 1);

    // Upstream rotates its key: the next token has a kid we have not seen.
    op.rotate_key();
    let secrets = LoginSecrets::new();
    op.set_id_token_claims(op.claims(CLIENT, &secrets.nonce));
    login(&provider, &secrets).await.unwrap();
    assert_eq!(op.jwks_fetches(), 2, "one refetch for the new kid");

    // A kid the upstream never publishes: one refetch, then a clear refusal.
    op.set_signing(Signing::UnpublishedKid);
    let secrets = LoginSecrets::new();
    op.set_id_token_claims(op.claims(CLIENT, &secrets.nonce));
    let detail = protocol_detail(login(&provider, &secrets).await);
    assert!(detail.contains("key"), "{detail}");
    assert_eq!(op.jwks_fetches(), 3);
}

#[tokio::test]
async fn unknown_kid_refetches_are_throttled() {
    let op = FakeOp::start().await;
    let mut s = settings(&op.origin());
    s.jwks_refetch_interval = Duration::from_secs(300);
    let provider = OidcProvider::new(s, false).unwrap();
    op.set_signing(Signing::UnpublishedKid);
    for _ in 0..3 {
        let secrets = LoginSecrets::new();
        op.set_id_token_claims(op.claims(CLIENT, &secrets.nonce));
        protocol_detail(login(&provider, &secrets).await);
    }
    assert_eq!(
        op.jwks_fetches(),
        2,
        "the first fetch and one forced refetch"
    );
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_refused() {
    let op = FakeOp::start().await;
    op.set_discovery_issuer("https://elsewhere.example.com");
    let detail = protocol_detail(login_with(&op, |_| {}).await);
    assert!(detail.contains("elsewhere.example.com"), "{detail}");
}

#[tokio::test]
async fn a_missing_iss_parameter_is_refused_when_the_upstream_promises_it() {
    let op = FakeOp::start().await;
    op.set_iss_parameter_supported(true);
    let detail = protocol_detail(login_with(&op, |_| {}).await);
    assert!(detail.contains("iss"), "{detail}");
}

#[tokio::test]
async fn an_upstream_that_is_down_is_unavailable() {
    // Bind and drop a listener: nothing listens on that port now.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let provider = OidcProvider::new(settings(&format!("http://127.0.0.1:{port}")), false).unwrap();
    let secrets = LoginSecrets::new();
    let err = login(&provider, &secrets).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::UpstreamUnavailable { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_token_endpoint_failing_is_unavailable_and_a_refused_code_is_a_protocol_error() {
    let op = FakeOp::start().await;
    op.set_token_response(Some((503, json!({}))));
    let err = login_with(&op, |_| {}).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::UpstreamUnavailable { .. }),
        "{err:?}"
    );
    op.set_token_response(Some((400, json!({"error": "invalid_grant"}))));
    let detail = protocol_detail(login_with(&op, |_| {}).await);
    assert!(detail.contains("invalid_grant"), "{detail}");
}

#[tokio::test]
async fn a_redirecting_discovery_endpoint_is_not_followed() {
    let op = FakeOp::start().await;
    let target = format!("{}/.well-known/openid-configuration", op.origin());
    let redirector =
        FakeServer::start(move |_| FakeResponse::text(302, "").with_header("location", &target))
            .await;
    let provider = OidcProvider::new(settings(&redirector.origin()), false).unwrap();
    let detail = protocol_detail(login(&provider, &LoginSecrets::new()).await);
    assert!(detail.contains("302"), "{detail}");
}

#[tokio::test]
async fn userinfo_for_another_subject_is_refused() {
    let op = FakeOp::start().await;
    let mut s = settings(&op.origin());
    s.use_userinfo = UserinfoUse::Always;
    let provider = OidcProvider::new(s, false).unwrap();
    op.set_userinfo(Some(
        json!({"sub": "someone-else", "email": "x@example.com"}),
    ));
    let secrets = LoginSecrets::new();
    op.set_id_token_claims(op.claims(CLIENT, &secrets.nonce));
    let detail = protocol_detail(login(&provider, &secrets).await);
    assert!(detail.contains("userinfo"), "{detail}");
}

#[tokio::test]
async fn refresh_maps_invalid_grant_to_denied_and_outages_to_unavailable() {
    let op = FakeOp::start().await;
    let provider = OidcProvider::new(settings(&op.origin()), false).unwrap();
    let secrets = LoginSecrets::new();
    op.set_id_token_claims(op.claims(CLIENT, &secrets.nonce));
    let identity = login(&provider, &secrets).await.unwrap();

    // A refresh ID token carries no nonce; the groups changed upstream.
    let mut claims = op.claims(CLIENT, "");
    claims.as_object_mut().unwrap().remove("nonce");
    claims["groups"] = json!(["users", "ops"]);
    op.set_id_token_claims(claims);
    let refreshed = provider
        .refresh(RefreshRequest::new(identity.clone()))
        .await
        .unwrap();
    assert_eq!(refreshed.groups, vec!["users", "ops"]);
    assert_eq!(
        refreshed.provider_data.as_ref().unwrap()["refresh_token"],
        "fake-refresh-2"
    );
    let form = op.token_requests().pop().unwrap().form();
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["refresh_token"], "fake-refresh-1");

    op.set_token_response(Some((400, json!({"error": "invalid_grant"}))));
    let err = provider
        .refresh(RefreshRequest::new(refreshed.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Denied {
            reason: "session ended upstream".into()
        }
    );

    op.set_token_response(Some((502, json!({}))));
    let err = provider
        .refresh(RefreshRequest::new(refreshed))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::UpstreamUnavailable { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_refresh_for_another_subject_is_refused() {
    let op = FakeOp::start().await;
    let provider = OidcProvider::new(settings(&op.origin()), false).unwrap();
    let secrets = LoginSecrets::new();
    op.set_id_token_claims(op.claims(CLIENT, &secrets.nonce));
    let identity = login(&provider, &secrets).await.unwrap();
    let mut claims = op.claims(CLIENT, "");
    claims["sub"] = json!("user-2");
    op.set_id_token_claims(claims);
    let err = provider
        .refresh(RefreshRequest::new(identity))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::UpstreamProtocol { .. }),
        "{err:?}"
    );
}
