//! Providers loaded at run time: shared libraries built by cargo, installed in a
//! private directory, pinned by sha256 and loaded by the broker's real loader.
//!
//! - An example plugin logs people in end to end (app → broker → plugin → tokens).
//! - A built-in provider built as a plugin gives the same tokens as when linked in.
//! - Every fault a plugin can commit at start is refused with the file and the reason;
//!   every fault at run time is an error for that one login while other logins go on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

use reqwest::StatusCode;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, Broker, Browser, Landing, PluginDir, TokenReply, WEB_APP,
    built_plugin, descriptor_offset, inspect_plugin, jwt_claims, jwt_stable_claims, plugin_section,
    replace_bytes,
};

const UNAVAILABLE: &str = "This sign-in method is unavailable right now.";

/// Opens a login through provider `provider` and submits `username` / `password`.
async fn submit_login(
    broker: &Broker,
    provider: &str,
    username: &str,
    password: &str,
) -> (AuthorizeRequest, Landing) {
    let browser = Browser::new(broker);
    let request = AuthorizeRequest::new(WEB_APP)
        .scope("openid profile email groups offline_access")
        .param("provider", provider);
    let form = browser.open(&request.url(broker)).await.expect_form();
    assert!(
        form.action.path().ends_with(&format!("/login/{provider}")),
        "the {provider} form: {}",
        form.action
    );
    let landing = browser.submit(&form, username, password).await;
    (request, landing)
}

/// A password login through `provider` that must succeed: the redeemed tokens.
async fn login_tokens(
    broker: &Broker,
    provider: &str,
    username: &str,
    password: &str,
) -> TokenReply {
    let (request, landing) = submit_login(broker, provider, username, password).await;
    let code = landing.expect_client().code().to_owned();
    let tokens = broker.redeem(&WEB_APP, &code, request.verifier()).await;
    tokens.assert_ok();
    tokens
}

fn assert_unavailable(landing: Landing, what: &str) {
    let form = landing.expect_form();
    assert_eq!(form.page.status, StatusCode::SERVICE_UNAVAILABLE, "{what}");
    assert!(
        form.page.body.contains(UNAVAILABLE),
        "{what}: {}",
        form.page.body
    );
}

async fn faulty_broker(dir: &PluginDir) -> Broker {
    let library = dir.install("libfaulty.so", &built_plugin("switchboard_faulty_plugin"));
    Broker::setup()
        .extra(&plugin_section(
            "faulty",
            &library,
            "call_timeout = \"1s\"",
            "",
        ))
        .start()
        .await
}

