//! The rustls client configuration of every upstream HTTP client: the aws-lc-rs
//! crypto provider, passed explicitly, and the roots reqwest's `rustls-tls` and
//! `rustls-tls-native-roots` features trusted before (Mozilla's bundle and the
//! system's store).
//!
//! reqwest 0.12 can only pick ring itself, or the process-wide default provider
//! (which a plugin's own copy of rustls never sees, and which panics to build when
//! both ring and aws-lc-rs are compiled in). So the configuration is built here with
//! its provider named and handed to reqwest preconfigured.

use rustls::{ClientConfig, RootCertStore};
use std::sync::{Arc, LazyLock};

/// Mozilla's roots plus the system's, read once per process.
static ROOTS: LazyLock<Arc<RootCertStore>> = LazyLock::new(|| {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // An unreadable or odd system store is not fatal: the bundled roots remain.
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    Arc::new(roots)
});

/// A client configuration with the aws-lc-rs provider and the default roots.
pub fn client_config() -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(ROOTS.clone())
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_uses_aws_lc_rs_and_trusts_the_bundled_roots() {
        let config = client_config().unwrap();
        let aws_lc = rustls::crypto::aws_lc_rs::default_provider();
        let suites = |p: &rustls::crypto::CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        };
        assert_eq!(suites(config.crypto_provider()), suites(&aws_lc));
        assert!(ROOTS.len() >= webpki_roots::TLS_SERVER_ROOTS.len());
    }
}
