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

/// Counts this attempt; false when the account or the address is over its limit.
pub async fn admit(
    store: &SharedStore,
    s: &LoginSettings,
    keys: &Keys,
    now: UnixTime,
) -> Result<bool, StoreError> {
    let account = store.hit(&keys.account, s.throttle_window, now).await?;
    let ip = match &keys.ip {
        Some(k) => store.hit(k, s.throttle_window, now).await?,
        None => 0,
    };
    Ok(account <= s.max_failures_per_account && ip <= s.max_failures_per_ip)
}

/// A successful login clears the account's counter (not the address's).
pub async fn succeeded(store: &SharedStore, keys: &Keys) -> Result<(), StoreError> {
    store.clear(&keys.account).await
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
            provider_timeout: 15,
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
    async fn one_address_trying_many_accounts_is_throttled() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..5 {
            assert!(
                admit(
                    &store,
                    &settings(),
                    &Keys::new("local", &format!("u{i}"), Some(ip)),
                    1
                )
                .await
                .unwrap()
            );
        }
        assert!(
            !admit(&store, &settings(), &Keys::new("local", "u9", Some(ip)), 1)
                .await
                .unwrap()
        );
    }
}