#[tokio::test]
async fn plugin_faults_at_run_time_fail_only_that_login() {
    let dir = PluginDir::new();
    let broker = faulty_broker(&dir).await;

    for fault in [
        "panic-sync",
        "panic-async",
        "garbage",
        "wrong-shape",
        "huge",
    ] {
        let (_, landing) = submit_login(&broker, "faulty", fault, "right").await;
        assert_unavailable(landing, fault);
    }

    // A plugin that never answers: the login waits for the call timeout, and in the
    // meantime other people log in.
    let hanging = {
        let broker_url = broker.issuer().to_owned();
        let broker = &broker;
        async move {
            let (_, landing) = submit_login(broker, "faulty", "hang", "right").await;
            assert_unavailable(landing, &format!("hang at {broker_url}"));
        }
    };
    let meanwhile = async {
        let tokens = login_tokens(&broker, "local", ADMIN.username, ADMIN.password).await;
        assert_eq!(jwt_claims(tokens.id_token())["sub"], ADMIN.id);
    };
    tokio::join!(hanging, meanwhile);

    // Two answers to one call: the first counts, the second is ignored.
    let tokens = login_tokens(&broker, "faulty", "twice", "right").await;
    assert_eq!(jwt_claims(tokens.id_token())["preferred_username"], "twice");

    // An answer to a call nobody made is ignored; the real answer still arrives.
    let tokens = login_tokens(&broker, "faulty", "stray", "right").await;
    let claims = jwt_claims(tokens.id_token());
    assert_eq!(claims["preferred_username"], "stray");
    assert_eq!(claims["groups"], serde_json::json!(["faulty/faulty"]));

    // A wrong password through the plugin is an ordinary refusal.
    let (_, landing) = submit_login(&broker, "faulty", "carol", "wrong").await;
    assert_eq!(landing.expect_form().page.status, StatusCode::UNAUTHORIZED);

    // check-config reads the plugin file as loading would, and catches a wrong pin.
    let config = broker.config_path().to_str().unwrap().to_owned();
    let out = broker.cli(&["check-config", &config]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("providers.faulty: plugin faulty 0.1.0 (abi 1.0)"),
        "{text}"
    );
    let digest = switchboard_e2e::sha256_hex(&built_plugin("switchboard_faulty_plugin"));
    let wrong = dir.path().join("wrong-pin.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&wrong, text.replace(&digest, &"0".repeat(64))).unwrap();
    let out = broker.cli(&["check-config", wrong.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("providers.faulty.library: plugin "), "{err}");
    assert!(err.contains("but the config pins"), "{err}");

    let health = broker
        .http()
        .get(broker.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success(), "the broker still serves");
    let log = broker.log();
    assert!(log.contains("plugin panicked"), "{log}");
    assert!(log.contains("plugin call timed out; cancelled"), "{log}");
    assert!(log.contains("unknown or already finished"), "{log}");
    assert!(log.contains("plugin answer too large"), "{log}");
    // The plugin's own tracing event reaches the broker's log inside the request's span.
    let forwarded = log
        .lines()
        .find(|l| l.contains("faulty plugin checking a password"))
        .unwrap_or_else(|| panic!("no forwarded plugin event in:\n{log}"));
    assert!(forwarded.contains("request_id"), "{forwarded}");
    assert!(forwarded.contains("provider"), "{forwarded}");
}

/// Starts a broker with `section` as an extra provider and returns its log, which
/// must say why it refused to start.
async fn refused(section: &str) -> String {
    Broker::setup().extra(section).start_refused().await
}

fn assert_refusal(log: &str, path: &Path, reason: &str) {
    assert!(
        log.contains(&format!("plugin {}", path.display()))
            || log.contains(&path.display().to_string()),
        "the refusal names the file {}:\n{log}",
        path.display()
    );
    assert!(log.contains(reason), "the refusal says {reason:?}:\n{log}");
}

#[tokio::test]
async fn plugins_that_cannot_be_loaded_are_refused_at_start_naming_the_file_and_the_reason() {
    let dir = PluginDir::new();
    let good = built_plugin("switchboard_faulty_plugin");
    let at = descriptor_offset(&good);
    let patched = |offset: usize, bytes: &[u8]| {
        let mut copy = good.clone();
        copy[at + offset..at + offset + bytes.len()].copy_from_slice(bytes);
        copy
    };

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not-elf.so",
            b"#!/bin/sh\nexit 0\n".to_vec(),
            "not a shared object",
        ),
        (
            "no-entry.so",
            replace_bytes(
                &good,
                b"switchboard_plugin_entry_v1",
                b"switchboard_plugin_entry_x1",
            ),
            "entry symbol switchboard_plugin_entry_v1 missing",
        ),
        (
            "next-major-entry.so",
            replace_bytes(
                &good,
                b"switchboard_plugin_entry_v1",
                b"switchboard_plugin_entry_v2",
            ),
            "plugin ABI major version 2",
        ),
        (
            "wrong-major.so",
            patched(4, &2u16.to_ne_bytes()),
            "plugin ABI major version 2",
        ),
        (
            "too-small.so",
            patched(0, &16u32.to_ne_bytes()),
            "descriptor is 16 bytes",
        ),
        (
            "abort.so",
            patched(8, &0u32.to_ne_bytes()),
            "panic = \"abort\"",
        ),
    ];
    for (name, bytes, reason) in cases {
        let path = dir.install(name, &bytes);
        let log = refused(&plugin_section("broken", &path, "", "")).await;
        assert_refusal(&log, &path, reason);
    }

    // A missing file.
    let missing = dir.path().join("libmissing.so");
    let log = refused(&format!(
        "[providers.broken]\ntype = \"plugin\"\nlibrary = \"{}\"\nsha256 = \"{}\"",
        missing.display(),
        "0".repeat(64)
    ))
    .await;
    assert_refusal(&log, &missing, "cannot open");

    // A file that changed since it was pinned.
    let path = dir.install("libfaulty.so", &good);
    let section = plugin_section("broken", &path, "", "");
    dir.install("libfaulty.so", &patched(16, b"X"));
    let log = refused(&section).await;
    assert_refusal(&log, &path, "but the config pins");

    // A file others could change.
    let path = dir.install("libshared.so", &good);
    let section = plugin_section("broken", &path, "", "");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o775)).unwrap();
    let log = refused(&section).await;
    assert_refusal(&log, &path, "writable by group or others");

    // The plugin's create refusing its config, or panicking in it.
    let path = dir.install("libfaulty2.so", &good);
    let log = refused(&plugin_section("broken", &path, "", "reject = true")).await;
    assert_refusal(&log, &path, "create rejected its config");
    assert!(log.contains("this plugin was told to refuse"), "{log}");
    let log = refused(&plugin_section(
        "broken",
        &path,
        "",
        "panic_on_create = true",
    ))
    .await;
    assert_refusal(&log, &path, "create panicked");

    // No pin outside dev mode... and the test config is in dev mode, so check the key
    // check instead: neither sha256 nor unpinned.
    let log = refused(&format!(
        "[providers.broken]\ntype = \"plugin\"\nlibrary = \"{}\"",
        path.display()
    ))
    .await;
    assert!(log.contains("providers.broken.sha256: required"), "{log}");
}

