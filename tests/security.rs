//! What the broker refuses, and how: bad redirect URIs, codes and refresh tokens used
//! wrongly, bad client credentials, bad passwords, forged forms, unsupported
//! parameters; and the headers that keep its pages and tokens out of caches and frames.

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, LOCATION, WWW_AUTHENTICATE};
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, BOB, Broker, Browser, Landing, NATIVE_APP, Page, SECOND_APP, WEB_APP,
};

fn assert_error_page(page: &Page, status: StatusCode) {
    assert_eq!(page.status, status, "{}", page.body);
    assert!(
        page.header("location").is_none(),
        "an error page never redirects"
    );
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "an HTML page: {:?}",
        page.header("content-type")
    );
}

#[tokio::test]
async fn unregistered_redirect_uri_gets_an_error_page_not_a_redirect() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    // The same request with the registered URI is fine: what follows is about the URI.
    browser
        .open(&AuthorizeRequest::new(WEB_APP).url(&broker))
        .await
        .expect_form();

    for evil in [
        "https://evil.example/callback",
        "http://127.0.0.1:9/web-app/callback/../../evil",
        "http://127.0.0.1:9/web-app/callback?next=https://evil.example",
        "http://127.0.0.1:10/web-app/callback",
        SECOND_APP.redirect_uri,
    ] {
        let url = AuthorizeRequest::new(WEB_APP)
            .param("redirect_uri", evil)
            .url(&broker);
        let res = broker
            .http()
            .get(url.clone())
            .send()
            .await
            .expect("GET /authorize");
        assert!(
            res.headers().get(LOCATION).is_none(),
            "no redirect to {evil}"
        );
        let page = browser.open(&url).await.expect_page();
        assert_error_page(&page, StatusCode::BAD_REQUEST);
    }

    let mut repeated = AuthorizeRequest::new(WEB_APP).url(&broker);
    repeated
        .query_pairs_mut()
        .append_pair("redirect_uri", "https://evil.example/callback");
    assert_error_page(
        &browser.open(&repeated).await.expect_page(),
        StatusCode::BAD_REQUEST,
    );

    let unknown_client = AuthorizeRequest::new(WEB_APP)
        .param("client_id", "no-such-app")
        .url(&broker);
    assert_error_page(
        &browser.open(&unknown_client).await.expect_page(),
        StatusCode::BAD_REQUEST,
    );
}

#[tokio::test]
async fn pkce_verifier_mismatch_is_invalid_grant() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP);
    let code = browser
        .log_in(&request.url(&broker), &ADMIN)
        .await
        .code()
        .to_string();
    let other = switchboard_e2e::Pkce::new();
    broker
        .redeem(&WEB_APP, &code, Some(&other.verifier))
        .await
        .assert_error("invalid_grant");
    broker
        .redeem(&WEB_APP, &code, None)
        .await
        .assert_error("invalid_grant");
    broker
        .redeem(&WEB_APP, &code, request.verifier())
        .await
        .assert_error("invalid_grant");
}

#[tokio::test]
async fn code_without_challenge_refuses_a_verifier() {
    // PKCE is required by default; a confidential client may make it optional.
    let broker = Broker::setup()
        .client(WEB_APP.id, "require_pkce = false")
        .start()
        .await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).without_pkce();
    let code = browser
        .log_in(&request.url(&broker), &ADMIN)
        .await
        .code()
        .to_string();
    let stray = switchboard_e2e::Pkce::new();
    broker
        .redeem(&WEB_APP, &code, Some(&stray.verifier))
        .await
        .assert_error("invalid_grant");
}

#[tokio::test]
async fn replayed_code_is_refused_and_revokes_the_tokens_it_issued() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).scope("openid offline_access");
    let code = browser
        .log_in(&request.url(&broker), &ADMIN)
        .await
        .code()
        .to_string();
    let first = broker.redeem(&WEB_APP, &code, request.verifier()).await;
    first.assert_ok();
    assert_eq!(
        broker.userinfo(first.access_token()).await.status,
        StatusCode::OK
    );

    broker
        .redeem(&WEB_APP, &code, request.verifier())
        .await
        .assert_error("invalid_grant");

    broker
        .userinfo(first.access_token())
        .await
        .assert_invalid_token();
    broker
        .refresh(&WEB_APP, first.refresh_token())
        .await
        .assert_error("invalid_grant");
}

