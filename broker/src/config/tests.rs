//! Config loading tests: every key validated, every error names its key and file.

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
    assert_eq!(c.tokens.refresh_reuse_grace, 10);
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
fn introspection_policy_defaults_to_own_audience_and_refuses_unknown_values() {
    let c = load_text(MINIMAL).unwrap();
    assert_eq!(
        c.clients["app"].introspection,
        IntrospectionPolicy::OwnAudience
    );
    let with =
        |line: &str| MINIMAL.replace("[providers.local]", &format!("{line}\n[providers.local]"));
    let c = load_text(&with("introspection = \"all\"")).unwrap();
    assert_eq!(c.clients["app"].introspection, IntrospectionPolicy::All);
    let c = load_text(&with("introspection = \"own_audience\"")).unwrap();
    assert_eq!(
        c.clients["app"].introspection,
        IntrospectionPolicy::OwnAudience
    );

    let e = error_of(&with("introspection = \"everything\""));
    assert!(e.contains("clients.app.introspection"), "{e}");
    assert!(e.contains("own_audience") && e.contains("\"all\""), "{e}");
    let public = MINIMAL.replace(
        "secret = \"app-secret-123\"",
        "public = true\nintrospection = \"all\"",
    );
    let e = error_of(&public);
    assert!(e.contains("clients.app.introspection"), "{e}");
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
                jail.set_env(
                    "SWITCHBOARD_DATABASE_URL",
                    "postgres://switchboard:from-env@db.internal/switchboard",
                );
                // Secrets the examples read from files (systemd credentials): stand-ins
                // in the jail, named in a copy of the file.
                let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
                let mut copy = String::new();
                for line in text.lines() {
                    match line.split_once('=') {
                        Some((key, _)) if key.trim().ends_with("_file") => {
                            let stand_in = jail.directory().join(key.trim());
                            std::fs::write(
                                &stand_in,
                                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                            )
                            .map_err(|e| e.to_string())?;
                            copy.push_str(&format!("{} = {:?}\n", key.trim(), stand_in));
                        }
                        _ => {
                            copy.push_str(line);
                            copy.push('\n');
                        }
                    }
                }
                let checked = jail.directory().join("example.toml");
                std::fs::write(&checked, copy).map_err(|e| e.to_string())?;
                load_with_env(
                    &checked,
                    Env::prefixed("SWITCHBOARD_TEST_UNSET_").split("__"),
                )
                .map_err(|e| format!("{}: {e}", path.display()))?;
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

const ROLES: &str = r#"
[providers.corp]
type = "local"
trust_email = true
registration = "closed"
sync = "import"

[roles]
admin_role = "admin"
default_roles = ["member", "member"]

[roles.permissions]
admin = ["admin:*", "users:read"]
member = ["profile:read"]

[[roles.rules]]
role = "admin"
provider = "local"
group = "admins"

[[roles.rules]]
role = "staff"
email_domain = "*.Example.COM"

[[roles.rules]]
role = "approver"
client = "app"
provider = "corp"
any = true
group = "cn=approvers,dc=example,dc=com"
claim = { path = "org.team", regex = "fin.*" }

[[roles.rules]]
role = "partner"
provider = "corp"
claim = { path = "level", one_of = [3, "4", true] }
"#;

fn with_roles(text: &str) -> String {
    format!("{MINIMAL}{text}")
}

#[test]
fn roles_section_loads_into_a_policy() {
    use crate::roles::{ClaimTest, Condition, DomainPattern};
    let c = load_text(&with_roles(ROLES)).unwrap();
    let r = &c.roles;
    assert_eq!(r.admin_role.as_deref(), Some("admin"));
    assert_eq!(r.default_roles, vec!["member"], "duplicates dropped");
    assert_eq!(r.permissions["admin"].len(), 2);
    assert_eq!(r.rules.len(), 4);
    assert_eq!(
        r.email_trusted.iter().collect::<Vec<_>>(),
        vec!["corp"],
        "only providers with trust_email"
    );
    assert!(matches!(
        &r.rules[1].conditions[..],
        [Condition::EmailDomain(DomainPattern::Subdomains(d))] if d == "example.com"
    ));
    let approver = &r.rules[2];
    assert_eq!(approver.client.as_deref(), Some("app"));
    assert!(approver.any);
    assert_eq!(approver.conditions.len(), 2);
    assert!(matches!(
        &r.rules[3].conditions[..],
        [Condition::Claim { test: ClaimTest::OneOf(v), .. }] if v == &["3", "4", "true"]
    ));
}

#[test]
fn broker_provider_keys_are_taken_out_before_the_factory_sees_the_options() {
    let c = load_text(&with_roles(ROLES)).unwrap();
    let corp = c.providers.iter().find(|p| p.id == "corp").unwrap();
    assert_eq!(corp.policy.registration, Registration::Closed);
    assert_eq!(corp.policy.sync, ProfileSync::Import);
    assert!(corp.policy.trust_email);
    assert_eq!(corp.options, serde_json::json!({}));
    let local = c.providers.iter().find(|p| p.id == "local").unwrap();
    let local_default = ProviderPolicy {
        password_change: true,
        ..ProviderPolicy::default()
    };
    assert_eq!(local.policy, local_default);
    assert_eq!(local.policy.registration, Registration::Open);
    assert_eq!(local.policy.sync, ProfileSync::Force);
    assert!(!local.policy.trust_email);
}

#[test]
fn bad_provider_policy_values_name_their_key() {
    let e = error_of(&with_roles(
        "[providers.corp]\ntype = \"local\"\nregistration = \"invite\"\n",
    ));
    assert!(e.contains("providers.corp.registration"), "{e}");
    let e = error_of(&with_roles(
        "[providers.corp]\ntype = \"local\"\nsync = \"always\"\n",
    ));
    assert!(e.contains("providers.corp.sync"), "{e}");
}

/// A config whose only rule is `rule`, with a provider trusted for email.
fn rule_error(rule: &str) -> String {
    error_of(&with_roles(&format!(
        "[providers.corp]\ntype = \"local\"\ntrust_email = true\n\n[[roles.rules]]\n{rule}\n"
    )))
}

#[test]
fn bad_role_rules_are_refused_with_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "role = \"x\"\nprovider = \"nope\"",
            "roles.rules[0].provider",
            "unknown provider",
        ),
        (
            "role = \"x\"\ngroup = \"admins\"",
            "roles.rules[0].group",
            "must name its provider",
        ),
        (
            "role = \"x\"\nclaim = { path = \"a\", equals = \"b\" }",
            "roles.rules[0].claim",
            "must name its provider",
        ),
        (
            "role = \"x\"\nprovider = \"corp\"\nclaim = { path = \"a\", regex = \"(unclosed\" }",
            "roles.rules[0].claim.regex",
            "not a valid regex",
        ),
        (
            "role = \"x\"\nprovider = \"corp\"\nclaim = { path = \"a\", equals = \"b\", regex = \"c\" }",
            "roles.rules[0].claim",
            "exactly one of",
        ),
        (
            "role = \"x\"\nprovider = \"corp\"\nclaim = { path = \"a\" }",
            "roles.rules[0].claim",
            "exactly one of",
        ),
        (
            "role = \"x\"\nprovider = \"corp\"\nclaim = { path = \"a..b\", equals = \"c\" }",
            "roles.rules[0].claim.path",
            "dotted path",
        ),
        (
            "role = \"x\"\nprovider = \"corp\"\nclaim = { path = \"a\", one_of = [[1]] }",
            "roles.rules[0].claim.one_of",
            "string, number or boolean",
        ),
        (
            "role = \"x\"\nprovider = \"corp\"\nclaim = { path = \"a\", one_of = [] }",
            "roles.rules[0].claim.one_of",
            "at least one",
        ),
        (
            "role = \"x\"\nclient = \"nope\"\nprovider = \"corp\"",
            "roles.rules[0].client",
            "unknown client",
        ),
        (
            "role = \"x\"\nprovider = \"local\"\nemail_domain = \"example.com\"",
            "roles.rules[0].email_domain",
            "not trusted for email",
        ),
        (
            "role = \"x\"\nemail_domain = \"ex*ample.com\"",
            "roles.rules[0].email_domain",
            "wildcard",
        ),
        (
            "role = \"x\"\nemail_domain = \"@example.com\"",
            "roles.rules[0].email_domain",
            "without '@'",
        ),
        ("role = \"x\"", "roles.rules[0]", "needs a condition"),
        (
            "role = \"a b\"\nprovider = \"corp\"",
            "roles.rules[0].role",
            "may use only",
        ),
        (
            "role = \"app/x\"\nprovider = \"corp\"",
            "roles.rules[0].role",
            "may use only",
        ),
        (
            "role = \"x\"\nprovider = \"corp\"\ngruop = \"a\"",
            "gruop",
            "unknown field",
        ),
    ];
    for (rule, key, message) in cases {
        let e = rule_error(rule);
        assert!(
            e.contains(key) && e.contains(message),
            "{rule}: expected {key} / {message}, got {e}"
        );
    }
}