#[tokio::test]
async fn plugin_inspect_reads_the_file_without_loading_it() {
    let dir = PluginDir::new();
    let good = built_plugin("switchboard_faulty_plugin");
    let path = dir.install("libfaulty.so", &good);
    let text = inspect_plugin(&path).unwrap();
    for line in [
        "name:         faulty",
        "abi:          1.0",
        "capabilities: password",
        "compiler:     rustc ",
        &format!("sha256:       {}", switchboard_e2e::sha256_hex(&good)),
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }

    // Its create would panic with this config, but inspect never runs it; a patched
    // ABI major is reported exactly.
    let at = descriptor_offset(&good);
    let mut wrong = good.clone();
    wrong[at + 4..at + 6].copy_from_slice(&7u16.to_ne_bytes());
    let path = dir.install("libwrong.so", &wrong);
    let err = inspect_plugin(&path).unwrap_err();
    assert!(
        err.contains("plugin ABI major version 7, but this broker speaks 1"),
        "{err}"
    );
}

/// Logs ADMIN in through the `local` provider and returns the tokens' and userinfo's
/// claims, without those that differ at every login.
async fn admin_login_claims(broker: &Broker) -> String {
    let browser = Browser::new(broker);
    let request =
        AuthorizeRequest::new(WEB_APP).scope("openid profile email groups roles offline_access");
    let reply = broker
        .sign_in_with_password(&browser, &request, ADMIN.username, ADMIN.password)
        .await;
    let userinfo = broker.userinfo(reply.access_token()).await;
    format!(
        "id token header: {}\nid token: {}\naccess token: {}\nuserinfo: {} {}",
        switchboard_e2e::jwt_header(reply.id_token()),
        jwt_stable_claims(reply.id_token()),
        jwt_stable_claims(reply.access_token()),
        userinfo.status,
        userinfo.body,
    )
}

