#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

//! Master-key rotation on SQLite and on PostgreSQL: values sealed under key A (the
//! signing keys) are re-sealed under key B by `broker secrets rotate-master-key` while A
//! is still configured as a previous key; a run stopped half-way (`--max-rows`) is
//! finished by the next; a value no configured key opens stops the command with
//! nothing changed; afterwards the broker starts with B alone and still signs with
//! the keys it had.

use std::path::{Path, PathBuf};
use std::process::Output;
use switchboard_e2e::{ADMIN, Broker, Browser, PgSchema, Setup, WEB_APP, jwt_header};

/// Three master keys in the text form operators write (`openssl rand -base64 32`).
const KEY_A: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";
const KEY_B: &str = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";
const KEY_C: &str = "Q0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0M=";

struct Keys {
    _dir: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
    c: PathBuf,
}

fn key_files() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, key: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{key}\n")).unwrap();
        path
    };
    let (a, b, c) = (
        write("a.key", KEY_A),
        write("b.key", KEY_B),
        write("c.key", KEY_C),
    );
    Keys { _dir: dir, a, b, c }
}

/// The `[secrets]` table: `current` seals, `previous` only open. Always the last
/// table of the config, so a restart can replace it.
fn secrets(current: &Path, previous: &[&Path]) -> String {
    let previous: Vec<String> = previous
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    format!(
        "[secrets]\nmaster_key_file = {:?}\nprevious_master_key_files = [{}]\n",
        current.display().to_string(),
        previous.join(", ")
    )
}

fn with_secrets(config: String, block: &str) -> String {
    let at = config.find("\n[secrets]\n").expect("a [secrets] table");
    format!("{}\n{block}", &config[..at])
}

fn rotate(broker: &Broker, extra: &[&str]) -> Output {
    let config = broker.config_path().display().to_string();
    let mut args = vec!["secrets", "rotate-master-key", "--config", config.as_str()];
    args.extend_from_slice(extra);
    broker.cli(&args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The number printed before `label` in the command's report.
fn count(report: &str, label: &str) -> u64 {
    let before = &report[..report
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {report:?}"))];
    before
        .trim_end()
        .rsplit([' ', ','])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before {label:?} in {report:?}"))
}

async fn rotation_keeps_every_sealed_value_readable(setup: Setup) {
    let keys = key_files();
    let mut broker = setup.extra(&secrets(&keys.a, &[])).start().await;
    let first = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;
    let kid = jwt_header(first.id_token())["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let kids = broker.jwks_kids().await;
    assert!(kids.len() >= 2, "several signing keys are sealed: {kids:?}");

    // B becomes current; A still opens what it sealed. The broker runs on this config
    // while the command works (replicas restarted first, as the README says).
    broker
        .restart_with_config(|c| with_secrets(c, &secrets(&keys.b, &[&keys.a])))
        .await;

    // Stopped after one value (as an interrupted run would be)...
    let partial = rotate(&broker, &["--max-rows", "1"]);
    assert!(partial.status.success(), "{partial:?}");
    let report = stdout(&partial);
    let total = count(&report, "sealed values");
    assert!(total >= 2, "{report}");
    // Keys the broker made since B became current are sealed under B already.
    let current = count(&report, "already current");
    assert!(current + 2 <= total, "most values are A's: {report}");
    assert_eq!(count(&report, "re-sealed"), 1, "{report}");
    let left = count(&report, "remaining");
    assert_eq!(left, total - current - 1, "{report}");
    assert!(report.contains("run the command again"), "{report}");

    // ...so B alone cannot open everything yet: the command refuses, changing nothing.
    let config = std::fs::read_to_string(broker.config_path()).unwrap();
    std::fs::write(
        broker.config_path(),
        with_secrets(config.clone(), &secrets(&keys.b, &[])),
    )
    .unwrap();
    let refused = rotate(&broker, &[]);
    assert!(!refused.status.success(), "{refused:?}");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("open under no configured master key"), "{why}");
    assert!(
        why.contains("previous_master_key_files"),
        "says what to do: {why}"
    );
    assert!(
        !why.contains(KEY_A) && !why.contains(KEY_B),
        "no key is printed: {why}"
    );
    std::fs::write(broker.config_path(), config).unwrap();

    // The next run finishes the job, and one after it has nothing left to do.
    let rest = rotate(&broker, &[]);
    assert!(rest.status.success(), "{rest:?}");
    let report = stdout(&rest);
    assert_eq!(count(&report, "re-sealed"), left, "{report}");
    assert_eq!(count(&report, "remaining"), 0, "{report}");
    let again = stdout(&rotate(&broker, &[]));
    assert_eq!(count(&again, "re-sealed"), 0, "{again}");
    assert_eq!(count(&again, "remaining"), 0, "{again}");
    assert_eq!(
        count(&again, "already current"),
        count(&again, "sealed values"),
        "{again}"
    );

    // The broker that ran through it still signs.
    let during = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;
    broker.verify_with_jwks(during.id_token()).await;

    // B alone now: the broker starts, has the same keys and signs with the same one.
    broker
        .restart_with_config(|c| with_secrets(c, &secrets(&keys.b, &[])))
        .await;
    let published = broker.jwks_kids().await;
    for k in &kids {
        assert!(
            published.contains(k),
            "{k} is still published: {published:?}"
        );
    }
    let after = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;
    assert_eq!(jwt_header(after.id_token())["kid"], kid.as_str());
    let claims = broker.verify_with_jwks(after.id_token()).await;
    assert_eq!(claims["sub"], ADMIN.id);
    // A token issued before the rotation still verifies, and refreshes.
    broker.verify_with_jwks(first.id_token()).await;
    broker
        .refresh(&WEB_APP, first.refresh_token())
        .await
        .assert_ok();

    // A key that sealed nothing here is refused as the only key.
    std::fs::write(
        broker.config_path(),
        with_secrets(
            std::fs::read_to_string(broker.config_path()).unwrap(),
            &secrets(&keys.c, &[]),
        ),
    )
    .unwrap();
    let wrong = rotate(&broker, &[]);
    assert!(!wrong.status.success(), "{wrong:?}");
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("open under no configured master key"),
        "{wrong:?}"
    );
}

#[tokio::test]
async fn master_key_rotates_on_sqlite() {
    rotation_keeps_every_sealed_value_readable(Broker::setup()).await;
}

#[tokio::test]
async fn master_key_rotates_on_postgres() {
    let Some(db) = PgSchema::fresh().await else {
        return;
    };
    rotation_keeps_every_sealed_value_readable(Broker::setup().extra(&db.store_toml())).await;
}
