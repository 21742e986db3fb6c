//! The dynamic-plugin boundary: a small, versioned C ABI.
//!
//! Rust has no stable ABI, so nothing Rust-shaped crosses between the broker and a
//! plugin loaded at run time: no trait object, `String`, `Vec`, waker or panic. What
//! crosses is defined here, once, for both sides:
//!
//! - The library exports [`ENTRY_SYMBOL`], a function returning a pointer to a static
//!   [`DescriptorV1`], and [`DESCRIPTOR_SYMBOL`], that same static. The descriptor
//!   starts with `struct_size`, `abi_major`, `abi_minor`, then plain bytes (flags,
//!   capabilities, names), so the host can read and check it from the file without
//!   running any of the library's code; the function pointers come last.
//! - `create` builds an instance from its config (JSON) and answers synchronously
//!   through a reply callback. `call` starts an operation and returns at once; the
//!   plugin answers exactly once through [`HostV1::complete`], keyed by the call id.
//!   `cancel` abandons a call; `destroy` ends an instance.
//! - Every buffer is borrowed for the duration of the function call it is passed to
//!   and copied by the receiver: nothing allocated on one side is freed on the other.
//! - Fields are never reordered or removed. A new minor version only appends fields
//!   and says so in `struct_size`; a new major version is a new entry symbol.
//!
//!
//! ABI 1.1 appended [`DescriptorV1_1`]: the header-login capability ([`CAP_HEADER`],
//! [`Operation::Header`]) and the names of the request headers such a plugin reads.
//! A host reads the appended field only when `abi_minor >= 1` and `struct_size` covers
//! it, so a 1.0 plugin (whose descriptor ends at the function pointers) still loads.
//!
//! Authors do not touch any of this: `export_plugin!` (feature `export`) writes it.

#![allow(unsafe_code)] // raw pointers and extern "C" are what a C ABI is made of

use std::ffi::c_void;

/// The major version of this ABI, also the suffix of the entry symbol's name.
pub const ABI_MAJOR: u16 = 1;
/// The minor version: fields appended since the major version appeared.
pub const ABI_MINOR: u16 = 1;

/// The exported function returning `*const DescriptorV1`.
pub const ENTRY_SYMBOL: &str = "switchboard_plugin_entry_v1";
/// The exported static descriptor, read from the file before any code runs.
pub const DESCRIPTOR_SYMBOL: &str = "switchboard_plugin_descriptor_v1";
/// Every entry symbol of any major version starts with this.
pub const ENTRY_SYMBOL_PREFIX: &str = "switchboard_plugin_entry_v";

/// Flag: the plugin was built with `panic = "unwind"`, so its shims can catch panics.
/// A plugin built with `panic = "abort"` would take the broker down with it.
pub const FLAG_PANIC_UNWIND: u32 = 1;

/// Capability bit: the plugin can offer redirect login.
pub const CAP_REDIRECT: u32 = 1;
/// Capability bit: the plugin can offer password login.
pub const CAP_PASSWORD: u32 = 1 << 1;
/// Capability bit: the plugin can re-read identities at refresh.
pub const CAP_REFRESH: u32 = 1 << 2;
/// Capability bit (ABI 1.1): the plugin can log people in from request headers
/// (`Authorization: Negotiate`, later trusted-proxy headers or client certificates).
pub const CAP_HEADER: u32 = 1 << 3;

/// Bytes reserved for the plugin's name in the descriptor (NUL-padded UTF-8).
pub const NAME_LEN: usize = 64;
/// Bytes reserved for a version string.
pub const VERSION_LEN: usize = 32;
/// Bytes reserved for the compiler's version string.
pub const COMPILER_LEN: usize = 96;
/// Bytes reserved (ABI 1.1) for the header names a header-login plugin reads:
/// lowercase, comma-separated, NUL-padded ASCII.
pub const HEADER_NAMES_LEN: usize = 256;