#[tokio::test]
async fn a_builtin_provider_built_as_a_plugin_gives_the_same_tokens_as_linked_in() {
    let dir = PluginDir::new();
    let library = dir.install("liblocal.so", &built_plugin("switchboard_local"));
    let digest = switchboard_e2e::sha256_hex(&std::fs::read(&library).unwrap());

    // One broker (same data, keys and port), first with the provider linked in, then
    // restarted with the same provider id and users served from the plugin. Loaded
    // from a file, the user list is an upstream to the broker: the operator vouches
    // for its emails (`trust_email`) as the broker does for its own users.
    let mut broker = Broker::start().await;
    let linked = admin_login_claims(&broker).await;
    broker
        .restart_with_config(|config| {
            config
                .replace(
                    "[providers.local]\ntype = \"local\"\n",
                    &format!(
                        "[providers.local]\ntype = \"plugin\"\nlibrary = {:?}\nsha256 = {digest:?}\ntrust_email = true\n",
                        library.display().to_string()
                    ),
                )
                .replace(
                    "[[providers.local.static_users]]",
                    "[[providers.local.config.static_users]]",
                )
        })
        .await;
    assert!(broker.log().contains("plugin loaded"), "{}", broker.log());
    let loaded = admin_login_claims(&broker).await;
    assert_eq!(linked, loaded);
    assert!(
        linked.contains(&format!("\"sub\":\"{}\"", ADMIN.id)),
        "{linked}"
    );
    assert!(linked.contains("local/admins"), "{linked}");

    // A wrong password through the loaded provider is refused the same way.
    let (_, landing) = submit_login(&broker, "local", ADMIN.username, "wrong").await;
    assert_eq!(landing.expect_form().page.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn htpasswd_plugin_logs_people_in_and_refresh_follows_the_file() {
    let dir = PluginDir::new();
    let library = dir.install("libhtpasswd.so", &built_plugin("switchboard_htpasswd"));
    let users = dir.path().join("team.htpasswd");
    // argon2id hashes as `broker hash-password` prints them.
    std::fs::write(
        &users,
        format!(
            "# team accounts\nalice:{hash}\ncarol:{hash}\n",
            hash = ADMIN.hash
        ),
    )
    .unwrap();
    let broker = Broker::setup()
        .extra(&plugin_section(
            "team",
            &library,
            "name = \"Team accounts\"",
            &format!(
                "file = {:?}\ngroups = {{ alice = [\"admins\"] }}",
                users.display().to_string()
            ),
        ))
        .start()
        .await;

    let tokens = login_tokens(&broker, "team", "alice", ADMIN.password).await;
    let claims = jwt_claims(tokens.id_token());
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["groups"], serde_json::json!(["team/admins"]));

    // A wrong password and an unknown user are the same refusal.
    for (user, password) in [("alice", "wrong"), ("mallory", ADMIN.password)] {
        let (_, landing) = submit_login(&broker, "team", user, password).await;
        let form = landing.expect_form();
        assert_eq!(form.page.status, StatusCode::UNAUTHORIZED, "{user}");
        assert!(form.page.body.contains("Wrong username or password."));
    }

    // Still in the file: refresh works. Removed from the file: refresh is refused.
    let refreshed = broker.refresh(&WEB_APP, tokens.refresh_token()).await;
    refreshed.assert_ok();
    std::fs::write(&users, format!("carol:{}\n", ADMIN.hash)).unwrap();
    broker
        .refresh(&WEB_APP, refreshed.refresh_token())
        .await
        .assert_error("invalid_grant");
}

/// A plain OAuth 2.0 upstream on loopback, shaped like GitHub's web flow: the person
/// is signed in upstream and has consented, codes are bound to the PKCE challenge,
/// the token endpoint rotates refresh tokens, the user API needs a bearer token.
#[derive(Default)]
struct Upstream {
    codes: std::collections::HashMap<String, String>, // code -> PKCE challenge
    issued: u32,
    access_token: String,
    refresh_token: String,
    user_removed: bool,
}

const UPSTREAM_CLIENT: &str = "acme-client";
const UPSTREAM_SECRET: &str = "acme-secret";

fn upstream(
    state: &std::sync::Arc<std::sync::Mutex<Upstream>>,
    req: switchboard_provider_testkit::server::FakeRequest,
) -> switchboard_provider_testkit::server::FakeResponse {
    use switchboard_provider_testkit::server::FakeResponse;
    let mut up = state.lock().unwrap();
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/oauth/authorize") => {
            assert_eq!(req.query["client_id"], UPSTREAM_CLIENT);
            assert_eq!(req.query["code_challenge_method"], "S256");
            up.issued += 1;
            let code = format!("code-{}", up.issued);
            up.codes
                .insert(code.clone(), req.query["code_challenge"].clone());
            let mut target = url::Url::parse(&req.query["redirect_uri"]).unwrap();
            target
                .query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", &req.query["state"]);
            FakeResponse::text(302, "").with_header("location", target.as_str())
        }
        ("POST", "/oauth/token") => {
            let form = req.form();
            if form.get("client_secret").map(String::as_str) != Some(UPSTREAM_SECRET) {
                return FakeResponse::json(401, &serde_json::json!({"error": "invalid_client"}));
            }
            let granted = match form.get("grant_type").map(String::as_str) {
                Some("authorization_code") => form
                    .get("code")
                    .and_then(|c| up.codes.remove(c))
                    .zip(form.get("code_verifier"))
                    .is_some_and(|(challenge, verifier)| {
                        switchboard_provider_testkit::s256(verifier) == challenge
                    }),
                Some("refresh_token") => {
                    !up.user_removed && form.get("refresh_token") == Some(&up.refresh_token)
                }
                _ => false,
            };
            if !granted {
                return FakeResponse::json(400, &serde_json::json!({"error": "invalid_grant"}));
            }
            up.issued += 1;
            up.access_token = format!("at-{}", up.issued);
            up.refresh_token = format!("rt-{}", up.issued);
            FakeResponse::json(
                200,
                &serde_json::json!({
                    "access_token": up.access_token, "token_type": "bearer",
                    "refresh_token": up.refresh_token, "expires_in": 3600,
                }),
            )
        }
        ("GET", "/api/me") => {
            let bearer = format!("Bearer {}", up.access_token);
            if up.user_removed || req.header("authorization") != Some(bearer.as_str()) {
                return FakeResponse::json(401, &serde_json::json!({"message": "Bad credentials"}));
            }
            FakeResponse::json(
                200,
                &serde_json::json!({
                    "id": 4242, "login": "wile", "name": "Wile E. Coyote",
                    "email": "wile@acme.example", "teams": ["rockets"],
                }),
            )
        }
        _ => FakeResponse::json(404, &serde_json::json!({"message": "Not Found"})),
    }
}

