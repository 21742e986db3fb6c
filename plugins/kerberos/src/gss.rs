//! The few GSSAPI calls this plugin makes, on MIT krb5 (`libgssapi_krb5`), written by
//! hand against `<gssapi/gssapi.h>` and `<gssapi/gssapi_ext.h>` (no bindgen, so no
//! libclang at build time), wrapped so nothing
//! unsafe leaves this module.
//!
//! - [`Cred::acceptor`]: the service's credential from its keytab and replay cache
//!   (`gss_acquire_cred_from`, MIT's credential-store extension: no `KRB5_KTNAME`
//!   environment variable, so several instances with several keytabs can live in one
//!   process).
//! - [`accept`]: one `gss_accept_sec_context` step on a SPNEGO or raw krb5 token.
//! - [`Cred::with_password`] + [`initiate`]: a person's credential from their password
//!   (`gss_acquire_cred_with_password`: libkrb5 gets the TGT into a memory cache; the
//!   password never reaches a file, an environment or another process) and a token for
//!   the service, which [`accept`] then checks against the keytab.
//!
//! Every call blocks (files, the KDC): callers run them on a blocking thread.

#![allow(unsafe_code)] // the C boundary of GSSAPI

use std::ffi::{CString, c_char, c_int, c_void};
use std::path::Path;

type OmUint32 = u32;

#[repr(C)]
struct BufferDesc {
    length: usize,
    value: *mut c_void,
}

impl BufferDesc {
    fn empty() -> Self {
        BufferDesc {
            length: 0,
            value: std::ptr::null_mut(),
        }
    }

    /// A descriptor lending `bytes` to a call that only reads them.
    fn lend(bytes: &[u8]) -> Self {
        BufferDesc {
            length: bytes.len(),
            value: bytes.as_ptr().cast_mut().cast(),
        }
    }
}

#[repr(C)]
struct OidDesc {
    length: OmUint32,
    elements: *mut c_void,
}

#[repr(C)]
struct OidSetDesc {
    count: usize,
    elements: *mut OidDesc,
}

#[repr(C)]
struct KeyValueElement {
    key: *const c_char,
    value: *const c_char,
}

#[repr(C)]
struct KeyValueSet {
    count: OmUint32,
    elements: *mut KeyValueElement,
}

type RawName = *mut c_void;
type CredId = *mut c_void;
type CtxId = *mut c_void;

const GSS_C_INITIATE: c_int = 1;
const GSS_C_ACCEPT: c_int = 2;
const GSS_C_MUTUAL_FLAG: OmUint32 = 2;
const GSS_C_GSS_CODE: c_int = 1;
const GSS_C_MECH_CODE: c_int = 2;
const GSS_S_COMPLETE: OmUint32 = 0;
const GSS_S_CONTINUE_NEEDED: OmUint32 = 1;
/// Calling and routine errors: the bits that make a major status an error.
const GSS_ERROR_MASK: OmUint32 = 0xffff_0000;
/// libkrb5's "Cannot contact any KDC for requested realm" (`KRB5_KDC_UNREACH`).
const KRB5_KDC_UNREACH: OmUint32 = (-1_765_328_228_i32) as OmUint32;
/// libkrb5's "Cannot find KDC for requested realm" (`KRB5_REALM_CANT_RESOLVE`).
const KRB5_REALM_CANT_RESOLVE: OmUint32 = (-1_765_328_164_i32) as OmUint32;

/// The Kerberos 5 mechanism, 1.2.840.113554.1.2.2.
const KRB5_MECH: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];
/// The Kerberos principal name type, 1.2.840.113554.1.2.2.1.
const KRB5_NT_PRINCIPAL_NAME: [u8; 10] =
    [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01];