#[test]
fn email_domain_rules_need_some_provider_trusted_for_email() {
    let e = error_of(&with_roles(
        "[[roles.rules]]\nrole = \"staff\"\nemail_domain = \"example.com\"\n",
    ));
    assert!(
        e.contains("roles.rules[0].email_domain") && e.contains("no provider is trusted"),
        "{e}"
    );
}

#[test]
fn a_client_role_never_shadows_a_global_role() {
    let client_rule =
        "[[roles.rules]]\nrole = \"editor\"\nclient = \"app\"\nprovider = \"local\"\n";
    let global_rule = "[[roles.rules]]\nrole = \"editor\"\nprovider = \"local\"\n";
    let e = error_of(&with_roles(&format!("{global_rule}\n{client_rule}")));
    assert!(
        e.contains("roles.rules[1].role") && e.contains("shadow"),
        "{e}"
    );
    for global in [
        "[roles]\ndefault_roles = [\"editor\"]\n",
        "[roles]\nadmin_role = \"editor\"\n",
    ] {
        let e = error_of(&with_roles(&format!("{global}\n{client_rule}")));
        assert!(
            e.contains("roles.rules[0].role") && e.contains("shadow"),
            "{e}"
        );
    }
    // The same client role for two clients is fine: each sees its own.
    let text = with_roles(&format!(
        "[clients.other]\nsecret = \"other-secret-1\"\nredirect_uris = [\"http://127.0.0.1:5555/cb\"]\n\n{client_rule}\n{}",
        client_rule.replace("\"app\"", "\"other\"")
    ));
    load_text(&text).unwrap();
}

