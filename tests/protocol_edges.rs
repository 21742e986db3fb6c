//! Protocol edges, through the real binary: one redirect-URI comparison at
//! `/authorize` and `/token` (exact string, only the loopback port may vary for a
//! native client), PKCE required per client, `--config` wherever a command takes it
//! (and every `broker` command line of the README run as written), and passwords read
//! without echo on a terminal but from a pipe all the same.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

use reqwest::StatusCode;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, Broker, Browser, Landing, NATIVE_APP, Page, SECOND_APP, TestClient,
    WEB_APP, broker_binary, free_port, workspace_root,
};

fn assert_error_page(landing: Landing, what: &str) {
    let page: Page = match landing {
        Landing::Page(p) => p,
        Landing::Client(r) => panic!("{what}: redirected to the client: {}", r.url),
        Landing::LoginForm(_) => panic!("{what}: accepted (the login form is shown)"),
    };
    assert_eq!(
        page.status,
        StatusCode::BAD_REQUEST,
        "{what}: {}",
        page.body
    );
    assert!(
        page.header("location").is_none(),
        "{what}: an error page never redirects"
    );
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{what}: an HTML page"
    );
}

// ---------------------------------------------------------------------------------
// Item 9: redirect_uri is one exact string comparison.

/// A confidential client registered with URIs that URL parsing would rewrite: an
/// explicit default port, and an origin without a path.
const EXACT_APP: TestClient = TestClient {
    id: "exact-app",
    secret: Some("exact-app-secret"),
    redirect_uri: "https://exact.example:443/callback",
    registered_redirect_uri: "https://exact.example:443/callback",
    alg: "RS256",
    cors_origin: None,
};

const EXACT_APP_NO_PATH: &str = "https://exact.example";

fn exact_app_section() -> String {
    format!(
        "[clients.{}]\nsecret = {:?}\nredirect_uris = [{:?}, {:?}]",
        EXACT_APP.id,
        EXACT_APP.secret.unwrap_or_default(),
        EXACT_APP.registered_redirect_uri,
        EXACT_APP_NO_PATH
    )
}

async fn broker_with_exact_app() -> Broker {
    Broker::setup().extra(&exact_app_section()).start().await
}

#[tokio::test]
async fn redirect_uri_spellings_that_are_not_registered_get_an_error_page() {
    let broker = broker_with_exact_app().await;
    let browser = Browser::new(&broker);
    // SECOND_APP is registered as https://second.example/callback.
    for variant in [
        "https://second.example:443/callback",
        "https://SECOND.EXAMPLE/callback",
        "https://Second.example/callback",
        "HTTPS://second.example/callback",
        "https://second.example/./callback",
        "https://second.example/x/../callback",
        "https://second.example/%63allback",
    ] {
        let url = AuthorizeRequest::new(SECOND_APP)
            .param("redirect_uri", variant)
            .url(&broker);
        assert_error_page(browser.open(&url).await, variant);
    }
    // exact-app is registered with :443 and as an origin without a path.
    for variant in ["https://exact.example/callback", "https://exact.example/"] {
        let url = AuthorizeRequest::new(EXACT_APP)
            .param("redirect_uri", variant)
            .url(&broker);
        assert_error_page(browser.open(&url).await, variant);
    }
    // A native client's loopback redirect may change its port, and nothing else.
    for variant in [
        "http://127.0.0.1:49152/./callback",
        "http://127.0.0.1:49152/callback/",
        "http://localhost:49152/callback",
        "HTTP://127.0.0.1:49152/callback",
        "http://127.0.0.1:49152:80/callback",
        "http://user@127.0.0.1:49152/callback",
    ] {
        let url = AuthorizeRequest::new(NATIVE_APP)
            .param("redirect_uri", variant)
            .url(&broker);
        assert_error_page(browser.open(&url).await, variant);
    }
}

#[tokio::test]
async fn a_redirect_uri_registered_with_its_default_port_works_through_token() {
    let broker = broker_with_exact_app().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(EXACT_APP);
    let response = browser.log_in(&request.url(&broker), &ADMIN).await;
    assert_eq!(response.url.host_str(), Some("exact.example"));
    assert_eq!(response.url.path(), "/callback");
    broker
        .redeem(&EXACT_APP, response.code(), request.verifier())
        .await
        .assert_ok();
}