#[link(name = "gssapi_krb5")]
unsafe extern "C" {
    fn gss_import_name(
        minor: *mut OmUint32,
        input: *const BufferDesc,
        name_type: *const OidDesc,
        output: *mut RawName,
    ) -> OmUint32;
    fn gss_release_name(minor: *mut OmUint32, name: *mut RawName) -> OmUint32;
    fn gss_display_name(
        minor: *mut OmUint32,
        name: RawName,
        output: *mut BufferDesc,
        output_type: *mut *mut OidDesc,
    ) -> OmUint32;
    fn gss_acquire_cred_from(
        minor: *mut OmUint32,
        desired_name: RawName,
        time_req: OmUint32,
        desired_mechs: *const OidSetDesc,
        usage: c_int,
        cred_store: *const KeyValueSet,
        output: *mut CredId,
        actual_mechs: *mut *mut OidSetDesc,
        time_rec: *mut OmUint32,
    ) -> OmUint32;
    fn gss_acquire_cred_with_password(
        minor: *mut OmUint32,
        desired_name: RawName,
        password: *const BufferDesc,
        time_req: OmUint32,
        desired_mechs: *const OidSetDesc,
        usage: c_int,
        output: *mut CredId,
        actual_mechs: *mut *mut OidSetDesc,
        time_rec: *mut OmUint32,
    ) -> OmUint32;
    fn gss_release_cred(minor: *mut OmUint32, cred: *mut CredId) -> OmUint32;
    fn gss_init_sec_context(
        minor: *mut OmUint32,
        cred: CredId,
        context: *mut CtxId,
        target: RawName,
        mech: *const OidDesc,
        flags: OmUint32,
        time_req: OmUint32,
        bindings: *const c_void,
        input: *const BufferDesc,
        actual_mech: *mut *mut OidDesc,
        output: *mut BufferDesc,
        ret_flags: *mut OmUint32,
        time_rec: *mut OmUint32,
    ) -> OmUint32;
    fn gss_accept_sec_context(
        minor: *mut OmUint32,
        context: *mut CtxId,
        cred: CredId,
        input: *const BufferDesc,
        bindings: *const c_void,
        source: *mut RawName,
        mech: *mut *mut OidDesc,
        output: *mut BufferDesc,
        ret_flags: *mut OmUint32,
        time_rec: *mut OmUint32,
        delegated: *mut CredId,
    ) -> OmUint32;
    fn gss_delete_sec_context(
        minor: *mut OmUint32,
        context: *mut CtxId,
        output: *mut BufferDesc,
    ) -> OmUint32;
    fn gss_release_buffer(minor: *mut OmUint32, buffer: *mut BufferDesc) -> OmUint32;
    fn gss_display_status(
        minor: *mut OmUint32,
        status: OmUint32,
        status_type: c_int,
        mech: *const OidDesc,
        message_context: *mut OmUint32,
        output: *mut BufferDesc,
    ) -> OmUint32;
}

/// A failed GSSAPI call: its codes and libkrb5's words for them (for the log).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {message}")]
pub struct GssError {
    pub what: &'static str,
    pub major: u32,
    pub minor: u32,
    pub message: String,
}

impl GssError {
    fn new(what: &'static str, major: OmUint32, minor: OmUint32) -> Self {
        let mut parts = status_text(major, GSS_C_GSS_CODE);
        if minor != 0 {
            parts.extend(status_text(minor, GSS_C_MECH_CODE));
        }
        GssError {
            what,
            major,
            minor,
            message: parts.join("; "),
        }
    }

    fn other(what: &'static str, message: impl Into<String>) -> Self {
        GssError {
            what,
            major: 0,
            minor: 0,
            message: message.into(),
        }
    }

    /// True when the KDC could not be reached or found: the upstream is down, the
    /// person did nothing wrong.
    pub fn kdc_unreachable(&self) -> bool {
        matches!(self.minor, KRB5_KDC_UNREACH | KRB5_REALM_CANT_RESOLVE)
    }
}

/// The texts of one status code.
fn status_text(code: OmUint32, kind: c_int) -> Vec<String> {
    let mut texts = Vec::new();
    let mut context: OmUint32 = 0;
    for _ in 0..8 {
        let mut minor = 0;
        let mut buffer = BufferDesc::empty();
        // SAFETY: valid out-pointers; the buffer is released below.
        let major = unsafe {
            gss_display_status(
                &mut minor,
                code,
                kind,
                std::ptr::null(),
                &mut context,
                &mut buffer,
            )
        };
        if major & GSS_ERROR_MASK != 0 {
            break;
        }
        texts.push(
            take_buffer(&mut buffer)
                .map_or_else(String::new, |b| String::from_utf8_lossy(&b).into_owned()),
        );
        if context == 0 {
            break;
        }
    }
    texts.retain(|t| !t.is_empty());
    texts
}

