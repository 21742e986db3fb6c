//! Provider plugins built as shared libraries, installed for a test the way an
//! operator would: in a directory only the owner can write, pinned by sha256.
//!
//! `scripts/test` builds them before the tests: the example plugins and the faulty
//! test plugin with the workspace, and each built-in provider crate with
//! `cargo rustc -p switchboard-<name> --lib --crate-type cdylib --features cdylib`.

use crate::broker::{broker_command, workspace_root};
use object::{Object, ObjectSection, ObjectSymbol};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// The built library of crate `lib_name` (e.g. `switchboard_htpasswd`).
pub fn built_plugin(lib_name: &str) -> Vec<u8> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("debug").join(format!("lib{lib_name}.so"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "no plugin at {} ({e}): run scripts/test, or build it: cargo build -p {crate} \
             (built-in providers: cargo rustc -p {crate} --lib --crate-type cdylib --features cdylib)",
            path.display(),
            crate = lib_name.replace('_', "-"),
        )
    })
}

/// Lowercase hex sha256, as the config pins it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A directory only its owner can write, holding plugin files.
#[derive(Debug)]
pub struct PluginDir {
    dir: TempDir,
}

impl Default for PluginDir {
    fn default() -> Self {
        Self::new()
    }
}

impl PluginDir {
    pub fn new() -> PluginDir {
        let dir = tempfile::Builder::new()
            .prefix("switchboard-plugins-")
            .tempdir()
            .expect("create a plugin directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("make the plugin directory private");
        PluginDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `bytes` as `file_name` with mode 0755 and returns its path.
    pub fn install(&self, file_name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(file_name);
        std::fs::write(&path, bytes).expect("write the plugin");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("set the plugin's mode");
        path
    }
}

/// A `[providers.ID]` table loading `path` pinned by its current digest, with the
/// plugin's own config table `config` (TOML lines) and extra provider keys `keys`.
pub fn plugin_section(id: &str, path: &Path, keys: &str, config: &str) -> String {
    let bytes = std::fs::read(path).expect("read the installed plugin");
    format!(
        "[providers.{id}]\ntype = \"plugin\"\nlibrary = \"{}\"\nsha256 = \"{}\"\n{keys}\n[providers.{id}.config]\n{config}\n",
        path.display(),
        sha256_hex(&bytes)
    )
}

/// The file offset of the exported descriptor: where a fault test patches it.
pub fn descriptor_offset(bytes: &[u8]) -> usize {
    let file = object::File::parse(bytes).expect("an ELF file");
    let symbol = file
        .dynamic_symbols()
        .find(|s| s.name() == Ok("switchboard_plugin_descriptor_v1"))
        .expect("the descriptor symbol");
    let section = file
        .sections()
        .find(|s| s.address() <= symbol.address() && symbol.address() < s.address() + s.size())
        .expect("the descriptor's section");
    let (file_offset, _) = section.file_range().expect("a section with file bytes");
    (file_offset + symbol.address() - section.address()) as usize
}

/// A copy of `bytes` with every occurrence of `from` replaced by `to` (same length).
pub fn replace_bytes(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len(), "a patch keeps the file's layout");
    let mut out = bytes.to_vec();
    let mut found = false;
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            found = true;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(found, "the patched bytes occur in the file");
    out
}

/// Runs `broker plugin inspect PATH`: what it printed on success, or its error text.
pub fn inspect_plugin(path: &Path) -> Result<String, String> {
    let out = broker_command()
        .args(["plugin", "inspect"])
        .arg(path)
        .output()
        .expect("run broker plugin inspect");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Keys of a provider table that belong to the broker, not to the provider.
const BROKER_KEYS: &[&str] = &[
    "type",
    "name",
    "registration",
    "sync",
    "trust_email",
    "link_by_verified_email",
    "max_session_without_recheck",
];

/// `section` (a built-in provider's `[providers.ID]` table, possibly followed by other
/// tables) rewritten to load the same provider from `library`: the broker's keys stay,
/// `type` becomes `"plugin"` with the pin, and the provider's own keys move under
/// `[providers.ID.config]`.
pub fn as_plugin_section(section: &str, library: &Path) -> String {
    let mut lines = section.lines();
    let header = lines.next().expect("a [providers.ID] header");
    let id = header
        .strip_prefix("[providers.")
        .and_then(|rest| rest.strip_suffix(']'))
        .expect("a [providers.ID] header");
    let digest = sha256_hex(&std::fs::read(library).expect("read the plugin"));
    let mut broker = vec![
        header.to_owned(),
        "type = \"plugin\"".to_owned(),
        format!("library = {:?}", library.display().to_string()),
        format!("sha256 = {digest:?}"),
    ];
    let mut own = vec![format!("[providers.{id}.config]")];
    let mut rest = Vec::new();
    for line in lines.by_ref() {
        if line.trim_start().starts_with('[') {
            rest.push(line.to_owned());
            break;
        }
        let key = line.split('=').next().unwrap_or_default().trim();
        match key {
            "type" => {}
            k if BROKER_KEYS.contains(&k) => broker.push(line.to_owned()),
            _ => own.push(line.to_owned()),
        }
    }
    rest.extend(lines.map(str::to_owned));
    [broker, own, rest].concat().join("\n")
}