/// Status of a completion, of a `create` reply, or of a refused `call`.
pub mod status {
    /// Success: the body is the operation's result as JSON.
    pub const OK: i32 = 0;
    /// The provider refused: the body is a `ProviderError` as JSON.
    pub const PROVIDER_ERROR: i32 = 1;
    /// The plugin panicked: the body is the panic message, for the log.
    pub const PANIC: i32 = 2;
    /// The request could not be read: the body says why.
    pub const BAD_REQUEST: i32 = 3;
    /// The operation number is unknown to this plugin or the instance lacks the
    /// capability.
    pub const UNSUPPORTED: i32 = 4;
}

/// What `call` asks for. The request and response bodies are the `plugin-api` types
/// named here, as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[non_exhaustive]
pub enum Operation {
    /// `BeginRequest` → `BeginResponse`.
    Begin = 1,
    /// `Callback` → `Identity`.
    Complete = 2,
    /// `PasswordRequest` → `Identity`.
    Authenticate = 3,
    /// `RefreshRequest` → `Identity`.
    Refresh = 4,
    /// ABI 1.1: `HeaderRequest` → `HeaderAnswer`.
    Header = 5,
}

impl Operation {
    /// The operation for a number received across the boundary.
    pub fn from_u32(value: u32) -> Option<Operation> {
        match value {
            1 => Some(Operation::Begin),
            2 => Some(Operation::Complete),
            3 => Some(Operation::Authenticate),
            4 => Some(Operation::Refresh),
            5 => Some(Operation::Header),
            _ => None,
        }
    }
}

/// Log levels as they cross the boundary.
pub mod level {
    /// Nothing is wanted.
    pub const OFF: u32 = 0;
    /// `ERROR`.
    pub const ERROR: u32 = 1;
    /// `WARN`.
    pub const WARN: u32 = 2;
    /// `INFO`.
    pub const INFO: u32 = 3;
    /// `DEBUG`.
    pub const DEBUG: u32 = 4;
    /// `TRACE`.
    pub const TRACE: u32 = 5;
}

/// The host's answer channel for `create`: called at most once, before `create`
/// returns, with a status and a body (capabilities JSON on success, `ProviderError`
/// JSON on failure).
pub type ReplyFn =
    unsafe extern "C" fn(reply_ctx: *mut c_void, status: i32, body: *const u8, len: usize);

/// Answers call `call_id` with a status and a body. Safe to call from any thread;
/// the host ignores answers to calls it does not know or has finished with.
pub type CompleteFn = unsafe extern "C" fn(
    host_ctx: *const c_void,
    call_id: u64,
    status: i32,
    body: *const u8,
    len: usize,
);

/// Hands one `tracing` event to the host, which re-emits it under the span of the
/// request that made call `call_id` (0 when the event belongs to no call).
pub type LogFn = unsafe extern "C" fn(
    host_ctx: *const c_void,
    call_id: u64,
    level: u32,
    target: *const u8,
    target_len: usize,
    message: *const u8,
    message_len: usize,
);

/// What the host gives `create`. The plugin copies it; the pointer is borrowed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HostV1 {
    /// `size_of::<HostV1>()` as the host knows it.
    pub struct_size: u32,
    /// The most verbose level the host will keep (see [`level`]).
    pub max_log_level: u32,
    /// Passed back unchanged to `complete` and `log`.
    pub ctx: *const c_void,
    /// Answers a call.
    pub complete: CompleteFn,
    /// Forwards a log event.
    pub log: LogFn,
}

/// Builds an instance from `config` (JSON). Returns null on failure. Either way it
/// calls `reply` once before returning.
pub type CreateFn = unsafe extern "C" fn(
    host: *const HostV1,
    config: *const u8,
    config_len: usize,
    reply: ReplyFn,
    reply_ctx: *mut c_void,
) -> *mut c_void;

/// Starts `operation` (an [`Operation`] number) on `instance`. Returns
/// [`status::OK`] when the call was accepted: exactly one completion for `call_id`
/// follows (possibly before this returns). Any other status means refused, with no
/// completion.
pub type CallFn = unsafe extern "C" fn(
    instance: *mut c_void,
    call_id: u64,
    operation: u32,
    request: *const u8,
    request_len: usize,
) -> i32;

/// Abandons call `call_id`. The host no longer waits for it; a late completion is
/// ignored.
pub type CancelFn = unsafe extern "C" fn(instance: *mut c_void, call_id: u64);