#[tokio::test]
async fn a_redirect_uri_registered_without_a_path_works_through_token() {
    let broker = broker_with_exact_app().await;
    let browser = Browser::new(&broker);
    let client = TestClient {
        redirect_uri: EXACT_APP_NO_PATH,
        ..EXACT_APP
    };
    let request = AuthorizeRequest::new(client);
    let response = browser.log_in(&request.url(&broker), &ADMIN).await;
    assert_eq!(response.url.host_str(), Some("exact.example"));
    broker
        .redeem(&client, response.code(), request.verifier())
        .await
        .assert_ok();
}

/// `/token` compares the very string `/authorize` accepted: another spelling of the
/// same address is another redirect URI.
#[tokio::test]
async fn token_compares_the_redirect_uri_string_authorize_accepted() {
    let broker = broker_with_exact_app().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(EXACT_APP);
    let code = browser
        .log_in(&request.url(&broker), &ADMIN)
        .await
        .code()
        .to_string();
    let respelled = TestClient {
        redirect_uri: "https://exact.example/callback",
        ..EXACT_APP
    };
    broker
        .redeem(&respelled, &code, request.verifier())
        .await
        .assert_error("invalid_grant");
}

#[tokio::test]
async fn a_native_loopback_redirect_on_another_port_works_through_token() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let client = TestClient {
        redirect_uri: "http://127.0.0.1:61000/callback",
        ..NATIVE_APP
    };
    let request = AuthorizeRequest::new(client);
    let response = browser.log_in(&request.url(&broker), &ADMIN).await;
    assert_eq!(response.url.port(), Some(61000));
    let other_port = TestClient {
        redirect_uri: "http://127.0.0.1:61001/callback",
        ..NATIVE_APP
    };
    // The port is free at /authorize; at /token it is the one /authorize saw.
    broker
        .redeem(&other_port, response.code(), request.verifier())
        .await
        .assert_error("invalid_grant");
    let request = AuthorizeRequest::new(client);
    let response = browser.open(&request.url(&broker)).await.expect_client();
    broker
        .redeem(&client, response.code(), request.verifier())
        .await
        .assert_ok();
}

// ---------------------------------------------------------------------------------
// Item 10: require_pkce per client.

#[tokio::test]
async fn a_confidential_client_without_pkce_is_refused_by_default() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).without_pkce();
    let response = browser.open(&request.url(&broker)).await.expect_client();
    response.assert_error("invalid_request");
    assert_eq!(response.state(), Some(request.state.as_str()));
    assert!(
        response
            .param("error_description")
            .is_some_and(|d| d.contains("PKCE")),
        "the description says what is missing: {}",
        response.url
    );
}

#[tokio::test]
async fn a_confidential_client_may_turn_pkce_off() {
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
    broker.redeem(&WEB_APP, &code, None).await.assert_ok();
    // Off means optional, not forbidden: a client that sends PKCE is still held to it.
    let request = AuthorizeRequest::new(WEB_APP);
    let code = browser
        .open(&request.url(&broker))
        .await
        .expect_client()
        .code()
        .to_string();
    broker
        .redeem(&WEB_APP, &code, None)
        .await
        .assert_error("invalid_grant");
}

#[tokio::test]
async fn a_public_client_cannot_turn_pkce_off() {
    let log = Broker::setup()
        .client(NATIVE_APP.id, "require_pkce = false")
        .start_refused()
        .await;
    assert!(
        log.contains("clients.native-cli.require_pkce: a public client always uses PKCE"),
        "the error names the key and why: {log}"
    );
}

#[test]
fn shipped_configs_set_and_document_require_pkce() {
    let demo = std::fs::read_to_string(workspace_root().join("config/broker.toml"))
        .expect("read config/broker.toml");
    for client in ["example-app", "example-cli"] {
        let section = toml_section(&demo, &format!("[clients.{client}]"));
        assert!(
            section.contains("\nrequire_pkce = true"),
            "config/broker.toml sets require_pkce for {client} explicitly:\n{section}"
        );
    }
    let full = std::fs::read_to_string(workspace_root().join("config/full.toml"))
        .expect("read config/full.toml");
    assert!(
        toml_section(&full, "[clients.example-app]").contains("\nrequire_pkce = "),
        "config/full.toml documents require_pkce"
    );
    let readme =
        std::fs::read_to_string(workspace_root().join("README.md")).expect("read README.md");
    assert!(
        readme.contains("require_pkce"),
        "README documents require_pkce"
    );
}

