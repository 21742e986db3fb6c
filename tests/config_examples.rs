//! Every config file shipped in `config/` loads through the real loader
//! (`broker check-config`), run from the workspace root as the README does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use switchboard_e2e::{check_config, workspace_root};

/// A stand-in for any secret a config takes from the environment: 32 zero bytes in
/// base64, so it also has the shape of a master key.
const PLACEHOLDER_SECRET: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// The environment variables a config names with `*_env = "NAME"`: a deployment
/// provides them, so the check does too.
fn named_secret_variables(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            let key = key.trim();
            let name = value.trim().strip_prefix('"')?.strip_suffix('"')?;
            (key.ends_with("_env") && !key.starts_with('#'))
                .then(|| (name.to_string(), PLACEHOLDER_SECRET.to_string()))
        })
        .collect()
}

/// `file` as a deployment would see it: each secret named by `*_file = "PATH"`
/// exists, holding the placeholder (PATH moved into `dir`, since a credential path such
/// as /run/credentials/… is the service manager's). Files without one are used as
/// they are.
fn with_secret_files(
    file: &std::path::Path,
    text: &str,
    dir: &std::path::Path,
) -> std::path::PathBuf {
    let mut rewritten = String::new();
    let mut any = false;
    for line in text.lines() {
        let secret_path = line.split_once('=').and_then(|(key, value)| {
            let key = key.trim();
            let path = value.trim().strip_prefix('"')?.strip_suffix('"')?;
            (key.ends_with("_file") && !key.starts_with('#')).then_some((key, path))
        });
        match secret_path {
            Some((key, path)) => {
                let name = path.replace('/', "_");
                let stand_in = dir.join(name);
                std::fs::write(&stand_in, PLACEHOLDER_SECRET).expect("write a secret file");
                rewritten.push_str(&format!("{key} = {:?}\n", stand_in.display().to_string()));
                any = true;
            }
            None => {
                rewritten.push_str(line);
                rewritten.push('\n');
            }
        }
    }
    if !any {
        return file.to_path_buf();
    }
    let copy = dir.join(file.file_name().expect("a file name"));
    std::fs::write(&copy, rewritten).expect("write the config copy");
    copy
}

#[test]
fn every_shipped_config_file_passes_check_config() {
    let dir = workspace_root().join("config");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no config files in {}", dir.display());
    let secrets = tempfile::tempdir().expect("a temporary directory");
    for file in files {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let file = with_secret_files(&file, &text, secrets.path());
        let out = check_config(&file, &named_secret_variables(&text));
        assert!(
            out.status.success(),
            "broker check-config {} failed:\n{}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The check above means something only if a broken file fails it.
#[test]
fn check_config_refuses_an_unknown_key_and_names_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("typo.toml");
    let shipped = std::fs::read_to_string(workspace_root().join("config/broker.toml"))
        .expect("read config/broker.toml");
    std::fs::write(
        &file,
        shipped.replace("dev_mode = true", "dev_mode = true\ndev_mdoe = true"),
    )
    .expect("write a config with a typo");
    let out = check_config(&file, &[]);
    assert!(!out.status.success(), "a misspelt key is an error at start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dev_mdoe"),
        "the error names the key: {stderr}"
    );
    assert!(
        stderr.contains("typo.toml"),
        "the error names the file: {stderr}"
    );
}

#[test]
fn secret_variables_are_found_in_assignments_only() {
    let found = named_secret_variables(
        "secret_env = \"APP_SECRET\"\n# master_key_env = \"OLD\"\nname = \"x_env\"\n",
    );
    assert_eq!(
        found,
        vec![("APP_SECRET".to_string(), PLACEHOLDER_SECRET.to_string())]
    );
}

/// Environment overrides reach the loader: `BROKER_` + the key path joined by `__`.
#[test]
fn environment_overrides_reach_the_loader() {
    let file = workspace_root().join("config/broker.toml");
    let out = check_config(
        &file,
        &[(
            "BROKER_SERVER__LISTEN".to_string(),
            "not-an-address".to_string(),
        )],
    );
    assert!(
        !out.status.success(),
        "the override is applied (and validated)"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server.listen"),
        "the error names the key: {stderr}"
    );
}

/// The README's logging switches (`BROKER_LOG=debug`, and `BROKER_LOG_JSON` behind
/// `--log-json`) share the config prefix; they must still start the broker.
#[tokio::test]
async fn documented_log_variables_do_not_break_startup() {
    let broker = switchboard_e2e::Broker::setup()
        .env("BROKER_LOG", "debug")
        .env("BROKER_LOG_JSON", "true")
        .start()
        .await;
    let log = broker.log();
    let first = log.lines().next().unwrap_or_default();
    assert!(
        serde_json::from_str::<serde_json::Value>(first).is_ok(),
        "JSON log lines: {first}"
    );
}