/// Ends an instance. No call on it may follow.
pub type DestroyFn = unsafe extern "C" fn(instance: *mut c_void);

/// The entry symbol's type.
pub type EntryFn = unsafe extern "C" fn() -> *const DescriptorV1;

/// The static description of a plugin library, version 1.
#[repr(C)]
#[derive(Debug)]
pub struct DescriptorV1 {
    /// The size of the descriptor the plugin exports: `size_of::<DescriptorV1>()` for
    /// 1.0, `size_of::<DescriptorV1_1>()` for 1.1. Never moves.
    pub struct_size: u32,
    /// [`ABI_MAJOR`] the plugin was built against. Never moves.
    pub abi_major: u16,
    /// [`ABI_MINOR`] the plugin was built against. Never moves.
    pub abi_minor: u16,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// `CAP_*` bits: what instances of this plugin can offer.
    pub capabilities: u32,
    /// The plugin's name, NUL-padded UTF-8.
    pub name: [u8; NAME_LEN],
    /// The plugin crate's version.
    pub version: [u8; VERSION_LEN],
    /// The `plugin-api` version it was built with (diagnostics only).
    pub api_version: [u8; VERSION_LEN],
    /// The compiler that built it (diagnostics only).
    pub compiler: [u8; COMPILER_LEN],
    /// Builds an instance.
    pub create: CreateFn,
    /// Starts a call.
    pub call: CallFn,
    /// Abandons a call.
    pub cancel: CancelFn,
    /// Ends an instance.
    pub destroy: DestroyFn,
}

/// The descriptor size a version-1.0 host needs: every 1.x descriptor is at least this.
pub const DESCRIPTOR_V1_SIZE: usize = std::mem::size_of::<DescriptorV1>();

/// The descriptor of ABI 1.1: the 1.0 descriptor with fields appended. A plugin built
/// today exports this (under the same symbols, `struct_size` saying how far it goes);
/// the host holds it as a [`DescriptorV1`] and reads the appended fields only when
/// `abi_minor` and `struct_size` say they exist.
#[repr(C)]
#[derive(Debug)]
pub struct DescriptorV1_1 {
    /// Everything of ABI 1.0, unchanged and first.
    pub v1_0: DescriptorV1,
    /// The request headers a [`CAP_HEADER`] plugin reads (see [`HEADER_NAMES_LEN`]).
    /// The host passes these and no others: an operator sees in `plugin inspect` that
    /// a plugin never gets, say, `cookie`.
    pub header_names: [u8; HEADER_NAMES_LEN],
}

/// The descriptor size that holds the 1.1 fields.
pub const DESCRIPTOR_V1_1_SIZE: usize = std::mem::size_of::<DescriptorV1_1>();

