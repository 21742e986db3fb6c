//! Kerberos through the broker, against a real MIT KDC (tests/support/kdc.rs): the
//! kerberos plugin (`libswitchboard_kerberos.so`, loaded as `type = "plugin"` like any
//! other) with a keytab for `HTTP/localhost`.
//!
//! - With a ticket (`kinit`), `curl --negotiate` walks `/authorize` → the Kerberos
//!   provider → the app's redirect with a code, answering the broker's
//!   `WWW-Authenticate: Negotiate` with no form; the broker returns the mutual
//!   authentication token.
//! - Without one, the challenge page is the Kerberos password form, and the password
//!   (verified against the keytab) signs the person in.
//! - A wrong password, a realm not allowed, a ticket for another service and a
//!   replayed token are refused with one message to the person and the reason in the
//!   broker's log.
//!
//! Skips without krb5kdc, unless `SWITCHBOARD_REQUIRE_PEERS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

use std::path::{Path, PathBuf};
use std::process::Command;
use switchboard_e2e::{
    AuthorizeRequest, Broker, Browser, KRB_REALM, Kdc, Landing, PluginDir, WEB_APP, built_plugin,
    descriptor_offset, inspect_plugin, jwt_claims, plugin_section, replace_bytes,
};
use switchboard_plugin_api::abi;
use url::Url;

const PASSWORD: &str = "correct-horse-kerberos";
const SERVICE: &str = "HTTP/localhost@EXAMPLE.TEST";
/// What the person sees for every refused ticket.
const TICKET_REFUSED: &str = "Your sign-in from this computer was not accepted.";
/// What the person sees for every refused password.
const PASSWORD_REFUSED: &str = "Wrong username or password.";

/// The realm with its people and services, and the plugin installed.
struct Realm {
    kdc: Kdc,
    keytab: PathBuf,
    plugins: PluginDir,
    library: PathBuf,
}

fn realm(test: &str) -> Option<Realm> {
    let kdc = Kdc::start(test)?;
    kdc.add_user("ada", PASSWORD);
    let keytab = kdc.add_service("HTTP/localhost", "http.keytab");
    // A service the KDC knows but the broker holds no key of.
    kdc.add_service("HTTP/127.0.0.1", "other.keytab");
    let plugins = PluginDir::new();
    let library = plugins.install(
        "libswitchboard_kerberos.so",
        &built_plugin("switchboard_kerberos"),
    );
    Some(Realm {
        kdc,
        keytab,
        plugins,
        library,
    })
}

impl Realm {
    fn section(&self, allowed_realms: &str) -> String {
        self.section_with(allowed_realms, "")
    }

    /// The provider section, with extra broker keys for the provider.
    fn section_with(&self, allowed_realms: &str, keys: &str) -> String {
        plugin_section(
            "krb",
            &self.library,
            &format!("name = \"Windows sign-in\"\n{keys}"),
            &format!(
                "service_principal = {SERVICE:?}\n\
                 keytab = {:?}\n\
                 allowed_realms = {allowed_realms}\n\
                 replay_cache = {:?}\n\
                 email_domains = {{ {KRB_REALM:?} = \"example.test\" }}\n",
                self.keytab.display().to_string(),
                format!("file2:{}", self.kdc.path("rcache").display()),
            ),
        )
    }

    async fn broker(&self, allowed_realms: &str) -> Broker {
        self.broker_with(allowed_realms, "").await
    }

    async fn broker_with(&self, allowed_realms: &str, keys: &str) -> Broker {
        self.broker_full(allowed_realms, keys, "").await
    }

    /// A broker with the provider's extra `keys` and more config (`extra`) after it.
    async fn broker_full(&self, allowed_realms: &str, keys: &str, extra: &str) -> Broker {
        let mut setup = Broker::setup()
            .extra(&self.section_with(allowed_realms, keys))
            .extra(extra);
        for (name, value) in self.kdc.env() {
            setup = setup.env(&name, &value);
        }
        setup.start().await
    }

    /// A person's credential cache with a fresh TGT.
    fn ticket(&self, name: &str) -> PathBuf {
        let ccache = self.kdc.path(&format!("ccache-{name}"));
        self.kdc.kinit(name, PASSWORD, &ccache);
        ccache
    }
}

