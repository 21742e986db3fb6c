//! Squatting across providers (issue 12, item 7): a stranger who logs in first through
//! an open provider, with someone else's username and an unverified copy of someone
//! else's email, blocks nobody. The real person's first login (local or LDAP) ends in
//! a code and tokens: their username, if taken, becomes a numbered variant; their
//! verified email stays theirs; and a second upstream person with a taken username gets
//! a variant too. A verified email that another account verified first is kept but
//! reaches apps unverified.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

#[path = "../plugins/ldap/tests/support/mod.rs"]
mod slapd;

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard_e2e::{
    AuthorizeRequest, BOB, Broker, Browser, Setup, WEB_APP, free_port, jwt_claims,
};
use switchboard_provider_testkit::browser::{Browser as UpstreamBrowser, Choice};
use switchboard_provider_testkit::peer::{OidcPeer, PeerOptions};
use switchboard_provider_testkit::require_peer;
use url::Url;

const SCOPE: &str = "openid profile email";

/// The upstream OP's accounts: strangers claiming other people's usernames and
/// addresses (without the upstream verifying them), and a second `alice`.
fn accounts() -> Value {
    json!({
        // Bob's (a static local user's) username and address.
        "mallory": { "preferred_username": BOB.username, "email": BOB.email, "email_verified": false },
        // Carol's username and address, before the operator adds her.
        "eve": { "preferred_username": "carol", "email": "carol@corp.example", "email_verified": false },
        // An LDAP user's username and address.
        "trudy": { "preferred_username": "ada", "email": slapd::ADA.mail, "email_verified": false },
        // Two upstream people whose upstream usernames are the same.
        "alice": {},
        "alice-elsewhere": { "preferred_username": "alice" },
        // Someone whose upstream verified an address the directory verified first.
        "ada-elsewhere": { "email": slapd::ADA.mail, "email_verified": true },
    })
}

/// `[providers.ID]` at the peer: `open` is the open provider nobody trusts for email
/// (it even lets unverified emails in); `trusted` is trusted for email, without
/// linking by it.
fn oidc_section(peer: &OidcPeer, id: &str) -> String {
    let policy = match id {
        "open" => "insecure_skip_email_verified = true",
        _ => "trust_email = true",
    };
    format!(
        r#"[providers.{id}]
type = "oidc"
name = "{id} SSO"
issuer = "{issuer}"
client_id = "switchboard"
client_secret = "switchboard-secret"
scopes = ["openid", "profile", "email"]
{policy}
"#,
        issuer = peer.issuer
    )
}

/// The directory, trusted for email (its `mail` is verified).
fn ldap_section(url: &str) -> String {
    format!(
        r#"[providers.corp]
type = "ldap"
name = "Corporate directory"
url = "{url}"
bind_dn = "{service}"
bind_password = "{password}"
user_search = {{ base_dn = "{people}", filter = "(uid={{username}})" }}
group_search = {{ base_dn = "{groups}", filter = "(member={{dn}})", name_attribute = "cn" }}
required_group = "allowed_to_login"
email_verified = true
trust_email = true
operation_timeout = "3s""#,
        service = slapd::SERVICE_DN,
        password = slapd::SERVICE_PW,
        people = slapd::PEOPLE,
        groups = slapd::GROUPS,
    )
}

struct World {
    broker: Broker,
    _peer: OidcPeer,
}

/// A broker with the default local provider, the OIDC providers `open` and `trusted`
/// at one upstream OP, and whatever `more` adds.
async fn world(more: impl FnOnce(Setup) -> Setup) -> World {
    let port = free_port();
    let mut options = PeerOptions::new("unused");
    options.redirect_uris = ["open", "trusted"]
        .iter()
        .map(|p| format!("http://127.0.0.1:{port}/callback/{p}"))
        .collect();
    options.accounts = accounts();
    let peer = OidcPeer::start(&options)
        .await
        .unwrap_or_else(|e| panic!("peer: {e}"));
    let setup = Broker::setup()
        .port(port)
        .extra(&oidc_section(&peer, "open"))
        .extra(&oidc_section(&peer, "trusted"));
    World {
        broker: more(setup).start().await,
        _peer: peer,
    }
}

/// The ID token's claims, from the code the app got at the end of a login.
async fn id_claims(broker: &Broker, request: &AuthorizeRequest, code: &str) -> Value {
    let tokens = broker.redeem(&WEB_APP, code, request.verifier()).await;
    tokens.assert_ok();
    jwt_claims(tokens.id_token())
}

/// A whole login of `login` at the upstream OP through `provider`; the ID token's
/// claims. It must end in a code at the app.
async fn upstream_login(broker: &Broker, provider: &str, login: &str) -> Value {
    let browser = Browser::new(broker);
    let request = AuthorizeRequest::new(WEB_APP)
        .scope(SCOPE)
        .param("provider", provider);
    let mut url = request.url(broker);
    let base = broker.url("/").to_string();
    for _ in 0..4 {
        if !url.as_str().starts_with(&base) {
            break;
        }
        let res = browser.get_raw(&url).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "at {url}");
        url = url
            .join(res.headers()["location"].to_str().unwrap())
            .unwrap();
    }
    let callback = broker.url(&format!("/callback/{provider}"));
    let hit = UpstreamBrowser::new()
        .authorize(url.as_str(), login, callback.as_str(), Choice::Approve)
        .await
        .unwrap_or_else(|e| panic!("upstream login: {e}"));
    let res = browser.get_raw(&hit.url).await;
    let status = res.status();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    let Some(location) = location.filter(|_| status == StatusCode::SEE_OTHER) else {
        panic!("{login} got {status}: {}", res.text().await.unwrap());
    };
    let location = Url::parse(&location).unwrap();
    assert!(
        location.as_str().starts_with(WEB_APP.redirect_uri),
        "{location}"
    );
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| panic!("no code in {location}"));
    id_claims(broker, &request, &code).await
}