#[test]
fn bad_permissions_and_role_names_name_their_key() {
    let e = error_of(&with_roles(
        "[roles.permissions]\nadmin = [\"admin:*\", \"bad*\"]\n",
    ));
    assert!(e.contains("roles.permissions.admin[1]"), "{e}");
    let e = error_of(&with_roles(
        "[roles]\ndefault_roles = [\"ok\", \"not ok\"]\n",
    ));
    assert!(e.contains("roles.default_roles[1]"), "{e}");
    let e = error_of(&with_roles("[roles]\nadmin_role = \"\"\n"));
    assert!(e.contains("roles.admin_role"), "{e}");
}

#[test]
fn roles_and_permissions_are_scopes_clients_get_by_default() {
    let c = load_text(MINIMAL).unwrap();
    assert!(c.clients["app"].scopes.contains("roles"));
    assert!(c.clients["app"].scopes.contains("permissions"));
}

#[test]
fn linking_by_verified_email_needs_a_provider_trusted_for_email() {
    let e = error_of(&with_roles(
        "[providers.corp]\ntype = \"local\"\nlink_by_verified_email = true\n",
    ));
    assert!(e.contains("providers.corp.link_by_verified_email"), "{e}");
    let c = load_text(&with_roles(
        "[providers.corp]\ntype = \"local\"\ntrust_email = true\nlink_by_verified_email = true\n",
    ))
    .unwrap();
    let corp = c.providers.iter().find(|p| p.id == "corp").unwrap();
    assert!(corp.policy.link_by_verified_email);
    assert_eq!(corp.options, serde_json::json!({}));
    let local = c.providers.iter().find(|p| p.id == "local").unwrap();
    assert!(!local.policy.link_by_verified_email, "off by default");
}

