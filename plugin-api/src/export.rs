//! The author side of the dynamic-plugin ABI (see [`crate::abi`]).
//!
//! A plugin crate with `crate-type = ["cdylib", "rlib"]` implements the provider
//! traits and writes one `export_plugin!`. This is a complete plugin (the README's
//! minimal example, compiled here so it stays true):
//!
//! ```
//! use serde::Deserialize;
//! use std::sync::Arc;
//! use switchboard_plugin_api::*;
//!
//! #[derive(Debug, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     password: String,
//! }
//!
//! #[derive(Debug)]
//! struct Acme {
//!     password: String,
//! }
//!
//! #[async_trait::async_trait]
//! impl PasswordLogin for Acme {
//!     async fn authenticate(&self, r: PasswordRequest) -> Result<Identity, ProviderError> {
//!         if r.password.expose() != self.password {
//!             return Err(ProviderError::InvalidCredentials);
//!         }
//!         Ok(Identity::new(format!("acme-{}", r.username)).with_username(r.username))
//!     }
//! }
//!
//! impl Provider for Acme {
//!     fn password(&self) -> Option<&dyn PasswordLogin> {
//!         Some(self)
//!     }
//! }
//!
//! struct AcmeFactory;
//!
//! impl ProviderFactory for AcmeFactory {
//!     fn provider_type(&self) -> &str {
//!         "acme"
//!     }
//!     fn create(&self, ctx: ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
//!         let config: Config = ctx.parse_config()?;
//!         Ok(Arc::new(Acme { password: config.password }))
//!     }
//! }
//!
//! switchboard_plugin_api::export_plugin! {
//!     name: "acme",
//!     factory: AcmeFactory,
//!     capabilities: [password],
//! }
//! # fn main() {}
//! ```
//!
//! and gets the exported descriptor and the shims behind it. Each instance runs on its
//! own small tokio runtime: the plugin's statically linked tokio cannot see the
//! broker's, so a plugin future is never polled on a broker thread. Every shim catches
//! panics (one crossing `extern "C"` would abort the broker), a panic inside async work
//! becomes a [`status::PANIC`] completion, and the plugin's `tracing` events go to the
//! host, which re-emits them under the span of the request that made the call.
//!
//! The functions here are public so a plugin can write its own shims around them (the
//! broker's fault-injection test plugin does); authors normally never call them.

#![allow(unsafe_code)] // this module is the unsafe edge of the C ABI

use crate::abi::{
    self, COMPILER_LEN, CreateFn, DescriptorV1, DescriptorV1_1, HostV1, NAME_LEN, Operation,
    ReplyFn, VERSION_LEN, status,
};
use crate::{
    BeginRequest, Callback, HeaderRequest, PasswordRequest, Provider, ProviderContext,
    ProviderError, ProviderFactory, RefreshRequest,
};
use std::collections::HashMap;
use std::ffi::c_void;
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use zeroize::Zeroize;

/// Exports a plugin: the ABI's entry symbol and descriptor, with shims that build
/// instances from `factory` (an expression evaluated at each `create`).
///
/// `capabilities` lists what instances can offer, among `redirect`, `password`,
/// `refresh` and `header`; a `header` plugin adds `headers: ["authorization"]`, the
/// request headers it reads (the broker passes no others). `broker plugin inspect`
/// shows both without running the plugin.
#[macro_export]
macro_rules! export_plugin {
    (name: $name:expr, factory: $factory:expr, capabilities: [$($cap:ident),* $(,)?], headers: [$($header:expr),* $(,)?] $(,)?) => {
        const _: () = {
            #[allow(unsafe_code)]
            unsafe extern "C" fn __switchboard_create(
                host: *const $crate::abi::HostV1,
                config: *const u8,
                config_len: usize,
                reply: $crate::abi::ReplyFn,
                reply_ctx: *mut ::std::ffi::c_void,
            ) -> *mut ::std::ffi::c_void {
                // SAFETY: the arguments are the host's, passed through as the ABI defines.
                unsafe {
                    $crate::export::create(
                        || $factory,
                        host,
                        config,
                        config_len,
                        reply,
                        reply_ctx,
                    )
                }
            }

            #[allow(unsafe_code, non_upper_case_globals)]
            #[unsafe(no_mangle)]
            pub static switchboard_plugin_descriptor_v1: $crate::abi::DescriptorV1_1 =
                $crate::export::descriptor_v1_1(
                    $crate::export::descriptor(
                        $name,
                        env!("CARGO_PKG_VERSION"),
                        0 $(| $crate::__capability_bit!($cap))*,
                        cfg!(panic = "unwind"),
                        __switchboard_create,
                        $crate::export::call,
                    ),
                    concat!("" $(, $header, ",")*),
                );

            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            pub extern "C" fn switchboard_plugin_entry_v1() -> *const $crate::abi::DescriptorV1 {
                &switchboard_plugin_descriptor_v1.v1_0
            }
        };
    };
    (name: $name:expr, factory: $factory:expr, capabilities: [$($cap:ident),* $(,)?] $(,)?) => {
        $crate::export_plugin! {
            name: $name,
            factory: $factory,
            capabilities: [$($cap),*],
            headers: [],
        }
    };
}