#[tokio::test]
async fn oauth2_plugin_redirect_login_goes_app_broker_plugin_upstream_and_back() {
    use switchboard_provider_testkit::server::FakeServer;
    let state = std::sync::Arc::new(std::sync::Mutex::new(Upstream::default()));
    let s = state.clone();
    let fake = FakeServer::start(move |req| upstream(&s, req)).await;

    let dir = PluginDir::new();
    let library = dir.install("liboauth2.so", &built_plugin("switchboard_oauth2"));
    let origin = fake.origin();
    let broker = Broker::setup()
        .extra(&plugin_section(
            "acme",
            &library,
            "name = \"Acme\"",
            &format!(
                "client_id = {UPSTREAM_CLIENT:?}\nclient_secret = {UPSTREAM_SECRET:?}\n\
                 authorize_url = \"{origin}/oauth/authorize\"\ntoken_url = \"{origin}/oauth/token\"\n\
                 userinfo_url = \"{origin}/api/me\"\nscopes = [\"profile\"]\n\
                 [providers.acme.config.claims]\ngroups = \"teams\""
            ),
        ))
        .start()
        .await;

    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP)
        .scope("openid profile email groups offline_access")
        .param("provider", "acme");
    let back = browser
        .follow_redirects_to(&request.url(&broker), WEB_APP.redirect_uri)
        .await;
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {back}"));
    let tokens = broker.redeem(&WEB_APP, &code, request.verifier()).await;
    tokens.assert_ok();
    let claims = jwt_claims(tokens.id_token());
    assert_eq!(claims["preferred_username"], "wile");
    assert_eq!(claims["email"], "wile@acme.example");
    assert_eq!(
        claims["email_verified"], false,
        "unverified unless the upstream says so"
    );
    assert_eq!(claims["groups"], serde_json::json!(["acme/rockets"]));

    // Refresh asks the upstream through the plugin; once the person is gone there,
    // the app's refresh token dies too.
    let refreshed = broker.refresh(&WEB_APP, tokens.refresh_token()).await;
    refreshed.assert_ok();
    state.lock().unwrap().user_removed = true;
    broker
        .refresh(&WEB_APP, refreshed.refresh_token())
        .await
        .assert_error("invalid_grant");
}

