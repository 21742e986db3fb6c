#![allow(clippy::unwrap_used, clippy::expect_used)] // setup of a benchmark: a failure should stop it loudly

//! What a provider costs when it lives in a plugin loaded at run time, against the
//! same work done by a provider linked in.
//!
//! The plugin is the faulty test plugin built by `cargo build` (its ordinary logins do
//! no hashing, so the cost measured is the boundary's): it is loaded through the real
//! loader (checks, pin, memfd, dlopen) and called through the provider traits, as the
//! broker calls it. The baseline is an in-process provider returning the same identity.
//!
//! - `direct_call` / `plugin_call`: one password login, awaited;
//! - `direct_batch_100` / `plugin_batch_100`: 100 logins at once.
//!
//! Read the ratios `plugin / direct`: the boundary adds JSON both ways, a hop to the
//! plugin's own runtime and a completion callback back to the broker's.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use switchboard_plugin_api::{
    Identity, Password, PasswordLogin, PasswordRequest, Provider, ProviderContext, ProviderError,
    ProviderFactory,
};

#[derive(Debug)]
struct Direct;

#[async_trait::async_trait]
impl PasswordLogin for Direct {
    async fn authenticate(&self, r: PasswordRequest) -> Result<Identity, ProviderError> {
        if r.password.expose() != "right" {
            return Err(ProviderError::InvalidCredentials);
        }
        Ok(Identity::new(format!("faulty-{}", r.username))
            .with_username(r.username)
            .with_groups(vec!["faulty".into()]))
    }
}

impl Provider for Direct {
    fn password(&self) -> Option<&dyn PasswordLogin> {
        Some(self)
    }
}

fn plugin_file() -> PathBuf {
    let built = std::env::var_os("SWITCHBOARD_BENCH_PLUGIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/debug/libswitchboard_faulty_plugin.so")
        });
    let bytes = std::fs::read(&built).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: build it first with cargo build -p switchboard-faulty-plugin --release \
             and point SWITCHBOARD_BENCH_PLUGIN at it",
            built.display()
        )
    });
    // The loader wants a directory only its owner can write.
    let dir = std::env::temp_dir().join(format!("switchboard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = dir.join("libbench.so");
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn loaded() -> Arc<dyn Provider> {
    let path = plugin_file();
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &std::fs::read(&path).unwrap());
    let sha256: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let options = serde_json::json!({
        "library": path,
        "sha256": sha256,
        "max_in_flight": 1000,
    });
    broker::providers::plugin::PluginFactory::new(Duration::from_secs(10))
        .create(ProviderContext::new("bench", options, false))
        .unwrap()
}

async fn login(provider: &dyn Provider) -> Identity {
    provider
        .password()
        .unwrap()
        .authenticate(PasswordRequest::new("carol", Password::new("right")))
        .await
        .unwrap()
}

async fn batch(provider: &Arc<dyn Provider>, n: usize) {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let p = provider.clone();
        set.spawn(async move { login(p.as_ref()).await });
    }
    while let Some(done) = set.join_next().await {
        black_box(done.unwrap());
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let direct: Arc<dyn Provider> = Arc::new(Direct);
    let plugin = loaded();
    assert_eq!(
        runtime.block_on(login(direct.as_ref())),
        runtime.block_on(login(plugin.as_ref())),
        "both give the same identity"
    );

    let mut group = c.benchmark_group("provider");
    group.bench_function("direct_call", |b| {
        b.iter(|| runtime.block_on(login(direct.as_ref())))
    });
    group.bench_function("plugin_call", |b| {
        b.iter(|| runtime.block_on(login(plugin.as_ref())))
    });
    group.bench_function("direct_batch_100", |b| {
        b.iter(|| runtime.block_on(batch(&direct, 100)))
    });
    group.bench_function("plugin_batch_100", |b| {
        b.iter(|| runtime.block_on(batch(&plugin, 100)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