#[tokio::test]
async fn expired_code_is_invalid_grant() {
    let broker = Broker::setup()
        .tokens("code_lifetime = \"2s\"")
        .start()
        .await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP);
    let code = browser
        .log_in(&request.url(&broker), &ADMIN)
        .await
        .code()
        .to_string();
    // The lifetime is counted in whole seconds: wait until it has surely passed.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    broker
        .redeem(&WEB_APP, &code, request.verifier())
        .await
        .assert_error("invalid_grant");
}

#[tokio::test]
async fn wrong_client_secret_is_invalid_client_with_a_challenge() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP);
    let code = browser
        .log_in(&request.url(&broker), &ADMIN)
        .await
        .code()
        .to_string();
    let verifier = request.verifier().expect("PKCE");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", WEB_APP.redirect_uri),
        ("code_verifier", verifier),
    ];

    let basic = broker
        .http()
        .post(broker.url("/token"))
        .basic_auth(WEB_APP.id, Some("not-the-secret"))
        .form(&form)
        .send()
        .await
        .expect("POST /token");
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    assert!(
        basic.headers().get(WWW_AUTHENTICATE).is_some(),
        "401 comes with WWW-Authenticate"
    );
    let body: serde_json::Value = basic.json().await.expect("JSON error");
    assert_eq!(body["error"], "invalid_client");

    let mut post_form = form.to_vec();
    post_form.extend([
        ("client_id", WEB_APP.id),
        ("client_secret", "not-the-secret"),
    ]);
    let post = broker
        .http()
        .post(broker.url("/token"))
        .form(&post_form)
        .send()
        .await
        .expect("POST /token");
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = post.json().await.expect("JSON error");
    assert_eq!(body["error"], "invalid_client");

    // Another client's valid credentials do not redeem this client's code either.
    broker
        .redeem(&SECOND_APP, &code, Some(verifier))
        .await
        .assert_error("invalid_grant");
}

#[tokio::test]
async fn client_secret_post_is_accepted() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP);
    let code = browser
        .log_in(&request.url(&broker), &ADMIN)
        .await
        .code()
        .to_string();
    let res = broker
        .http()
        .post(broker.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", WEB_APP.redirect_uri),
            ("code_verifier", request.verifier().expect("PKCE")),
            ("client_id", WEB_APP.id),
            ("client_secret", WEB_APP.secret.expect("confidential")),
        ])
        .send()
        .await
        .expect("POST /token");
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_password_shows_the_form_again_without_a_code() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP);
    let form = browser.open(&request.url(&broker)).await.expect_form();

    let again = browser
        .submit(&form, ADMIN.username, "wrong password")
        .await
        .expect_form();
    assert_eq!(again.page.status, StatusCode::UNAUTHORIZED);
    assert!(again.page.header("location").is_none());
    assert!(
        again.page.body.contains("Wrong username or password"),
        "{}",
        again.page.body
    );

    let unknown = browser
        .submit(&again, "nobody", "wrong password")
        .await
        .expect_form();
    assert_eq!(unknown.page.status, StatusCode::UNAUTHORIZED);
    assert!(
        unknown.page.body.contains("Wrong username or password"),
        "the same message whether or not the user exists"
    );

    // The person can still correct it in the same form.
    let response = browser
        .submit(&unknown, ADMIN.username, ADMIN.password)
        .await
        .expect_client();
    broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await
        .assert_ok();
}

