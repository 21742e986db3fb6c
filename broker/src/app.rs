//! Assembles a running broker from a validated config (store, master key, signing
//! keys, providers, pages), holds the route table, and runs the server.

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, MasterKeySource, StoreSettings};
use crate::identity::StoreDirectory;
use crate::providers::{ProviderKind, ProviderRegistry, Subjects};
use crate::secrets::{MasterKey, SecretsError};
use crate::sessions::CookiePolicy;
use crate::store::{
    ChangeEpoch, PostgresOptions, PostgresStore, SharedStore, SqliteStore, WatchedStore,
};
use crate::tokens::TokenSigner;
use crate::tokens::keyring::{Keyring, RotationPolicy};
use crate::tokens::live::LiveTokenCache;
use crate::web::middleware::{Gate, RequestContext, RequestIds};
use crate::web::{AppState, Pages};
use actix_web::{App, HttpResponse, HttpServer, web};
use std::collections::BTreeSet;
use std::sync::Arc;
use switchboard_local::LocalFactory;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("signing keys: {0}")]
    Keys(#[from] crate::tokens::keyring::KeyringError),
    #[error("{0}")]
    Providers(#[from] crate::providers::RegistryError),
    #[error("pages: {0}")]
    Pages(#[from] crate::web::pages::PagesError),
    #[error("email: {0}")]
    Mail(#[from] crate::email::MailError),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("TLS client configuration: {0}")]
    Tls(String),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

pub async fn open_store(config: &Config) -> Result<SharedStore, StartError> {
    match &config.store {
        StoreSettings::Sqlite { path } => {
            if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| StartError::DataDir {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            Ok(Arc::new(SqliteStore::open(path).await?))
        }
        StoreSettings::Postgres {
            url,
            schema,
            max_connections,
        } => {
            // The URL is a secret: only the schema is logged.
            tracing::info!(schema = %schema, "opening the PostgreSQL store");
            let options = PostgresOptions {
                url: url.expose().to_owned(),
                schema: schema.clone(),
                max_connections: *max_connections,
            };
            Ok(Arc::new(PostgresStore::connect(&options).await?))
        }
    }
}

/// The current master key from `[secrets]`, with the previous keys a rotation still
/// needs (`previous_master_key_files`).
pub fn load_master_key(config: &Config) -> Result<MasterKey, SecretsError> {
    let previous = config
        .previous_master_keys
        .iter()
        .map(|p| MasterKey::load_or_generate(p, false))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(load_current_master_key(config)?.with_previous(previous))
}

fn load_current_master_key(config: &Config) -> Result<MasterKey, SecretsError> {
    match &config.master_key {
        MasterKeySource::Inline(s) => MasterKey::from_text(s.expose()),
        MasterKeySource::File(p) => MasterKey::load_or_generate(p, false),
        MasterKeySource::GeneratedFile(p) => MasterKey::load_or_generate(p, true),
        MasterKeySource::Env(name) => match std::env::var(name) {
            Ok(v) => MasterKey::from_text(&v),
            Err(_) => Err(SecretsError::MasterKey(format!(
                "environment variable {name} is unset"
            ))),
        },
    }
}

pub async fn build(config: Config) -> Result<AppState, StartError> {
    // First: a theme that does not load stops the start before anything else opens.
    let pages = Arc::new(Pages::load(&config.ui)?);
    let clock: SharedClock = Arc::new(SystemClock);
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let epoch = Arc::new(ChangeEpoch::default());
    let store: SharedStore = Arc::new(WatchedStore::new(
        open_store(&config).await?,
        epoch.clone(),
        metrics.clone(),
    ));
    let master = Arc::new(load_master_key(&config)?);
    let mut algs: BTreeSet<_> = config.clients.values().map(|c| c.id_token_alg).collect();
    algs.insert(config.tokens.default_alg);
    let retain = config
        .clients
        .values()
        .map(|c| c.lifetimes.access_token.max(c.lifetimes.id_token))
        .chain([
            config.tokens.lifetimes.access_token,
            config.tokens.lifetimes.id_token,
        ])
        .max()
        .unwrap_or(3600);
    let policy = RotationPolicy {
        period: config.tokens.key_rotation_period,
        prepublish: config.tokens.jwks_cache_lifetime,
        retain,
    };
    let keyring = Keyring::open(store.clone(), master.clone(), clock.clone(), policy, algs).await?;
    let hash_workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let kinds = vec![
        ProviderKind {
            factory: Arc::new(LocalFactory::new(
                Some(Arc::new(StoreDirectory(store.clone()))),
                hash_workers,
            )),
            // Local users are the broker's own: their subject is the user id.
            subjects: Subjects::UserIds,
        },
        ProviderKind::upstream(Arc::new(switchboard_ldap::LdapFactory::new())),
        ProviderKind::upstream(Arc::new(switchboard_oidc::OidcFactory)),
        ProviderKind::upstream(Arc::new(switchboard_google::GoogleFactory)),
        ProviderKind::upstream(Arc::new(switchboard_microsoft::MicrosoftFactory)),
        ProviderKind::upstream(Arc::new(switchboard_github::GitHubFactory)),
        ProviderKind::upstream(Arc::new(crate::providers::plugin::PluginFactory::new(
            config.login.provider_timeout,
        ))),
    ];
    let providers = ProviderRegistry::build(
        &config.providers,
        &kinds,
        config.dev_mode,
        config.login.provider_timeout,
        &metrics,
    )?;
    let (discovery, oauth_metadata) = crate::oidc::metadata(&config);
    let tls =
        switchboard_upstream::tls::client_config().map_err(|e| StartError::Tls(e.to_string()))?;
    // Redirects off: an outbound call must never be bounced to an address we did not
    // choose (SSRF).
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(10))
        .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        .use_preconfigured_tls(tls)
        .build()?;
    let live_tokens = Arc::new(
        LiveTokenCache::new(epoch, config.tokens.status_cache_lifetime, LIVE_TOKENS_KEPT)
            .counted_on(metrics.cache_counters("token_status")),
    );
    let mail = match &config.email {
        Some(settings) => Some(Arc::new(crate::email::Mail::new(settings, master.clone())?)),
        None => None,
    };
    Ok(AppState {
        cookies: CookiePolicy {
            insecure_loopback: config.is_loopback_http(),
            session_lifetime: config.session_lifetime,
        },
        signer: TokenSigner {
            issuer: config.issuer.clone(),
            keyring: keyring.clone(),
            metrics: metrics.clone(),
        },
        config: Arc::new(config),
        store,
        clock,
        master,
        keyring,
        providers: Arc::new(providers),
        pages,
        discovery: Arc::new(discovery),
        oauth_metadata: Arc::new(oauth_metadata),
        http,
        metrics,
        live_tokens,
        logout_outbox: Arc::new(tokio::sync::Notify::new()),
        mail,
    })
}

/// How many live access tokens are kept in memory (a few KiB each).
const LIVE_TOKENS_KEPT: u64 = 20_000;

/// Hears the other replicas' changes for as long as the server runs.
pub fn spawn_change_follower(app: &AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(WatchedStore::follow(
        app.store.clone(),
        app.live_tokens.change_epoch().clone(),
    ))
}

/// Deletes expired rows every few minutes.
pub fn spawn_garbage_collection(app: &AppState) -> tokio::task::JoinHandle<()> {
    let store = app.store.clone();
    let clock = app.clock.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
        loop {
            tick.tick().await;
            match store.purge_expired(clock.now()).await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "purged expired records"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging expired records failed"),
            }
        }
    })
}

/// The route table: every endpoint module mounts its own routes here, and only here.
fn routes(app: &AppState, cfg: &mut web::ServiceConfig) {
    let limit = app.config.max_body_bytes;
    cfg.app_data(web::Data::new(app.clone()))
        .app_data(web::FormConfig::default().limit(limit))
        .app_data(web::PayloadConfig::default().limit(limit))
        .app_data(web::JsonConfig::default().limit(limit));
    // Routes are tried in this order, the ones with `{…}` by a regex each: the probes
    // (exact paths, hit every few seconds by every orchestrator) go first.
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
    crate::oidc::routes(&app.config, cfg);
    crate::login::routes(cfg);
    crate::account::routes(cfg);
    cfg.service(crate::admin::scope());
    crate::access::routes(cfg);
}

async fn metrics(app: web::Data<AppState>) -> HttpResponse {
    match app.metrics.render() {
        Ok(text) => HttpResponse::Ok()
            .content_type(crate::metrics::CONTENT_TYPE)
            .insert_header(("Cache-Control", "no-store"))
            .body(text),
        Err(e) => {
            tracing::error!(error = %e, "rendering the metrics failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(app: web::Data<AppState>) -> HttpResponse {
    match app.keyring.signing_key(app.config.tokens.default_alg) {
        Ok(_) => HttpResponse::Ok().body("ready"),
        Err(_) => HttpResponse::ServiceUnavailable().body("no signing key"),
    }
}

/// How long the last back-channel logout pass may take at shutdown.
const FINAL_OUTBOX_PASS: std::time::Duration = std::time::Duration::from_secs(3);

/// Binds and runs the server until SIGTERM or SIGINT, then shuts down gracefully:
/// stop accepting, let in-flight requests finish (`[server] shutdown_timeout`), make
/// one last bounded back-channel logout pass, return.
pub async fn serve(app: AppState) -> std::io::Result<()> {
    let listen = app.config.listen;
    let admin_listen = app.config.admin.listen;
    let workers = app.config.workers;
    let https = app.config.issuer_url.scheme() == "https";
    let shutdown_timeout = u64::try_from(app.config.shutdown_timeout).unwrap_or(10);
    let routed = app.clone();
    let ids = Arc::new(RequestIds::new().map_err(std::io::Error::other)?);
    let server = HttpServer::new(move || {
        // Without an admin listener, every route is on the one listener.
        let gate = admin_listen.map(|admin| -> Gate {
            Box::new(move |req| crate::admin::on_wrong_listener(req, admin))
        });
        App::new()
            .wrap(RequestContext::new(
                routed.pages.clone(),
                routed.metrics.clone(),
                ids.clone(),
                https,
                gate,
            ))
            .configure(|cfg| routes(&routed, cfg))
    })
    .shutdown_timeout(shutdown_timeout)
    // Our own handler below: actix would stop at once on SIGINT.
    .disable_signals()
    .bind(listen)?;
    let server = match admin_listen {
        Some(addr) => {
            tracing::info!(%addr, "admin API listening");
            server.bind(addr)?
        }
        None => server,
    };
    let server = match workers {
        Some(n) => server.workers(n),
        None => server,
    };
    let owner = crate::secrets::random_id().map_err(std::io::Error::other)?;
    let sender = tokio::spawn(crate::oidc::backchannel::run_sender(
        app.clone(),
        owner.clone(),
    ));
    let mail_sender = app.mail.clone().map(|mail| crate::email::Sender {
        store: app.store.clone(),
        clock: app.clock.clone(),
        mail,
        owner: owner.clone(),
    });
    let mail_task = mail_sender.clone().map(|s| tokio::spawn(s.run()));
    tracing::info!(%listen, "listening");
    let server = server.run();
    let handle = server.handle();
    let signals = tokio::spawn(async move {
        match stop_signal().await {
            Ok(name) => {
                tracing::info!(signal = name, "shutting down: finishing requests in flight")
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for stop signals");
                return;
            }
        }
        handle.stop(true).await;
    });
    let result = server.await;
    signals.abort();
    sender.abort();
    if let Some(task) = mail_task {
        task.abort();
    }
    let mails = match &mail_sender {
        Some(s) => {
            s.deliver_due(tokio::time::Instant::now() + FINAL_OUTBOX_PASS)
                .await
        }
        None => 0,
    };
    let attempted = crate::oidc::backchannel::deliver_due(
        &app,
        &owner,
        tokio::time::Instant::now() + FINAL_OUTBOX_PASS,
    )
    .await;
    tracing::info!(logout_notices = attempted, mails, "stopped");
    result
}

/// Waits for SIGTERM or SIGINT; returns its name.
async fn stop_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