/// Maps a capability name in `export_plugin!` to its bit.
#[doc(hidden)]
#[macro_export]
macro_rules! __capability_bit {
    (redirect) => {
        $crate::abi::CAP_REDIRECT
    };
    (password) => {
        $crate::abi::CAP_PASSWORD
    };
    (refresh) => {
        $crate::abi::CAP_REFRESH
    };
    (header) => {
        $crate::abi::CAP_HEADER
    };
}

/// A version-1.0 descriptor with this module's `cancel` and `destroy` (a plugin that
/// exports it alone is an ABI 1.0 plugin; [`descriptor_v1_1`] appends the 1.1 fields).
pub const fn descriptor(
    name: &str,
    version: &str,
    capabilities: u32,
    unwinds: bool,
    create: CreateFn,
    call: abi::CallFn,
) -> DescriptorV1 {
    DescriptorV1 {
        struct_size: std::mem::size_of::<DescriptorV1>() as u32,
        abi_major: abi::ABI_MAJOR,
        abi_minor: 0,
        flags: if unwinds { abi::FLAG_PANIC_UNWIND } else { 0 },
        capabilities,
        name: abi::fixed_str::<NAME_LEN>(name),
        version: abi::fixed_str::<VERSION_LEN>(version),
        api_version: abi::fixed_str::<VERSION_LEN>(crate::API_VERSION),
        compiler: abi::fixed_str::<COMPILER_LEN>(abi::COMPILER),
        create,
        call,
        cancel,
        destroy,
    }
}

/// A version-1.1 descriptor: `v1_0` with the header names appended (comma-separated)
/// and `struct_size` covering them.
pub const fn descriptor_v1_1(mut v1_0: DescriptorV1, header_names: &str) -> DescriptorV1_1 {
    v1_0.struct_size = std::mem::size_of::<DescriptorV1_1>() as u32;
    v1_0.abi_minor = 1;
    DescriptorV1_1 {
        v1_0,
        header_names: abi::fixed_str::<{ abi::HEADER_NAMES_LEN }>(header_names),
    }
}

/// The host's callbacks, as copied at `create`.
#[derive(Debug, Clone, Copy)]
pub struct Host(HostV1);

// SAFETY: the ABI requires the host's `complete` and `log` to be callable from any
// thread with the `ctx` it gave, for as long as the instance lives.
unsafe impl Send for Host {}
// SAFETY: as above; the plugin only reads the copied table.
unsafe impl Sync for Host {}

impl Host {
    /// Answers call `call_id`.
    pub fn complete(&self, call_id: u64, status: i32, body: &[u8]) {
        // SAFETY: `complete` is the host's, valid for the instance's life; `body` is
        // borrowed for the duration of the call, as the ABI says.
        unsafe { (self.0.complete)(self.0.ctx, call_id, status, body.as_ptr(), body.len()) }
    }

    fn log(&self, call_id: u64, level: u32, target: &str, message: &str) {
        // SAFETY: as for `complete`.
        unsafe {
            (self.0.log)(
                self.0.ctx,
                call_id,
                level,
                target.as_ptr(),
                target.len(),
                message.as_ptr(),
                message.len(),
            )
        }
    }
}