#[tokio::test]
async fn reused_refresh_token_revokes_the_whole_family() {
    // Without a grace every second use is reuse (the grace: tests/refresh_retries.rs).
    let broker = Broker::setup()
        .tokens("refresh_reuse_grace = \"0s\"")
        .start()
        .await;
    let browser = Browser::new(&broker);
    let tokens = broker.sign_in(&browser, &WEB_APP, &ADMIN).await;
    let first = tokens.refresh_token().to_string();

    let rotated = broker.refresh(&WEB_APP, &first).await;
    rotated.assert_ok();
    let newest = rotated.refresh_token().to_string();
    assert_ne!(newest, first);

    broker
        .refresh(&WEB_APP, &first)
        .await
        .assert_error("invalid_grant");
    broker
        .refresh(&WEB_APP, &newest)
        .await
        .assert_error("invalid_grant");
    broker
        .userinfo(rotated.access_token())
        .await
        .assert_invalid_token();

    // Another login holds its own family, untouched.
    let other = broker.sign_in(&Browser::new(&broker), &WEB_APP, &BOB).await;
    broker
        .refresh(&WEB_APP, other.refresh_token())
        .await
        .assert_ok();
}

#[tokio::test]
async fn refresh_tokens_only_come_with_offline_access() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).scope("openid profile");
    let code = browser
        .log_in(&request.url(&broker), &ADMIN)
        .await
        .code()
        .to_string();
    let tokens = broker.redeem(&WEB_APP, &code, request.verifier()).await;
    tokens.assert_ok();
    assert!(
        tokens.body.get("refresh_token").is_none(),
        "{}",
        tokens.body
    );
}

#[tokio::test]
async fn login_post_without_or_with_a_wrong_csrf_token_is_refused() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP);
    let form = browser.open(&request.url(&broker)).await.expect_form();
    let user = ("username", ADMIN.username);
    let password = ("password", ADMIN.password);

    let without = browser
        .post_form(&form, &[("req", &form.req), user, password])
        .await
        .expect_page();
    assert_error_page(&without, StatusCode::FORBIDDEN);

    let forged = format!("{}x", form.csrf);
    let wrong = browser
        .post_form(
            &form,
            &[("req", &form.req), ("csrf", &forged), user, password],
        )
        .await
        .expect_page();
    assert_error_page(&wrong, StatusCode::FORBIDDEN);

    let empty = browser
        .post_form(&form, &[("req", &form.req), ("csrf", ""), user, password])
        .await
        .expect_page();
    assert_error_page(&empty, StatusCode::FORBIDDEN);

    // A token from another browser's form does not fit this one.
    let other_browser = Browser::new(&broker);
    let other_form = other_browser
        .open(&request.url(&broker))
        .await
        .expect_form();
    let foreign = browser
        .post_form(
            &form,
            &[
                ("req", &form.req),
                ("csrf", &other_form.csrf),
                user,
                password,
            ],
        )
        .await
        .expect_page();
    assert_error_page(&foreign, StatusCode::FORBIDDEN);
    assert!(
        !browser.has_cookie("sb_session"),
        "no session from a refused form"
    );

    // The refusals were about the token alone: the genuine form still works.
    let response = browser
        .submit(&form, ADMIN.username, ADMIN.password)
        .await
        .expect_client();
    broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await
        .assert_ok();
}

#[tokio::test]
async fn login_request_started_in_another_browser_is_refused() {
    let broker = Broker::start().await;
    let victim = Browser::new(&broker);
    let attacker = Browser::new(&broker);
    let form = attacker
        .open(&AuthorizeRequest::new(WEB_APP).url(&broker))
        .await
        .expect_form();
    // The victim is made to post the attacker's pending request, CSRF token included.
    let landing = victim.submit(&form, ADMIN.username, ADMIN.password).await;
    assert!(
        !matches!(landing, Landing::Client(_)),
        "no code for a request from another browser"
    );
}

