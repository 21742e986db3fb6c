//! Signing-key rotation on a short schedule: the next key is in `/jwks` before the
//! first token it signs, and tokens of the previous key keep verifying.

use openidconnect::Nonce;
use openidconnect::core::CoreIdToken;
use reqwest::StatusCode;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, Broker, Browser, RelyingParty, WEB_APP, jwt_header,
};

/// `jwks_cache_lifetime` of the test broker.
const JWKS_CACHE_LIFETIME: Duration = Duration::from_secs(3);
/// How long the test watches: enough for two rotations of 12 s after a slow start.
const WATCH: Duration = Duration::from_secs(45);
const POLL: Duration = Duration::from_millis(200);

fn kid(token: &str) -> String {
    let header = jwt_header(token);
    header["kid"]
        .as_str()
        .unwrap_or_else(|| panic!("tokens carry a kid: {header}"))
        .to_string()
}

#[tokio::test]
async fn rotation_prepublishes_the_next_key_and_keeps_old_tokens_verifiable() {
    let broker = Broker::setup()
        .tokens("key_rotation_period = \"12s\"")
        .tokens("jwks_cache_lifetime = \"3s\"")
        .start()
        .await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).scope("openid offline_access");
    let response = browser.log_in(&request.url(&broker), &ADMIN).await;
    let first = broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await;
    first.assert_ok();
    let first_kid = kid(first.id_token());

    // Watch /jwks and fresh tokens side by side: when each kid is first published,
    // and when it first signs. A key already published at the first look may have
    // been published long before; the lead is measured on a key that appears later.
    let initial = broker.jwks_kids().await;
    assert!(
        initial.contains(&first_kid),
        "the signing key is published: {initial:?}"
    );
    let mut published: BTreeMap<String, Instant> = BTreeMap::new();
    let mut signing: BTreeMap<String, Instant> = BTreeMap::new();
    let mut refresh_token = first.refresh_token().to_string();
    let deadline = Instant::now() + WATCH;
    let next_kid = loop {
        assert!(
            Instant::now() < deadline,
            "no newly published key signed within {WATCH:?}: {signing:?}"
        );
        for k in broker.jwks_kids().await {
            published.entry(k).or_insert_with(Instant::now);
        }
        let refreshed = broker.refresh(&WEB_APP, &refresh_token).await;
        refreshed.assert_ok();
        refresh_token = refreshed.refresh_token().to_string();
        let now_signing = kid(refreshed.id_token());
        assert_eq!(
            kid(refreshed.access_token()),
            now_signing,
            "one key signs both tokens"
        );
        assert!(
            published.contains_key(&now_signing),
            "key {now_signing} signed before /jwks published it"
        );
        signing
            .entry(now_signing.clone())
            .or_insert_with(Instant::now);
        if !initial.contains(&now_signing) {
            break now_signing;
        }
        tokio::time::sleep(POLL).await;
    };
    let lead = signing[&next_kid].duration_since(published[&next_kid]);
    assert!(
        lead >= JWKS_CACHE_LIFETIME / 2,
        "key {next_kid} was published only {lead:?} before it signed (cache lifetime {JWKS_CACHE_LIFETIME:?}, poll {POLL:?})"
    );

    // After the switch, the old key is still published and its tokens still verify.
    let kids = broker.jwks_kids().await;
    assert!(
        kids.contains(&first_kid),
        "the retired key stays in /jwks: {kids:?}"
    );
    let rp = RelyingParty::discover(&broker, &WEB_APP).await;
    let old: CoreIdToken = first.id_token().parse().expect("an ID token");
    old.claims(
        &rp.client.id_token_verifier(),
        &Nonce::new(request.nonce.clone()),
    )
    .expect("an ID token signed by the previous key still verifies");
    assert_eq!(
        broker.userinfo(first.access_token()).await.status,
        StatusCode::OK,
        "an access token signed by the previous key is still accepted"
    );
}