#[tokio::test]
async fn a_call_beyond_the_in_flight_bound_fails_at_once_and_a_timed_out_call_is_cancelled() {
    let dir = PluginDir::new();
    let library = dir.install("libfaulty.so", &built_plugin("switchboard_faulty_plugin"));
    let broker = Broker::setup()
        .extra(&plugin_section(
            "narrow",
            &library,
            "max_in_flight = 1\ncall_timeout = \"2s\"",
            "",
        ))
        .start()
        .await;

    let hang = async {
        let (_, landing) = submit_login(&broker, "narrow", "hang", "right").await;
        assert_unavailable(landing, "the hanging call times out");
    };
    let meanwhile = async {
        // The plugin's own log line says the hanging call has started.
        broker.wait_for_log("username=hang").await;
        let (_, landing) = submit_login(&broker, "narrow", "carol", "right").await;
        assert_unavailable(landing, "a call beyond max_in_flight = 1 fails at once");
    };
    tokio::join!(hang, meanwhile);
    let log = broker.log();
    assert!(log.contains("too many calls in flight"), "{log}");
    assert!(log.contains("plugin call timed out; cancelled"), "{log}");

    // The cancel reached the plugin (its task was dropped), and the slot is free again.
    broker.wait_for_log("the hanging call was cancelled").await;
    login_tokens(&broker, "narrow", "carol", "right").await;
}

#[tokio::test]
async fn every_builtin_provider_crate_loads_as_a_plugin() {
    let dir = PluginDir::new();
    // Upstreams are never called here: each provider only has to load and be offered.
    let dead = format!("http://127.0.0.1:{}", switchboard_e2e::free_port());
    let providers: [(&str, &str, &str); 6] = [
        (
            "local",
            "password",
            r#"[[providers.dyn-local.config.static_users]]
id = "plugin-user"
email = "plugin@example.com"
hash = "$argon2id$v=19$m=19456,t=2,p=1$dL0uCXJvWII5FsUebB5CmA$Bba2qKpU1xbYlyVtuWXTlwQ4NGcD1ZyAM81YaaCYdgo""#,
        ),
        (
            "ldap",
            "password, refresh",
            "url = \"ldap://127.0.0.1:1\"\nbind_dn = \"cn=svc,dc=example,dc=org\"\nbind_password = \"x\"\n\
             user_search = { base_dn = \"ou=people,dc=example,dc=org\", filter = \"(uid={username})\" }",
        ),
        (
            "oidc",
            "redirect, refresh",
            "issuer = \"DEAD\"\nclient_id = \"c\"\nclient_secret = \"s\"",
        ),
        (
            "google",
            "redirect, refresh",
            "issuer = \"DEAD\"\nclient_id = \"c\"\nclient_secret = \"s\"",
        ),
        (
            "microsoft",
            "redirect, refresh",
            "authority = \"DEAD\"\ntenant = \"9188040d-6c67-4c5b-b112-36a304b66dad\"\nclient_id = \"c\"\nclient_secret = \"s\"",
        ),
        (
            "github",
            "redirect, refresh",
            "base_url = \"DEAD\"\nclient_id = \"c\"\nclient_secret = \"s\"",
        ),
    ];
    let mut setup = Broker::setup();
    for (crate_name, capabilities, config) in providers {
        let bytes = built_plugin(&format!("switchboard_{crate_name}"));
        let path = dir.install(&format!("lib{crate_name}.so"), &bytes);
        let text = inspect_plugin(&path).unwrap_or_else(|e| panic!("{crate_name}: {e}"));
        assert!(
            text.contains(&format!("name:         {crate_name}\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("capabilities: {capabilities}\n")),
            "{text}"
        );
        setup = setup.extra(&plugin_section(
            &format!("dyn-{crate_name}"),
            &path,
            &format!("name = \"Loaded {crate_name}\""),
            &config.replace("DEAD", &dead),
        ));
    }
    let broker = setup.start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP);
    let page = browser.open(&request.url(&broker)).await.expect_page();
    for (crate_name, _, _) in providers {
        assert!(
            page.body.contains(&format!("/login/dyn-{crate_name}?")),
            "dyn-{crate_name} is offered:\n{}",
            page.body
        );
    }
    assert_eq!(
        broker.log().matches("plugin loaded").count(),
        6,
        "{}",
        broker.log()
    );

    // The loaded local provider logs its static user in.
    let tokens = login_tokens(&broker, "dyn-local", "plugin@example.com", ADMIN.password).await;
    assert_eq!(jwt_claims(tokens.id_token())["email"], "plugin@example.com");
}
