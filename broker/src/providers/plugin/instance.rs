//! A loaded plugin's instance, wrapped back into the provider traits so nothing above
//! the registry can tell it from a built-in provider.
//!
//! A call sends the request as JSON and waits, without blocking a worker, for the
//! plugin's one completion. The host bounds calls in flight per provider, gives up
//! after `call_timeout` and cancels the call in the plugin when it gives up or when
//! the waiting request goes away. Whatever the plugin does wrong (panics, garbage,
//! silence, answers to calls nobody made) becomes an error for that one login.

#![allow(unsafe_code)] // the host side of the C ABI

use super::library::LoadedLibrary;
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use switchboard_plugin_api::abi::{self, HostV1, Operation, status};
use switchboard_plugin_api::{
    BeginRequest, BeginResponse, Callback, Capabilities, HeaderAnswer, HeaderLogin, HeaderRequest,
    Identity, PasswordLogin, PasswordRequest, Provider, ProviderContext, ProviderError,
    RedirectLogin, RefreshIdentity, RefreshRequest,
};
use tokio::sync::{Semaphore, oneshot};
use zeroize::Zeroize;

/// Larger answers are refused: no login needs them, and a runaway plugin must not make
/// the broker copy gigabytes.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Longer log messages from a plugin are cut.
const MAX_LOG_BYTES: usize = 16 * 1024;

/// Call ids are unique in the process, so a stray completion can never reach
/// another provider's call.
static NEXT_CALL_ID: AtomicU64 = AtomicU64::new(1);

/// One answer from the plugin.
struct Completion {
    status: i32,
    body: Vec<u8>,
}

/// The host's own status for an answer over [`MAX_ANSWER_BYTES`] (outside the ABI's).
const ANSWER_TOO_LARGE: i32 = -1;

struct PendingCall {
    reply: oneshot::Sender<Completion>,
    /// The span of the request that made the call: the plugin's log events go there.
    span: tracing::Span,
}

/// What the plugin's callbacks reach through `HostV1::ctx`. Leaked: a misbehaving
/// plugin may call back after its instance is gone, and must find memory, not a hole.
#[derive(Debug)]
struct HostContext {
    provider_id: String,
    pending: Mutex<HashMap<u64, PendingCall>>,
}

impl std::fmt::Debug for PendingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingCall")
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Copies bytes lent by the plugin for one callback.
///
/// # Safety
/// As for [`abi::lent_bytes`].
unsafe fn copied(ptr: *const u8, len: usize) -> Vec<u8> {
    // SAFETY: the caller passes what the plugin lent for this callback.
    unsafe { abi::lent_bytes(ptr, len) }.to_vec()
}

unsafe extern "C" fn complete_call(
    ctx: *const c_void,
    call_id: u64,
    status: i32,
    body: *const u8,
    len: usize,
) {
    // A panic must not unwind into the plugin's frames.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the leaked HostContext handed to this plugin at create.
        let Some(host) = (unsafe { ctx.cast::<HostContext>().as_ref() }) else {
            return;
        };
        let Some(pending) = lock(&host.pending).remove(&call_id) else {
            tracing::warn!(
                provider = %host.provider_id,
                call_id,
                "plugin answered a call that is unknown or already finished; ignored"
            );
            return;
        };
        let completion = if len > MAX_ANSWER_BYTES {
            Completion {
                status: ANSWER_TOO_LARGE,
                body: Vec::new(),
            }
        } else {
            // SAFETY: the plugin lends `len` bytes at `body` for this callback.
            let body = unsafe { copied(body, len) };
            Completion { status, body }
        };
        // The waiter may have just given up; then nobody wants the answer.
        let _ = pending.reply.send(completion);
    }));
}

