//! The certified OpenID Provider peer: `tests/peers/oidc-op/server.js` (npm
//! `oidc-provider`, version pinned in its `package.json`), run with `node` on a random
//! loopback port. Install once with `npm ci --prefix tests/peers/oidc-op`.
//!
//! Tests call [`require_peer!`](crate::require_peer) first: when `node` or the peer's
//! `node_modules` is missing they print a loud SKIPPED line and return, unless
//! `SWITCHBOARD_REQUIRE_PEERS=1` is set, in which case they fail.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where the peer lives: `<workspace>/tests/peers/oidc-op`.
pub fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/peers/oidc-op")
        .components()
        .collect()
}

/// Why the peer cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return Some("`node` is not on PATH".into());
    }
    let module = peer_dir().join("node_modules/oidc-provider/package.json");
    if !module.is_file() {
        return Some(format!(
            "{} is missing: run `npm ci --prefix {}`",
            module.display(),
            peer_dir().display()
        ));
    }
    None
}

/// Returns from the test with a loud message when the peer cannot run (or panics when
/// `SWITCHBOARD_REQUIRE_PEERS=1`).
#[macro_export]
macro_rules! require_peer {
    () => {
        if let Some(why) = $crate::peer::unavailable() {
            if std::env::var("SWITCHBOARD_REQUIRE_PEERS").as_deref() == Ok("1") {
                panic!("the oidc-provider peer is required but unavailable: {why}");
            }
            $crate::peer::announce_skip(module_path!(), &why);
            return;
        }
    };
}

/// Prints the skip notice straight to the process's stderr, past the test harness's
/// output capture, so a skipped peer test is seen.
pub fn announce_skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!!!! SKIPPED {test}: oidc-provider peer unavailable: {why} !!!!!!!!!!\n"
    );
}

/// How to start the peer.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// Mount the OP under this path (a tenant-shaped issuer like `/<tid>/v2.0`).
    pub issuer_path: Option<String>,
    /// Also serve a Microsoft-style `{tenantid}` discovery document at this path.
    pub common_path: Option<String>,
    /// Registered client id.
    pub client_id: String,
    /// Registered client secret.
    pub client_secret: String,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// `client_secret_basic` or `client_secret_post`.
    pub token_auth: String,
    /// `{"login": {claim overrides}}`.
    pub accounts: Value,
    /// ID token carries only openid-scope claims (the rest via userinfo).
    pub conform_id_token_claims: bool,
    /// Issue refresh tokens without the `offline_access` scope.
    pub always_refresh: bool,
}

impl PeerOptions {
    /// A client `switchboard` / `switchboard-secret` with one redirect URI.
    pub fn new(redirect_uri: &str) -> Self {
        PeerOptions {
            issuer_path: None,
            common_path: None,
            client_id: "switchboard".into(),
            client_secret: "switchboard-secret".into(),
            redirect_uris: vec![redirect_uri.into()],
            token_auth: "client_secret_basic".into(),
            accounts: Value::Object(Default::default()),
            conform_id_token_claims: false,
            always_refresh: false,
        }
    }
}

/// A running peer; killed when dropped.
#[derive(Debug)]
pub struct OidcPeer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    /// The OP's issuer.
    pub issuer: String,
    /// The `{tenantid}` template issuer, when `common_path` was given.
    pub common_issuer: Option<String>,
    stderr: Arc<Mutex<String>>,
}

impl OidcPeer {
    /// Starts the peer and waits (up to 20 s) for its ready line.
    pub async fn start(options: &PeerOptions) -> Result<OidcPeer, String> {
        let mut cmd = Command::new("node");
        cmd.current_dir(peer_dir())
            .arg("server.js")
            .arg("--port")
            .arg("0")
            .arg("--exit-with-stdin")
            .arg("--client-id")
            .arg(&options.client_id)
            .arg("--client-secret")
            .arg(&options.client_secret)
            .arg("--token-auth")
            .arg(&options.token_auth)
            .arg("--accounts-json")
            .arg(options.accounts.to_string());
        for uri in &options.redirect_uris {
            cmd.arg("--redirect-uri").arg(uri);
        }
        if let Some(path) = &options.issuer_path {
            cmd.arg("--issuer-path").arg(path);
        }
        if let Some(path) = &options.common_path {
            cmd.arg("--common-path").arg(path);
        }
        if options.conform_id_token_claims {
            cmd.arg("--conform-id-token-claims");
        }
        if options.always_refresh {
            cmd.arg("--always-refresh");
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| format!("cannot start node: {e}"))?;
        let stderr_buf = Arc::new(Mutex::new(String::new()));
        if let Some(mut stderr) = child.stderr.take() {
            let buf = stderr_buf.clone();
            tokio::spawn(async move {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut b) = buf.lock() {
                        b.push_str(&String::from_utf8_lossy(&chunk[..n]));
                    }
                }
            });
        }
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| "no stdout pipe".to_string())?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["ready"] == true
                {
                    return Some(v);
                }
            }
            None
        })
        .await;
        let stderr_now = || stderr_buf.lock().map(|s| s.clone()).unwrap_or_default();
        let ready = match ready {
            Ok(Some(v)) => v,
            Ok(None) => return Err(format!("the peer exited before ready: {}", stderr_now())),
            Err(_) => return Err(format!("the peer was not ready in 20 s: {}", stderr_now())),
        };
        // Keep draining stdout so the peer never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let port = ready["port"].as_u64().unwrap_or(0);
        Ok(OidcPeer {
            child,
            origin: format!("http://127.0.0.1:{port}"),
            issuer: ready["issuer"].as_str().unwrap_or_default().to_string(),
            common_issuer: ready["common_issuer"].as_str().map(str::to_string),
            stderr: stderr_buf,
        })
    }

    /// What the peer wrote on stderr so far (for assertion messages).
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    async fn control(&self, login: &str, action: &str, body: Option<Value>) {
        let url = format!("{}/_test/accounts/{login}/{action}", self.origin);
        let client = reqwest::Client::new();
        let mut request = client.post(&url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let status = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .status();
        assert_eq!(status.as_u16(), 204, "{url}");
    }

    /// The account stops existing upstream (its refresh tokens stop working).
    pub async fn disable_account(&self, login: &str) {
        self.control(login, "disable", None).await;
    }

    /// Merges claim overrides into an account (claim names must have been known at
    /// start, in [`PeerOptions::accounts`]).
    pub async fn set_claims(&self, login: &str, claims: Value) {
        self.control(login, "claims", Some(claims)).await;
    }

    /// Stops the peer now.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