#[tokio::test]
async fn public_client_without_pkce_gets_an_error_redirect() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(NATIVE_APP).without_pkce();
    let response = browser.open(&request.url(&broker)).await.expect_client();
    response.assert_error("invalid_request");
    assert_eq!(response.state(), Some(request.state.as_str()));

    let plain = AuthorizeRequest::new(NATIVE_APP)
        .without_pkce()
        .param(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .param("code_challenge_method", "plain");
    browser
        .open(&plain.url(&broker))
        .await
        .expect_client()
        .assert_error("invalid_request");
}

#[tokio::test]
async fn request_objects_are_not_supported() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).param("request", "eyJhbGciOiJub25lIn0.e30.");
    let response = browser.open(&request.url(&broker)).await.expect_client();
    response.assert_error("request_not_supported");
    assert_eq!(response.state(), Some(request.state.as_str()));

    let by_reference =
        AuthorizeRequest::new(WEB_APP).param("request_uri", "https://evil.example/request.jwt");
    browser
        .open(&by_reference.url(&broker))
        .await
        .expect_client()
        .assert_error("request_uri_not_supported");
}

/// `Browser` checks `iss` on every authorization response it sees; this test walks
/// through one response of each kind and checks it once more, explicitly.
#[tokio::test]
async fn every_authorization_response_names_the_issuer() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let iss = Some(broker.issuer());

    let no_session = browser
        .open(
            &AuthorizeRequest::new(WEB_APP)
                .param("prompt", "none")
                .url(&broker),
        )
        .await;
    let no_session = no_session.expect_client();
    no_session.assert_error("login_required");
    assert_eq!(no_session.param("iss"), iss);

    let login = browser
        .log_in(&AuthorizeRequest::new(WEB_APP).url(&broker), &ADMIN)
        .await;
    assert!(!login.code().is_empty());
    assert_eq!(login.param("iss"), iss);

    let sso = browser
        .open(&AuthorizeRequest::new(SECOND_APP).url(&broker))
        .await
        .expect_client();
    assert!(!sso.code().is_empty());
    assert_eq!(sso.param("iss"), iss);

    for (param, value, error) in [
        ("prompt", "none login", "invalid_request"),
        ("prompt", "consent", "consent_required"),
        ("request", "e30", "request_not_supported"),
        ("response_type", "token", "unsupported_response_type"),
        ("scope", "profile", "invalid_scope"),
    ] {
        let request = AuthorizeRequest::new(WEB_APP).param(param, value);
        let response = browser.open(&request.url(&broker)).await.expect_client();
        response.assert_error(error);
        assert_eq!(response.param("iss"), iss, "{param}={value}");
    }
    let no_pkce = browser
        .open(
            &AuthorizeRequest::new(NATIVE_APP)
                .without_pkce()
                .url(&broker),
        )
        .await;
    assert_eq!(no_pkce.expect_client().param("iss"), iss);
}

#[tokio::test]
async fn login_page_and_token_responses_carry_security_headers() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP);
    let form = browser.open(&request.url(&broker)).await.expect_form();
    let error_page = browser
        .open(
            &AuthorizeRequest::new(WEB_APP)
                .param("redirect_uri", "https://evil.example/")
                .url(&broker),
        )
        .await
        .expect_page();
    for page in [&form.page, &error_page] {
        assert_eq!(page.header("x-frame-options"), Some("DENY"));
        let csp = page.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "CSP: {csp:?}");
        assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
        assert!(
            page.header("cache-control")
                .is_some_and(|c| c.contains("no-store"))
        );
    }

    let response = browser
        .submit(&form, ADMIN.username, ADMIN.password)
        .await
        .expect_client();
    let ok = broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await;
    ok.assert_ok();
    let refused = broker
        .redeem(&WEB_APP, "not-a-code", request.verifier())
        .await;
    refused.assert_error("invalid_grant");
    for reply in [&ok, &refused] {
        let cache = reply
            .headers
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            cache.contains("no-store"),
            "/token {}: Cache-Control {cache:?}",
            reply.status
        );
    }
    let userinfo = broker.userinfo(ok.access_token()).await;
    assert_eq!(userinfo.status, StatusCode::OK);
    let cache = userinfo
        .headers
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        cache.contains("no-store"),
        "/userinfo: Cache-Control {cache:?}"
    );
}