unsafe extern "C" fn log_event(
    ctx: *const c_void,
    call_id: u64,
    level: u32,
    target: *const u8,
    target_len: usize,
    message: *const u8,
    message_len: usize,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in `complete_call`.
        let Some(host) = (unsafe { ctx.cast::<HostContext>().as_ref() }) else {
            return;
        };
        // SAFETY: the plugin lends both buffers for this callback.
        let (target, message) = unsafe {
            (
                copied(target, target_len.min(256)),
                copied(message, message_len.min(MAX_LOG_BYTES)),
            )
        };
        let target = String::from_utf8_lossy(&target);
        let message = String::from_utf8_lossy(&message);
        let span = lock(&host.pending)
            .get(&call_id)
            .map(|p| p.span.clone())
            .unwrap_or_else(tracing::Span::none);
        let provider = host.provider_id.as_str();
        span.in_scope(|| match level {
            abi::level::ERROR => {
                tracing::error!(provider, plugin_target = %target, "{message}")
            }
            abi::level::WARN => tracing::warn!(provider, plugin_target = %target, "{message}"),
            abi::level::INFO => tracing::info!(provider, plugin_target = %target, "{message}"),
            abi::level::DEBUG => {
                tracing::debug!(provider, plugin_target = %target, "{message}")
            }
            _ => tracing::trace!(provider, plugin_target = %target, "{message}"),
        });
    }));
}

fn host_max_level() -> u32 {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::OFF => abi::level::OFF,
        LevelFilter::ERROR => abi::level::ERROR,
        LevelFilter::WARN => abi::level::WARN,
        LevelFilter::INFO => abi::level::INFO,
        LevelFilter::DEBUG => abi::level::DEBUG,
        _ => abi::level::TRACE,
    }
}

/// The instance pointer a plugin returned from `create`.
#[derive(Debug, Clone, Copy)]
struct InstancePtr(*mut c_void);

// SAFETY: the ABI requires a plugin's call and cancel to be callable from any thread.
unsafe impl Send for InstancePtr {}
// SAFETY: as above; the host never dereferences the pointer.
unsafe impl Sync for InstancePtr {}

/// How the host treats one instance's calls.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub timeout: Duration,
    pub max_in_flight: usize,
}

/// A provider living in a loaded plugin.
#[derive(Debug)]
pub struct PluginProvider {
    library: &'static LoadedLibrary,
    instance: InstancePtr,
    host: &'static HostContext,
    capabilities: Capabilities,
    in_flight: Arc<Semaphore>,
    timeout: Duration,
}

/// Why `create` failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateFailure {
    #[error("create rejected its config: {0}")]
    Rejected(ProviderError),
    #[error("create panicked: {0}")]
    Panicked(String),
    #[error("create failed ({0})")]
    Failed(String),
    #[error("instance claims capabilities its descriptor does not declare")]
    UndeclaredCapability,
}

/// Where `create`'s reply lands.
#[derive(Default)]
struct Reply {
    answered: Option<(i32, Vec<u8>)>,
}

unsafe extern "C" fn store_reply(ctx: *mut c_void, status: i32, body: *const u8, len: usize) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the `Reply` on `create_instance`'s stack, alive during create.
        if let Some(reply) = unsafe { ctx.cast::<Reply>().as_mut() }
            && reply.answered.is_none()
        {
            // SAFETY: the plugin lends `len` bytes at `body` for this callback.
            reply.answered = Some((status, unsafe { copied(body, len) }));
        }
    }));
}

