//! The account page: a signed-in person links a second provider (and the app then
//! sees one `sub` through either), cannot take an identity another account owns,
//! unlinks, and cannot unlink the last way in; every form needs the session and its
//! CSRF token.

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, BOB, Broker, Browser, Landing, Page, TestUser, WEB_APP, jwt_claims,
};

/// A static user of a second local provider, with an id of her own.
const CARLA: TestUser = TestUser {
    id: "user-carla",
    username: "carla",
    email: "carla@corp.example",
    name: "Carla Corp",
    password: "password",
    hash: ADMIN.hash,
    groups: &[],
};

fn corp_provider() -> String {
    format!(
        r#"[providers.corp]
type = "local"
name = "Corporate login"

[[providers.corp.static_users]]
id = "{id}"
email = "{email}"
username = "{username}"
name = "{name}"
hash = "{hash}"
"#,
        id = CARLA.id,
        email = CARLA.email,
        username = CARLA.username,
        name = CARLA.name,
        hash = CARLA.hash,
    )
}

async fn broker() -> Broker {
    Broker::setup().extra(&corp_provider()).start().await
}

/// Logs `user` in through `provider` for the web app; the `sub` it got.
async fn sign_in(broker: &Broker, browser: &Browser, user: &TestUser, provider: &str) -> String {
    let request = AuthorizeRequest::new(WEB_APP)
        .scope("openid")
        .param("provider", provider);
    let response = browser.log_in(&request.url(broker), user).await;
    let tokens = broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await;
    tokens.assert_ok();
    jwt_claims(tokens.id_token())["sub"]
        .as_str()
        .unwrap_or_else(|| panic!("sub is not a string"))
        .to_string()
}

async fn account(broker: &Broker, browser: &Browser) -> Page {
    browser.open(&broker.url("/account")).await.expect_page()
}

fn csrf_of(page: &Page) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page
        .body
        .find(marker)
        .unwrap_or_else(|| panic!("no CSRF field on the account page:\n{}", page.body))
        + marker.len();
    let len = page.body[start..]
        .find('"')
        .unwrap_or_else(|| panic!("an unclosed attribute"));
    page.body[start..start + len].to_string()
}

/// Links `user`'s identity at `provider` from the account page of `browser`; where
/// the browser lands afterwards.
async fn link(broker: &Broker, browser: &Browser, provider: &str, user: &TestUser) -> Landing {
    let csrf = csrf_of(&account(broker, browser).await);
    let res = browser
        .post_raw(
            &broker.url(&format!("/account/link/{provider}")),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("a redirect without Location"));
    let form = browser.open(&broker.url(location)).await.expect_form();
    browser.submit(&form, user.username, user.password).await
}

async fn unlink(broker: &Broker, browser: &Browser, provider: &str) -> reqwest::Response {
    let csrf = csrf_of(&account(broker, browser).await);
    browser
        .post_raw(
            &broker.url(&format!("/account/unlink/{provider}")),
            &[("csrf", &csrf)],
        )
        .await
}

#[tokio::test]
async fn a_linked_provider_signs_in_as_the_same_user_until_unlinked() {
    let broker = broker().await;
    let browser = Browser::new(&broker);
    assert_eq!(sign_in(&broker, &browser, &ADMIN, "local").await, ADMIN.id);

    let page = account(&broker, &browser).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(page.body.contains("Email and password"), "{}", page.body);
    assert!(page.body.contains("id=\"link-corp\""), "{}", page.body);
    assert!(!page.body.contains("id=\"link-local\""), "{}", page.body);

    let csrf = csrf_of(&page);
    let started = browser
        .post_raw(&broker.url("/account/link/corp"), &[("csrf", &csrf)])
        .await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let location = started.headers()[LOCATION].to_str().unwrap().to_string();
    let form = browser.open(&broker.url(&location)).await.expect_form();
    let landed = browser
        .submit(&form, CARLA.username, CARLA.password)
        .await
        .expect_page();
    assert_eq!(landed.url.path(), "/account");
    assert!(
        landed.body.contains("id=\"unlink-corp\""),
        "{}",
        landed.body
    );
    assert!(!landed.body.contains("id=\"link-corp\""), "{}", landed.body);

    // The link request is single use.
    let replay = browser
        .submit(&form, CARLA.username, CARLA.password)
        .await
        .expect_page();
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);

    // Carla's login now is the admin's account, in a browser of its own.
    let elsewhere = Browser::new(&broker);
    assert_eq!(sign_in(&broker, &elsewhere, &CARLA, "corp").await, ADMIN.id);

    // Unlink the corporate login; the local one is then the last way in.
    let res = unlink(&broker, &browser, "corp").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/account");
    let res = unlink(&broker, &browser, "local").await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(res.text().await.unwrap().contains("only way to sign in"));
    let page = account(&broker, &browser).await;
    assert!(page.body.contains("id=\"unlink-local\""), "{}", page.body);
    assert!(page.body.contains("id=\"link-corp\""), "{}", page.body);

    // Carla's login no longer reaches the admin's account: it makes her one of her
    // own, even though her earlier logins gave the admin's account her profile.
    let third = Browser::new(&broker);
    assert_ne!(sign_in(&broker, &third, &CARLA, "corp").await, ADMIN.id);
}

