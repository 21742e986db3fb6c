//! An authenticator app for the tests: RFC 6238 (SHA-1, six digits, 30-second
//! steps), written here independently of the broker, with the key read from the
//! broker's set-up page.

use aws_lc_rs::hmac;
use std::time::Duration;

const STEP_SECS: i64 = 30;

/// An authenticator app: the key from the set-up page, and the last time step whose
/// code it handed out (the broker accepts each step once, and steps within one of now).
#[derive(Debug)]
pub struct Authenticator {
    pub secret: Vec<u8>,
    last_step: Option<i64>,
}

pub fn now_step() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap() / STEP_SECS
}

/// RFC 6238 with SHA-1 and six digits, written here independently of the broker.
pub fn totp(secret: &[u8], step: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &u64::try_from(step).unwrap().to_be_bytes());
    let mac = mac.as_ref();
    let offset = usize::from(mac[19] & 0x0f);
    let word = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    format!("{:06}", word % 1_000_000)
}

impl Authenticator {
    pub fn from_key(text: &str) -> Self {
        let secret = data_encoding::BASE32_NOPAD
            .decode(text.trim().as_bytes())
            .unwrap_or_else(|e| panic!("the key {text:?} is base32: {e}"));
        assert_eq!(secret.len(), 20, "a 160-bit key");
        Authenticator {
            secret,
            last_step: None,
        }
    }

    /// The code of a step the broker has not seen yet: the step after the last one
    /// used (waiting for the clock when that is more than one step ahead of now).
    pub async fn next_code(&mut self) -> String {
        loop {
            let now = now_step();
            let step = self.last_step.map_or(now, |l| (l + 1).max(now));
            if step <= now + 1 {
                self.last_step = Some(step);
                return totp(&self.secret, step);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The code of the last step used: a replay.
    pub fn last_code(&self) -> String {
        totp(&self.secret, self.last_step.unwrap())
    }

    /// A six-digit code no step near now has.
    pub fn wrong_code(&self) -> String {
        let near: Vec<String> = (now_step() - 3..=now_step() + 3)
            .map(|s| totp(&self.secret, s))
            .collect();
        (0..1_000_000)
            .map(|n| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
            .find(|c| !near.contains(c))
            .unwrap()
    }
}