impl PluginProvider {
    /// Builds an instance of `library` with the provider's context.
    pub fn create(
        library: &'static LoadedLibrary,
        context: &ProviderContext,
        limits: CallLimits,
    ) -> Result<PluginProvider, CreateFailure> {
        let host: &'static HostContext = Box::leak(Box::new(HostContext {
            provider_id: context.id.clone(),
            pending: Mutex::new(HashMap::new()),
        }));
        let table = HostV1 {
            struct_size: std::mem::size_of::<HostV1>() as u32,
            max_log_level: host_max_level(),
            ctx: std::ptr::from_ref(host).cast(),
            complete: complete_call,
            log: log_event,
        };
        let config =
            serde_json::to_vec(context).map_err(|e| CreateFailure::Failed(e.to_string()))?;
        let mut reply = Reply::default();
        // SAFETY: every pointer is valid for the duration of the call, as the ABI asks.
        let instance = unsafe {
            (library.descriptor.create)(
                &table,
                config.as_ptr(),
                config.len(),
                store_reply,
                std::ptr::from_mut(&mut reply).cast(),
            )
        };
        let answered = reply.answered.take();
        if instance.is_null() {
            return Err(match answered {
                Some((status::PROVIDER_ERROR, body)) => {
                    CreateFailure::Rejected(serde_json::from_slice(&body).unwrap_or_else(|_| {
                        ProviderError::Misconfigured {
                            detail: "the plugin's error was not readable".into(),
                        }
                    }))
                }
                Some((status::PANIC, body)) => {
                    CreateFailure::Panicked(String::from_utf8_lossy(&body).into_owned())
                }
                Some((code, body)) => CreateFailure::Failed(format!(
                    "status {code}: {}",
                    String::from_utf8_lossy(&body)
                )),
                None => CreateFailure::Failed("no reply".into()),
            });
        }
        let capabilities = match answered {
            Some((status::OK, body)) => serde_json::from_slice::<abi::Created>(&body)
                .map(|c| c.capabilities)
                .map_err(|e| CreateFailure::Failed(format!("unreadable reply: {e}"))),
            _ => Err(CreateFailure::Failed(
                "instance without a success reply".into(),
            )),
        };
        let mut provider = PluginProvider {
            library,
            instance: InstancePtr(instance),
            host,
            capabilities: Capabilities::default(),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
            timeout: limits.timeout,
        };
        // From here on `provider` owns the instance: an error drops it, which destroys it.
        let capabilities = capabilities?;
        let declared = library.info.capabilities;
        if (capabilities.redirect && !declared.redirect)
            || (capabilities.password && !declared.password)
            || (capabilities.refresh && !declared.refresh)
            || (capabilities.header && !declared.header)
        {
            return Err(CreateFailure::UndeclaredCapability);
        }
        provider.capabilities = capabilities;
        Ok(provider)
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        operation: Operation,
        request: &Req,
    ) -> Result<Resp, ProviderError> {
        let fault = |detail: String| ProviderError::UpstreamUnavailable {
            detail: format!("plugin {}: {detail}", self.library.info.name),
        };
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| fault("too many calls in flight".into()))?;
        let mut body = serde_json::to_vec(request).map_err(|e| fault(e.to_string()))?;
        let call_id = NEXT_CALL_ID.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        lock(&self.host.pending).insert(
            call_id,
            PendingCall {
                reply,
                span: tracing::Span::current(),
            },
        );
        let mut waiting = CancelOnDrop {
            provider: self,
            call_id,
            armed: true,
        };
        // SAFETY: a live instance; the request is lent for the duration of the call.
        let accepted = unsafe {
            (self.library.descriptor.call)(
                self.instance.0,
                call_id,
                operation as u32,
                body.as_ptr(),
                body.len(),
            )
        };
        // The request may hold a password; the plugin has copied it.
        body.zeroize();
        if accepted != status::OK {
            waiting.forget();
            return Err(match accepted {
                status::PANIC => {
                    tracing::error!(plugin = %self.library.info.name, "plugin panicked starting a call");
                    fault("panicked".into())
                }
                status::UNSUPPORTED => ProviderError::Unsupported {
                    capability: format!("{operation:?}"),
                },
                other => fault(format!("refused the call (status {other})")),
            });
        }
        let completion = match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(completion)) => {
                waiting.armed = false;
                completion
            }
            Ok(Err(_)) => return Err(fault("dropped the call".into())),
            Err(_) => {
                tracing::warn!(
                    plugin = %self.library.info.name,
                    timeout_ms = self.timeout.as_millis() as u64,
                    "plugin call timed out; cancelled"
                );
                return Err(fault(format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                )));
            }
        };
        self.decode(completion, fault)
    }

    fn decode<Resp: DeserializeOwned>(
        &self,
        completion: Completion,
        fault: impl Fn(String) -> ProviderError,
    ) -> Result<Resp, ProviderError> {
        match completion.status {
            status::OK => serde_json::from_slice(&completion.body).map_err(|e| {
                tracing::error!(plugin = %self.library.info.name, error = %e, "plugin answered malformed JSON");
                fault("answered malformed JSON".into())
            }),
            status::PROVIDER_ERROR => Err(serde_json::from_slice(&completion.body).unwrap_or_else(|_| {
                tracing::error!(plugin = %self.library.info.name, "plugin answered an unreadable error");
                fault("answered an unreadable error".into())
            })),
            status::PANIC => {
                let message = String::from_utf8_lossy(&completion.body);
                tracing::error!(plugin = %self.library.info.name, panic = %message, "plugin panicked");
                Err(fault("panicked".into()))
            }
            ANSWER_TOO_LARGE => {
                tracing::error!(plugin = %self.library.info.name, limit = MAX_ANSWER_BYTES, "plugin answer too large");
                Err(fault("answered more than the size limit".into()))
            }
            other => Err(fault(format!("failed with status {other}"))),
        }
    }
}

