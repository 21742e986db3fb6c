//! What a plugin file is, read from the file alone: no byte of it runs here.
//!
//! The checks, in order: a regular file that only its owner can change, in a directory
//! only its owner can change; its sha256; an ELF shared object for this machine; the
//! entry and descriptor symbols of this ABI major; a descriptor of the right version
//! and size, built with `panic = "unwind"`. `broker plugin inspect` prints the result;
//! the loader then loads exactly the bytes that were hashed and checked.

use object::{Object, ObjectKind, ObjectSection, ObjectSymbol};
use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use switchboard_plugin_api::Capabilities;
use switchboard_plugin_api::abi::{self, offsets};

/// Larger files are refused rather than read into memory.
const MAX_PLUGIN_BYTES: u64 = 512 * 1024 * 1024;

/// Why a plugin file cannot be loaded; shown after the file's path.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("cannot open: {0}")]
    Open(std::io::Error),
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error("not a regular file")]
    NotAFile,
    #[error("larger than {MAX_PLUGIN_BYTES} bytes")]
    TooLarge,
    #[error(
        "writable by group or others (mode {mode:o}): only its owner may be able to change code the broker runs"
    )]
    FileWritable { mode: u32 },
    #[error(
        "its directory {dir} is writable by group or others (mode {mode:o}): anyone who can write there can swap the plugin"
    )]
    DirectoryWritable { dir: PathBuf, mode: u32 },
    #[error("sha256 is {actual}, but the config pins {expected}")]
    HashMismatch { expected: String, actual: String },
    #[error("not a shared object: {0}")]
    NotSharedObject(String),
    #[error("built for {found}, but this broker runs on {host}")]
    WrongMachine { found: String, host: String },
    #[error(
        "entry symbol {} missing: not a Switchboard plugin, or not exported",
        abi::ENTRY_SYMBOL
    )]
    EntryMissing,
    #[error("descriptor symbol {} missing", abi::DESCRIPTOR_SYMBOL)]
    DescriptorMissing,
    #[error(
        "plugin ABI major version {found}, but this broker speaks {}",
        abi::ABI_MAJOR
    )]
    WrongAbiMajor { found: String },
    #[error(
        "descriptor is {found} bytes, but ABI {}.x needs at least {needed}",
        abi::ABI_MAJOR
    )]
    DescriptorTooSmall { found: usize, needed: usize },
    #[error(
        "built with panic = \"abort\": a panic in it would stop the broker; rebuild with panic = \"unwind\""
    )]
    PanicAbort,
    #[error("descriptor unreadable: {0}")]
    BadDescriptor(String),
}

/// A refusal, with the file it concerns.
#[derive(Debug, thiserror::Error)]
#[error("plugin {}: {reason}", path.display())]
pub struct InspectError {
    pub path: PathBuf,
    pub reason: Refusal,
}

/// What the descriptor says, and the file's digest.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    pub path: PathBuf,
    pub sha256: String,
    pub name: String,
    pub version: String,
    pub api_version: String,
    pub compiler: String,
    pub abi_major: u16,
    pub abi_minor: u16,
    pub capabilities: Capabilities,
    /// ABI 1.1: the request headers a header-login plugin reads (empty before).
    pub header_names: Vec<String>,
}

impl fmt::Display for PluginInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let caps = self.capabilities;
        let list: Vec<&str> = [
            (caps.redirect, "redirect"),
            (caps.password, "password"),
            (caps.refresh, "refresh"),
            (caps.header, "header"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        writeln!(f, "file:         {}", self.path.display())?;
        writeln!(f, "sha256:       {}", self.sha256)?;
        writeln!(f, "name:         {}", self.name)?;
        writeln!(f, "version:      {}", self.version)?;
        writeln!(f, "abi:          {}.{}", self.abi_major, self.abi_minor)?;
        writeln!(f, "capabilities: {}", list.join(", "))?;
        if !self.header_names.is_empty() {
            writeln!(f, "headers:      {}", self.header_names.join(", "))?;
        }
        writeln!(f, "plugin-api:   {}", self.api_version)?;
        write!(f, "compiler:     {}", self.compiler)
    }
}

/// A file read, checked and described.
#[derive(Debug)]
pub struct InspectedFile {
    pub info: PluginInfo,
    /// The bytes that were hashed and checked: the loader loads these, not the path.
    pub bytes: Vec<u8>,
}

/// Reads and checks `path` without running it. With `pin`, the sha256 must match.
pub fn inspect(path: &Path, pin: Option<&str>) -> Result<InspectedFile, InspectError> {
    let refuse = |reason| InspectError {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = read_owner_only(path).map_err(refuse)?;
    let sha256 = crate::secrets::sha256_hex(&bytes);
    if let Some(expected) = pin
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        return Err(refuse(Refusal::HashMismatch {
            expected: expected.to_owned(),
            actual: sha256,
        }));
    }
    let info = describe(&bytes, path, sha256).map_err(refuse)?;
    Ok(InspectedFile { info, bytes })
}

