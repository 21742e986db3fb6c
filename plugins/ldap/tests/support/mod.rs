//! A real OpenLDAP `slapd` for the tests: a temporary config and database, seeded
//! offline with `slapadd`, listening on random loopback ports (plain + StartTLS, and
//! optionally `ldaps://`), run in the foreground and killed when dropped.
//!
//! If `/usr/sbin/slapd` is missing the tests skip loudly; the project's test script
//! installs `slapd ldap-utils`.

#![allow(
    dead_code,
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test support: a failed expectation is a failed test, with its message; \
              each test binary uses a different part of it"
)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ldap3::{Ldap, LdapConnAsync, Mod};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_ldap::LdapFactory;
use switchboard_plugin_api::{
    Identity, Password, PasswordRequest, Provider, ProviderContext, ProviderError, ProviderFactory,
    RefreshRequest,
};

pub const SLAPD: &str = "/usr/sbin/slapd";
pub const SLAPADD: &str = "/usr/sbin/slapadd";
pub const BASE: &str = "dc=example,dc=org";
pub const PEOPLE: &str = "ou=people,dc=example,dc=org";
pub const GROUPS: &str = "ou=groups,dc=example,dc=org";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
pub const ROOT_PW: &str = "root-secret";
pub const SERVICE_DN: &str = "cn=switchboard,ou=services,dc=example,dc=org";
pub const SERVICE_PW: &str = "service-secret";

/// A user of the seeded directory.
pub struct User {
    pub uid: &'static str,
    pub cn: &'static str,
    pub mail: &'static str,
    pub password: &'static str,
    pub groups: &'static [&'static str],
    /// Active Directory flavour: a binary objectGUID and userAccountControl.
    pub ad: Option<([u8; 16], u32)>,
}

pub const ADA: User = User {
    uid: "ada",
    cn: "Ada Lovelace",
    mail: "ada@example.org",
    password: "ada-pass",
    groups: &[
        "allowed_to_login",
        "API_PERM_read",
        "API_PERM_write",
        "engineering",
    ],
    ad: None,
};
pub const BOB: User = User {
    uid: "bob",
    cn: "Bob Builder",
    mail: "bob@example.org",
    password: "bob-pass",
    groups: &["allowed_to_login", "API_PERM_read", "API_PERM_write"],
    ad: None,
};
/// Not in the login group.
pub const EVE: User = User {
    uid: "eve",
    cn: "Eve Outsider",
    mail: "eve@example.org",
    password: "eve-pass",
    groups: &["engineering"],
    ad: None,
};
pub const ADMIN: User = User {
    uid: "admin",
    cn: "Directory Admin",
    mail: "admin@example.org",
    password: "admin-pass",
    groups: &["allowed_to_login", "API_PERM_admin"],
    ad: None,
};
/// Filter metacharacters in the login.
pub const STAR: User = User {
    uid: "st*r(x)\\y",
    cn: "Star Paren",
    mail: "star@example.org",
    password: "star-pass",
    groups: &["allowed_to_login"],
    ad: None,
};
/// Non-ASCII login and password.
pub const JURGEN: User = User {
    uid: "jürgen",
    cn: "Jürgen Groß",
    mail: "juergen@example.org",
    password: "pässwörd-ß",
    groups: &["allowed_to_login", "API_PERM_read"],
    ad: None,
};
/// DN metacharacters in the login.
pub const SMITH: User = User {
    uid: "smith, john+jr",
    cn: "John Smith",
    mail: "smith@example.org",
    password: "smith-pass",
    groups: &["allowed_to_login"],
    ad: None,
};
/// Active Directory-like account.
pub const GRACE: User = User {
    uid: "grace",
    cn: "Grace Hopper",
    mail: "grace@example.org",
    password: "grace-pass",
    groups: &["allowed_to_login"],
    ad: Some((
        [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ],
        512,
    )),
};
/// Two users who share one email address.
pub const CAROL: User = User {
    uid: "carol",
    cn: "Carol Twin",
    mail: "shared@example.org",
    password: "carol-pass",
    groups: &["allowed_to_login"],
    ad: None,
};
pub const DAVE: User = User {
    uid: "dave",
    cn: "Dave Twin",
    mail: "shared@example.org",
    password: "dave-pass",
    groups: &["allowed_to_login"],
    ad: None,
};

