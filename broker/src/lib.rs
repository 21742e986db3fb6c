//! Switchboard: an identity federation broker. Apps speak OpenID Connect to one issuer;
//! the broker speaks to many upstream identity providers through one trait API.

pub mod access;
pub mod account;
pub mod admin;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod email;
pub mod flow;
pub mod identity;
pub mod login;
pub mod metrics;
pub mod oidc;
pub mod providers;
pub mod rekey;
pub mod roles;
pub mod secrets;
pub mod sessions;
pub mod store;
pub mod tokens;
pub mod web;