/// One HTTP exchange as curl saw it.
#[derive(Debug)]
struct Step {
    url: Url,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// The Negotiate token curl sent, if it sent one.
    sent_token: Option<String>,
}

impl Step {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `curl` with a cookie jar, as a desktop browser: with a credential cache it answers
/// `Negotiate` challenges (`--negotiate -u :`).
struct Curl<'a> {
    kdc: &'a Kdc,
    jar: PathBuf,
    ccache: Option<PathBuf>,
    /// The broker's port: its absolute URLs (issuer 127.0.0.1) are followed at `host`.
    port: u16,
    host: &'static str,
}

impl<'a> Curl<'a> {
    fn new(realm: &'a Realm, broker: &Broker, ccache: Option<PathBuf>, host: &'static str) -> Self {
        let port = Url::parse(broker.issuer()).unwrap().port().unwrap();
        let jar = realm
            .kdc
            .path(&format!("jar-{}", switchboard_e2e::free_port()));
        Curl {
            kdc: &realm.kdc,
            jar,
            ccache,
            port,
            host,
        }
    }

    fn base(&self) -> Url {
        Url::parse(&format!("http://{}:{}/", self.host, self.port)).unwrap()
    }

    fn get(&self, url: &Url, authorization: Option<&str>) -> Step {
        let dir = tempfile::tempdir().unwrap();
        let headers_file = dir.path().join("headers");
        let body_file = dir.path().join("body");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-v", "--max-time", "15", "-b"])
            .arg(&self.jar)
            .arg("-c")
            .arg(&self.jar)
            .arg("-D")
            .arg(&headers_file)
            .arg("-o")
            .arg(&body_file)
            .envs(self.kdc.env());
        // No ticket: an empty cache file that holds nothing.
        let ccache = self
            .ccache
            .clone()
            .unwrap_or_else(|| dir.path().join("no-ccache"));
        cmd.env("KRB5CCNAME", format!("FILE:{}", ccache.display()));
        cmd.args(["--negotiate", "-u", ":"]);
        if let Some(value) = authorization {
            cmd.arg("-H").arg(format!("Authorization: {value}"));
        }
        let out = cmd.arg(url.as_str()).output().expect("run curl");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "curl {url} failed: {stderr}");
        let raw = std::fs::read_to_string(&headers_file).unwrap();
        // -D writes every response of the exchange (401, then the answer): the last.
        let last = raw
            .split("\r\n\r\n")
            .filter(|block| block.starts_with("HTTP/"))
            .last()
            .unwrap_or_else(|| panic!("no response headers from {url}: {raw}"));
        let mut lines = last.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let sent_token = stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("> Authorization: Negotiate "))
            .map(|t| t.trim().to_owned());
        Step {
            url: url.clone(),
            status,
            headers,
            body: std::fs::read_to_string(&body_file).unwrap_or_default(),
            sent_token,
        }
    }

    /// Follows the broker's redirects from `url`: the redirect to the app, or the page
    /// where the walk stopped, with the steps taken.
    fn walk(&self, url: &Url) -> (Result<Url, Step>, Vec<Step>) {
        let mut url = url.clone();
        let mut steps = Vec::new();
        for _ in 0..10 {
            let step = self.get(&url, None);
            if !(300..400).contains(&step.status) {
                return (Err(step), steps);
            }
            let location = step.header("location").expect("a Location").to_owned();
            let mut next = url.join(&location).unwrap();
            if next.port() == Some(self.port) && next.host_str() == Some("127.0.0.1") {
                next.set_host(Some(self.host)).unwrap();
            }
            steps.push(step);
            if next.origin() != self.base().origin() {
                return (Ok(next), steps);
            }
            url = next;
        }
        panic!("more than 10 redirects");
    }
}

fn authorize() -> AuthorizeRequest {
    AuthorizeRequest::new(WEB_APP)
        .scope("openid profile email")
        .param("provider", "krb")
}

fn code_of(url: &Url) -> String {
    url.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {url}"))
}

/// The page a person is left on for a refused ticket.
fn assert_ticket_refused(page: &Step) {
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains(TICKET_REFUSED), "{}", page.body);
    assert!(
        page.header("www-authenticate").is_none(),
        "no new challenge after a refused ticket"
    );
}