pub const USERS: &[User] = &[
    ADA, BOB, EVE, ADMIN, STAR, JURGEN, SMITH, GRACE, CAROL, DAVE,
];
pub const GROUP_NAMES: &[&str] = &[
    "allowed_to_login",
    "API_PERM_read",
    "API_PERM_write",
    "API_PERM_admin",
    "engineering",
];

/// RFC 4514 escaping for the test's own DNs (independent of the crate's).
pub fn rdn_value(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn user_dn(uid: &str) -> String {
    format!("uid={},{PEOPLE}", rdn_value(uid))
}

pub fn group_dn(name: &str) -> String {
    format!("cn={name},{GROUPS}")
}

/// One LDIF entry, every value base64-encoded so any character is safe.
fn ldif_entry(out: &mut String, dn: &str, attrs: &[(&str, &[u8])]) {
    let _ = writeln!(out, "dn:: {}", B64.encode(dn));
    for (name, value) in attrs {
        let _ = writeln!(out, "{name}:: {}", B64.encode(value));
    }
    out.push('\n');
}

fn seed_ldif() -> String {
    let mut l = String::new();
    ldif_entry(
        &mut l,
        BASE,
        &[
            ("objectClass", b"dcObject"),
            ("objectClass", b"organization"),
            ("dc", b"example"),
            ("o", b"Example"),
        ],
    );
    for ou in ["people", "groups", "services"] {
        ldif_entry(
            &mut l,
            &format!("ou={ou},{BASE}"),
            &[
                ("objectClass", b"organizationalUnit"),
                ("ou", ou.as_bytes()),
            ],
        );
    }
    ldif_entry(
        &mut l,
        SERVICE_DN,
        &[
            ("objectClass", b"organizationalRole"),
            ("objectClass", b"simpleSecurityObject"),
            ("cn", b"switchboard"),
            ("userPassword", SERVICE_PW.as_bytes()),
        ],
    );
    for u in USERS {
        let sn = u.cn.rsplit(' ').next().unwrap_or(u.cn);
        let mut attrs: Vec<(&str, &[u8])> = vec![
            ("objectClass", b"inetOrgPerson"),
            ("uid", u.uid.as_bytes()),
            ("cn", u.cn.as_bytes()),
            ("sn", sn.as_bytes()),
            ("mail", u.mail.as_bytes()),
            ("userPassword", u.password.as_bytes()),
        ];
        let uac;
        if let Some((guid, flags)) = &u.ad {
            uac = flags.to_string();
            // All values of one attribute must be contiguous in LDIF.
            attrs.insert(1, ("objectClass", b"adAccount"));
            attrs.push(("objectGUID", guid));
            attrs.push(("userAccountControl", uac.as_bytes()));
        }
        ldif_entry(&mut l, &user_dn(u.uid), &attrs);
    }
    for g in GROUP_NAMES {
        let members: Vec<String> = USERS
            .iter()
            .filter(|u| u.groups.contains(g))
            .map(|u| user_dn(u.uid))
            .collect();
        let mut attrs: Vec<(&str, &[u8])> =
            vec![("objectClass", b"groupOfNames"), ("cn", g.as_bytes())];
        for m in &members {
            attrs.push(("member", m.as_bytes()));
        }
        ldif_entry(&mut l, &group_dn(g), &attrs);
    }
    l
}

/// Two attributes and an auxiliary class borrowed from Active Directory, so the AD
/// paths (binary objectGUID, userAccountControl) run against slapd too.
const AD_SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.55555.1.1 NAME 'objectGUID'
  EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.55555.1.2 NAME 'userAccountControl'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.55555.2.1 NAME 'adAccount' AUXILIARY
  MAY ( objectGUID $ userAccountControl ) )
";

/// Test certificates: a CA, a server certificate it signed for 127.0.0.1/localhost,
/// and an unrelated CA nobody should trust.
pub struct Pki {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn make_ca(name: &str) -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let cert = params.self_signed(&key).unwrap();
    (cert, rcgen::Issuer::new(params, key))
}