/// A password login of `login` through `provider`; the ID token's claims. It must
/// end in a code at the app.
async fn password_login(broker: &Broker, provider: &str, login: &str, password: &str) -> Value {
    let browser = Browser::new(broker);
    let request = AuthorizeRequest::new(WEB_APP)
        .scope(SCOPE)
        .param("provider", provider);
    let form = browser.open(&request.url(broker)).await.expect_form();
    let response = browser.submit(&form, login, password).await.expect_client();
    id_claims(broker, &request, response.code()).await
}

#[tokio::test]
async fn a_stranger_with_local_peoples_usernames_and_emails_blocks_none_of_their_logins() {
    require_peer!();
    let w = world(|s| s).await;
    let broker = &w.broker;

    // A stranger logs in first through the open provider as `bob`, claiming Bob's
    // address: the account is made, the address unverified.
    let mallory = upstream_login(broker, "open", "mallory").await;
    assert_eq!(mallory["preferred_username"], BOB.username);
    assert_eq!(mallory["email"], BOB.email);
    assert_eq!(mallory["email_verified"], false);

    // Bob's first login (a static user of the local provider) ends in a code, with
    // his own sub and verified address; his username, taken, is a numbered variant.
    let bob = password_login(broker, "local", BOB.email, BOB.password).await;
    assert_eq!(bob["sub"], BOB.id);
    assert_eq!(bob["email"], BOB.email);
    assert_eq!(bob["email_verified"], true);
    assert_eq!(bob["preferred_username"], "bob-2");
    // His username still logs him in (the local provider knows its own users).
    let again = password_login(broker, "local", BOB.username, BOB.password).await;
    assert_eq!(again["sub"], BOB.id);
    assert_eq!(again["preferred_username"], "bob-2");

    // Another stranger claims Carol's name and address before the operator adds her.
    let eve = upstream_login(broker, "open", "eve").await;
    assert_eq!(eve["preferred_username"], "carol");
    // The operator is told the username is taken (their choice to make again)...
    let refused = broker.user_command_output(
        &[
            "add",
            "--email",
            "carol@corp.example",
            "--username",
            "carol",
        ],
        "carol-password\n",
    );
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("already uses this username"), "{said}");
    // ...but the address someone only claimed stands in nobody's way.
    let carol_id = broker
        .user_command(
            &["add", "--email", "carol@corp.example"],
            "carol-password\n",
        )
        .trim()
        .to_string();
    let carol = password_login(broker, "local", "Carol@Corp.Example", "carol-password").await;
    assert_eq!(carol["sub"], carol_id.as_str(), "her address logs her in");
    assert_eq!(carol["email_verified"], true);
    assert_ne!(carol["sub"], eve["sub"]);

    // A second upstream person whose upstream username is taken gets a variant.
    let first = upstream_login(broker, "open", "alice").await;
    assert_eq!(first["preferred_username"], "alice");
    let second = upstream_login(broker, "open", "alice-elsewhere").await;
    assert_eq!(second["preferred_username"], "alice-2");
    assert_ne!(second["sub"], first["sub"]);
    // And keeps it at the next login.
    let second_again = upstream_login(broker, "open", "alice-elsewhere").await;
    assert_eq!(second_again["sub"], second["sub"]);
    assert_eq!(second_again["preferred_username"], "alice-2");
}

#[tokio::test]
async fn a_stranger_with_a_directory_users_name_and_email_blocks_nothing_at_ldap() {
    require_peer!();
    let Some(directory) = slapd::Slapd::start() else {
        eprintln!("SKIPPED: slapd is not installed (scripts/test installs it)");
        return;
    };
    let w = world(|s| s.extra(&ldap_section(&directory.url()))).await;
    let broker = &w.broker;

    let trudy = upstream_login(broker, "open", "trudy").await;
    assert_eq!(trudy["preferred_username"], "ada");
    assert_eq!(trudy["email_verified"], false);

    // Ada's first login through the directory ends in a code and her own account.
    let ada = password_login(broker, "corp", "ada", slapd::ADA.password).await;
    assert_ne!(ada["sub"], trudy["sub"]);
    assert_eq!(ada["preferred_username"], "ada-2");
    assert_eq!(ada["email"], slapd::ADA.mail);
    assert_eq!(
        ada["email_verified"], true,
        "a claim never outranks her address"
    );

    // Someone else whose (trusted) upstream verified the same address: an account of
    // their own, whose address reaches apps unverified; Ada's stays verified.
    let elsewhere = upstream_login(broker, "trusted", "ada-elsewhere").await;
    assert_ne!(elsewhere["sub"], ada["sub"]);
    assert_eq!(elsewhere["email"], slapd::ADA.mail);
    assert_eq!(elsewhere["email_verified"], false);
    let ada_again = password_login(broker, "corp", "ada", slapd::ADA.password).await;
    assert_eq!(ada_again["sub"], ada["sub"]);
    assert_eq!(ada_again["email_verified"], true);
    assert_eq!(ada_again["preferred_username"], "ada-2");
}
