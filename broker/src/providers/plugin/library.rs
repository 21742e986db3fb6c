//! Loading a checked plugin file into the process, once, forever.
//!
//! The bytes that were hashed and checked are copied into a sealed memfd and that is
//! what `dlopen` maps, so the file on disk changing after the check cannot change
//! what runs (no check-then-use race). Libraries are opened with `RTLD_NODELETE` and
//! never closed: plugin threads and thread-local destructors may outlive any handle,
//! so unloading could never be made safe. Reloading a plugin is a process restart.

#![allow(unsafe_code)] // dlopen and the descriptor pointer are the unsafe edge

use super::inspect::{InspectedFile, PluginInfo, Refusal};
use std::collections::BTreeMap;
use std::ffi::CStr;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::{Mutex, PoisonError};
use switchboard_plugin_api::abi::{self, DescriptorV1, EntryFn};

/// Why a checked file still could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("cannot stage the file for loading: {0}")]
    Stage(std::io::Error),
    #[error("dlopen failed: {0}")]
    Open(String),
    #[error("entry symbol returned no descriptor")]
    NoDescriptor,
    #[error("the running descriptor differs from the one in the file ({0})")]
    DescriptorMismatch(&'static str),
}

/// A library in the process, with its checked descriptor.
#[derive(Debug)]
pub struct LoadedLibrary {
    pub info: PluginInfo,
    pub descriptor: &'static DescriptorV1,
}

/// Loaded libraries by sha256: two providers using one file share one copy.
static LOADED: Mutex<BTreeMap<String, &'static LoadedLibrary>> = Mutex::new(BTreeMap::new());

/// Loads the inspected bytes, or returns the copy already loaded.
pub fn load(file: InspectedFile) -> Result<&'static LoadedLibrary, LoadFailure> {
    let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(library) = loaded.get(&file.info.sha256) {
        return Ok(library);
    }
    let memfd = sealed_copy(&file.bytes).map_err(LoadFailure::Stage)?;
    let path = format!("/proc/self/fd/{}", memfd.as_raw_fd());
    // SAFETY: loading runs the library's initialisers. The file was checked for its
    // pin, owner-only permissions, ELF type and descriptor; the operator vouches for
    // the code by pinning it, which is the trust model of native plugins.
    let library = unsafe {
        libloading::os::unix::Library::open(
            Some(&path),
            libc::RTLD_NOW | libc::RTLD_LOCAL | libc::RTLD_NODELETE,
        )
    }
    .map_err(|e| LoadFailure::Open(e.to_string()))?;
    drop(memfd);
    // SAFETY: the symbol was checked in the file to be defined; its type is the ABI's.
    let entry = unsafe { library.get::<EntryFn>(abi::ENTRY_SYMBOL.as_bytes()) }
        .map_err(|e| LoadFailure::Open(e.to_string()))?;
    // SAFETY: the entry function of a v1 plugin takes nothing and returns a pointer
    // to its static descriptor.
    let pointer = unsafe { entry() };
    let descriptor = checked_descriptor(pointer)?;
    if abi::field_str(&descriptor.name) != Some(file.info.name.as_str()) {
        return Err(LoadFailure::DescriptorMismatch("name"));
    }
    // Never closed (see the module docs).
    std::mem::forget(library);
    let library: &'static LoadedLibrary = Box::leak(Box::new(LoadedLibrary {
        info: file.info,
        descriptor,
    }));
    loaded.insert(library.info.sha256.clone(), library);
    Ok(library)
}

/// The descriptor behind the entry's pointer, checked field by field before the whole
/// struct is trusted.
fn checked_descriptor(pointer: *const DescriptorV1) -> Result<&'static DescriptorV1, LoadFailure> {
    if pointer.is_null() || !pointer.is_aligned() {
        return Err(LoadFailure::NoDescriptor);
    }
    // SAFETY: non-null and aligned; the header fields are plain integers that every
    // descriptor version starts with.
    let (size, major, flags) = unsafe {
        (
            std::ptr::addr_of!((*pointer).struct_size).read(),
            std::ptr::addr_of!((*pointer).abi_major).read(),
            std::ptr::addr_of!((*pointer).flags).read(),
        )
    };
    if major != abi::ABI_MAJOR {
        return Err(Refusal::WrongAbiMajor {
            found: major.to_string(),
        }
        .into());
    }
    if (size as usize) < abi::DESCRIPTOR_V1_SIZE {
        return Err(Refusal::DescriptorTooSmall {
            found: size as usize,
            needed: abi::DESCRIPTOR_V1_SIZE,
        }
        .into());
    }
    if flags & abi::FLAG_PANIC_UNWIND == 0 {
        return Err(Refusal::PanicAbort.into());
    }
    // SAFETY: at least a full v1 descriptor lives there, in a library never unloaded.
    Ok(unsafe { &*pointer })
}

/// An anonymous in-memory file holding `bytes`, sealed against any change.
fn sealed_copy(bytes: &[u8]) -> std::io::Result<std::fs::File> {
    const NAME: &CStr = c"switchboard-plugin";
    // SAFETY: memfd_create with a valid C string; the fd is owned by the File below.
    let fd =
        unsafe { libc::memfd_create(NAME.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(bytes)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on an fd we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}