/// One live instance: its provider, its runtime, its calls in progress.
struct Instance {
    host: Host,
    provider: Arc<dyn Provider>,
    runtime: tokio::runtime::Runtime,
    running: Arc<Mutex<HashMap<u64, tokio::task::AbortHandle>>>,
}

tokio::task_local! {
    /// The call a task works for, so its log events reach the right request.
    static CALL_ID: u64;
}

/// Runs `body`, turning a panic into `on_panic` (a panic must never cross `extern "C"`).
pub fn guard<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(on_panic)
}

/// The host a live instance answers to.
///
/// # Safety
/// `instance` must be a pointer returned by [`create`] and not yet destroyed.
pub unsafe fn host_of(instance: *mut c_void) -> Option<Host> {
    // SAFETY: the caller promises `instance` came from `create` and is alive.
    unsafe { (instance as *const Instance).as_ref() }.map(|i| i.host)
}

/// The `create` shim: builds a provider with `factory` from the host's context JSON.
///
/// # Safety
/// The arguments must be as [`abi::CreateFn`] describes.
pub unsafe fn create<F: ProviderFactory>(
    factory: impl FnOnce() -> F,
    host: *const HostV1,
    config: *const u8,
    config_len: usize,
    reply: ReplyFn,
    reply_ctx: *mut c_void,
) -> *mut c_void {
    let answer = |status: i32, body: &[u8]| {
        // SAFETY: `reply` and `reply_ctx` are the host's, valid during `create`.
        unsafe { reply(reply_ctx, status, body.as_ptr(), body.len()) }
    };
    let built = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host passes a valid table, or null which `as_ref` catches.
        let Some(table) = (unsafe { host.as_ref() }) else {
            return Err((status::BAD_REQUEST, b"no host table".to_vec()));
        };
        if (table.struct_size as usize) < std::mem::size_of::<HostV1>() {
            return Err((status::BAD_REQUEST, b"host table too small".to_vec()));
        }
        let host = Host(*table);
        // SAFETY: the host lends `config_len` bytes at `config` for this call.
        let context = unsafe { abi::lent_bytes(config, config_len) };
        let context: ProviderContext = serde_json::from_slice(context)
            .map_err(|e| (status::BAD_REQUEST, e.to_string().into_bytes()))?;
        let dispatch = tracing::Dispatch::new(Forwarder {
            host,
            max_level: table.max_log_level,
        });
        let thread_dispatch = dispatch.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("switchboard-plugin")
            .on_thread_start(move || {
                // The guard lives as long as the thread: every event on a plugin
                // thread, blocking pool included, goes to the host.
                std::mem::forget(tracing::dispatcher::set_default(&thread_dispatch));
            })
            .enable_all()
            .build()
            .map_err(|e| (status::PANIC, format!("plugin runtime: {e}").into_bytes()))?;
        let provider = {
            let _runtime = runtime.enter();
            tracing::dispatcher::with_default(&dispatch, || factory().create(context))
        }
        .map_err(|e| (status::PROVIDER_ERROR, to_json(&e)))?;
        Ok(Instance {
            host,
            provider,
            runtime,
            running: Arc::default(),
        })
    }));
    match built {
        Ok(Ok(instance)) => {
            let created = abi::Created::new(instance.provider.capabilities());
            answer(status::OK, &to_json(&created));
            Box::into_raw(Box::new(instance)).cast()
        }
        Ok(Err((status, body))) => {
            answer(status, &body);
            std::ptr::null_mut()
        }
        Err(panic) => {
            answer(status::PANIC, panic_message(&*panic).as_bytes());
            std::ptr::null_mut()
        }
    }
}