#[test]
fn trusted_proxies_take_addresses_and_cidr_ranges() {
    let c = load_text(&format!(
        "{MINIMAL}\n[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\"]\n"
    ))
    .unwrap();
    assert_eq!(c.trusted_proxies.len(), 3);
}

#[test]
fn bad_trusted_proxies_name_their_key() {
    for bad in ["10.0.0.0/33", "10.0.0.1/8", "proxy.example", "10.0.0.0/"] {
        let e = error_of(&format!(
            "{MINIMAL}\n[server]\ntrusted_proxies = [\"192.0.2.7\", \"{bad}\"]\n"
        ));
        assert!(e.contains("server.trusted_proxies[1]"), "{bad}: {e}");
        assert!(e.contains("broker.toml"), "{bad}: {e}");
    }
}

#[test]
fn pkce_is_required_unless_a_confidential_client_turns_it_off() {
    let c = load_text(MINIMAL).unwrap();
    assert!(c.clients["app"].require_pkce, "required by default");
    let off = load_text(&MINIMAL.replace("redirect_uris", "require_pkce = false\nredirect_uris"))
        .unwrap();
    assert!(!off.clients["app"].require_pkce);
    let public = MINIMAL.replace(
        "secret = \"app-secret-123\"",
        "public = true\nrequire_pkce = false",
    );
    let e = error_of(&public);
    assert!(e.contains("clients.app.require_pkce"), "{e}");
}

#[test]
fn require_mfa_is_off_by_default_and_only_for_clients_people_sign_in_to() {
    let c = load_text(MINIMAL).unwrap();
    assert!(!c.clients["app"].require_mfa, "off by default");
    let on =
        load_text(&MINIMAL.replace("redirect_uris", "require_mfa = true\nredirect_uris")).unwrap();
    assert!(on.clients["app"].require_mfa);
    let machine = MINIMAL.replace(
        "redirect_uris",
        "require_mfa = true\ngrants = [\"client_credentials\"]\nredirect_uris",
    );
    let e = error_of(&machine);
    assert!(e.contains("clients.app.require_mfa"), "{e}");
    let device = MINIMAL.replace(
        "redirect_uris",
        "require_mfa = true\ngrants = [\"authorization_code\", \"urn:ietf:params:oauth:grant-type:device_code\"]\nredirect_uris",
    );
    let e = error_of(&device);
    assert!(e.contains("clients.app.require_mfa"), "{e}");
}

#[test]
fn redirect_uris_are_kept_as_written() {
    let c = load_text(&MINIMAL.replace(
        "\"http://127.0.0.1:5555/callback\"",
        "\"https://app.example:443/cb\", \"https://app.example\"",
    ))
    .unwrap();
    let written: Vec<&str> = c.clients["app"]
        .redirect_uris
        .iter()
        .map(|u| u.as_str())
        .collect();
    assert_eq!(
        written,
        ["https://app.example:443/cb", "https://app.example"]
    );
    let e = error_of(&MINIMAL.replace("5555/callback\"", "5555/callback \""));
    assert!(e.contains("clients.app.redirect_uris[0]"), "{e}");
}