#[tokio::test]
async fn a_person_with_a_ticket_signs_in_with_no_form_and_gets_the_mutual_token() {
    let Some(realm) = realm("kerberos ticket login") else {
        return;
    };
    let broker = realm.broker(&format!("[{KRB_REALM:?}]")).await;
    let ccache = realm.ticket("ada");
    let curl = Curl::new(&realm, &broker, Some(ccache), "localhost");
    let request = authorize();
    let (landed, steps) = curl.walk(&request.url_at(&curl.base()));
    let app = landed.unwrap_or_else(|page| {
        panic!(
            "stopped at {} {}\n{}\n{}",
            page.status,
            page.body,
            broker.log(),
            realm.kdc.log()
        )
    });
    // The step that answered the challenge: curl sent a token, the broker answered
    // with the code and its own token (mutual authentication).
    let answered = steps
        .iter()
        .find(|s| s.url.path() == "/login/krb/header")
        .expect("the header login");
    assert!(answered.sent_token.is_some(), "curl answered the challenge");
    let mutual = answered
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("no mutual authentication token: {answered:?}"));
    assert!(
        mutual.starts_with("Negotiate ") && mutual.len() > "Negotiate ".len() + 8,
        "{mutual}"
    );
    let tokens = broker
        .redeem(&request.client, &code_of(&app), request.verifier())
        .await;
    tokens.assert_ok();
    let claims = jwt_claims(tokens.id_token());
    assert_eq!(claims["preferred_username"], "ada");
    assert_eq!(claims["email"], "ada@example.test");

    // The same token again, on a new login: the replay cache refuses it.
    let token = answered.sent_token.clone().unwrap();
    let replay = Curl::new(&realm, &broker, None, "localhost");
    let (landed, steps) = replay.walk(&authorize().url_at(&replay.base()));
    let challenge = landed.expect_err("no ticket: the walk stops at the challenge");
    assert_eq!(challenge.status, 401);
    let header_url = steps.last().unwrap().header("location").unwrap().to_owned();
    let header_url = replay.base().join(&header_url).unwrap();
    assert!(header_url.path().ends_with("/header"), "{header_url}");
    let page = replay.get(&header_url, Some(&format!("Negotiate {token}")));
    assert_ticket_refused(&page);
    broker.wait_for_log("Request is a replay").await;
}

#[tokio::test]
async fn without_a_ticket_the_challenge_page_is_the_password_form_and_the_password_signs_in() {
    let Some(realm) = realm("kerberos password login") else {
        return;
    };
    let roles = "[roles.permissions]\nstaff = [\"intranet:read\"]\noutsider = [\"lobby:read\"]\n\n\
                 [[roles.rules]]\nrole = \"staff\"\nprovider = \"krb\"\n\
                 claim = { path = \"realm\", equals = \"EXAMPLE.TEST\" }\n\n\
                 [[roles.rules]]\nrole = \"outsider\"\nprovider = \"krb\"\n\
                 claim = { path = \"realm\", equals = \"OTHER.TEST\" }\n";
    let broker = realm
        .broker_full(&format!("[{KRB_REALM:?}]"), "", roles)
        .await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP)
        .scope("openid profile roles")
        .param("provider", "krb");
    let form = browser.open(&request.url(&broker)).await.expect_form();
    assert_eq!(
        form.page.status, 401,
        "the challenge, with the form as its body"
    );
    assert_eq!(
        form.page.headers["www-authenticate"], "Negotiate",
        "a browser with a ticket would answer this"
    );
    let response = browser.submit(&form, "ada", PASSWORD).await.expect_client();
    let tokens = broker
        .redeem(&request.client, response.code(), request.verifier())
        .await;
    tokens.assert_ok();
    let claims = jwt_claims(tokens.id_token());
    assert_eq!(claims["preferred_username"], "ada");
    assert_eq!(
        claims["roles"],
        serde_json::json!(["staff"]),
        "a role rule by provider and realm: {claims}"
    );
    broker
        .wait_for_log("Kerberos password verified against the keytab")
        .await;
    assert!(!broker.log().contains(PASSWORD), "the password was logged");
}

/// Submits `username`/`password` on the Kerberos form: the page the person sees.
async fn password_refused(broker: &Broker, username: &str, password: &str) {
    let browser = Browser::new(broker);
    let form = browser.open(&authorize().url(broker)).await.expect_form();
    match browser.submit(&form, username, password).await {
        Landing::LoginForm(again) => {
            assert!(
                again.page.body.contains(PASSWORD_REFUSED),
                "{}",
                again.page.body
            );
        }
        other => panic!("expected the form again, got {other:?}"),
    }
}