#[tokio::test]
async fn too_many_wrong_passwords_throttle_the_account() {
    let broker = Broker::setup()
        .login("max_failures_per_account = 3")
        .start()
        .await;
    let browser = Browser::new(&broker);
    let mut form = browser
        .open(&AuthorizeRequest::new(WEB_APP).url(&broker))
        .await
        .expect_form();
    for attempt in 1..=3 {
        form = browser
            .submit(&form, ADMIN.username, "wrong password")
            .await
            .expect_form();
        assert_eq!(
            form.page.status,
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    let refused = browser
        .submit(&form, ADMIN.username, ADMIN.password)
        .await
        .expect_form();
    assert_eq!(
        refused.page.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    let same_account = browser
        .submit(&refused, &ADMIN.username.to_uppercase(), ADMIN.password)
        .await;
    assert_eq!(
        same_account.expect_form().page.status,
        StatusCode::TOO_MANY_REQUESTS,
        "usernames are case-insensitive"
    );
    assert!(!browser.has_cookie("sb_session"));

    // The limit is per account: another person from the same address still gets in.
    let other = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP);
    let response = other.log_in(&request.url(&broker), &BOB).await;
    broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await
        .assert_ok();
}

#[tokio::test]
async fn login_hint_is_escaped_in_the_form() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let hint = "\"><script>alert(1)</script>";
    let request = AuthorizeRequest::new(WEB_APP).param("login_hint", hint);
    let form = browser.open(&request.url(&broker)).await.expect_form();
    assert!(
        !form.page.body.contains("<script>alert"),
        "{}",
        form.page.body
    );
    assert!(
        form.page.body.contains("&lt;script&gt;"),
        "the hint is shown, escaped"
    );
}

#[tokio::test]
async fn session_cookie_is_http_only_and_same_site_lax() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let response = browser
        .log_in(&AuthorizeRequest::new(WEB_APP).url(&broker), &ADMIN)
        .await;
    let cookie = response
        .set_cookies
        .iter()
        .find(|c| c.starts_with("sb_session="))
        .unwrap_or_else(|| {
            panic!(
                "the login sets the session cookie: {:?}",
                response.set_cookies
            )
        });
    let attributes: Vec<String> = cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    assert!(attributes.iter().any(|a| a == "httponly"), "{cookie}");
    assert!(attributes.iter().any(|a| a == "samesite=lax"), "{cookie}");
    assert!(attributes.iter().any(|a| a == "path=/"), "{cookie}");
    assert!(
        !attributes.iter().any(|a| a == "secure"),
        "plain http on loopback is the one case without Secure: {cookie}"
    );
}

#[tokio::test]
async fn a_used_login_form_cannot_be_submitted_again() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP);
    let form = browser.open(&request.url(&broker)).await.expect_form();
    browser
        .submit(&form, ADMIN.username, ADMIN.password)
        .await
        .expect_client();
    let again = browser
        .submit(&form, ADMIN.username, ADMIN.password)
        .await
        .expect_page();
    assert_error_page(&again, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn code_redeemed_with_another_redirect_uri_is_invalid_grant() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP);
    let code = browser
        .log_in(&request.url(&broker), &ADMIN)
        .await
        .code()
        .to_string();
    let verifier = request.verifier().expect("PKCE");
    broker
        .token_request(
            &WEB_APP,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "https://evil.example/callback"),
                ("code_verifier", verifier),
            ],
        )
        .await
        .assert_error("invalid_grant");
}

#[tokio::test]
async fn refresh_token_of_another_client_is_invalid_grant() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let tokens = broker.sign_in(&browser, &WEB_APP, &ADMIN).await;
    broker
        .refresh(&SECOND_APP, tokens.refresh_token())
        .await
        .assert_error("invalid_grant");
}

