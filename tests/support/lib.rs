//! Shared support for the end-to-end tests: the real `broker` binary on a random
//! loopback port with its own temporary data directory ([`Broker`]), a browser with a
//! cookie jar that logs in through the HTML form ([`Browser`]), headless Chromium over
//! WebDriver for the logins that need a real browser ([`Chrome`]), the registered test
//! clients ([`TestClient`]), raw calls to the token and userinfo endpoints, and a
//! relying party built on the `openidconnect` crate ([`RelyingParty`]).
//!
//! The binary is `target/debug/broker` beside this crate, or the file named by
//! `BROKER_BIN`. Build it first: `cargo build -p switchboard-broker --bin broker`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test support: a failed expectation is a failed test, with its message"
)]

mod backchannel;
mod broker;
mod browser;
mod chrome;
mod clients;
mod kdc;
mod pg;
mod plugins;
mod relying_party;
mod smtp;
pub mod totp;

pub use backchannel::{backchannel_receiver, backchannel_receiver_on};
pub use broker::{Broker, Setup, broker_binary, check_config, free_port, workspace_root};
pub use browser::{AuthResponse, Browser, Landing, LoginForm, Page, hidden_value};
pub use chrome::{Chrome, Element};
pub use clients::{
    ADMIN, AuthorizeRequest, BOB, EDDSA_APP, ES256_APP, NATIVE_APP, Pkce, SECOND_APP, TestClient,
    TestUser, TokenReply, UserinfoReply, WEB_APP, jwt_claims, jwt_header, jwt_stable_claims,
};
pub use kdc::{Kdc, REALM as KRB_REALM};
pub use pg::PgSchema;
pub use plugins::{
    PluginDir, as_plugin_section, built_plugin, descriptor_offset, inspect_plugin, plugin_section,
    replace_bytes, sha256_hex,
};
pub use relying_party::{RelyingParty, RpClient};
pub use smtp::{SinkMail, SmtpSink};

/// How long any single HTTP call of a test may take.
pub const HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