/// Cancels the call in the plugin unless its answer arrived: on timeout, and when the
/// request future is dropped because the browser went away.
struct CancelOnDrop<'a> {
    provider: &'a PluginProvider,
    call_id: u64,
    armed: bool,
}

impl CancelOnDrop<'_> {
    /// The plugin refused the call: nothing to cancel, only to forget.
    fn forget(&mut self) {
        self.armed = false;
        lock(&self.provider.host.pending).remove(&self.call_id);
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        lock(&self.provider.host.pending).remove(&self.call_id);
        tracing::info!(
            plugin = %self.provider.library.info.name,
            call_id = self.call_id,
            "plugin call abandoned; cancelling it in the plugin"
        );
        // SAFETY: a live instance; cancel of any id is allowed.
        unsafe {
            (self.provider.library.descriptor.cancel)(self.provider.instance.0, self.call_id)
        };
    }
}

impl Drop for PluginProvider {
    fn drop(&mut self) {
        // SAFETY: the instance came from create and is destroyed exactly once, here.
        unsafe { (self.library.descriptor.destroy)(self.instance.0) };
    }
}

impl Provider for PluginProvider {
    fn redirect(&self) -> Option<&dyn RedirectLogin> {
        self.capabilities
            .redirect
            .then_some(self as &dyn RedirectLogin)
    }
    fn password(&self) -> Option<&dyn PasswordLogin> {
        self.capabilities
            .password
            .then_some(self as &dyn PasswordLogin)
    }
    fn refresh(&self) -> Option<&dyn RefreshIdentity> {
        self.capabilities
            .refresh
            .then_some(self as &dyn RefreshIdentity)
    }
    fn header(&self) -> Option<&dyn HeaderLogin> {
        self.capabilities.header.then_some(self as &dyn HeaderLogin)
    }
}

#[async_trait]
impl HeaderLogin for PluginProvider {
    async fn read_headers(
        &self,
        mut request: HeaderRequest,
    ) -> Result<HeaderAnswer, ProviderError> {
        // Only the headers the plugin's descriptor names cross, whatever the caller
        // collected.
        let declared = &self.library.info.header_names;
        request.headers.retain(|name, _| declared.contains(name));
        self.call(Operation::Header, &request).await
    }
}

#[async_trait]
impl RedirectLogin for PluginProvider {
    async fn begin(&self, request: BeginRequest) -> Result<BeginResponse, ProviderError> {
        self.call(Operation::Begin, &request).await
    }
    async fn complete(&self, callback: Callback) -> Result<Identity, ProviderError> {
        self.call(Operation::Complete, &callback).await
    }
}

#[async_trait]
impl PasswordLogin for PluginProvider {
    async fn authenticate(&self, request: PasswordRequest) -> Result<Identity, ProviderError> {
        self.call(Operation::Authenticate, &request).await
    }
}

#[async_trait]
impl RefreshIdentity for PluginProvider {
    async fn refresh(&self, request: RefreshRequest) -> Result<Identity, ProviderError> {
        self.call(Operation::Refresh, &request).await
    }
}
