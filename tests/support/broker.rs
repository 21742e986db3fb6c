//! The broker under test: its config file, its process, and raw calls to its
//! endpoints.

use crate::HTTP_TIMEOUT;
use crate::browser::Browser;
use crate::clients::{
    AuthorizeRequest, TestClient, TestUser, TokenReply, UserinfoReply, all_clients,
    all_static_users,
};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use url::Url;

/// How long a running server on SQLite may take to notice what a `broker` command
/// wrote to its file (it polls every 100 ms), with slack for a loaded machine.
pub const CLI_WRITE_SEEN_AFTER: std::time::Duration = std::time::Duration::from_millis(300);
/// How long a broker may take to answer `/healthz` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the test crate lives inside the workspace")
        .to_path_buf()
}

/// The `broker` binary under test: `BROKER_BIN`, or `target/debug/broker`.
pub fn broker_binary() -> PathBuf {
    let path = std::env::var_os("BROKER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/broker"));
    assert!(
        path.is_file(),
        "no broker binary at {}: run `cargo build -p switchboard-broker --bin broker` first (or set BROKER_BIN)",
        path.display()
    );
    path
}

/// A `broker` command that sees none of the caller's `BROKER_*` overrides: each test
/// runs exactly the config it wrote.
pub(crate) fn broker_command() -> Command {
    let mut cmd = Command::new(broker_binary());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BROKER_") {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// Runs `broker check-config FILE` from the workspace root, as the README does, with
/// `env` set (and no other `BROKER_*` variable).
pub fn check_config(file: &Path, env: &[(String, String)]) -> Output {
    broker_command()
        .arg("check-config")
        .arg(file)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .expect("run broker check-config")
}

/// What a test changes in the default config before the broker starts.
#[derive(Debug, Default)]
pub struct Setup {
    server: Vec<String>,
    tokens: Vec<String>,
    login: Vec<String>,
    https_issuer: bool,
    env: Vec<(String, String)>,
    client_lines: Vec<(String, String)>,
    extra: Vec<String>,
    port: Option<u16>,
    issuer: Option<String>,
}

impl Setup {
    /// Adds one `key = value` line to `[server]`, e.g. `shutdown_timeout = "5s"`.
    pub fn server(mut self, line: &str) -> Self {
        self.server.push(line.to_string());
        self
    }

    /// Adds one `key = value` line to `[tokens]`, e.g. `code_lifetime = "2s"`.
    pub fn tokens(mut self, line: &str) -> Self {
        self.tokens.push(line.to_string());
        self
    }

    /// Adds one `key = value` line to `[login]`, e.g. `max_failures_per_account = 3`.
    pub fn login(mut self, line: &str) -> Self {
        self.login.push(line.to_string());
        self
    }

    /// An `https://` issuer, as behind a TLS-terminating proxy; the test still talks
    /// plain http to the listener.
    pub fn https_issuer(mut self) -> Self {
        self.https_issuer = true;
        self
    }

    /// Adds one `key = value` line to the table of client `client_id`.
    pub fn client(mut self, client_id: &str, line: &str) -> Self {
        self.client_lines
            .push((client_id.to_string(), line.to_string()));
        self
    }

    /// Listens on `port` (for peers that must know the broker's callback URL before
    /// it starts; pick it with [`free_port`]).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Answers as `issuer` instead of its own address: replicas behind one load
    /// balancer share one issuer. Requests still go to the broker's own listener.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.issuer = Some(issuer.to_string());
        self
    }

    /// Appends TOML at the end of the config (e.g. another provider's table).
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push(toml.to_string());
        self
    }

    /// Sets an environment variable of the broker process, e.g. `BROKER_LOG`.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Starts a broker that must refuse to start; returns what it logged.
    pub async fn start_refused(self) -> String {
        let dir = tempfile::Builder::new()
            .prefix("switchboard-e2e-")
            .tempdir()
            .expect("create a temporary directory");
        let mut broker = Broker::new(dir, self.port.unwrap_or_else(free_port), &self);
        match broker.launch().await {
            Ok(()) => panic!(
                "the broker started, but should have refused:\n{}",
                broker.log()
            ),
            Err(log) => log,
        }
    }

    pub async fn start(self) -> Broker {
        let mut dir = tempfile::Builder::new()
            .prefix("switchboard-e2e-")
            .tempdir()
            .expect("create a temporary directory");
        let mut last_log = String::new();
        // A port picked free can be taken before the broker binds it: try a few.
        for _ in 0..3 {
            let port = self.port.unwrap_or_else(free_port);
            let mut broker = Broker::new(dir, port, &self);
            match broker.launch().await {
                Ok(()) => return broker,
                Err(log) if log.contains("Address already in use") => {
                    last_log = log;
                    dir = broker.into_dir();
                }
                Err(log) => {
                    drop(broker.into_dir());
                    panic!("the broker did not start:\n{log}");
                }
            }
        }
        panic!("the broker did not start:\n{last_log}");
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// A running broker with its own port, data directory and config file. Killed when
/// dropped; its log is printed if the test is failing.
#[derive(Debug)]
pub struct Broker {
    issuer: String,
    /// Where the listener is reached: the issuer, or its http twin for an https one.
    base: String,
    env: Vec<(String, String)>,
    dir: Option<TempDir>,
    config_path: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Broker {
    /// A broker with the default config.
    pub async fn start() -> Broker {
        Setup::default().start().await
    }

    /// A broker with changes to the default config.
    pub fn setup() -> Setup {
        Setup::default()
    }

    fn new(dir: TempDir, port: u16, setup: &Setup) -> Broker {
        let base = format!("http://127.0.0.1:{port}");
        let issuer = match (&setup.issuer, setup.https_issuer) {
            (Some(issuer), _) => issuer.clone(),
            (None, true) => format!("https://127.0.0.1:{port}"),
            (None, false) => base.clone(),
        };
        let config_path = dir.path().join("broker.toml");
        let log_path = dir.path().join("broker.log");
        let data_dir = dir.path().join("data");
        std::fs::write(&config_path, config_text(&issuer, port, &data_dir, setup))
            .expect("write the broker config");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .expect("build an HTTP client");
        Broker {
            issuer,
            base,
            env: setup.env.clone(),
            dir: Some(dir),
            config_path,
            log_path,
            child: None,
            http,
        }
    }

    fn into_dir(mut self) -> TempDir {
        self.kill();
        self.dir.take().expect("the broker owns its directory")
    }

    /// Starts the process and waits until `/healthz` answers; on failure, the log.
    async fn launch(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open the broker log");
        let child = broker_command()
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir().path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn the broker");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let health = self.url("/healthz");
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("broker exited with {status}\n{}", self.log()));
            }
            let probe = self
                .http
                .get(health.clone())
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if probe.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "no answer on /healthz within {START_TIMEOUT:?}\n{}",
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process (as a crash would); the data directory stays.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Sends `signal` (`"TERM"`, `"INT"`) to the process and waits at most `within`
    /// for it to exit. Returns how it exited, or `None` if it was still running (it is
    /// then killed).
    pub async fn signal_and_wait(
        &mut self,
        signal: &str,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let sent = Command::new("kill")
            .arg("-s")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -s {signal} failed");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("poll the broker") {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id while it runs, to signal it from a test that shares the broker.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the broker again on the same port, data directory and config.
    pub async fn restart(&mut self) {
        self.kill();
        if let Err(log) = self.launch().await {
            panic!("the broker did not restart:\n{log}");
        }
    }

    /// Stops the broker, rewrites its config with `edit`, and starts it again on the
    /// same port and data directory.
    pub async fn restart_with_config(&mut self, edit: impl FnOnce(String) -> String) {
        self.kill();
        let text = std::fs::read_to_string(&self.config_path).expect("read the config");
        std::fs::write(&self.config_path, edit(text)).expect("rewrite the config");
        if let Err(log) = self.launch().await {
            panic!("the broker did not restart:\n{log}");
        }
    }

    fn dir(&self) -> &TempDir {
        self.dir.as_ref().expect("the broker owns its directory")
    }

    /// The broker's data directory (its SQLite files, a generated master key).
    pub fn data_dir(&self) -> PathBuf {
        self.dir().path().join("data")
    }

    /// Waits (at most 10 s) until the broker's log contains `needle`.
    pub async fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the broker log within 10 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the broker logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The issuer, byte for byte as configured.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// `path` at the broker's listener.
    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("{}{path}", self.base)).expect("a URL under the broker")
    }

    /// A plain HTTP client: no cookies, no redirects followed.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Runs `broker <args>` in the broker's directory, with none of the caller's
    /// `BROKER_*` variables, and returns what it printed and how it exited. Pass the
    /// config yourself (see [`Broker::config_path`]).
    pub fn cli(&self, args: &[&str]) -> Output {
        broker_command()
            .args(args)
            .current_dir(self.dir().path())
            .stdin(Stdio::null())
            .output()
            .expect("run the broker command")
    }

    /// Runs `broker user --config <this config> <args>` with `stdin`, and returns its
    /// standard output; panics if it fails.
    ///
    /// Then waits out the running server's watch on its SQLite file (a 100 ms poll), so
    /// what the command wrote has reached the server's caches when this returns.
    pub fn user_command(&self, args: &[&str], stdin: &str) -> String {
        let out = self.user_command_output(args, stdin);
        assert!(
            out.status.success(),
            "broker user {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(CLI_WRITE_SEEN_AFTER);
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs `broker user --config <this config> <args>` with `stdin`, and returns what
    /// it printed and how it exited (for commands that should fail).
    pub fn user_command_output(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = broker_command()
            .arg("user")
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .current_dir(self.dir().path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn broker user");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(stdin.as_bytes())
            .expect("write to broker user");
        child.wait_with_output().expect("wait for broker user")
    }

    /// POST `/token` as `client` (Basic authentication for confidential clients,
    /// `client_id` in the form for public ones).
    pub async fn token_request(&self, client: &TestClient, form: &[(&str, &str)]) -> TokenReply {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        let mut req = self.http.post(self.url("/token"));
        match client.secret {
            Some(secret) => req = req.basic_auth(client.id, Some(secret)),
            None => fields.push(("client_id", client.id)),
        }
        TokenReply::read(req.form(&fields).send().await.expect("POST /token")).await
    }

    /// Redeems an authorization code at `/token`.
    pub async fn redeem(
        &self,
        client: &TestClient,
        code: &str,
        verifier: Option<&str>,
    ) -> TokenReply {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", client.redirect_uri),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        self.token_request(client, &form).await
    }

    /// Uses a refresh token at `/token`.
    pub async fn refresh(&self, client: &TestClient, refresh_token: &str) -> TokenReply {
        self.token_request(
            client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// GET `/userinfo` with a bearer token.
    pub async fn userinfo(&self, access_token: &str) -> UserinfoReply {
        let res = self
            .http
            .get(self.url("/userinfo"))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("GET /userinfo");
        UserinfoReply::read(res).await
    }

    /// POST `/introspect` as `client` (HTTP Basic): the answer's JSON.
    pub async fn introspect(&self, client: &TestClient, token: &str) -> serde_json::Value {
        let res = self
            .http
            .post(self.url("/introspect"))
            .basic_auth(client.id, client.secret)
            .form(&[("token", token)])
            .send()
            .await
            .expect("POST /introspect");
        assert_eq!(
            res.status(),
            reqwest::StatusCode::OK,
            "introspection answered"
        );
        res.json().await.expect("introspection JSON")
    }

    /// POST `/revoke` as `client` (HTTP Basic); RFC 7009 answers 200 in every case.
    pub async fn revoke(&self, client: &TestClient, token: &str) {
        let res = self
            .http
            .post(self.url("/revoke"))
            .basic_auth(client.id, client.secret)
            .form(&[("token", token)])
            .send()
            .await
            .expect("POST /revoke");
        assert_eq!(res.status(), reqwest::StatusCode::OK, "revocation answered");
    }

    /// Opens `request` in `browser`, submits the password form with `login` and
    /// `password`, and redeems the code: the tokens of one fresh password login.
    pub async fn sign_in_with_password(
        &self,
        browser: &Browser,
        request: &AuthorizeRequest,
        login: &str,
        password: &str,
    ) -> TokenReply {
        let form = browser.open(&request.url(self)).await.expect_form();
        let response = browser.submit(&form, login, password).await.expect_client();
        let tokens = self
            .redeem(&request.client, response.code(), request.verifier())
            .await;
        tokens.assert_ok();
        tokens
    }

    /// Logs `user` in through `browser` for `client` with scope `openid profile email
    /// offline_access` and redeems the code: the tokens of one fresh login.
    pub async fn sign_in(
        &self,
        browser: &Browser,
        client: &TestClient,
        user: &TestUser,
    ) -> TokenReply {
        let request = AuthorizeRequest::new(*client).scope("openid profile email offline_access");
        let response = browser.log_in(&request.url(self), user).await;
        let tokens = self
            .redeem(client, response.code(), request.verifier())
            .await;
        tokens.assert_ok();
        tokens
    }

    /// Verifies a JWT this broker signed against its `/jwks` (signature, `iss`,
    /// `exp`) and returns its claims.
    pub async fn verify_with_jwks(&self, token: &str) -> serde_json::Value {
        let header = jsonwebtoken::decode_header(token).expect("a JWT header");
        let kid = header.kid.clone().expect("a kid");
        let jwks: jsonwebtoken::jwk::JwkSet = self
            .http
            .get(self.url("/jwks"))
            .send()
            .await
            .expect("GET /jwks")
            .json()
            .await
            .expect("a JWK set");
        let jwk = jwks.find(&kid).expect("the kid is published");
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("a usable JWK");
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.validate_aud = false;
        validation.set_issuer(&[self.issuer()]);
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .expect("the token verifies against /jwks")
            .claims
    }

    /// The key ids `/jwks` publishes now.
    pub async fn jwks_kids(&self) -> Vec<String> {
        let jwks: serde_json::Value = self
            .http
            .get(self.url("/jwks"))
            .send()
            .await
            .expect("GET /jwks")
            .json()
            .await
            .expect("JWKS is JSON");
        jwks["keys"]
            .as_array()
            .expect("JWKS has keys")
            .iter()
            .map(|k| k["kid"].as_str().expect("every key has a kid").to_string())
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() && self.dir.is_some() {
            // Had it died before the test gave up? (A crash, or a signal from outside.)
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            self.kill();
            let state = exited.map_or("running until the test failed".to_string(), |s| {
                format!("exited: {s}")
            });
            eprintln!(
                "---- broker log ({}, {state}) ----\n{}",
                self.issuer,
                self.log()
            );
        } else {
            self.kill();
        }
    }
}

/// The config every test starts from: dev mode, the test clients, the local provider
/// with its static users, and the test's own `[tokens]` / `[login]` lines.
fn config_text(issuer: &str, port: u16, data_dir: &Path, setup: &Setup) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "issuer = {issuer:?}");
    let _ = writeln!(t, "dev_mode = true");
    let _ = writeln!(t, "data_dir = {:?}", data_dir.display().to_string());
    let _ = writeln!(t, "\n[server]\nlisten = \"127.0.0.1:{port}\"\nworkers = 2");
    for line in &setup.server {
        let _ = writeln!(t, "{line}");
    }
    let _ = writeln!(t, "\n[tokens]");
    for line in &setup.tokens {
        let _ = writeln!(t, "{line}");
    }
    let _ = writeln!(t, "\n[login]");
    for line in &setup.login {
        let _ = writeln!(t, "{line}");
    }
    for c in all_clients() {
        let _ = writeln!(t, "\n[clients.{}]", c.id);
        match c.secret {
            Some(s) => {
                let _ = writeln!(t, "secret = {s:?}");
            }
            None => {
                let _ = writeln!(t, "public = true");
            }
        }
        let _ = writeln!(t, "redirect_uris = [{:?}]", c.registered_redirect_uri);
        let _ = writeln!(t, "id_token_alg = {:?}", c.alg);
        if let Some(origin) = c.cors_origin {
            let _ = writeln!(t, "cors_origins = [{origin:?}]");
        }
        for (_, line) in setup.client_lines.iter().filter(|(id, _)| id == c.id) {
            let _ = writeln!(t, "{line}");
        }
    }
    let _ = writeln!(
        t,
        "\n[providers.local]\ntype = \"local\"\nname = \"Email and password\""
    );
    for u in all_static_users() {
        static_user(&mut t, u);
    }
    for block in &setup.extra {
        let _ = writeln!(t, "\n{block}");
    }
    t
}

fn static_user(t: &mut String, u: &TestUser) {
    let _ = writeln!(t, "\n[[providers.local.static_users]]");
    let _ = writeln!(t, "id = {:?}", u.id);
    let _ = writeln!(t, "email = {:?}", u.email);
    let _ = writeln!(t, "username = {:?}", u.username);
    let _ = writeln!(t, "name = {:?}", u.name);
    let _ = writeln!(t, "hash = {:?}", u.hash);
    let _ = writeln!(t, "groups = {:?}", u.groups);
}
