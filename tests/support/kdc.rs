//! A real MIT Kerberos KDC for a test: a realm made in a temp dir (`kdb5_util create`
//! with a stash, principals and keytabs by `kadmin.local`), its own `krb5.conf` and
//! `kdc.conf`, and `krb5kdc -n` in the foreground on a random loopback port, owned by
//! the test and killed when it ends. Every command gets `KRB5_CONFIG` and
//! `KRB5_KDC_PROFILE`; nothing outside the temp dir is touched.
//!
//! Without `krb5kdc` (Debian `krb5-kdc`, `krb5-admin-server`, `krb5-user`) the tests
//! skip, unless `SWITCHBOARD_REQUIRE_PEERS=1`, which makes that a failure
//! (`scripts/test` installs the packages).

use crate::broker::free_port;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The test realm.
pub const REALM: &str = "EXAMPLE.TEST";

/// A running KDC and its realm.
#[derive(Debug)]
pub struct Kdc {
    dir: TempDir,
    child: Option<Child>,
    port: u16,
}

/// Where a Debian krb5 tool lives (sbin is not always on a test's PATH).
fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    PathBuf::from(name)
}

impl Kdc {
    /// Makes the realm and starts the KDC, or `None` (skip) when krb5kdc is missing.
    pub fn start(test: &str) -> Option<Kdc> {
        let kdc_bin = tool("krb5kdc");
        if !kdc_bin.is_file() || !tool("kinit").is_file() {
            if std::env::var("SWITCHBOARD_REQUIRE_PEERS").as_deref() == Ok("1") {
                panic!(
                    "krb5kdc and kinit are required (Debian packages krb5-kdc, krb5-admin-server, \
                     krb5-user; scripts/test installs them)"
                );
            }
            eprintln!("SKIPPED {test}: krb5kdc is not installed");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("switchboard-kdc-")
            .tempdir()
            .expect("create the KDC directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("make the KDC directory private");
        let port = free_port();
        let mut kdc = Kdc {
            dir,
            child: None,
            port,
        };
        kdc.write_configs();
        kdc.run(
            &tool("kdb5_util"),
            &["create", "-s", "-r", REALM, "-P", "master-key-of-the-test"],
        );
        std::fs::write(kdc.path("kadm5.acl"), "").expect("write kadm5.acl");
        let child = Command::new(&kdc_bin)
            .args(["-n", "-r", REALM])
            .envs(kdc.env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(kdc.path("krb5kdc.stderr")).expect("create the KDC log"))
            .spawn()
            .expect("start krb5kdc");
        kdc.child = Some(child);
        kdc.wait_until_listening();
        Some(kdc)
    }

    /// A file in the realm's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_configs(&self) {
        let dir = self.dir.path().display();
        let port = self.port;
        let krb5 = format!(
            "[libdefaults]\n\
             \x20default_realm = {REALM}\n\
             \x20dns_lookup_realm = false\n\
             \x20dns_lookup_kdc = false\n\
             \x20rdns = false\n\
             \x20dns_canonicalize_hostname = false\n\
             \x20udp_preference_limit = 1\n\
             \x20default_ccache_name = FILE:{dir}/ccache-unused\n\
             \x20default_keytab_name = FILE:{dir}/keytab-unused\n\
             [realms]\n\
             \x20{REALM} = {{\n\
             \x20  kdc = 127.0.0.1:{port}\n\
             \x20}}\n\
             [domain_realm]\n\
             \x20localhost = {REALM}\n\
             \x20127.0.0.1 = {REALM}\n"
        );
        let kdc = format!(
            "[kdcdefaults]\n\
             \x20kdc_listen = 127.0.0.1:{port}\n\
             \x20kdc_tcp_listen = 127.0.0.1:{port}\n\
             [realms]\n\
             \x20{REALM} = {{\n\
             \x20  database_name = {dir}/principal\n\
             \x20  key_stash_file = {dir}/stash\n\
             \x20  acl_file = {dir}/kadm5.acl\n\
             \x20  kdc_listen = 127.0.0.1:{port}\n\
             \x20  kdc_tcp_listen = 127.0.0.1:{port}\n\
             \x20  max_life = 1h\n\
             \x20  supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n\
             \x20}}\n\
             [logging]\n\
             \x20kdc = FILE:{dir}/kdc.log\n"
        );
        std::fs::write(self.path("krb5.conf"), krb5).expect("write krb5.conf");
        std::fs::write(self.path("kdc.conf"), kdc).expect("write kdc.conf");
    }

    /// The environment every Kerberos client and tool of this realm needs, the broker
    /// included.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "KRB5_CONFIG".into(),
                self.path("krb5.conf").display().to_string(),
            ),
            (
                "KRB5_KDC_PROFILE".into(),
                self.path("kdc.conf").display().to_string(),
            ),
        ]
    }

    fn run(&self, program: &Path, args: &[&str]) -> Output {
        let out = Command::new(program)
            .args(args)
            .envs(self.env())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
        assert!(
            out.status.success(),
            "{} {args:?} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs one `kadmin.local` query.
    pub fn kadmin(&self, query: &str) {
        self.run(&tool("kadmin.local"), &["-r", REALM, "-q", query]);
    }

    /// Adds a person `name@REALM` with `password` (no spaces: kadmin splits the query
    /// at them).
    pub fn add_user(&self, name: &str, password: &str) {
        assert!(
            !password.contains(char::is_whitespace),
            "kadmin splits at spaces"
        );
        self.kadmin(&format!("addprinc -pw {password} {name}"));
    }

    /// Adds a service principal with a random key, written to a new keytab in the
    /// realm's directory (mode 0600), whose path is returned.
    pub fn add_service(&self, principal: &str, keytab_name: &str) -> PathBuf {
        self.kadmin(&format!("addprinc -randkey {principal}"));
        let keytab = self.path(keytab_name);
        self.kadmin(&format!("ktadd -k {} {principal}", keytab.display()));
        std::fs::set_permissions(&keytab, std::fs::Permissions::from_mode(0o600))
            .expect("make the keytab private");
        keytab
    }

    /// Gets a TGT for `name` with `password` into the credential cache `ccache` (a
    /// file), as a person at a domain-joined desktop has one.
    pub fn kinit(&self, name: &str, password: &str, ccache: &Path) {
        let mut child = Command::new(tool("kinit"))
            .arg("-c")
            .arg(format!("FILE:{}", ccache.display()))
            .arg(name)
            .envs(self.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kinit");
        child
            .stdin
            .take()
            .expect("kinit's stdin")
            .write_all(format!("{password}\n").as_bytes())
            .expect("type the password into kinit");
        let out = child.wait_with_output().expect("wait for kinit");
        assert!(
            out.status.success(),
            "kinit {name} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The KDC's own log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("kdc.log")).unwrap_or_default()
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "krb5kdc exited with {status}: {}{}",
                    std::fs::read_to_string(self.path("krb5kdc.stderr")).unwrap_or_default(),
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "krb5kdc did not listen on 127.0.0.1:{} within 15 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