/// The `call` shim: checks the request, then runs the operation on the instance's
/// runtime and answers through the host when it ends.
///
/// # Safety
/// The arguments must be as [`abi::CallFn`] describes.
pub unsafe extern "C" fn call(
    instance: *mut c_void,
    call_id: u64,
    operation: u32,
    request: *const u8,
    request_len: usize,
) -> i32 {
    guard(status::PANIC, || {
        // SAFETY: the host passes a live instance pointer from `create`.
        let Some(instance) = (unsafe { (instance as *const Instance).as_ref() }) else {
            return status::BAD_REQUEST;
        };
        let Some(operation) = Operation::from_u32(operation) else {
            return status::UNSUPPORTED;
        };
        // SAFETY: the host lends `request_len` bytes at `request` for this call.
        let body = unsafe { abi::lent_bytes(request, request_len) }.to_vec();
        let work = match operation_future(instance.provider.clone(), operation, body) {
            Ok(work) => work,
            Err(status) => return status,
        };
        let task = instance.runtime.spawn(CALL_ID.scope(call_id, work));
        lock(&instance.running).insert(call_id, task.abort_handle());
        let running = instance.running.clone();
        let host = instance.host;
        instance.runtime.spawn(async move {
            let outcome = task.await;
            lock(&running).remove(&call_id);
            match outcome {
                Ok(Ok(body)) => host.complete(call_id, status::OK, &body),
                Ok(Err(error)) => host.complete(call_id, status::PROVIDER_ERROR, &to_json(&error)),
                Err(e) if e.is_panic() => {
                    let panic = e.into_panic();
                    host.complete(call_id, status::PANIC, panic_message(&*panic).as_bytes());
                }
                // Cancelled: the host has stopped waiting.
                Err(_) => {}
            }
        });
        status::OK
    })
}

type Work = std::pin::Pin<Box<dyn Future<Output = Result<Vec<u8>, ProviderError>> + Send>>;

/// The future for one operation, or the status refusing it. The request is parsed
/// here so a malformed one is refused synchronously.
fn operation_future(
    provider: Arc<dyn Provider>,
    operation: Operation,
    body: Vec<u8>,
) -> Result<Work, i32> {
    let capabilities = provider.capabilities();
    let has = match operation {
        Operation::Begin | Operation::Complete => capabilities.redirect,
        Operation::Authenticate => capabilities.password,
        Operation::Refresh => capabilities.refresh,
        Operation::Header => capabilities.header,
    };
    if !has {
        return Err(status::UNSUPPORTED);
    }
    Ok(match operation {
        Operation::Begin => {
            let request: BeginRequest = parse(body)?;
            Box::pin(async move {
                let redirect = provider.redirect().ok_or_else(|| unsupported("redirect"))?;
                Ok(to_json(&redirect.begin(request).await?))
            })
        }
        Operation::Complete => {
            let callback: Callback = parse(body)?;
            Box::pin(async move {
                let redirect = provider.redirect().ok_or_else(|| unsupported("redirect"))?;
                Ok(to_json(&redirect.complete(callback).await?))
            })
        }
        Operation::Authenticate => {
            let request: PasswordRequest = parse(body)?;
            Box::pin(async move {
                let password = provider.password().ok_or_else(|| unsupported("password"))?;
                Ok(to_json(&password.authenticate(request).await?))
            })
        }
        Operation::Refresh => {
            let request: RefreshRequest = parse(body)?;
            Box::pin(async move {
                let refresh = provider.refresh().ok_or_else(|| unsupported("refresh"))?;
                Ok(to_json(&refresh.refresh(request).await?))
            })
        }
        Operation::Header => {
            let request: HeaderRequest = parse(body)?;
            Box::pin(async move {
                let header = provider.header().ok_or_else(|| unsupported("header"))?;
                Ok(to_json(&header.read_headers(request).await?))
            })
        }
    })
}

/// The `cancel` shim: aborts the call's task; it will not complete.
///
/// # Safety
/// The arguments must be as [`abi::CancelFn`] describes.
pub unsafe extern "C" fn cancel(instance: *mut c_void, call_id: u64) {
    guard((), || {
        // SAFETY: the host passes a live instance pointer from `create`.
        if let Some(instance) = unsafe { (instance as *const Instance).as_ref() }
            && let Some(task) = lock(&instance.running).remove(&call_id)
        {
            task.abort();
        }
    })
}

/// The `destroy` shim: stops the instance's runtime without waiting for its threads.
///
/// # Safety
/// The arguments must be as [`abi::DestroyFn`] describes.
pub unsafe extern "C" fn destroy(instance: *mut c_void) {
    guard((), || {
        if instance.is_null() {
            return;
        }
        // SAFETY: the host passes a pointer from `create` exactly once, last.
        let instance = unsafe { Box::from_raw(instance.cast::<Instance>()) };
        let Instance { runtime, .. } = *instance;
        runtime.shutdown_background();
    })
}

