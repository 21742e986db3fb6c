//! The shipped systemd unit (issue 16): `systemd-analyze verify` accepts it with the
//! real binary in place, warns about nothing, and it runs `check-config` before it
//! serves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use switchboard_e2e::{broker_binary, workspace_root};

#[test]
fn the_systemd_unit_verifies_cleanly() {
    let unit = std::fs::read_to_string(workspace_root().join("packaging/switchboard.service"))
        .expect("read packaging/switchboard.service");
    for directive in [
        "DynamicUser=yes",
        "StateDirectory=switchboard",
        "LoadCredential=master-key:",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(directive), "the unit sets {directive}");
    }
    assert!(unit.contains("ExecStartPre=/usr/local/bin/broker check-config"));
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIP: systemd-analyze is not installed");
        return;
    };
    assert!(version.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.service");
    let binary = broker_binary();
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/broker", binary.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unknown or misspelt directives are only warnings: refuse them too.
    assert!(
        !stderr.contains("switchboard.service"),
        "systemd-analyze warned: {stderr}"
    );
}