#[tokio::test]
async fn userinfo_takes_only_access_tokens() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let tokens = broker.sign_in(&browser, &WEB_APP, &ADMIN).await;
    broker
        .userinfo(tokens.id_token())
        .await
        .assert_invalid_token();
    broker.userinfo("not-a-token").await.assert_invalid_token();

    let posted = broker
        .http()
        .post(broker.url("/userinfo"))
        .form(&[("access_token", tokens.access_token())])
        .send()
        .await
        .expect("POST /userinfo");
    assert_eq!(
        posted.status(),
        StatusCode::OK,
        "the token may come in the form body"
    );
    let claims: serde_json::Value = posted.json().await.expect("userinfo is JSON");
    assert_eq!(claims["sub"], ADMIN.id);
}

#[tokio::test]
async fn cors_answers_only_registered_origins_and_never_with_credentials() {
    let broker = Broker::start().await;
    let allowed = WEB_APP.cors_origin.expect("web-app has a CORS origin");
    for path in ["/.well-known/openid-configuration", "/jwks"] {
        let res = broker
            .http()
            .get(broker.url(path))
            .header("Origin", allowed)
            .send()
            .await
            .expect("GET with Origin");
        let h = res.headers();
        assert_eq!(
            h.get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok()),
            Some(allowed),
            "{path}"
        );
        assert!(
            h.get("access-control-allow-credentials").is_none(),
            "{path}"
        );

        let other = broker
            .http()
            .get(broker.url(path))
            .header("Origin", "https://evil.example")
            .send()
            .await
            .expect("GET with Origin");
        assert!(
            other.headers().get("access-control-allow-origin").is_none(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn oversized_request_bodies_are_refused() {
    let broker = Broker::start().await;
    let huge = "x".repeat(1024 * 1024);
    let res = broker
        .http()
        .post(broker.url("/token"))
        .basic_auth(WEB_APP.id, WEB_APP.secret)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", huge.as_str()),
        ])
        .send()
        .await
        .expect("POST /token");
    assert!(
        res.status().is_client_error(),
        "refused, got {}",
        res.status()
    );
    let health = broker
        .http()
        .get(broker.url("/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), StatusCode::OK, "the broker is still up");
}

#[tokio::test]
async fn token_endpoint_answers_rfc_6749_errors() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let tokens = broker.sign_in(&browser, &WEB_APP, &ADMIN).await;

    let missing = broker.token_request(&WEB_APP, &[("code", "x")]).await;
    missing.assert_error("invalid_request");
    let unsupported = broker
        .token_request(&WEB_APP, &[("grant_type", "password")])
        .await;
    unsupported.assert_error("unsupported_grant_type");
    let wider = broker
        .token_request(
            &WEB_APP,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens.refresh_token()),
                ("scope", "openid groups"),
            ],
        )
        .await;
    wider.assert_error("invalid_scope");
    // A refused request does not spend the token: the client's retry is no replay.
    broker
        .refresh(&WEB_APP, tokens.refresh_token())
        .await
        .assert_ok();
    let unauthenticated = broker
        .http()
        .post(broker.url("/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens.refresh_token()),
        ])
        .send()
        .await
        .expect("POST /token");
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn users_log_in_with_username_or_email() {
    let broker = Broker::start().await;
    for login in [BOB.username, BOB.email] {
        let browser = Browser::new(&broker);
        let request = AuthorizeRequest::new(WEB_APP);
        let form = browser.open(&request.url(&broker)).await.expect_form();
        let response = browser
            .submit(&form, login, BOB.password)
            .await
            .expect_client();
        let tokens = broker
            .redeem(&WEB_APP, response.code(), request.verifier())
            .await;
        assert_eq!(
            switchboard_e2e::jwt_claims(tokens.id_token())["sub"],
            BOB.id,
            "{login}"
        );
    }
}

/// A wrong password costs the same whether or not the account exists, so timing does
/// not tell who has one. Generous bounds: argon2 against no work at all is a factor
/// of a hundred, machine noise is not.
#[tokio::test]
async fn a_failed_login_takes_as_long_for_an_unknown_user() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let mut form = browser
        .open(&AuthorizeRequest::new(WEB_APP).url(&broker))
        .await
        .expect_form();
    let median = |samples: &mut Vec<std::time::Duration>| {
        samples.sort();
        samples[samples.len() / 2]
    };
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..3 {
        for (login, samples) in [
            (BOB.username.to_string(), &mut known),
            (format!("nobody-{i}"), &mut unknown),
        ] {
            let started = std::time::Instant::now();
            form = browser
                .submit(&form, &login, "wrong password")
                .await
                .expect_form();
            samples.push(started.elapsed());
            assert_eq!(form.page.status, StatusCode::UNAUTHORIZED);
        }
    }
    let (known, unknown) = (median(&mut known), median(&mut unknown));
    assert!(
        unknown * 3 >= known,
        "an unknown user fails in {unknown:?}, a known one in {known:?}: timing reveals accounts"
    );
}