/// Parses a request and wipes its bytes, which may hold a password.
fn parse<T: serde::de::DeserializeOwned>(mut body: Vec<u8>) -> Result<T, i32> {
    let parsed = serde_json::from_slice(&body).map_err(|_| status::BAD_REQUEST);
    body.zeroize();
    parsed
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain owned data with string keys cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn unsupported(capability: &str) -> ProviderError {
    ProviderError::Unsupported {
        capability: capability.to_owned(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-text payload".to_owned()
    }
}

/// A `tracing` subscriber that hands every event to the host. Spans stay on the host
/// side: the host re-emits each event under the span of the call it belongs to.
struct Forwarder {
    host: Host,
    max_level: u32,
}

fn level_number(level: &tracing::Level) -> u32 {
    match *level {
        tracing::Level::ERROR => abi::level::ERROR,
        tracing::Level::WARN => abi::level::WARN,
        tracing::Level::INFO => abi::level::INFO,
        tracing::Level::DEBUG => abi::level::DEBUG,
        _ => abi::level::TRACE,
    }
}

impl tracing::Subscriber for Forwarder {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        level_number(metadata.level()) <= self.max_level
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(match self.max_level {
            abi::level::OFF => tracing::level_filters::LevelFilter::OFF,
            abi::level::ERROR => tracing::level_filters::LevelFilter::ERROR,
            abi::level::WARN => tracing::level_filters::LevelFilter::WARN,
            abi::level::INFO => tracing::level_filters::LevelFilter::INFO,
            abi::level::DEBUG => tracing::level_filters::LevelFilter::DEBUG,
            _ => tracing::level_filters::LevelFilter::TRACE,
        })
    }

    fn new_span(&self, _span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _span: &tracing::span::Id, _values: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _span: &tracing::span::Id, _follows: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut text = EventText::default();
        event.record(&mut text);
        let call_id = CALL_ID.try_with(|id| *id).unwrap_or(0);
        let metadata = event.metadata();
        self.host.log(
            call_id,
            level_number(metadata.level()),
            metadata.target(),
            &text.finish(),
        );
    }

    fn enter(&self, _span: &tracing::span::Id) {}

    fn exit(&self, _span: &tracing::span::Id) {}
}

/// An event's message followed by its other fields as `name=value`.
#[derive(Default)]
struct EventText {
    message: String,
    fields: String,
}

impl EventText {
    fn finish(self) -> String {
        if self.fields.is_empty() {
            self.message
        } else if self.message.is_empty() {
            self.fields
        } else {
            format!("{} {}", self.message, self.fields)
        }
    }
}

impl tracing::field::Visit for EventText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::{Identity, PasswordLogin};
    use std::sync::mpsc;

    #[derive(Debug)]
    struct Echo;

    #[async_trait::async_trait]
    impl PasswordLogin for Echo {
        async fn authenticate(&self, r: PasswordRequest) -> Result<Identity, ProviderError> {
            tracing::info!(user = %r.username, "checking");
            match r.username.as_str() {
                "panic" => panic!("boom"),
                "hang" => std::future::pending().await,
                "nobody" => Err(ProviderError::InvalidCredentials),
                name => Ok(Identity::new(name)),
            }
        }
    }

    impl Provider for Echo {
        fn password(&self) -> Option<&dyn PasswordLogin> {
            Some(self)
        }
    }

    struct EchoFactory;

    impl ProviderFactory for EchoFactory {
        fn provider_type(&self) -> &str {
            "echo"
        }
        fn create(&self, context: ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
            if context.config.get("refuse").is_some() {
                return Err(ProviderError::Misconfigured {
                    detail: "refused".into(),
                });
            }
            Ok(Arc::new(Echo))
        }
    }

    /// What the fake host received: completions and log lines.
    enum Received {
        Completed(u64, i32, Vec<u8>),
        Logged(u64, String),
    }

    unsafe extern "C" fn on_complete(
        ctx: *const c_void,
        call_id: u64,
        status: i32,
        body: *const u8,
        len: usize,
    ) {
        let sender = unsafe { &*ctx.cast::<Mutex<mpsc::Sender<Received>>>() };
        let body = unsafe { abi::lent_bytes(body, len) }.to_vec();
        let _ = lock(sender).send(Received::Completed(call_id, status, body));
    }

    unsafe extern "C" fn on_log(
        ctx: *const c_void,
        call_id: u64,
        _level: u32,
        _target: *const u8,
        _target_len: usize,
        message: *const u8,
        message_len: usize,
    ) {
        let sender = unsafe { &*ctx.cast::<Mutex<mpsc::Sender<Received>>>() };
        let text =
            String::from_utf8_lossy(unsafe { abi::lent_bytes(message, message_len) }).into_owned();
        let _ = lock(sender).send(Received::Logged(call_id, text));
    }

    unsafe extern "C" fn on_reply(ctx: *mut c_void, status: i32, body: *const u8, len: usize) {
        let slot = unsafe { &mut *ctx.cast::<Option<(i32, Vec<u8>)>>() };
        *slot = Some((status, unsafe { abi::lent_bytes(body, len) }.to_vec()));
    }

    struct Harness {
        instance: *mut c_void,
        received: mpsc::Receiver<Received>,
    }

    impl Harness {
        /// The instance and its success reply, or the failure reply.
        fn create(config: serde_json::Value) -> Result<(Harness, Vec<u8>), (i32, Vec<u8>)> {
            let (tx, rx) = mpsc::channel();
            // Leaked, as the broker leaks its host context: `destroy` does not wait for
            // the plugin's threads, so one may still be inside a callback (holding this
            // mutex) after the harness is gone.
            let sender: &'static Mutex<mpsc::Sender<Received>> =
                Box::leak(Box::new(Mutex::new(tx)));
            let host = HostV1 {
                struct_size: std::mem::size_of::<HostV1>() as u32,
                max_log_level: abi::level::INFO,
                ctx: std::ptr::from_ref(sender).cast(),
                complete: on_complete,
                log: on_log,
            };
            let context = serde_json::to_vec(&ProviderContext::new("echo", config, false)).unwrap();
            let mut reply: Option<(i32, Vec<u8>)> = None;
            let instance = unsafe {
                create(
                    || EchoFactory,
                    &host,
                    context.as_ptr(),
                    context.len(),
                    on_reply,
                    std::ptr::from_mut(&mut reply).cast(),
                )
            };
            let (status, body) = reply.expect("create always replies");
            if instance.is_null() {
                return Err((status, body));
            }
            assert_eq!(status, status::OK);
            let harness = Harness {
                instance,
                received: rx,
            };
            Ok((harness, body))
        }

        fn call(&self, call_id: u64, operation: u32, body: &[u8]) -> i32 {
            unsafe { call(self.instance, call_id, operation, body.as_ptr(), body.len()) }
        }

        fn login(&self, call_id: u64, username: &str) -> i32 {
            let body =
                serde_json::to_vec(&PasswordRequest::new(username, crate::Password::new("pw")))
                    .unwrap();
            self.call(call_id, Operation::Authenticate as u32, &body)
        }

        /// The completion of `call_id`, collecting log lines on the way.
        fn completion(&self, call_id: u64) -> (i32, Vec<u8>, Vec<String>) {
            let mut logs = Vec::new();
            loop {
                match self
                    .received
                    .recv_timeout(std::time::Duration::from_secs(5))
                    .unwrap()
                {
                    Received::Completed(id, status, body) if id == call_id => {
                        return (status, body, logs);
                    }
                    Received::Completed(..) => {}
                    Received::Logged(id, text) => logs.push(format!("{id}:{text}")),
                }
            }
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            unsafe { destroy(self.instance) };
        }
    }

    #[test]
    fn a_call_completes_once_with_the_identity_and_its_logs_carry_the_call_id() {
        let (harness, body) = Harness::create(serde_json::json!({})).unwrap();
        let created: abi::Created = serde_json::from_slice(&body).unwrap();
        assert!(created.capabilities.password && !created.capabilities.redirect);

        assert_eq!(harness.login(7, "ada"), status::OK);
        let (status, body, logs) = harness.completion(7);
        assert_eq!(status, status::OK);
        let identity: Identity = serde_json::from_slice(&body).unwrap();
        assert_eq!(identity.subject, "ada");
        assert!(logs.iter().any(|l| l == "7:checking user=ada"), "{logs:?}");
    }

    #[test]
    fn provider_errors_and_async_panics_are_completions_not_crashes() {
        let harness = Harness::create(serde_json::json!({})).unwrap().0;
        assert_eq!(harness.login(1, "nobody"), status::OK);
        let (status, body, _) = harness.completion(1);
        assert_eq!(status, status::PROVIDER_ERROR);
        assert_eq!(
            serde_json::from_slice::<ProviderError>(&body).unwrap(),
            ProviderError::InvalidCredentials
        );

        assert_eq!(harness.login(2, "panic"), status::OK);
        let (status, body, _) = harness.completion(2);
        assert_eq!(status, status::PANIC);
        assert_eq!(body, b"boom");

        // The instance still works after a panic.
        assert_eq!(harness.login(3, "grace"), status::OK);
        assert_eq!(harness.completion(3).0, status::OK);
    }

    #[test]
    fn bad_requests_and_missing_capabilities_are_refused_synchronously() {
        let harness = Harness::create(serde_json::json!({})).unwrap().0;
        assert_eq!(
            harness.call(1, Operation::Authenticate as u32, b"{not json"),
            status::BAD_REQUEST
        );
        assert_eq!(harness.call(2, 99, b"{}"), status::UNSUPPORTED);
        assert_eq!(
            harness.call(3, Operation::Begin as u32, b"{}"),
            status::UNSUPPORTED
        );
    }

    #[test]
    fn a_cancelled_call_never_completes() {
        let harness = Harness::create(serde_json::json!({})).unwrap().0;
        assert_eq!(harness.login(1, "hang"), status::OK);
        unsafe { cancel(harness.instance, 1) };
        // Cancelling twice, or an unknown call, is harmless.
        unsafe { cancel(harness.instance, 1) };
        unsafe { cancel(harness.instance, 42) };
        assert_eq!(harness.login(2, "after"), status::OK);
        let (status, _, _) = harness.completion(2);
        assert_eq!(status, status::OK);
        let late = harness
            .received
            .recv_timeout(std::time::Duration::from_millis(200));
        assert!(
            !matches!(late, Ok(Received::Completed(1, ..))),
            "the cancelled call completed"
        );
    }

    #[test]
    fn a_refusing_factory_replies_with_its_error_and_no_instance() {
        let Err((status, body)) = Harness::create(serde_json::json!({"refuse": true})) else {
            panic!("an instance was created")
        };
        assert_eq!(status, status::PROVIDER_ERROR);
        assert!(matches!(
            serde_json::from_slice::<ProviderError>(&body).unwrap(),
            ProviderError::Misconfigured { .. }
        ));
    }

    #[test]
    fn the_descriptor_records_versions_capabilities_and_the_unwind_flag() {
        unsafe extern "C" fn no_create(
            _: *const HostV1,
            _: *const u8,
            _: usize,
            _: ReplyFn,
            _: *mut c_void,
        ) -> *mut c_void {
            std::ptr::null_mut()
        }
        let d = descriptor("echo", "1.2.3", abi::CAP_PASSWORD, true, no_create, call);
        assert_eq!(d.struct_size as usize, abi::DESCRIPTOR_V1_SIZE);
        assert_eq!((d.abi_major, d.abi_minor), (abi::ABI_MAJOR, 0));
        assert_eq!(abi::field_str(&d.name), Some("echo"));
        assert_eq!(abi::field_str(&d.version), Some("1.2.3"));
        assert_eq!(abi::field_str(&d.api_version), Some(crate::API_VERSION));
        assert!(abi::field_str(&d.compiler).unwrap().starts_with("rustc "));
        assert_eq!(d.flags & abi::FLAG_PANIC_UNWIND, abi::FLAG_PANIC_UNWIND);
        assert_eq!(d.capabilities, abi::CAP_PASSWORD);

        let d = descriptor_v1_1(
            descriptor("negotiate", "1.0.0", abi::CAP_HEADER, true, no_create, call),
            "authorization,",
        );
        assert_eq!(d.v1_0.struct_size as usize, abi::DESCRIPTOR_V1_1_SIZE);
        assert_eq!(
            (d.v1_0.abi_major, d.v1_0.abi_minor),
            (abi::ABI_MAJOR, abi::ABI_MINOR)
        );
        assert_eq!(
            abi::header_names_of(&d.header_names).unwrap(),
            vec!["authorization".to_owned()]
        );
    }
}