/// The text of a TOML table, from its header to the next header.
fn toml_section(text: &str, header: &str) -> String {
    let start = text
        .find(header)
        .unwrap_or_else(|| panic!("no {header} in the file"));
    let rest = &text[start + header.len()..];
    let end = rest.find("\n[").unwrap_or(rest.len());
    rest[..end].to_string()
}

// ---------------------------------------------------------------------------------
// Item 15: --config after the action; every README command line runs as written.

#[tokio::test]
async fn config_goes_before_or_after_the_action() {
    let broker = Broker::start().await;
    let id = broker.user_command(&["add", "--email", "ann@example.com"], "ann-password-1\n");
    let id = id.trim();
    let config = broker.config_path().to_str().expect("a UTF-8 path");
    for args in [
        vec!["user", "list", "--config", config],
        vec!["user", "--config", config, "list"],
        vec!["user", "list", "-c", config],
        vec!["user", "disable", id, "--config", config],
        vec!["user", "enable", "--config", config, id],
        vec!["roles", "explain", id, "--config", config],
        vec!["roles", "--config", config, "explain", id],
        vec!["roles", "explain", "--config", config, id],
    ] {
        let out = broker.cli(&args);
        assert!(
            out.status.success(),
            "broker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The password every README command that asks for one is given on standard input.
const README_PASSWORD: &str = "readme-example-password";

/// One command line of a README code block.
#[derive(Debug)]
struct ReadmeCommand {
    /// As written in the README.
    line: String,
    /// The arguments after `broker`, placeholders substituted.
    args: Vec<String>,
}

/// Every line of a fenced code block in `readme` that runs the broker: `broker …`, or
/// `cargo run … -- …` (the arguments after `--`). Comments after ` #` are dropped.
fn readme_commands(readme: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_block = false;
    for line in readme.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let command = strip_comment(trimmed);
        if command.starts_with("broker ") {
            lines.push(command.to_string());
        } else if command.starts_with("cargo run ") {
            let (_, args) = command
                .split_once(" -- ")
                .unwrap_or_else(|| panic!("a cargo run line without `--`: {command}"));
            lines.push(format!("broker {args}"));
        }
    }
    lines
}

/// `line` without a trailing shell comment (a `#` after whitespace, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '#') if previous.is_whitespace() => return line[..i].trim_end(),
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
        previous = c;
    }
    line.trim_end()
}

/// Splits a command line as a POSIX shell would for the simple quoting the README
/// uses ('…', "…", no escapes, no expansions).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (_, c) => {
                assert!(
                    quote.is_some() || !matches!(c, '$' | '`' | '\\' | '|' | '>' | '<' | ';'),
                    "the README line {line:?} needs a shell; write plain command lines"
                );
                word.push(c);
                in_word = true;
            }
        }
    }
    assert!(quote.is_none(), "unbalanced quotes in {line:?}");
    if in_word {
        words.push(word);
    }
    words
}

#[test]
fn readme_command_lines_are_found_and_split() {
    let readme = "text\n```sh\ncargo run --bin broker -- serve --config config/broker.toml\n\
                  broker user add --email a@b.example --name \"A B\" --config c.toml   # prints USER_ID\n\
                  curl -d x http://127.0.0.1/\n```\nbroker outside a block\n";
    let lines = readme_commands(readme);
    assert_eq!(
        lines,
        [
            "broker serve --config config/broker.toml",
            "broker user add --email a@b.example --name \"A B\" --config c.toml",
        ]
    );
    assert_eq!(
        shell_words(&lines[1]),
        [
            "broker",
            "user",
            "add",
            "--email",
            "a@b.example",
            "--name",
            "A B",
            "--config",
            "c.toml"
        ]
    );
}

/// A `broker` process that sees none of the caller's `BROKER_*` variables.
fn broker_in(dir: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new(broker_binary());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BROKER_") {
            cmd.env_remove(&name);
        }
    }
    cmd.args(args).current_dir(dir);
    cmd
}