/// The header names of a 1.1 descriptor's field: lowercase names, comma-separated.
pub fn header_names_of(field: &[u8]) -> Option<Vec<String>> {
    let text = field_str(field)?;
    Some(
        text.split(',')
            .map(|n| n.trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect(),
    )
}

/// Byte offsets of the descriptor's plain-data fields, for reading it from a file.
pub mod offsets {
    use super::DescriptorV1;
    use std::mem::offset_of;

    /// `struct_size`.
    pub const STRUCT_SIZE: usize = offset_of!(DescriptorV1, struct_size);
    /// `abi_major`.
    pub const ABI_MAJOR: usize = offset_of!(DescriptorV1, abi_major);
    /// `abi_minor`.
    pub const ABI_MINOR: usize = offset_of!(DescriptorV1, abi_minor);
    /// `flags`.
    pub const FLAGS: usize = offset_of!(DescriptorV1, flags);
    /// `capabilities`.
    pub const CAPABILITIES: usize = offset_of!(DescriptorV1, capabilities);
    /// `name`.
    pub const NAME: usize = offset_of!(DescriptorV1, name);
    /// `version`.
    pub const VERSION: usize = offset_of!(DescriptorV1, version);
    /// `api_version`.
    pub const API_VERSION: usize = offset_of!(DescriptorV1, api_version);
    /// `compiler`.
    pub const COMPILER: usize = offset_of!(DescriptorV1, compiler);
    /// Where the function pointers start: everything before is plain data.
    pub const PLAIN_DATA_END: usize = offset_of!(DescriptorV1, create);
    /// ABI 1.1: `header_names`, after the 1.0 descriptor (and so after its pointers).
    pub const HEADER_NAMES: usize = offset_of!(super::DescriptorV1_1, header_names);
}

/// `text` as a NUL-padded fixed-size field. Fails the build when it does not fit.
pub const fn fixed_str<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    assert!(bytes.len() < N, "string too long for its descriptor field");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < bytes.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// The text of a NUL-padded field, or `None` when it is not UTF-8.
pub fn field_str(field: &[u8]) -> Option<&str> {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    std::str::from_utf8(&field[..end]).ok()
}

/// The bytes the other side lends for the duration of one call (empty for null).
///
/// # Safety
/// `ptr` must be null or point to `len` readable bytes that stay valid and unchanged
/// for the returned lifetime: the call or callback they were passed to.
pub unsafe fn lent_bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the caller promises `len` readable bytes at `ptr`.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// The compiler that built this crate, and so the plugin that links it.
pub const COMPILER: &str = env!("SWITCHBOARD_RUSTC_VERSION");

/// The capability bits for a [`crate::Capabilities`].
pub fn capability_bits(capabilities: crate::Capabilities) -> u32 {
    let mut bits = 0;
    if capabilities.redirect {
        bits |= CAP_REDIRECT;
    }
    if capabilities.password {
        bits |= CAP_PASSWORD;
    }
    if capabilities.refresh {
        bits |= CAP_REFRESH;
    }
    if capabilities.header {
        bits |= CAP_HEADER;
    }
    bits
}

/// The [`crate::Capabilities`] of some capability bits.
pub fn capabilities_of(bits: u32) -> crate::Capabilities {
    crate::Capabilities {
        redirect: bits & CAP_REDIRECT != 0,
        password: bits & CAP_PASSWORD != 0,
        refresh: bits & CAP_REFRESH != 0,
        header: bits & CAP_HEADER != 0,
    }
}

/// What a successful `create` replies with.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Created {
    /// The capabilities this instance has (a subset of the descriptor's).
    pub capabilities: crate::Capabilities,
}

impl Created {
    /// Builds the reply.
    pub fn new(capabilities: crate::Capabilities) -> Self {
        Created { capabilities }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_data_comes_before_every_pointer() {
        assert_eq!(offsets::STRUCT_SIZE, 0);
        assert_eq!(offsets::ABI_MAJOR, 4);
        assert_eq!(offsets::ABI_MINOR, 6);
        const { assert!(offsets::COMPILER + COMPILER_LEN <= offsets::PLAIN_DATA_END) };
        const { assert!(offsets::PLAIN_DATA_END < DESCRIPTOR_V1_SIZE) };
    }

    #[test]
    fn the_1_1_fields_come_after_the_whole_1_0_descriptor() {
        assert_eq!(std::mem::offset_of!(DescriptorV1_1, v1_0), 0);
        const { assert!(offsets::HEADER_NAMES >= DESCRIPTOR_V1_SIZE) };
        assert_eq!(
            DESCRIPTOR_V1_1_SIZE,
            offsets::HEADER_NAMES + HEADER_NAMES_LEN
        );
        let field: [u8; HEADER_NAMES_LEN] = fixed_str("Authorization, x-remote-user,");
        assert_eq!(
            header_names_of(&field).unwrap(),
            vec!["authorization".to_owned(), "x-remote-user".to_owned()]
        );
    }

    #[test]
    fn fixed_fields_round_trip() {
        let field: [u8; 8] = fixed_str("abc");
        assert_eq!(field_str(&field), Some("abc"));
        assert_eq!(field_str(&[0xff, 0]), None);
    }

    #[test]
    fn capability_bits_round_trip() {
        for bits in 0..16 {
            assert_eq!(capability_bits(capabilities_of(bits)), bits);
        }
    }

    #[test]
    fn unknown_operations_are_none() {
        assert_eq!(Operation::from_u32(3), Some(Operation::Authenticate));
        assert_eq!(Operation::from_u32(5), Some(Operation::Header));
        assert_eq!(Operation::from_u32(0), None);
        assert_eq!(Operation::from_u32(99), None);
    }
}