fn make_pki(dir: &Path) -> Pki {
    let (ca_cert, ca) = make_ca("Switchboard test CA");
    let (other_cert, _) = make_ca("Somebody else's CA");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca).unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    fs::write(&pki.ca, ca_cert.pem()).unwrap();
    fs::write(&pki.other_ca, other_cert.pem()).unwrap();
    fs::write(&pki.cert, cert.pem()).unwrap();
    fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running slapd.
pub struct Slapd {
    dir: tempfile::TempDir,
    conf: PathBuf,
    pub port: u16,
    pub tls_port: Option<u16>,
    pub pki: Option<Pki>,
    child: Option<Child>,
}

impl Slapd {
    /// Whether slapd is installed; says so loudly when it is not.
    pub fn available() -> bool {
        if Path::new(SLAPD).exists() && Path::new(SLAPADD).exists() {
            return true;
        }
        eprintln!(
            "\n!!!!! SKIPPED: {SLAPD} is not installed; LDAP integration tests did not run.\n\
             !!!!! Install it with: DEBIAN_FRONTEND=noninteractive apt-get install -y \
             --no-install-recommends slapd ldap-utils\n"
        );
        false
    }

    /// A plain server (ldap:// only).
    pub fn start() -> Option<Slapd> {
        Self::start_with(false)
    }

