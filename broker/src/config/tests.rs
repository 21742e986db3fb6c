use super::*;
use std::io::Write;

const MINIMAL: &str = r#"
issuer = "http://127.0.0.1:5556"
dev_mode = true

[clients.app]
secret = "app-secret-123"
redirect_uris = ["http://127.0.0.1:5555/callback"]

[providers.local]
type = "local"
"#;

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("broker.toml");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    path
}

fn load_text(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, text);
    // An empty prefix nobody sets: these tests must not see the real environment.
    load_with_env(&path, Env::prefixed("SWITCHBOARD_TEST_UNSET_").split("__"))
}

fn error_of(text: &str) -> String {
    load_text(text).unwrap_err().to_string()
}

#[test]
fn minimal_config_loads_with_defaults() {
    let c = load_text(MINIMAL).unwrap();
    assert_eq!(c.issuer, "http://127.0.0.1:5556");
    assert_eq!(c.tokens.default_alg, SigningAlg::Rs256);
    assert_eq!(c.tokens.lifetimes.access_token, 600);
    assert_eq!(c.tokens.refresh_reuse_grace, 0);
    let app = &c.clients["app"];
    assert!(!app.is_public());
    assert!(app.scopes.contains("openid"));
    assert!(app.allows_grant("refresh_token"));
    assert!(matches!(c.master_key, MasterKeySource::GeneratedFile(_)));
    assert!(c.is_loopback_http());
}

#[test]
fn unknown_keys_are_errors_that_name_the_key_and_file() {
    let e = error_of(&format!(
        "{MINIMAL}\n[tokens]\naccess_token_lifetim = \"5m\"\n"
    ));
    assert!(e.contains("access_token_lifetim"), "{e}");
    assert!(e.contains("broker.toml"), "{e}");
}

#[test]
fn bad_durations_name_their_key() {
    let e = error_of(&format!(
        "{MINIMAL}\n[tokens]\naccess_token_lifetime = \"soon\"\n"
    ));
    assert!(e.contains("tokens.access_token_lifetime"), "{e}");
}

#[test]
fn issuer_must_be_https_outside_loopback_and_dev_mode() {
    let text = MINIMAL
        .replace("http://127.0.0.1:5556", "http://id.example.com")
        .replace(
            "dev_mode = true",
            "dev_mode = false\n[secrets]\nmaster_key_env = \"X\"",
        );
    let e = error_of(&text);
    assert!(e.contains("issuer"), "{e}");
    assert!(error_of(&MINIMAL.replace("5556\"", "5556/\"")).contains("must not end with '/'"));
}

#[test]
fn master_key_is_required_outside_dev_mode() {
    let text = MINIMAL
        .replace("http://127.0.0.1:5556", "https://id.example.com")
        .replace("dev_mode = true", "dev_mode = false")
        .replace(
            "http://127.0.0.1:5555/callback",
            "https://app.example.com/cb",
        );
    assert!(error_of(&text).contains("secrets.master_key"));
}

#[test]
fn confidential_clients_need_a_secret_and_public_ones_must_not_have_one() {
    let no_secret = MINIMAL.replace("secret = \"app-secret-123\"\n", "");
    assert!(error_of(&no_secret).contains("clients.app.secret"));
    let public_with_secret = MINIMAL.replace("secret = ", "public = true\nsecret = ");
    assert!(error_of(&public_with_secret).contains("public client has no secret"));
}

#[test]
fn secrets_can_come_from_a_file_or_the_environment_but_only_one_form() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "from-a-file-123\n").unwrap();
    let text = MINIMAL.replace(
        "secret = \"app-secret-123\"",
        &format!("secret_file = \"{}\"", secret_file.display()),
    );
    let c = load_text(&text).unwrap();
    match &c.clients["app"].auth {
        ClientAuth::Secret(s) => assert_eq!(s.expose(), "from-a-file-123"),
        ClientAuth::None => panic!("expected a secret"),
    }
    let both = MINIMAL.replace(
        "secret = \"app-secret-123\"",
        "secret = \"app-secret-123\"\nsecret_env = \"SOME_VAR\"",
    );
    assert!(error_of(&both).contains("only one of"));
    let unset = MINIMAL.replace(
        "secret = \"app-secret-123\"",
        "secret_env = \"SWITCHBOARD_TEST_SURELY_UNSET\"",
    );
    assert!(error_of(&unset).contains("unset or empty"));
}

#[test]
fn environment_overrides_nested_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, MINIMAL);
    figment::Jail::expect_with(|jail| {
        jail.set_env("SBTEST_SERVER__LISTEN", "127.0.0.1:7777");
        jail.set_env("SBTEST_CLIENTS__APP__SECRET", "overridden-secret");
        let c = load_with_env(&path, Env::prefixed("SBTEST_").split("__")).unwrap();
        assert_eq!(c.listen.port(), 7777);
        match &c.clients["app"].auth {
            ClientAuth::Secret(s) => assert_eq!(s.expose(), "overridden-secret"),
            ClientAuth::None => panic!("expected a secret"),
        }
        Ok(())
    });
}

#[test]
fn redirect_uris_are_checked() {
    let frag = MINIMAL.replace("/callback\"", "/callback#x\"");
    assert!(error_of(&frag).contains("clients.app.redirect_uris[0]"));
    let relative = MINIMAL.replace("http://127.0.0.1:5555/callback", "/callback");
    assert!(error_of(&relative).contains("not an absolute URL"));
}

#[test]
fn unknown_scopes_grants_and_algorithms_are_refused() {
    let scope = MINIMAL.replace(
        "redirect_uris",
        "scopes = [\"openid\", \"admin\"]\nredirect_uris",
    );
    assert!(error_of(&scope).contains("unknown scope"));
    let grant = MINIMAL.replace("redirect_uris", "grants = [\"implicit\"]\nredirect_uris");
    assert!(error_of(&grant).contains("unsupported grant"));
    let alg = MINIMAL.replace("redirect_uris", "id_token_alg = \"HS256\"\nredirect_uris");
    assert!(error_of(&alg).contains("clients.app.id_token_alg"));
}

#[test]
fn rotation_must_leave_room_for_pre_publication() {
    let text = format!(
        "{MINIMAL}\n[tokens]\nkey_rotation_period = \"1h\"\njwks_cache_lifetime = \"40m\"\n"
    );
    assert!(error_of(&text).contains("tokens.jwks_cache_lifetime"));
}

#[test]
fn a_provider_is_required() {
    let text = MINIMAL.replace("[providers.local]\ntype = \"local\"\n", "");
    assert!(error_of(&text).contains("at least one provider"));
}

#[test]
fn missing_file_is_named() {
    let e = load(Path::new("/nonexistent/broker.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/broker.toml"), "{e}");
}

#[test]
fn every_shipped_example_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            figment::Jail::expect_with(|jail| {
                // Secrets the examples take from the environment.
                jail.set_env(
                    "SWITCHBOARD_MASTER_KEY",
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                );
                jail.set_env("EXAMPLE_APP_SECRET", "example-secret-from-env");
                load_with_env(&path, Env::prefixed("SWITCHBOARD_TEST_UNSET_").split("__"))
                    .map_err(|e| e.to_string())?;
                Ok(())
            });
            seen += 1;
        }
    }
    assert!(
        seen >= 2,
        "expected the minimal and the full example, saw {seen}"
    );
}