/// Malformed input gets a 4xx answer, never a 5xx or a crash.
#[tokio::test]
async fn malformed_requests_are_refused_without_server_errors() {
    let broker = Broker::start().await;
    let http = broker.http();
    let long_state = "s".repeat(5000);
    let authorize = AuthorizeRequest::new(WEB_APP);
    let mut requests = vec![
        http.get(format!(
            "{}/authorize?client_id=%zz&redirect_uri=%",
            broker.issuer()
        )),
        http.get(format!(
            "{}/authorize?client_id=web-app&client_id=web-app",
            broker.issuer()
        )),
        http.get(authorize.clone().param("state", &long_state).url(&broker)),
        http.get(authorize.clone().param("max_age", "-1").url(&broker)),
        http.get(
            authorize
                .clone()
                .param("max_age", "99999999999999999999999")
                .url(&broker),
        ),
        http.get(authorize.clone().param("nonce", "").url(&broker)),
        http.get(
            authorize
                .clone()
                .param("id_token_hint", "a.b.c")
                .url(&broker),
        ),
        http.get(
            authorize
                .clone()
                .param("code_challenge", "short")
                .url(&broker),
        ),
        http.get(format!("{}/login?req=", broker.issuer())),
        http.get(format!("{}/login/local?req=nope", broker.issuer())),
        http.get(format!(
            "{}/login/no-such-provider?req=nope",
            broker.issuer()
        )),
        http.post(format!("{}/login/local", broker.issuer()))
            .body("req=%"),
        http.post(broker.url("/token"))
            .header("Authorization", "Basic !!!")
            .body("grant_type=x"),
        http.post(broker.url("/token"))
            .header("Authorization", "Basic Og==")
            .body("grant_type=x"),
        http.post(broker.url("/token"))
            .header("Authorization", "Bearer x")
            .body("grant_type=x"),
        http.post(broker.url("/token"))
            .header("Content-Type", "application/json")
            .body("{}"),
        http.post(broker.url("/token"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(vec![0xff, 0xfe]),
        http.get(broker.url("/userinfo"))
            .header("Authorization", "Bearer"),
        http.get(broker.url("/userinfo"))
            .header("Authorization", "Bearer a.b.c"),
        http.get(broker.url("/userinfo"))
            .header("Authorization", "Basic abc"),
    ];
    for (i, request) in requests.drain(..).enumerate() {
        let res = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        let status = res.status();
        assert!(
            status.is_client_error() || status.is_redirection(),
            "request {i}: {status}"
        );
    }
    let health = http
        .get(broker.url("/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), StatusCode::OK);
    assert!(!broker.log().contains("panicked"), "{}", broker.log());
}

/// Behind a TLS-terminating proxy (an https issuer): HSTS, and cookies that only
/// travel over https and only to this host.
#[tokio::test]
async fn an_https_issuer_sends_hsts_and_host_only_secure_cookies() {
    let broker = Broker::setup().https_issuer().start().await;
    let discovery = broker
        .http()
        .get(broker.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("GET discovery");
    assert!(
        discovery
            .headers()
            .get("strict-transport-security")
            .is_some(),
        "HSTS on https"
    );
    let doc: serde_json::Value = discovery.json().await.expect("discovery is JSON");
    assert_eq!(doc["issuer"], broker.issuer());
    assert!(broker.issuer().starts_with("https://"));

    let res = broker
        .http()
        .get(AuthorizeRequest::new(WEB_APP).url(&broker))
        .send()
        .await
        .expect("GET /authorize");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let binding = cookies
        .iter()
        .find(|c| c.starts_with("__Host-sb_browser="))
        .unwrap_or_else(|| panic!("a __Host- prefixed browser cookie: {cookies:?}"));
    let attributes: Vec<String> = binding
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    assert!(attributes.iter().any(|a| a == "secure"), "{binding}");
    assert!(attributes.iter().any(|a| a == "httponly"), "{binding}");
    assert!(attributes.iter().any(|a| a == "path=/"), "{binding}");
    assert!(
        !attributes.iter().any(|a| a.starts_with("domain=")),
        "{binding}"
    );
}

/// No password, code, token, secret or cookie value reaches the log.
#[tokio::test]
async fn the_log_never_contains_secrets() {
    let broker = Broker::start().await;
    let password = "Unlikely-Passw0rd-7f3a9c";
    broker.user_command(
        &["add", "--email", "erin@example.com", "--username", "erin"],
        &format!("{password}\n"),
    );
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).scope("openid offline_access");
    let form = browser.open(&request.url(&broker)).await.expect_form();
    let wrong = "Wrong-Passw0rd-51c0de";
    let form = browser.submit(&form, "erin", wrong).await.expect_form();
    let response = browser
        .submit(&form, "erin", password)
        .await
        .expect_client();
    let code = response.code().to_string();
    let tokens = broker.redeem(&WEB_APP, &code, request.verifier()).await;
    let refreshed = broker.refresh(&WEB_APP, tokens.refresh_token()).await;
    broker
        .redeem(&WEB_APP, &code, request.verifier())
        .await
        .assert_error("invalid_grant");
    broker.userinfo(refreshed.access_token()).await;

    let log = broker.log();
    let session = browser.cookie("sb_session").expect("a session cookie");
    let binding = browser.cookie("sb_browser").expect("a browser cookie");
    for (what, secret) in [
        ("password", password),
        ("wrong password", wrong),
        ("client secret", WEB_APP.secret.expect("confidential")),
        ("code", code.as_str()),
        ("login request id", form.req.as_str()),
        ("CSRF token", form.csrf.as_str()),
        ("PKCE verifier", request.verifier().expect("PKCE")),
        ("access token", tokens.access_token()),
        ("ID token", tokens.id_token()),
        ("refresh token", tokens.refresh_token()),
        ("rotated refresh token", refreshed.refresh_token()),
        ("session cookie", session.as_str()),
        ("browser cookie", binding.as_str()),
    ] {
        assert!(!log.contains(secret), "the log contains the {what}");
    }
    // Signatures alone are long enough to find a token's tail, e.g. after a split.
    let signature = tokens.access_token().rsplit('.').next().expect("a JWS");
    assert!(
        !log.contains(signature),
        "the log contains an access-token signature"
    );
}

/// Every /authorize that needs a login stores a pending login before anyone has
/// authenticated: one address may start only so many a minute, and past that gets a
/// page (429), never a redirect and never a new row.
#[tokio::test]
async fn one_address_may_start_only_so_many_logins_a_minute() {
    let broker = Broker::setup().login("max_starts_per_ip = 3").start().await;
    let browser = Browser::new(&broker);
    let start = || async {
        browser
            .get_raw(&AuthorizeRequest::new(WEB_APP).url(&broker))
            .await
    };
    for i in 0..3 {
        assert_eq!(start().await.status(), StatusCode::SEE_OTHER, "start {i}");
    }
    let refused = start().await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().get(LOCATION).is_none());
    let body = refused.text().await.unwrap();
    assert!(body.contains("Too many sign-ins"), "{body}");
}