#[tokio::test]
async fn refusals_show_one_message_and_log_the_reason() {
    let Some(realm) = realm("kerberos refusals") else {
        return;
    };
    let broker = realm.broker(&format!("[{KRB_REALM:?}]")).await;

    // A wrong password.
    password_refused(&broker, "ada", "not the password").await;
    broker
        .wait_for_log("password of ada@EXAMPLE.TEST not verified")
        .await;

    // A principal of a realm not allowed, typed.
    password_refused(&broker, "ada@OTHER.TEST", PASSWORD).await;
    broker
        .wait_for_log(r#"realm "OTHER.TEST" of "ada@OTHER.TEST" is not allowed"#)
        .await;

    // A service principal is not a person, even with its key's password.
    password_refused(&broker, "HTTP/localhost", PASSWORD).await;

    // A ticket for another service: curl at 127.0.0.1 asks for HTTP/127.0.0.1.
    let ccache = realm.ticket("ada");
    let curl = Curl::new(&realm, &broker, Some(ccache.clone()), "127.0.0.1");
    let (landed, steps) = curl.walk(&authorize().url_at(&curl.base()));
    let page = landed.expect_err("a ticket for another service is refused");
    assert!(steps.iter().all(|s| s.status != 200));
    assert_ticket_refused(&page);
    broker
        .wait_for_log("ticket for HTTP/localhost@EXAMPLE.TEST not accepted")
        .await;

    // A ticket of a realm not allowed: the same ticket at a broker allowing another.
    let other = realm.broker("[\"OTHER.TEST\"]").await;
    let curl = Curl::new(&realm, &other, Some(ccache), "localhost");
    let (landed, _) = curl.walk(&authorize().url_at(&curl.base()));
    let page = landed.expect_err("a realm not allowed is refused");
    assert_ticket_refused(&page);
    other
        .wait_for_log(r#"realm "EXAMPLE.TEST" of "ada@EXAMPLE.TEST" is not allowed"#)
        .await;
}

#[tokio::test]
async fn the_plugin_declares_the_header_capability_and_reads_only_authorization() {
    let Some(realm) = realm("kerberos inspect") else {
        return;
    };
    let text = inspect_plugin(&realm.library).unwrap();
    for line in [
        "name:         kerberos",
        "abi:          1.1",
        "capabilities: password, header",
        "headers:      authorization",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    let _ = &realm.plugins;
}

#[tokio::test]
async fn a_keytab_others_can_read_stops_the_broker_at_start() {
    let Some(realm) = realm("kerberos keytab mode") else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&realm.keytab, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut setup = Broker::setup().extra(&realm.section(&format!("[{KRB_REALM:?}]")));
    for (name, value) in realm.kdc.env() {
        setup = setup.env(&name, &value);
    }
    let log = setup.start_refused().await;
    assert!(log.contains("providers.krb.config.keytab"), "{log}");
    assert!(log.contains("mode 640"), "{log}");
    let _ = Path::new(&realm.keytab);
}

#[tokio::test]
async fn a_ticket_logs_in_only_with_the_pending_logins_csrf_token_and_browser() {
    let Some(realm) = realm("kerberos csrf and binding") else {
        return;
    };
    let broker = realm.broker(&format!("[{KRB_REALM:?}]")).await;
    let ccache = realm.ticket("ada");
    let curl = Curl::new(&realm, &broker, Some(ccache.clone()), "localhost");
    let request = authorize();
    // /authorize → /login/krb → the header login URL, without following it.
    let mut url = request.url_at(&curl.base());
    let header_url = loop {
        let step = curl.get(&url, None);
        assert_eq!(step.status, 303, "{}", step.body);
        let next = url.join(step.header("location").unwrap()).unwrap();
        if next.path() == "/login/krb/header" {
            break next;
        }
        url = next;
    };
    let pairs: Vec<(String, String)> = header_url.query_pairs().into_owned().collect();
    let with_csrf = |csrf: Option<&str>| {
        let mut forged = header_url.clone();
        forged.query_pairs_mut().clear();
        for (k, v) in &pairs {
            if k == "csrf" {
                if let Some(csrf) = csrf {
                    forged.query_pairs_mut().append_pair(k, csrf);
                }
            } else {
                forged.query_pairs_mut().append_pair(k, v);
            }
        }
        forged
    };

    // A wrong or missing CSRF token: refused before the provider sees the ticket.
    for forged in [with_csrf(Some("AAAA")), with_csrf(None)] {
        let page = curl.get(&forged, None);
        assert_eq!(page.status, 403, "{forged}: {}", page.body);
        assert!(page.body.contains("The form expired"), "{}", page.body);
    }
    // curl sends its ticket unasked; the provider never saw it.
    assert!(!broker.log().contains("Kerberos ticket accepted"));
    // The right URL from another browser (no binding cookie), even with a ticket.
    let other = Curl::new(&realm, &broker, Some(ccache), "localhost");
    let page = other.get(&header_url, None);
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(!broker.log().contains("Kerberos ticket accepted"));

    // The browser that started it, with its token: signed in.
    let done = curl.get(&header_url, None);
    assert_eq!(done.status, 303, "{}", done.body);
    let app = header_url.join(done.header("location").unwrap()).unwrap();
    let tokens = broker
        .redeem(&request.client, &code_of(&app), request.verifier())
        .await;
    tokens.assert_ok();
    // The pending login is used up: the same URL again finds nothing to finish.
    let again = curl.get(&header_url, None);
    assert_eq!(again.status, 400, "{}", again.body);
}

#[tokio::test]
async fn refresh_cannot_recheck_kerberos_so_it_ends_after_max_session_without_recheck() {
    let Some(realm) = realm("kerberos refresh") else {
        return;
    };
    let broker = realm
        .broker_with(
            &format!("[{KRB_REALM:?}]"),
            "max_session_without_recheck = \"2s\"",
        )
        .await;
    let curl = Curl::new(&realm, &broker, Some(realm.ticket("ada")), "localhost");
    let request = AuthorizeRequest::new(WEB_APP)
        .scope("openid offline_access")
        .param("provider", "krb");
    let (landed, _) = curl.walk(&request.url_at(&curl.base()));
    let app = landed.unwrap_or_else(|page| panic!("{} {}", page.status, page.body));
    let tokens = broker
        .redeem(&request.client, &code_of(&app), request.verifier())
        .await;
    tokens.assert_ok();
    // Within the window the stored identity stands (the plugin has no refresh).
    let refreshed = broker.refresh(&WEB_APP, tokens.refresh_token()).await;
    refreshed.assert_ok();
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let late = broker.refresh(&WEB_APP, refreshed.refresh_token()).await;
    assert_eq!(
        late.error(),
        Some("invalid_grant"),
        "past the window: log in again"
    );
}

/// The 1.1 field is read only when version and size both say it is there: a 1.0
/// descriptor claiming the header bit gets no header login, and a header plugin
/// without header names is refused.
#[tokio::test]
async fn header_logins_are_read_only_from_a_whole_1_1_descriptor() {
    let dir = PluginDir::new();
    let old = built_plugin("switchboard_faulty_plugin");
    let at = descriptor_offset(&old);
    let patch = |bytes: &[u8], offset: usize, with: &[u8]| {
        let mut copy = bytes.to_vec();
        copy[at + offset..at + offset + with.len()].copy_from_slice(with);
        copy
    };
    let caps = (abi::CAP_PASSWORD | abi::CAP_HEADER).to_ne_bytes();
    let claims_header = patch(&old, abi::offsets::CAPABILITIES, &caps);
    let claims_minor_too = patch(&claims_header, abi::offsets::ABI_MINOR, &1u16.to_ne_bytes());
    for (name, bytes) in [
        ("libold-a.so", claims_header),
        ("libold-b.so", claims_minor_too),
    ] {
        let text = inspect_plugin(&dir.install(name, &bytes)).unwrap();
        assert!(text.contains("capabilities: password\n"), "{text}");
        assert!(!text.contains("headers:"), "{text}");
    }

    let kerberos = built_plugin("switchboard_kerberos");
    let nameless = replace_bytes(&kerberos, b"authorization,", &[0u8; 14]);
    let refused = inspect_plugin(&dir.install("libnameless.so", &nameless)).unwrap_err();
    assert!(
        refused.contains("header capability without header names"),
        "{refused}"
    );
}
