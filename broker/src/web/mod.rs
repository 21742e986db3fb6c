//! Plumbing every endpoint shares and none owns: the state handlers see, request ids
//! and security headers, the client's address, the browser's cookies, pages (themes,
//! message catalogues and the request's language) with one typed page error, and a
//! parameter extractor. Nothing here imports an endpoint
//! module (`oidc`, `login`, `account`) or the login transaction (`flow`).

pub mod browser;
pub mod client_ip;
pub mod i18n;
pub mod middleware;
pub mod pages;
pub mod params;
pub mod theme;

pub use i18n::Text;
pub use pages::{PageError, Pages};
pub use params::Params;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::providers::ProviderRegistry;
use crate::secrets::MasterKey;
use crate::sessions::CookiePolicy;
use crate::store::SharedStore;
use crate::tokens::TokenSigner;
use crate::tokens::keyring::Keyring;
use crate::tokens::live::LiveTokenCache;
use crate::tokens::status::TokenStatus;
use actix_web::HttpResponse;
use std::sync::Arc;

/// Everything a handler may use. Cheap to clone. Bound as `app` in handlers, so it is
/// never confused with an OAuth `state`.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: SharedStore,
    pub clock: SharedClock,
    pub master: Arc<MasterKey>,
    pub keyring: Arc<Keyring>,
    pub signer: TokenSigner,
    pub providers: Arc<ProviderRegistry>,
    pub cookies: CookiePolicy,
    pub pages: Arc<Pages>,
    pub discovery: Arc<String>,
    pub oauth_metadata: Arc<String>,
    /// Outbound HTTP (back-channel logout): timeouts on, redirects off.
    pub http: reqwest::Client,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// What was learnt lately about live access tokens.
    pub live_tokens: Arc<LiveTokenCache>,
    /// Wakes the back-channel logout sender when notices were queued.
    pub logout_outbox: Arc<tokio::sync::Notify>,
    /// Outgoing mail; `None` without an `[email]` section.
    pub mail: Option<Arc<crate::email::Mail>>,
}

impl AppState {
    /// Token status checks as of now.
    pub fn token_status(&self) -> TokenStatus<'_> {
        TokenStatus {
            store: &self.store,
            signer: &self.signer,
            policy: &self.config.roles,
            live: &self.live_tokens,
            now: self.clock.now(),
        }
    }
}

/// A 303 to a page of ours; never cached.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", location))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}