#[tokio::test]
async fn an_identity_linked_to_another_account_is_refused_and_stays() {
    let broker = broker().await;
    let admin = Browser::new(&broker);
    sign_in(&broker, &admin, &ADMIN, "local").await;
    let page = link(&broker, &admin, "corp", &CARLA).await.expect_page();
    assert_eq!(page.url.path(), "/account");

    let bob = Browser::new(&broker);
    assert_eq!(sign_in(&broker, &bob, &BOB, "local").await, BOB.id);
    let refused = link(&broker, &bob, "corp", &CARLA).await.expect_page();
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.body.contains("belongs to another account"),
        "{}",
        refused.body
    );
    let page = account(&broker, &bob).await;
    assert!(page.body.contains("id=\"link-corp\""), "{}", page.body);

    let carla = Browser::new(&broker);
    assert_eq!(sign_in(&broker, &carla, &CARLA, "corp").await, ADMIN.id);
    // Bob is still signed in as himself.
    let again = AuthorizeRequest::new(WEB_APP).scope("openid");
    let response = bob.open(&again.url(&broker)).await.expect_client();
    let tokens = broker
        .redeem(&WEB_APP, response.code(), again.verifier())
        .await;
    assert_eq!(jwt_claims(tokens.id_token())["sub"], BOB.id);
}

#[tokio::test]
async fn account_pages_need_a_session_and_forms_their_csrf_token() {
    let broker = broker().await;
    let stranger = Browser::new(&broker);
    let page = account(&broker, &stranger).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("You are not signed in"), "{}", page.body);
    let res = stranger
        .post_raw(&broker.url("/account/link/corp"), &[("csrf", "x")])
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let admin = Browser::new(&broker);
    sign_in(&broker, &admin, &ADMIN, "local").await;
    let admin_csrf = csrf_of(&account(&broker, &admin).await);
    for fields in [vec![], vec![("csrf", "forged")]] {
        for path in ["/account/link/corp", "/account/unlink/local"] {
            let res = admin.post_raw(&broker.url(path), &fields).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path} {fields:?}");
            assert!(res.headers().get(LOCATION).is_none());
        }
    }

    // A token is bound to its session: Bob's browser cannot use the admin's.
    let bob = Browser::new(&broker);
    sign_in(&broker, &bob, &BOB, "local").await;
    let res = bob
        .post_raw(&broker.url("/account/link/corp"), &[("csrf", &admin_csrf)])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let page = account(&broker, &admin).await;
    assert!(page.body.contains("id=\"unlink-local\""), "{}", page.body);
}

/// "Sign in again" on the account page runs a fresh login at the session's own
/// provider: the same person gets a new session (the old id dies); someone else's
/// login changes nothing; a form without its CSRF token starts nothing.
#[tokio::test]
async fn signing_in_again_renews_the_session_and_someone_else_changes_nothing() {
    let broker = broker().await;
    let browser = Browser::new(&broker);
    assert_eq!(sign_in(&broker, &browser, &ADMIN, "local").await, ADMIN.id);
    let before = browser.cookie("sb_session").expect("a session cookie");
    let page = account(&broker, &browser).await;
    assert!(page.body.contains("id=\"reauthenticate\""), "{}", page.body);
    let csrf = csrf_of(&page);
    let start = || async {
        let res = browser
            .post_raw(&broker.url("/account/reauthenticate"), &[("csrf", &csrf)])
            .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        let location = res.headers()[LOCATION].to_str().unwrap().to_string();
        assert!(location.starts_with("/login/local?req="), "{location}");
        browser.open(&broker.url(&location)).await.expect_form()
    };

    let forged = browser
        .post_raw(
            &broker.url("/account/reauthenticate"),
            &[("csrf", "forged")],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    let form = start().await;
    let other = browser
        .submit(&form, BOB.username, BOB.password)
        .await
        .expect_page();
    assert_eq!(other.status, StatusCode::FORBIDDEN, "{}", other.body);
    assert!(other.body.contains("someone else"), "{}", other.body);
    assert_eq!(
        browser.cookie("sb_session").as_deref(),
        Some(before.as_str())
    );

    let form = start().await;
    let landed = browser
        .submit(&form, ADMIN.username, ADMIN.password)
        .await
        .expect_page();
    assert_eq!(landed.url.path(), "/account");
    assert_eq!(landed.status, StatusCode::OK, "{}", landed.body);
    let after = browser.cookie("sb_session").expect("a session cookie");
    assert_ne!(after, before, "a new session id");

    let stale = Browser::new(&broker);
    stale.add_cookie(&format!("sb_session={before}"));
    assert_eq!(
        account(&broker, &stale).await.status,
        StatusCode::UNAUTHORIZED,
        "the replaced session is over"
    );
}
