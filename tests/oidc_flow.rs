//! The authorization-code flow as a standard relying party runs it: the `openidconnect`
//! crate configured from discovery, PKCE S256, nonce and state, the HTML login form
//! submitted with a cookie jar, and every token verified against `/jwks`.

use openidconnect::core::{CoreAuthenticationFlow, CoreJwsSigningAlgorithm, CoreUserInfoClaims};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    Scope, TokenResponse,
};
use switchboard_e2e::{
    ADMIN, Broker, Browser, EDDSA_APP, ES256_APP, NATIVE_APP, RelyingParty, TestClient, WEB_APP,
    jwt_claims,
};

/// Discovery → authorize → login form → code → tokens (ID token verified, `at_hash`
/// included) → userinfo → refresh (new ID token, same `sub` and `auth_time`, no nonce).
#[allow(
    clippy::expect_used,
    reason = "the body shared by the flow tests: a failed expectation is a failed test"
)]
async fn full_flow(client: TestClient, expected_alg: CoreJwsSigningAlgorithm) {
    let broker = Broker::start().await;
    let rp = RelyingParty::discover(&broker, &client).await;
    let browser = Browser::new(&broker);

    let (challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = rp
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scopes(
            ["profile", "email", "groups", "offline_access"].map(|s| Scope::new(s.to_string())),
        )
        .set_pkce_challenge(challenge)
        .url();
    let response = browser.log_in(&url, &ADMIN).await;
    assert_eq!(
        response.state(),
        Some(state.secret().as_str()),
        "state comes back unchanged"
    );
    assert!(
        browser.has_cookie("sb_session"),
        "the login started an SSO session"
    );

    let tokens = rp
        .client
        .exchange_code(AuthorizationCode::new(response.code().to_string()))
        .expect("discovery names the token endpoint")
        .set_pkce_verifier(pkce_verifier)
        .request_async(&rp.http)
        .await
        .expect("the code is exchanged for tokens");
    let id_token = tokens
        .id_token()
        .expect("the token response has an ID token");
    let verifier = rp.client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &nonce)
        .expect("the ID token verifies: signature against /jwks, iss, aud, exp, nonce");
    let alg = id_token.signing_alg().expect("the ID token is signed");
    assert_eq!(
        alg, &expected_alg,
        "the client's configured ID-token algorithm"
    );
    let expected_at_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        alg,
        id_token
            .signing_key(&verifier)
            .expect("the signing key is in /jwks"),
    )
    .expect("at_hash can be computed for this algorithm");
    assert_eq!(
        claims.access_token_hash(),
        Some(&expected_at_hash),
        "at_hash binds the access token"
    );
    assert_eq!(claims.subject().as_str(), ADMIN.id);
    assert_eq!(claims.email().map(|e| e.as_str()), Some(ADMIN.email));
    assert_eq!(
        claims.preferred_username().map(|u| u.as_str()),
        Some(ADMIN.username)
    );
    let auth_time = claims.auth_time().expect("the ID token has auth_time");
    let raw = jwt_claims(&id_token.to_string());
    assert_eq!(raw["azp"], client.id);
    assert_eq!(
        raw["groups"],
        serde_json::json!(["local/admins"]),
        "groups are namespaced by provider"
    );

    let userinfo: CoreUserInfoClaims = rp
        .client
        .user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .expect("discovery names the userinfo endpoint")
        .request_async(&rp.http)
        .await
        .expect("userinfo accepts the access token, for the same subject");
    assert_eq!(userinfo.email().map(|e| e.as_str()), Some(ADMIN.email));

    let refresh_token = tokens
        .refresh_token()
        .expect("offline_access gives a refresh token");
    let refreshed = rp
        .client
        .exchange_refresh_token(refresh_token)
        .expect("discovery names the token endpoint")
        .request_async(&rp.http)
        .await
        .expect("the refresh token is accepted");
    let new_id_token = refreshed
        .id_token()
        .expect("a refresh returns a new ID token");
    let no_nonce = |n: Option<&Nonce>| match n {
        None => Ok(()),
        Some(_) => Err("a refreshed ID token carries no nonce".to_string()),
    };
    let new_claims = new_id_token
        .claims(&verifier, no_nonce)
        .expect("the refreshed ID token verifies");
    assert_eq!(new_claims.subject(), claims.subject(), "sub never changes");
    assert_eq!(
        new_claims.auth_time(),
        Some(auth_time),
        "auth_time is the original login"
    );
    assert_eq!(new_claims.audiences(), claims.audiences());
    assert!(new_claims.issue_time() >= claims.issue_time());
    assert_eq!(jwt_claims(&new_id_token.to_string())["azp"], client.id);
    let rotated = refreshed
        .refresh_token()
        .expect("the refresh token is rotated");
    assert_ne!(rotated.secret(), refresh_token.secret());
    let again: CoreUserInfoClaims = rp
        .client
        .user_info(
            refreshed.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .expect("discovery names the userinfo endpoint")
        .request_async(&rp.http)
        .await
        .expect("the refreshed access token works");
    assert_eq!(again.subject(), claims.subject());
}

#[tokio::test]
async fn rs256_client_completes_the_flow_with_an_openidconnect_relying_party() {
    full_flow(WEB_APP, CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256).await;
}

#[tokio::test]
async fn es256_client_completes_the_flow_with_an_openidconnect_relying_party() {
    full_flow(ES256_APP, CoreJwsSigningAlgorithm::EcdsaP256Sha256).await;
}

#[tokio::test]
async fn eddsa_client_completes_the_flow_with_an_openidconnect_relying_party() {
    full_flow(EDDSA_APP, CoreJwsSigningAlgorithm::EdDsa).await;
}

#[tokio::test]
async fn public_native_client_completes_the_flow_on_any_loopback_port() {
    full_flow(NATIVE_APP, CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256).await;
}

#[tokio::test]
async fn discovery_is_built_from_the_issuer_and_lists_what_is_supported() {
    let broker = Broker::start().await;
    let doc: serde_json::Value = broker
        .http()
        .get(broker.url("/.well-known/openid-configuration"))
        .header("Host", "evil.example")
        .send()
        .await
        .expect("GET discovery")
        .json()
        .await
        .expect("discovery is JSON");
    assert_eq!(
        doc["issuer"],
        broker.issuer(),
        "byte-equal to the configured issuer, whatever the Host"
    );
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{}/authorize", broker.issuer())
    );
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    let algs = doc["id_token_signing_alg_values_supported"]
        .as_array()
        .expect("a list of algorithms");
    for alg in ["RS256", "ES256", "EdDSA"] {
        assert!(algs.iter().any(|a| a == alg), "{alg} is listed: {algs:?}");
    }
    let methods = doc["token_endpoint_auth_methods_supported"]
        .as_array()
        .expect("a list of methods");
    for m in ["client_secret_basic", "client_secret_post", "none"] {
        assert!(methods.iter().any(|a| a == m), "{m} is listed: {methods:?}");
    }
}