#[test]
fn a_rule_may_name_a_managed_group_and_no_provider_may_be_called_managed() {
    let c = load_text(&format!(
        "{MINIMAL}\n[[roles.rules]]\nrole = \"ops\"\nmanaged_group = \"Operators\"\n"
    ))
    .unwrap();
    assert!(matches!(
        &c.roles.rules[0].conditions[..],
        [crate::roles::Condition::ManagedGroup(name)] if name == "Operators"
    ));
    let e = load_text(&format!(
        "{MINIMAL}\n[providers.managed]\ntype = \"local\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("providers.managed") && e.contains("reserved"),
        "{e}"
    );
}

#[test]
fn the_admin_api_listens_elsewhere_or_on_the_public_listener() {
    let c = load_text(MINIMAL).unwrap();
    assert_eq!(c.admin.listen, None);
    let c = load_text(&format!(
        "{MINIMAL}\n[admin]\nlisten = \"127.0.0.1:5557\"\n"
    ))
    .unwrap();
    assert_eq!(c.admin.listen.map(|a| a.port()), Some(5557));
    let e = load_text(&format!(
        "{MINIMAL}\n[admin]\nlisten = \"127.0.0.1:5556\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("admin.listen"), "{e}");
    let e = load_text(&format!("{MINIMAL}\n[admin]\nlisten = \"nowhere\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("admin.listen"), "{e}");
}

#[test]
fn the_store_is_sqlite_under_the_data_dir_by_default() {
    let c = load_text(MINIMAL).unwrap();
    match c.store {
        StoreSettings::Sqlite { path } => assert!(path.ends_with("switchboard.db"), "{path:?}"),
        other => panic!("expected SQLite, got {other:?}"),
    }
}

#[test]
fn a_postgres_store_takes_its_url_from_a_file_with_schema_and_pool_size() {
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("database-url");
    std::fs::write(
        &url_file,
        "postgres://app:hunter2@db.internal/switchboard\n",
    )
    .unwrap();
    let c = load_text(&format!(
        "{MINIMAL}\n[store]\nbackend = \"postgres\"\nurl_file = \"{}\"\nschema = \"switchboard\"\nmax_connections = 20\n",
        url_file.display()
    ))
    .unwrap();
    match &c.store {
        StoreSettings::Postgres {
            url,
            schema,
            max_connections,
        } => {
            assert_eq!(
                url.expose(),
                "postgres://app:hunter2@db.internal/switchboard"
            );
            assert_eq!(schema, "switchboard");
            assert_eq!(*max_connections, 20);
        }
        other => panic!("expected PostgreSQL, got {other:?}"),
    }
    assert!(
        !format!("{c:?}").contains("hunter2"),
        "the URL is a secret: the config never prints it"
    );
}

#[test]
fn a_postgres_store_defaults_to_the_public_schema() {
    let c = load_text(&format!(
        "{MINIMAL}\n[store]\nbackend = \"postgres\"\nurl = \"postgres://db/switchboard\"\n"
    ))
    .unwrap();
    match c.store {
        StoreSettings::Postgres {
            schema,
            max_connections,
            ..
        } => {
            assert_eq!(schema, "public");
            assert_eq!(max_connections, DEFAULT_POSTGRES_CONNECTIONS);
        }
        other => panic!("expected PostgreSQL, got {other:?}"),
    }
}

#[test]
fn a_postgres_store_needs_exactly_one_url_form() {
    let postgres = |keys: &str| format!("{MINIMAL}\n[store]\nbackend = \"postgres\"\n{keys}");
    let none = error_of(&postgres(""));
    assert!(
        none.contains("store.url") && none.contains("needs one of"),
        "{none}"
    );
    let both = error_of(&postgres(
        "url = \"postgres://app:hunter2@db/x\"\nurl_file = \"/run/secrets/db\"\n",
    ));
    assert!(both.contains("only one of"), "{both}");
    assert!(
        !both.contains("hunter2"),
        "the URL is never repeated: {both}"
    );
    let unset = error_of(&postgres("url_env = \"SWITCHBOARD_TEST_SURELY_UNSET\"\n"));
    assert!(unset.contains("unset or empty"), "{unset}");
    let missing_file = error_of(&postgres("url_file = \"/nonexistent/db-url\"\n"));
    assert!(missing_file.contains("store.url_file"), "{missing_file}");
}

#[test]
fn store_keys_of_the_other_backend_and_unknown_backends_are_refused() {
    let e = error_of(&format!("{MINIMAL}\n[store]\nbackend = \"mysql\"\n"));
    assert!(
        e.contains("store.backend") && e.contains("\"postgres\""),
        "{e}"
    );
    let e = error_of(&format!("{MINIMAL}\n[store]\nurl = \"postgres://db/x\"\n"));
    assert!(e.contains("store") && e.contains("for backend"), "{e}");
    let e = error_of(&format!(
        "{MINIMAL}\n[store]\nbackend = \"postgres\"\nurl = \"postgres://db/x\"\npath = \"x.db\"\n"
    ));
    assert!(e.contains("store.path"), "{e}");
    let e = error_of(&format!(
        "{MINIMAL}\n[store]\nbackend = \"postgres\"\nurl = \"postgres://db/x\"\nschema = \"Bad-Name\"\n"
    ));
    assert!(e.contains("store.schema"), "{e}");
    let e = error_of(&format!(
        "{MINIMAL}\n[store]\nbackend = \"postgres\"\nurl = \"postgres://db/x\"\nmax_connections = 0\n"
    ));
    assert!(e.contains("store.max_connections"), "{e}");
}

#[test]
fn shutdown_and_back_channel_logout_have_defaults_and_bounds() {
    let c = load_text(MINIMAL).unwrap();
    assert_eq!(c.shutdown_timeout, 10);
    assert_eq!(
        (
            c.backchannel.timeout,
            c.backchannel.max_attempts,
            c.backchannel.retry_delay,
            c.backchannel.lease
        ),
        (5, 10, 5, 60)
    );
    let c = load_text(&format!(
        "{MINIMAL}\n[backchannel_logout]\ntimeout = \"2s\"\nmax_attempts = 3\nretry_delay = \"1s\"\nlease = \"4s\"\n"
    ))
    .unwrap();
    assert_eq!(c.backchannel.max_attempts, 3);
    let e = error_of(&format!(
        "{MINIMAL}\n[backchannel_logout]\ntimeout = \"10s\"\nlease = \"15s\"\n"
    ));
    assert!(e.contains("backchannel_logout.lease"), "{e}");
    let e = error_of(&format!(
        "{MINIMAL}\n[backchannel_logout]\nmax_attempts = 0\n"
    ));
    assert!(e.contains("backchannel_logout.max_attempts"), "{e}");
    let e = error_of(&format!("{MINIMAL}\n[backchannel_logout]\nretries = 3\n"));
    assert!(e.contains("retries"), "{e}");
}

#[test]
fn previous_master_keys_are_a_list_of_files() {
    let c = load_text(&format!(
        "{MINIMAL}\n[secrets]\nmaster_key_file = \"new.key\"\nprevious_master_key_files = [\"old.key\", \"older.key\"]\n"
    ))
    .unwrap();
    assert_eq!(
        c.previous_master_keys,
        vec![PathBuf::from("old.key"), PathBuf::from("older.key")]
    );
    assert!(load_text(MINIMAL).unwrap().previous_master_keys.is_empty());
}

const EMAIL: &str =
    "\n[email]\nsmtp_url = \"smtp://mail.example.com\"\nfrom = \"Switchboard <id@example.com>\"\n";

#[test]
fn email_picks_tls_by_scheme_with_default_ports() {
    let c = load_text(&format!("{MINIMAL}{EMAIL}")).unwrap();
    let e = c.email.unwrap();
    assert_eq!(
        (e.host.as_str(), e.port, e.security),
        ("mail.example.com", 587, SmtpSecurity::StartTls)
    );
    assert!(e.credentials.is_none());
    let c = load_text(&format!(
        "{MINIMAL}{}",
        EMAIL.replace("smtp://", "smtps://")
    ))
    .unwrap();
    let e = c.email.unwrap();
    assert_eq!((e.port, e.security), (465, SmtpSecurity::ImplicitTls));
    let c = load_text(&format!(
        "{MINIMAL}{}",
        EMAIL.replace("smtp://mail.example.com", "smtp+plain://127.0.0.1:2525")
    ))
    .unwrap();
    let e = c.email.unwrap();
    assert_eq!((e.port, e.security), (2525, SmtpSecurity::Plain));
}

#[test]
fn email_refuses_plain_smtp_off_this_machine_and_credentials_in_the_url() {
    let e = error_of(&format!(
        "{MINIMAL}{}",
        EMAIL.replace("smtp://", "smtp+plain://")
    ));
    assert!(
        e.contains("email.smtp_url") && e.contains("only for a server on this machine"),
        "{e}"
    );
    let e = error_of(&format!(
        "{MINIMAL}{}",
        EMAIL.replace("smtp://", "smtp://bob:hunter2@")
    ));
    assert!(e.contains("email.username"), "{e}");
    assert!(
        !e.contains("hunter2"),
        "the error never shows the secret URL: {e}"
    );
    let e = error_of(&format!("{MINIMAL}{}", EMAIL.replace("smtp://", "http://")));
    assert!(e.contains("email.smtp_url"), "{e}");
    let e = error_of(&format!("{MINIMAL}{EMAIL}username = \"bob\"\n"));
    assert!(e.contains("both username and password"), "{e}");
    let e = error_of(&format!(
        "{MINIMAL}{}",
        EMAIL.replace("Switchboard <id@example.com>", "not an address")
    ));
    assert!(e.contains("email.from"), "{e}");
}

#[test]
fn password_reset_needs_email_and_the_local_provider() {
    let reset = "allow_password_reset = true\n";
    let e = error_of(&format!("{MINIMAL}{reset}"));
    assert!(
        e.contains("providers.local.allow_password_reset") && e.contains("[email]"),
        "{e}"
    );
    let c = load_text(&format!(
        "{MINIMAL}{reset}password_reset_lifetime = \"15m\"\n{EMAIL}"
    ))
    .unwrap();
    assert_eq!(c.providers[0].policy.password_reset, Some(900));
    let c = load_text(&format!("{MINIMAL}{reset}{EMAIL}")).unwrap();
    assert_eq!(
        c.providers[0].policy.password_reset,
        Some(1800),
        "30 minutes by default"
    );
    let e = error_of(&format!(
        "{}{reset}{EMAIL}",
        MINIMAL.replace("type = \"local\"", "type = \"htpasswd\"\nfile = \"x\"")
    ));
    assert!(e.contains("allow_password_reset"), "{e}");
}

#[test]
fn the_ui_section_names_a_theme_and_a_default_locale() {
    let c = load_text(MINIMAL).unwrap();
    assert_eq!(c.ui, UiSettings::default());
    assert_eq!(c.ui.default_locale, "en");
    let c = load_text(&format!(
        "{MINIMAL}\n[ui]\ntheme_dir = \"/srv/theme\"\ndefault_locale = \"de-AT\"\n"
    ))
    .unwrap();
    assert_eq!(c.ui.theme_dir, Some(PathBuf::from("/srv/theme")));
    assert_eq!(c.ui.default_locale, "de-at");
}

#[test]
fn a_bad_ui_section_names_its_key() {
    let e = error_of(&format!("{MINIMAL}\n[ui]\ndefault_locale = \"de_DE\"\n"));
    assert!(e.contains("ui.default_locale"), "{e}");
    let e = error_of(&format!("{MINIMAL}\n[ui]\ntheme_dir = \"\"\n"));
    assert!(e.contains("ui.theme_dir"), "{e}");
    let e = error_of(&format!("{MINIMAL}\n[ui]\ntheme = \"x\"\n"));
    assert!(e.contains("theme"), "{e}");
}

#[test]
fn registration_needs_the_local_provider_and_mail_unless_auto_activated() {
    let on = "allow_registration = true\n";
    let e = error_of(&format!("{MINIMAL}{on}"));
    assert!(
        e.contains("providers.local.allow_registration") && e.contains("[email]"),
        "{e}"
    );
    let c = load_text(&format!("{MINIMAL}{on}auto_activate = true\n")).unwrap();
    let policy = c.providers[0].policy;
    assert_eq!(
        policy.signup,
        Some(crate::config::Signup {
            auto_activate: true
        })
    );
    assert!(
        policy.password_change,
        "local users may change their password by default"
    );
    assert!(!policy.email_change);
    assert_eq!(policy.confirmation_lifetime, 24 * 3600);
    let c = load_text(&format!(
        "{MINIMAL}{on}confirmation_lifetime = \"2h\"\nallow_email_change = true\n{EMAIL}"
    ))
    .unwrap();
    assert_eq!(c.providers[0].policy.confirmation_lifetime, 7200);
    assert!(c.providers[0].policy.email_change);
    let e = error_of(&format!("{MINIMAL}auto_activate = true\n"));
    assert!(e.contains("needs allow_registration"), "{e}");
    let e = error_of(&format!("{MINIMAL}allow_email_change = true\n"));
    assert!(
        e.contains("allow_email_change") && e.contains("[email]"),
        "{e}"
    );
    let e = error_of(&format!(
        "{MINIMAL}{on}confirmation_lifetime = \"30d\"\n{EMAIL}"
    ));
    assert!(e.contains("at most 7d"), "{e}");
    let e = error_of(&format!(
        "{}{on}{EMAIL}",
        MINIMAL.replace("type = \"local\"", "type = \"htpasswd\"\nfile = \"x\"")
    ));
    assert!(e.contains("allow_registration"), "{e}");
}

#[test]
fn the_account_policy_compiles_anchored_patterns_and_reads_the_banned_list() {
    let dir = tempfile::tempdir().unwrap();
    let banned = dir.path().join("banned.txt");
    std::fs::write(&banned, "Acme-Winter-2026\n\n  summer-acme  \n").unwrap();
    let c = load_text(&format!(
        "{MINIMAL}\n[account_policy]\nusername_pattern = \"[a-z]+\"\nmin_password_length = 12\nreject_common_passwords = false\nbanned_passwords_file = {:?}\n",
        banned.display().to_string()
    ))
    .unwrap();
    let p = &c.account_policy;
    let pattern = p.username_pattern.as_ref().unwrap();
    assert!(pattern.is_match("alice"));
    assert!(!pattern.is_match("alice1"), "anchored at both ends");
    assert!(!pattern.is_match("1alice"));
    assert_eq!(p.min_password_length, 12);
    assert!(!p.reject_common_passwords);
    assert!(p.banned_passwords.contains("acme-winter-2026"));
    assert!(p.banned_passwords.contains("summer-acme"));
    assert_eq!(p.banned_passwords.len(), 2);

    let d = load_text(MINIMAL).unwrap().account_policy;
    assert_eq!(d.min_password_length, 8);
    assert!(d.reject_common_passwords);

    let e = error_of(&format!(
        "{MINIMAL}\n[account_policy]\npassword_pattern = \"(unclosed\"\n"
    ));
    assert!(
        e.contains("account_policy.password_pattern") && e.contains("not a valid regex"),
        "{e}"
    );
    let e = error_of(&format!(
        "{MINIMAL}\n[account_policy]\nmin_password_length = 4\n"
    ));
    assert!(e.contains("account_policy.min_password_length"), "{e}");
    let e = error_of(&format!(
        "{MINIMAL}\n[account_policy]\nbanned_passwords_file = \"/nonexistent/list\"\n"
    ));
    assert!(e.contains("account_policy.banned_passwords_file"), "{e}");
    let e = error_of(&format!(
        "{MINIMAL}\n[account_policy]\nusername_regex = \"x\"\n"
    ));
    assert!(e.contains("username_regex"), "unknown keys are errors: {e}");
}

#[test]
fn a_mail_directory_is_for_development_only_and_excludes_smtp() {
    let dir = "\n[email]\ndirectory = \"data/mail\"\nfrom = \"Demo <demo@example.com>\"\n";
    let c = load_text(&format!("{MINIMAL}{dir}")).unwrap();
    let e = c.email.unwrap();
    assert_eq!(e.directory.as_deref(), Some(Path::new("data/mail")));
    let production = MINIMAL
        .replace("dev_mode = true", "dev_mode = false")
        .replace(
            "http://127.0.0.1:5555/callback",
            "https://app.example.com/cb",
        );
    let e = error_of(&format!(
        "{production}\n[secrets]\nmaster_key_file = \"/run/k\"\n{dir}"
    ));
    assert!(
        e.contains("email.directory") && e.contains("dev_mode"),
        "{e}"
    );
    let e = error_of(&format!(
        "{MINIMAL}{dir}smtp_url = \"smtp://mail.example.com\"\n"
    ));
    assert!(
        e.contains("email.directory") && e.contains("not both"),
        "{e}"
    );
}
