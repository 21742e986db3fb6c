//! The README's admin API examples, run as written with `curl` against the demo config
//! on a fresh start (issue 13): the demo admin logs in through `example-app` with the
//! `permissions` scope, and every `curl` of the block must succeed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, Browser, TestClient, broker_binary, free_port, workspace_root,
};
use url::Url;

/// The demo config's app.
const EXAMPLE_APP: TestClient = TestClient {
    id: "example-app",
    secret: Some("example-secret"),
    redirect_uri: "http://127.0.0.1:5555/callback",
    registered_redirect_uri: "http://127.0.0.1:5555/callback",
    alg: "RS256",
    cors_origin: None,
};

const DEMO_BASE: &str = "http://127.0.0.1:5556";

/// The shell commands of the README's code block that holds `TOKEN=…`, each with its
/// `\` continuations joined; comments and the `TOKEN=` line left out.
fn admin_block(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => current = Some(Vec::new()),
            }
            continue;
        }
        if let Some(block) = current.as_mut() {
            block.push(line.to_string());
        }
    }
    let block = blocks
        .into_iter()
        .find(|b| b.iter().any(|l| l.starts_with("TOKEN=")))
        .expect("the README has an admin API block starting TOKEN=…");
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in block {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with("TOKEN=") || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    commands
}

struct Demo {
    child: Child,
    base: Url,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `broker serve --config config/broker.toml` in `dir`, on a free port.
async fn serve_demo(dir: &Path) -> Demo {
    let port = free_port();
    let mut command = Command::new(broker_binary());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BROKER_") {
            command.env_remove(&name);
        }
    }
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let child = command
        .args(["serve", "--config", "config/broker.toml"])
        .env("BROKER_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let demo = Demo {
        child,
        base: Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let http = reqwest::Client::new();
    loop {
        let probe = http
            .get(demo.base.join("healthz").unwrap())
            .timeout(Duration::from_secs(1))
            .send()
            .await;
        if probe.is_ok_and(|r| r.status().is_success()) {
            return demo;
        }
        let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "the demo broker did not start:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The demo admin's access token for `example-app` with `openid permissions`.
async fn admin_token(demo: &Demo) -> String {
    let request = AuthorizeRequest::new(EXAMPLE_APP).scope("openid permissions");
    let response = Browser::at(DEMO_BASE, demo.base.clone())
        .log_in(&request.url_at(&demo.base), &ADMIN)
        .await;
    let res = reqwest::Client::new()
        .post(demo.base.join("token").unwrap())
        .basic_auth(EXAMPLE_APP.id, EXAMPLE_APP.secret)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", response.code()),
            ("redirect_uri", EXAMPLE_APP.redirect_uri),
            ("code_verifier", request.verifier().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {body}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_admin_api_examples_run_against_the_demo_config() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let commands = admin_block(&readme);
    assert!(commands.len() >= 8, "{commands:#?}");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&workspace_root().join("config"), &dir.path().join("config"));
    let demo = serve_demo(dir.path()).await;
    let token = admin_token(&demo).await;
    let base = demo.base.as_str().trim_end_matches('/').to_string();

    let mut ids: Vec<(&str, String)> = Vec::new();
    for command in commands {
        assert!(command.starts_with("curl "), "a plain curl line: {command}");
        let mut line = command.replacen("curl ", "curl -sS --fail-with-body ", 1);
        line = line.replace(DEMO_BASE, &base);
        for (placeholder, id) in &ids {
            line = line.replace(placeholder, id);
        }
        assert!(
            !line.contains("USER_ID") && !line.contains("GROUP_ID"),
            "a placeholder used before a POST made it: {command}"
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .env("TOKEN", &token)
            .output()
            .expect("run sh (and curl)");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "README: `{command}` failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let made = if command.ends_with("/admin/api/v1/users") && command.contains(" -d ") {
            Some("USER_ID")
        } else if command.ends_with("/admin/api/v1/groups") {
            Some("GROUP_ID")
        } else {
            None
        };
        if let Some(placeholder) = made {
            let body: Value = serde_json::from_str(&stdout).unwrap();
            ids.push((placeholder, body["id"].as_str().unwrap().to_string()));
        }
        if command.contains("/keys") {
            let body: Value = serde_json::from_str(&stdout).unwrap();
            assert!(
                body["secret"].as_str().unwrap().starts_with("sbk_"),
                "{body}"
            );
        }
    }
    assert_eq!(ids.len(), 2, "the block made a user and a group");
}