/// The file's bytes, read from one open descriptor after checking who can change it.
fn read_owner_only(path: &Path) -> Result<Vec<u8>, Refusal> {
    let file = std::fs::File::open(path).map_err(Refusal::Open)?;
    let meta = file.metadata().map_err(Refusal::Read)?;
    if !meta.is_file() {
        return Err(Refusal::NotAFile);
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Refusal::FileWritable { mode });
    }
    if meta.len() > MAX_PLUGIN_BYTES {
        return Err(Refusal::TooLarge);
    }
    let real = std::fs::canonicalize(path).map_err(Refusal::Open)?;
    if let Some(dir) = real.parent() {
        let dir_mode = std::fs::metadata(dir)
            .map_err(Refusal::Open)?
            .permissions()
            .mode()
            & 0o7777;
        if dir_mode & 0o022 != 0 {
            return Err(Refusal::DirectoryWritable {
                dir: dir.to_path_buf(),
                mode: dir_mode,
            });
        }
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_PLUGIN_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Refusal::Read)?;
    if bytes.len() as u64 > MAX_PLUGIN_BYTES {
        return Err(Refusal::TooLarge);
    }
    Ok(bytes)
}

fn host_architecture() -> Option<object::Architecture> {
    if cfg!(target_arch = "x86_64") {
        Some(object::Architecture::X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(object::Architecture::Aarch64)
    } else {
        None
    }
}

fn describe(bytes: &[u8], path: &Path, sha256: String) -> Result<PluginInfo, Refusal> {
    let file = object::File::parse(bytes).map_err(|e| Refusal::NotSharedObject(e.to_string()))?;
    if file.format() != object::BinaryFormat::Elf {
        return Err(Refusal::NotSharedObject(format!(
            "{:?} file, not ELF",
            file.format()
        )));
    }
    if file.kind() != ObjectKind::Dynamic {
        return Err(Refusal::NotSharedObject(format!(
            "ELF {:?} file, not a shared library",
            file.kind()
        )));
    }
    let host = host_architecture();
    if Some(file.architecture()) != host
        || file.is_64() != cfg!(target_pointer_width = "64")
        || file.is_little_endian() != cfg!(target_endian = "little")
    {
        return Err(Refusal::WrongMachine {
            found: format!("{:?}", file.architecture()),
            host: format!("{host:?}"),
        });
    }

    let mut entry = false;
    let mut descriptor = None;
    let mut other_major = None;
    for symbol in file.dynamic_symbols() {
        if symbol.is_undefined() {
            continue;
        }
        let Ok(name) = symbol.name() else { continue };
        if name == abi::ENTRY_SYMBOL {
            entry = true;
        } else if name == abi::DESCRIPTOR_SYMBOL {
            descriptor = Some((symbol.address(), symbol.size()));
        } else if let Some(major) = name.strip_prefix(abi::ENTRY_SYMBOL_PREFIX) {
            other_major = Some(major.to_owned());
        }
    }
    if !entry {
        return Err(match other_major {
            Some(found) => Refusal::WrongAbiMajor { found },
            None => Refusal::EntryMissing,
        });
    }
    let (address, _) = descriptor.ok_or(Refusal::DescriptorMissing)?;
    let plain = descriptor_bytes(&file, address, 0, offsets::PLAIN_DATA_END)?;

    let u32_at =
        |at: usize| u32::from_ne_bytes([plain[at], plain[at + 1], plain[at + 2], plain[at + 3]]);
    let u16_at = |at: usize| u16::from_ne_bytes([plain[at], plain[at + 1]]);
    let abi_major = u16_at(offsets::ABI_MAJOR);
    if abi_major != abi::ABI_MAJOR {
        return Err(Refusal::WrongAbiMajor {
            found: abi_major.to_string(),
        });
    }
    let struct_size = u32_at(offsets::STRUCT_SIZE) as usize;
    if struct_size < abi::DESCRIPTOR_V1_SIZE {
        return Err(Refusal::DescriptorTooSmall {
            found: struct_size,
            needed: abi::DESCRIPTOR_V1_SIZE,
        });
    }
    if u32_at(offsets::FLAGS) & abi::FLAG_PANIC_UNWIND == 0 {
        return Err(Refusal::PanicAbort);
    }
    let text = |at: usize, len: usize, what: &str| {
        abi::field_str(&plain[at..at + len])
            .map(str::to_owned)
            .ok_or_else(|| Refusal::BadDescriptor(format!("{what} is not UTF-8")))
    };
    let name = text(offsets::NAME, abi::NAME_LEN, "name")?;
    if name.is_empty() {
        return Err(Refusal::BadDescriptor("empty name".into()));
    }
    let abi_minor = u16_at(offsets::ABI_MINOR);
    let mut capabilities = abi::capabilities_of(u32_at(offsets::CAPABILITIES));
    // The 1.1 fields exist only when both the version and the size say so: a 1.0
    // descriptor ends at its function pointers.
    let header_names = if abi_minor >= 1 && struct_size >= abi::DESCRIPTOR_V1_1_SIZE {
        let field = descriptor_bytes(&file, address, offsets::HEADER_NAMES, abi::HEADER_NAMES_LEN)?;
        abi::header_names_of(field)
            .ok_or_else(|| Refusal::BadDescriptor("header names are not UTF-8".into()))?
    } else {
        // A 1.0 plugin cannot have asked for headers: a stray bit means nothing.
        capabilities.header = false;
        Vec::new()
    };
    if capabilities.header && header_names.is_empty() {
        return Err(Refusal::BadDescriptor(
            "header capability without header names".into(),
        ));
    }
    Ok(PluginInfo {
        path: path.to_path_buf(),
        sha256,
        version: text(offsets::VERSION, abi::VERSION_LEN, "version")?,
        api_version: text(offsets::API_VERSION, abi::VERSION_LEN, "plugin-api version")?,
        compiler: text(offsets::COMPILER, abi::COMPILER_LEN, "compiler")?,
        name,
        abi_major,
        abi_minor,
        capabilities,
        header_names,
    })
}

/// `len` plain-data bytes at `offset` in the descriptor as stored in the file (the
/// relocated function pointers are never read).
fn descriptor_bytes<'a>(
    file: &object::File<'a>,
    address: u64,
    offset: usize,
    len: usize,
) -> Result<&'a [u8], Refusal> {
    let section = file
        .sections()
        .find(|s| s.address() <= address && address < s.address().saturating_add(s.size()))
        .ok_or_else(|| Refusal::BadDescriptor("not inside any section".into()))?;
    let data = section
        .data()
        .map_err(|e| Refusal::BadDescriptor(e.to_string()))?;
    let start = usize::try_from(address - section.address())
        .map_err(|_| Refusal::BadDescriptor("offset out of range".into()))?;
    data.get(start + offset..start + offset + len)
        .ok_or_else(|| Refusal::BadDescriptor("truncated".into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    fn write(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_missing_file_is_refused_with_its_path() {
        let err = inspect(Path::new("/nonexistent/libx.so"), None).unwrap_err();
        assert!(matches!(err.reason, Refusal::Open(_)));
        assert!(err.to_string().contains("/nonexistent/libx.so"), "{err}");
    }

    #[test]
    fn a_text_file_is_not_a_shared_object() {
        let dir = private_dir();
        let path = write(dir.path(), "libx.so", b"#!/bin/sh\necho hi\n", 0o644);
        let err = inspect(&path, None).unwrap_err();
        assert!(matches!(err.reason, Refusal::NotSharedObject(_)), "{err}");
    }

    #[test]
    fn a_group_writable_file_is_refused_before_it_is_read() {
        let dir = private_dir();
        let path = write(dir.path(), "libx.so", b"x", 0o664);
        let err = inspect(&path, None).unwrap_err();
        assert!(
            matches!(err.reason, Refusal::FileWritable { mode: 0o664 }),
            "{err}"
        );
    }

    #[test]
    fn a_world_writable_directory_is_refused() {
        let dir = private_dir();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = write(dir.path(), "libx.so", b"x", 0o644);
        let err = inspect(&path, None).unwrap_err();
        assert!(
            matches!(err.reason, Refusal::DirectoryWritable { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_pin_is_refused_and_both_digests_are_shown() {
        let dir = private_dir();
        let path = write(dir.path(), "libx.so", b"x", 0o644);
        let err = inspect(&path, Some(&"0".repeat(64))).unwrap_err();
        let Refusal::HashMismatch { actual, .. } = &err.reason else {
            panic!("{err}")
        };
        // sha256("x")
        assert_eq!(
            actual,
            "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
        );
    }

    #[test]
    fn the_broker_binary_itself_is_not_a_plugin() {
        // An ELF file of the right machine, but without the entry symbol.
        let exe = std::env::current_exe().unwrap();
        let dir = private_dir();
        let path = write(dir.path(), "libx.so", &std::fs::read(exe).unwrap(), 0o755);
        let err = inspect(&path, None).unwrap_err();
        assert!(
            matches!(
                err.reason,
                Refusal::EntryMissing | Refusal::NotSharedObject(_)
            ),
            "{err}"
        );
    }
}
