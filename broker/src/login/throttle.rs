//! Password-attempt throttling per account and per client address, with counters in
//! the store so replicas share them. The per-account limit stays below common Active
//! Directory lockout thresholds, so Switchboard never locks anyone out upstream.

use crate::config::LoginSettings;
use crate::store::{SharedStore, StoreError, UnixTime};
use std::net::IpAddr;

pub struct Keys {
    account: String,
    ip: Option<String>,
}

impl Keys {
    pub fn new(provider_id: &str, username: &str, ip: Option<IpAddr>) -> Self {
        // Hash the username: throttle keys are not a place to keep who tried to log in.
        let account = crate::secrets::hash_secret(&username.to_lowercase());
        Keys {
            account: format!("acct:{provider_id}:{account}"),
            ip: ip.map(|ip| format!("ip:{ip}")),
        }
    }
}

/// Counts this attempt against the account; false when the account or the address
/// is over its limit. Every attempt counts for the account up front (so parallel
/// guesses cannot slip past the limit) and a success clears it; the address counts
/// failures only, so many people behind one NAT can still log in.
pub async fn admit(
    store: &SharedStore,
    s: &LoginSettings,
    keys: &Keys,
    now: UnixTime,
) -> Result<bool, StoreError> {
    if let Some(ip) = &keys.ip
        && store.current(ip, now).await? >= s.max_failures_per_ip
    {
        return Ok(false);
    }
    let account = store.hit(&keys.account, s.throttle_window, now).await?;
    Ok(account <= s.max_failures_per_account)
}

/// A successful login clears the account's counter.
pub async fn succeeded(store: &SharedStore, keys: &Keys) -> Result<(), StoreError> {
    store.clear(&keys.account).await
}

/// A failed login counts against the address.
pub async fn failed(
    store: &SharedStore,
    s: &LoginSettings,
    keys: &Keys,
    now: UnixTime,
) -> Result<(), StoreError> {
    if let Some(ip) = &keys.ip {
        store.hit(ip, s.throttle_window, now).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use std::sync::Arc;

    fn settings() -> LoginSettings {
        LoginSettings {
            request_lifetime: 600,
            throttle_window: 60,
            max_failures_per_account: 3,
            max_failures_per_ip: 5,
            max_starts_per_ip: 300,
            provider_timeout: std::time::Duration::from_secs(15),
        }
    }

    #[tokio::test]
    async fn account_is_throttled_after_its_limit_and_freed_after_the_window() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let keys = Keys::new("local", "Ada", None);
        for _ in 0..3 {
            assert!(admit(&store, &settings(), &keys, 100).await.unwrap());
        }
        assert!(!admit(&store, &settings(), &keys, 100).await.unwrap());
        assert!(
            !admit(&store, &settings(), &Keys::new("local", "ada", None), 101)
                .await
                .unwrap(),
            "case-insensitive"
        );
        assert!(
            admit(&store, &settings(), &keys, 161).await.unwrap(),
            "new window"
        );
    }

    #[tokio::test]
    async fn one_address_failing_on_many_accounts_is_throttled() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..5 {
            let keys = Keys::new("local", &format!("u{i}"), Some(ip));
            assert!(admit(&store, &settings(), &keys, 1).await.unwrap());
            failed(&store, &settings(), &keys, 1).await.unwrap();
        }
        let next = Keys::new("local", "u9", Some(ip));
        assert!(!admit(&store, &settings(), &next, 1).await.unwrap());
    }

    #[tokio::test]
    async fn successful_logins_from_one_address_are_never_throttled() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..20 {
            let keys = Keys::new("local", &format!("u{i}"), Some(ip));
            assert!(
                admit(&store, &settings(), &keys, 1).await.unwrap(),
                "login {i}"
            );
            succeeded(&store, &keys).await.unwrap();
        }
    }
}