    /// A server with a test CA: StartTLS on the ldap:// port, and an ldaps:// port.
    pub fn start_tls() -> Option<Slapd> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Option<Slapd> {
        if !Self::available() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        fs::write(dir.path().join("ad.schema"), AD_SCHEMA).unwrap();
        let pki = tls.then(|| make_pki(dir.path()));
        let d = dir.path().display();
        let mut conf = String::new();
        for s in ["core", "cosine", "inetorgperson", "nis", "dyngroup"] {
            let _ = writeln!(conf, "include /etc/ldap/schema/{s}.schema");
        }
        let _ = writeln!(conf, "include {d}/ad.schema");
        let _ = writeln!(conf, "modulepath /usr/lib/ldap");
        let _ = writeln!(conf, "moduleload back_mdb");
        let _ = writeln!(conf, "moduleload dynlist");
        let _ = writeln!(conf, "pidfile {d}/slapd.pid");
        let _ = writeln!(conf, "argsfile {d}/slapd.args");
        // Makes an empty-password bind with a DN succeed (an "unauthenticated bind"), as
        // many servers do: the empty-password test then proves the provider refuses it.
        let _ = writeln!(conf, "allow bind_anon_dn");
        if let Some(pki) = &pki {
            let _ = writeln!(conf, "TLSCACertificateFile {}", pki.ca.display());
            let _ = writeln!(conf, "TLSCertificateFile {}", pki.cert.display());
            let _ = writeln!(conf, "TLSCertificateKeyFile {}", pki.key.display());
        }
        let _ = writeln!(conf, "database mdb");
        let _ = writeln!(conf, "maxsize 16777216");
        let _ = writeln!(conf, "suffix \"{BASE}\"");
        let _ = writeln!(conf, "rootdn \"{ROOT_DN}\"");
        let _ = writeln!(conf, "rootpw {ROOT_PW}");
        let _ = writeln!(conf, "directory {}", data.display());
        let _ = writeln!(conf, "overlay dynlist");
        let _ = writeln!(
            conf,
            "dynlist-attrset groupOfURLs memberURL member+memberOf@groupOfNames"
        );
        let _ = writeln!(
            conf,
            "access to attrs=userPassword\n  by anonymous auth\n  by * none"
        );
        let _ = writeln!(conf, "access to *\n  by users read\n  by * none");
        let conf_path = dir.path().join("slapd.conf");
        fs::write(&conf_path, conf).unwrap();
        let ldif = dir.path().join("seed.ldif");
        fs::write(&ldif, seed_ldif()).unwrap();
        let out = Command::new(SLAPADD)
            .arg("-q")
            .arg("-f")
            .arg(&conf_path)
            .arg("-l")
            .arg(&ldif)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "slapadd failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut slapd = Slapd {
            dir,
            conf: conf_path,
            port: free_port(),
            tls_port: tls.then(free_port),
            pki,
            child: None,
        };
        slapd.run();
        Some(slapd)
    }

    fn run(&mut self) {
        assert!(self.child.is_none(), "slapd already running");
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(p) = self.tls_port {
            let _ = write!(urls, " ldaps://127.0.0.1:{p}/");
        }
        let log = fs::File::create(self.dir.path().join("slapd.log")).unwrap();
        let mut child = Command::new(SLAPD)
            .arg("-d")
            .arg("0")
            .arg("-f")
            .arg(&self.conf)
            .arg("-h")
            .arg(&urls)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let ports: Vec<u16> = std::iter::once(self.port).chain(self.tls_port).collect();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("slapd exited with {status}: {}", self.log());
            }
            if ports
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
            {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("slapd did not listen within 10 s: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// Stops the server (the port closes; the data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port.unwrap())
    }

    pub fn pki(&self) -> &Pki {
        self.pki.as_ref().unwrap()
    }

    /// A connection bound as the rootdn, for changing the directory during a test.
    pub async fn admin(&self) -> Admin {
        let (conn, mut ldap) = LdapConnAsync::new(&self.url()).await.unwrap();
        ldap3::drive!(conn);
        ldap.simple_bind(ROOT_DN, ROOT_PW)
            .await
            .unwrap()
            .success()
            .unwrap();
        Admin(ldap)
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Changes the directory as the rootdn.
pub struct Admin(pub Ldap);

impl Admin {
    pub async fn remove_member(&mut self, group: &str, uid: &str) {
        let member = user_dn(uid);
        let members = HashSet::from([member.as_str()]);
        self.0
            .modify(&group_dn(group), vec![Mod::Delete("member", members)])
            .await
            .unwrap()
            .success()
            .unwrap();
    }

    pub async fn delete_user(&mut self, uid: &str) {
        self.0
            .delete(&user_dn(uid))
            .await
            .unwrap()
            .success()
            .unwrap();
    }

    pub async fn set(&mut self, uid: &str, attribute: &str, value: &str) {
        let values = HashSet::from([value]);
        self.0
            .modify(&user_dn(uid), vec![Mod::Replace(attribute, values)])
            .await
            .unwrap()
            .success()
            .unwrap();
    }
}

/// The search-mode config most tests use.
pub fn search_config(slapd: &Slapd) -> serde_json::Value {
    serde_json::json!({
        "url": slapd.url(),
        "connect_timeout": "2s",
        "operation_timeout": "2s",
        "bind_dn": SERVICE_DN,
        "bind_password": SERVICE_PW,
        "user_search": {
            "base_dn": PEOPLE,
            "filter": "(&(objectClass=inetOrgPerson)(|(uid={username})(mail={username})))",
            "scope": "one",
        },
        "id_attribute": "entryUUID",
        "email_verified": true,
        "group_search": {
            "base_dn": GROUPS,
            "filter": "(&(objectClass=groupOfNames)(member={dn}))",
            "name_attribute": "cn",
        },
        "required_group": "allowed_to_login",
    })
}

pub fn provider(config: serde_json::Value) -> Arc<dyn Provider> {
    LdapFactory::new()
        .create(ProviderContext::new("corp", config, false))
        .unwrap()
}

pub async fn login(p: &Arc<dyn Provider>, user: &str, pw: &str) -> Result<Identity, ProviderError> {
    p.password()
        .unwrap()
        .authenticate(PasswordRequest::new(user, Password::new(pw)))
        .await
}

pub async fn refresh(p: &Arc<dyn Provider>, identity: Identity) -> Result<Identity, ProviderError> {
    p.refresh()
        .unwrap()
        .refresh(RefreshRequest::new(identity))
        .await
}

/// Names as a sorted list, for comparisons.
pub fn names(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

/// Accepts TCP connections and never says a word; abort the task to close them.
pub async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

/// `n` logins of the same person, all at once, on separate tasks.
pub async fn logins_at_once(
    p: &Arc<dyn Provider>,
    n: usize,
    user: &'static str,
    pw: &'static str,
) -> Vec<Result<Identity, ProviderError>> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let p = p.clone();
        set.spawn(async move { login(&p, user, pw).await });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

/// Runs a test body with a bound on its duration, so a hang fails instead of stalling.
pub async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test took longer than 60 s");
}