/// Copies a buffer GSSAPI allocated, and releases it.
fn take_buffer(buffer: &mut BufferDesc) -> Option<Vec<u8>> {
    let bytes = (!buffer.value.is_null() && buffer.length > 0).then(|| {
        // SAFETY: GSSAPI filled `length` bytes at `value`.
        unsafe { std::slice::from_raw_parts(buffer.value.cast::<u8>(), buffer.length) }.to_vec()
    });
    let mut minor = 0;
    // SAFETY: a buffer GSSAPI allocated (or an empty one, which it accepts).
    unsafe { gss_release_buffer(&mut minor, buffer) };
    bytes
}

/// An OID descriptor lending a static encoding.
fn oid(bytes: &'static [u8]) -> OidDesc {
    OidDesc {
        length: bytes.len() as OmUint32,
        elements: bytes.as_ptr().cast_mut().cast(),
    }
}

/// A GSSAPI name.
#[derive(Debug)]
pub struct Name(RawName);

impl Name {
    /// A Kerberos principal, `primary[/instance]@REALM`.
    pub fn principal(text: &str) -> Result<Name, GssError> {
        let name_type = oid(&KRB5_NT_PRINCIPAL_NAME);
        let input = BufferDesc::lend(text.as_bytes());
        let mut output: RawName = std::ptr::null_mut();
        let mut minor = 0;
        // SAFETY: the buffer and OID are read during the call; `output` is ours.
        let major = unsafe { gss_import_name(&mut minor, &input, &name_type, &mut output) };
        if major & GSS_ERROR_MASK != 0 {
            return Err(GssError::new("importing the name", major, minor));
        }
        Ok(Name(output))
    }

    /// The name's text, e.g. `ada@EXAMPLE.COM`.
    pub fn display(&self) -> Result<String, GssError> {
        let mut buffer = BufferDesc::empty();
        let mut minor = 0;
        // SAFETY: a live name; the buffer is released by `take_buffer`.
        let major =
            unsafe { gss_display_name(&mut minor, self.0, &mut buffer, std::ptr::null_mut()) };
        if major & GSS_ERROR_MASK != 0 {
            return Err(GssError::new("displaying the name", major, minor));
        }
        let bytes = take_buffer(&mut buffer).unwrap_or_default();
        String::from_utf8(bytes).map_err(|_| GssError::other("displaying the name", "not UTF-8"))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        if !self.0.is_null() {
            let mut minor = 0;
            // SAFETY: a name we own, released once.
            unsafe { gss_release_name(&mut minor, &mut self.0) };
        }
    }
}

/// A credential handle.
#[derive(Debug)]
pub struct Cred(CredId);

// SAFETY: MIT krb5 credential handles carry their own lock and may be used from any
// thread; this wrapper never hands out the raw handle.
unsafe impl Send for Cred {}
// SAFETY: as above.
unsafe impl Sync for Cred {}

