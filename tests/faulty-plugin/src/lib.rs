//! A password plugin that misbehaves on purpose, for the broker's fault-containment
//! tests. The username typed picks the fault:
//!
//! - `panic-sync`: panics while the call is being started (inside the `call` shim);
//! - `panic-async`: panics inside the async work, after a yield;
//! - `hang`: never answers (the host must time out and cancel);
//! - `garbage`: answers "success" with bytes that are not JSON;
//! - `wrong-shape`: answers "success" with JSON that is not an identity;
//! - `huge`: answers with 2 MiB (over the host's limit);
//! - `twice`: answers twice (the second must be ignored);
//! - `stray`: first answers a call id nobody made, then answers properly;
//! - anything else: a well-behaved login, password `right`.
//!
//! Its config may say `reject = true` (create refuses) or `panic_on_create = true`.
//! It writes its own descriptor around plugin-api's shims, so it can reach the raw
//! host callbacks the normal export macro never misuses.

#![allow(unsafe_code)] // a hand-written plugin descriptor

use async_trait::async_trait;
use serde_json::json;
use std::ffi::c_void;
use switchboard_plugin_api::abi::{self, DescriptorV1, HostV1, ReplyFn, status};
use switchboard_plugin_api::export;
use switchboard_plugin_api::{
    Identity, PasswordLogin, PasswordRequest, Provider, ProviderContext, ProviderError,
    ProviderFactory,
};

#[derive(Debug)]
struct Faulty;

#[async_trait]
impl PasswordLogin for Faulty {
    async fn authenticate(&self, request: PasswordRequest) -> Result<Identity, ProviderError> {
        tracing::info!(username = %request.username, "faulty plugin checking a password");
        match request.username.as_str() {
            "panic-async" => {
                tokio::task::yield_now().await;
                panic!("faulty plugin: panic inside async work");
            }
            "hang" => {
                // Logged when the host cancels the call and the task is dropped.
                let _cancelled = LogWhenDropped;
                std::future::pending().await
            }
            name if request.password.expose() == "right" => Ok(identity(name)),
            _ => Err(ProviderError::InvalidCredentials),
        }
    }
}

struct LogWhenDropped;

impl Drop for LogWhenDropped {
    fn drop(&mut self) {
        tracing::info!("faulty plugin: the hanging call was cancelled");
    }
}

fn identity(name: &str) -> Identity {
    Identity::new(format!("faulty-{name}"))
        .with_username(name)
        .with_groups(vec!["faulty".into()])
}

impl Provider for Faulty {
    fn password(&self) -> Option<&dyn PasswordLogin> {
        Some(self)
    }
}

struct FaultyFactory;

impl ProviderFactory for FaultyFactory {
    fn provider_type(&self) -> &str {
        "faulty"
    }

    fn create(
        &self,
        context: ProviderContext,
    ) -> Result<std::sync::Arc<dyn Provider>, ProviderError> {
        if context.config.get("panic_on_create") == Some(&json!(true)) {
            panic!("faulty plugin: panic in create");
        }
        if context.config.get("reject") == Some(&json!(true)) {
            return Err(ProviderError::Misconfigured {
                detail: format!(
                    "providers.{}.reject: this plugin was told to refuse",
                    context.id
                ),
            });
        }
        Ok(std::sync::Arc::new(Faulty))
    }
}

unsafe extern "C" fn faulty_create(
    host: *const HostV1,
    config: *const u8,
    config_len: usize,
    reply: ReplyFn,
    reply_ctx: *mut c_void,
) -> *mut c_void {
    // SAFETY: passed through from the host as the ABI defines.
    unsafe { export::create(|| FaultyFactory, host, config, config_len, reply, reply_ctx) }
}

unsafe extern "C" fn faulty_call(
    instance: *mut c_void,
    call_id: u64,
    operation: u32,
    request: *const u8,
    request_len: usize,
) -> i32 {
    export::guard(status::PANIC, || {
        // SAFETY: the host lends `request_len` bytes for this call.
        let bytes = unsafe { abi::lent_bytes(request, request_len) };
        let username = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| {
                v.get("username")
                    .and_then(|u| u.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        // SAFETY: `instance` is live, from create.
        let Some(host) = (unsafe { export::host_of(instance) }) else {
            return status::BAD_REQUEST;
        };
        let good = |name: &str| serde_json::to_vec(&identity(name)).unwrap_or_default();
        match username.as_str() {
            "panic-sync" => panic!("faulty plugin: panic while starting a call"),
            "huge" => {
                host.complete(call_id, status::OK, &vec![b' '; 2 * 1024 * 1024]);
                status::OK
            }
            "garbage" => {
                host.complete(call_id, status::OK, b"{\"subject\": tru\xff");
                status::OK
            }
            "wrong-shape" => {
                host.complete(call_id, status::OK, b"[1, 2, 3]");
                status::OK
            }
            "twice" => {
                host.complete(call_id, status::OK, &good("twice"));
                host.complete(call_id, status::OK, &good("twice-again"));
                status::OK
            }
            "stray" => {
                host.complete(
                    call_id.wrapping_add(1_000_000_007),
                    status::OK,
                    &good("intruder"),
                );
                // SAFETY: passed through unchanged.
                unsafe { export::call(instance, call_id, operation, request, request_len) }
            }
            // SAFETY: passed through unchanged.
            _ => unsafe { export::call(instance, call_id, operation, request, request_len) },
        }
    })
}

#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static switchboard_plugin_descriptor_v1: DescriptorV1 = export::descriptor(
    "faulty",
    env!("CARGO_PKG_VERSION"),
    abi::CAP_PASSWORD,
    cfg!(panic = "unwind"),
    faulty_create,
    faulty_call,
);

#[unsafe(no_mangle)]
pub extern "C" fn switchboard_plugin_entry_v1() -> *const DescriptorV1 {
    &switchboard_plugin_descriptor_v1
}