fn run_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn broker");
    // A command that exits without reading (a usage error) breaks the pipe: its exit
    // status and output tell what happened.
    let _ = child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes());
    child.wait_with_output().expect("wait for broker")
}

/// `broker serve …` as written, but on a free port (`BROKER_SERVER__LISTEN`, since the
/// demo port may be taken): it must answer `/healthz`, then it is stopped. A port
/// picked free can be taken before the broker binds it, so that is tried again.
async fn serve_until_healthy(dir: &Path, command: &ReadmeCommand) {
    let mut failure = String::new();
    for _ in 0..3 {
        match serve_once(dir, command).await {
            Ok(()) => return,
            Err(log) if log.contains("Address already in use") => failure = log,
            Err(log) => panic!("README: `{}` did not serve: {log}", command.line),
        }
    }
    panic!("README: `{}` did not serve: {failure}", command.line);
}

async fn serve_once(dir: &Path, command: &ReadmeCommand) -> Result<(), String> {
    let port = free_port();
    let log_path = dir.join(format!("serve-{port}.log"));
    let log = std::fs::File::create(&log_path).expect("create the serve log");
    let mut child = broker_in(dir, &command.args)
        .env("BROKER_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log)
        .spawn()
        .expect("spawn broker serve");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let healthy = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!("exited with {status}"));
        }
        let probe = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .timeout(Duration::from_secs(1))
            .send()
            .await;
        if probe.is_ok_and(|r| r.status().is_success()) {
            break Ok(());
        }
        if Instant::now() > deadline {
            break Err("no answer on /healthz within 30 s".to_string());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    healthy.map_err(|why| {
        format!(
            "{why}\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        )
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a directory");
    for entry in std::fs::read_dir(from).expect("read a directory") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// Each `broker` command line in the README's code blocks, in order, in a directory
/// laid out like the repository root (a copy of `config/`, so the demo's `data_dir`
/// is a fresh `data/` there). `USER_ID` stands for the id the last `broker user add`
/// printed, as the README says; a command that reads a password gets one on stdin.
#[tokio::test]
async fn every_readme_command_line_runs_as_written() {
    let readme =
        std::fs::read_to_string(workspace_root().join("README.md")).expect("read README.md");
    let lines = readme_commands(&readme);
    assert!(
        lines
            .iter()
            .any(|l| l == "broker user list --config config/broker.toml"),
        "the README shows `broker user list --config config/broker.toml`: {lines:#?}"
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    copy_dir(&workspace_root().join("config"), &dir.path().join("config"));
    // USER_ID, GROUP_ID and KEY_ID: what `user add`, `group add` and `key create`
    // printed first.
    let mut printed: std::collections::HashMap<&str, String> = Default::default();
    let mut ran = 0;
    for line in lines {
        let words = shell_words(&line);
        let args: Vec<String> = words[1..]
            .iter()
            .map(|w| match w.as_str() {
                placeholder @ ("USER_ID" | "GROUP_ID" | "KEY_ID") => printed
                    .get(placeholder)
                    .unwrap_or_else(|| {
                        panic!("README: `{line}` uses {placeholder} before a command prints it")
                    })
                    .clone(),
                _ => w.clone(),
            })
            .collect();
        let command = ReadmeCommand { line, args };
        let words: Vec<&str> = command.args.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["serve", ..] => {
                serve_until_healthy(dir.path(), &command).await;
                ran += 1;
                continue;
            }
            ["plugin", "inspect", path, ..] if !Path::new(path).exists() => {
                // An example path of a plugin not built here: the command must get as
                // far as looking at the file, and say which.
                let out = run_with_stdin(broker_in(dir.path(), &command.args), "");
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "README: `{}` is refused as a command line: {stderr}",
                    command.line
                );
                assert!(stderr.contains(path), "{stderr}");
                ran += 1;
                continue;
            }
            _ => {}
        }
        let reads_password = matches!(
            words.as_slice(),
            ["hash-password", ..] | ["user", "add", ..] | ["user", "set-password", ..]
        );
        let stdin = if reads_password {
            format!("{README_PASSWORD}\n")
        } else {
            String::new()
        };
        let out = run_with_stdin(broker_in(dir.path(), &command.args), &stdin);
        assert!(
            out.status.success(),
            "README: `{}` failed ({}):\n{}{}",
            command.line,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let placeholder = match words.as_slice() {
            ["user", "add", ..] => Some("USER_ID"),
            ["group", "add", ..] => Some("GROUP_ID"),
            ["key", "create", ..] => Some("KEY_ID"),
            _ => None,
        };
        if let Some(placeholder) = placeholder {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let id = stdout.lines().next().unwrap_or_default().trim().to_string();
            assert!(!id.is_empty(), "`{}` printed the new id", command.line);
            printed.insert(placeholder, id);
        }
        ran += 1;
    }
    assert!(ran >= 10, "only {ran} README command lines ran");
}

// ---------------------------------------------------------------------------------
// Item 17: passwords are read without echo on a terminal, from a pipe otherwise.

#[test]
fn hash_password_reads_a_piped_password() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = run_with_stdin(
        broker_in(dir.path(), &["hash-password".to_string()]),
        "piped-secret-1\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.trim().starts_with("$argon2id$"), "{stdout}");
    assert!(!stdout.contains("piped-secret-1"));
    let empty = run_with_stdin(broker_in(dir.path(), &["hash-password".to_string()]), "\n");
    assert!(!empty.status.success(), "an empty password is refused");
}

#[tokio::test]
async fn user_add_and_set_password_read_piped_passwords() {
    let broker = Broker::start().await;
    let id = broker.user_command(
        &["add", "--email", "piped@example.com", "--username", "piped"],
        "piped-secret-2\n",
    );
    let id = id.trim();
    broker.user_command(&["set-password", id], "piped-secret-3\n");
    // The new password logs in.
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP);
    let form = browser.open(&request.url(&broker)).await.expect_form();
    let response = browser
        .submit(&form, "piped", "piped-secret-3")
        .await
        .expect_client();
    broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await
        .assert_ok();
}

/// Runs `broker args` on a pseudo-terminal (util-linux `script`), typing each of
/// `inputs` after the next password prompt appears, and returns everything the
/// terminal showed.
fn on_a_terminal(args: &[&str], inputs: &[&str]) -> (bool, String) {
    let quoted: Vec<String> = std::iter::once(broker_binary().display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &quoted.join(" "), "/dev/null"])
        .current_dir(dir.path())
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run script(1) from util-linux");
    let shown = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = {
        let shown = shown.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shown.lock().expect("the output buffer").extend(&buf[..n]);
            }
        })
    };
    let text = |shown: &Arc<Mutex<Vec<u8>>>| {
        String::from_utf8_lossy(&shown.lock().expect("the output buffer")).into_owned()
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    for (i, input) in inputs.iter().enumerate() {
        // Wait for the (i+1)-th prompt; without one, type after a while anyway.
        let deadline = Instant::now() + Duration::from_secs(5);
        while text(&shown).matches("assword").count() <= i && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // The prompt is printed just before echo is turned off.
        std::thread::sleep(Duration::from_millis(300));
        // A command that already finished (one that read fewer lines) leaves a
        // broken pipe here: what it showed is still judged below.
        let _ = stdin
            .write_all(format!("{input}\n").as_bytes())
            .and_then(|()| stdin.flush());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll script") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("broker on a terminal did not finish:\n{}", text(&shown));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    let _ = reader.join();
    (status.success(), text(&shown))
}

#[test]
fn hash_password_does_not_echo_on_a_terminal() {
    let secret = "terminal-secret-42";
    let (ok, shown) = on_a_terminal(&["hash-password"], &[secret, secret]);
    assert!(
        !shown.contains(secret),
        "the password was echoed on the terminal:\n{shown}"
    );
    assert!(ok, "hash-password failed on a terminal:\n{shown}");
    assert!(shown.contains("$argon2id$"), "{shown}");
}

#[test]
fn a_mistyped_repeat_on_a_terminal_is_refused() {
    let (ok, shown) = on_a_terminal(&["hash-password"], &["first-try-1", "first-tyr-1"]);
    assert!(!ok, "two different passwords were accepted:\n{shown}");
    assert!(!shown.contains("$argon2id$"), "{shown}");
    assert!(!shown.contains("first-try-1"), "{shown}");
}