impl Cred {
    /// The acceptor credential of `service` from `keytab`, with `rcache` as the replay
    /// cache (libkrb5's default when `None`). Fails when the keytab has no key for
    /// `service`.
    pub fn acceptor(service: &Name, keytab: &Path, rcache: Option<&str>) -> Result<Cred, GssError> {
        let c = |text: &str| {
            CString::new(text).map_err(|_| GssError::other("the credential store", "NUL in a path"))
        };
        let keytab_key = c("keytab")?;
        let keytab_value = c(&keytab.to_string_lossy())?;
        let rcache_key = c("rcache")?;
        let rcache_value = rcache.map(c).transpose()?;
        let mut elements = vec![KeyValueElement {
            key: keytab_key.as_ptr(),
            value: keytab_value.as_ptr(),
        }];
        if let Some(value) = &rcache_value {
            elements.push(KeyValueElement {
                key: rcache_key.as_ptr(),
                value: value.as_ptr(),
            });
        }
        let store = KeyValueSet {
            count: elements.len() as OmUint32,
            elements: elements.as_mut_ptr(),
        };
        let mut cred: CredId = std::ptr::null_mut();
        let mut minor = 0;
        // SAFETY: every pointer lives until the call returns; `cred` is ours after.
        let major = unsafe {
            gss_acquire_cred_from(
                &mut minor,
                service.0,
                0,
                std::ptr::null(),
                GSS_C_ACCEPT,
                &store,
                &mut cred,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if major & GSS_ERROR_MASK != 0 {
            return Err(GssError::new("reading the keytab", major, minor));
        }
        Ok(Cred(cred))
    }

    /// A person's initiator credential from their password: libkrb5 asks the KDC for
    /// a TGT and keeps it in memory, in this handle only.
    pub fn with_password(person: &Name, password: &[u8]) -> Result<Cred, GssError> {
        let mut mech = oid(&KRB5_MECH);
        let mechs = OidSetDesc {
            count: 1,
            elements: &mut mech,
        };
        let password = BufferDesc::lend(password);
        let mut cred: CredId = std::ptr::null_mut();
        let mut minor = 0;
        // SAFETY: as in `acceptor`; the password is only read during the call.
        let major = unsafe {
            gss_acquire_cred_with_password(
                &mut minor,
                person.0,
                &password,
                0,
                &mechs,
                GSS_C_INITIATE,
                &mut cred,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if major & GSS_ERROR_MASK != 0 {
            return Err(GssError::new(
                "getting a ticket with the password",
                major,
                minor,
            ));
        }
        Ok(Cred(cred))
    }
}

impl Drop for Cred {
    fn drop(&mut self) {
        if !self.0.is_null() {
            let mut minor = 0;
            // SAFETY: a credential we own, released once.
            unsafe { gss_release_cred(&mut minor, &mut self.0) };
        }
    }
}

/// A security context, deleted when dropped.
struct Context(CtxId);

impl Drop for Context {
    fn drop(&mut self) {
        if !self.0.is_null() {
            let mut minor = 0;
            // SAFETY: a context we own, deleted once.
            unsafe { gss_delete_sec_context(&mut minor, &mut self.0, std::ptr::null_mut()) };
        }
    }
}

/// Who a token proved to be, and the token to send back (mutual authentication).
#[derive(Debug)]
pub struct Accepted {
    pub client: String,
    pub reply: Option<Vec<u8>>,
}

/// Accepts a client's first (SPNEGO or krb5) token with the acceptor credential. The
/// exchange must complete in this one step, as Kerberos does.
pub fn accept(cred: &Cred, token: &[u8]) -> Result<Accepted, GssError> {
    let mut context = Context(std::ptr::null_mut());
    let input = BufferDesc::lend(token);
    let mut source: RawName = std::ptr::null_mut();
    let mut output = BufferDesc::empty();
    let mut minor = 0;
    // SAFETY: a live credential; the token is read during the call; the out-values
    // are ours after (released below or by their wrappers).
    let major = unsafe {
        gss_accept_sec_context(
            &mut minor,
            &mut context.0,
            cred.0,
            &input,
            std::ptr::null(),
            &mut source,
            std::ptr::null_mut(),
            &mut output,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    let source = Name(source);
    let reply = take_buffer(&mut output);
    if major & GSS_ERROR_MASK != 0 {
        return Err(GssError::new("accepting the token", major, minor));
    }
    if major & GSS_S_CONTINUE_NEEDED != 0 {
        return Err(GssError::other(
            "accepting the token",
            "the negotiation needs another round trip (not a Kerberos ticket)",
        ));
    }
    debug_assert_eq!(major & 0xffff, GSS_S_COMPLETE);
    Ok(Accepted {
        client: source.display()?,
        reply,
    })
}

/// The first token of a krb5 context from `cred` to `target`, asking for mutual
/// authentication (libkrb5 gets the service ticket from the KDC).
pub fn initiate(cred: &Cred, target: &Name) -> Result<Vec<u8>, GssError> {
    let mut context = Context(std::ptr::null_mut());
    let mech = oid(&KRB5_MECH);
    let mut output = BufferDesc::empty();
    let mut minor = 0;
    // SAFETY: live credential and name; the out-values are ours after.
    let major = unsafe {
        gss_init_sec_context(
            &mut minor,
            cred.0,
            &mut context.0,
            target.0,
            &mech,
            GSS_C_MUTUAL_FLAG,
            0,
            std::ptr::null(),
            std::ptr::null(),
            std::ptr::null_mut(),
            &mut output,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    let token = take_buffer(&mut output);
    if major & GSS_ERROR_MASK != 0 {
        return Err(GssError::new("getting a service ticket", major, minor));
    }
    token.ok_or_else(|| GssError::other("getting a service ticket", "no token"))
}
