//! The machine's own ceilings that `scripts/bench` divides the broker's figures by:
//! raw RSA-2048 PKCS#1 v1.5 SHA-256 signatures per second (what an RS256 token costs
//! at least) and argon2id verifications per second of the demo user's hash (what a
//! password login costs at least), each on every core for a few seconds.
//!
//!     cargo run --release -p switchboard-broker --example raw_rates -- rsa-sign 2 5
//!     cargo run --release -p switchboard-broker --example raw_rates -- argon2-verify 2 5
//!
//! Prints one number: operations per second, all threads together.

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The demo user's hash in config/broker.toml: the parameters a login really pays.
const DEMO_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$dL0uCXJvWII5FsUebB5CmA$Bba2qKpU1xbYlyVtuWXTlwQ4NGcD1ZyAM81YaaCYdgo";
const DEMO_PASSWORD: &str = "password";

/// About the size of a client_credentials token's signing input.
const SIGNING_INPUT: [u8; 420] = [b'e'; 420];

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: raw_rates (rsa-sign|argon2-verify) THREADS SECONDS";
    let what = args.next().ok_or(usage)?;
    let threads: usize = args.next().ok_or(usage)?.parse()?;
    let seconds: f64 = args.next().ok_or(usage)?.parse()?;
    let run_for = Duration::from_secs_f64(seconds);
    let rate = match what.as_str() {
        "rsa-sign" => {
            let key = Arc::new(RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| e.to_string())?);
            per_second(threads, run_for, move || {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    &SIGNING_INPUT,
                    &mut signature,
                )
                .map_err(|e| e.to_string())?;
                Ok(())
            })?
        }
        "argon2-verify" => per_second(threads, run_for, || {
            let hash = PasswordHash::new(DEMO_HASH).map_err(|e| e.to_string())?;
            Argon2::default()
                .verify_password(DEMO_PASSWORD.as_bytes(), &hash)
                .map_err(|e| e.to_string())?;
            Ok(())
        })?,
        _ => return Err(usage.into()),
    };
    println!("{rate:.1}");
    Ok(())
}

/// Runs `op` in a loop on `threads` threads for `run_for`; operations per second.
fn per_second<F>(threads: usize, run_for: Duration, op: F) -> Result<f64, Failure>
where
    F: Fn() -> Result<(), Failure> + Send + Sync + Clone + 'static,
{
    let started = Instant::now();
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let op = op.clone();
            std::thread::spawn(move || -> Result<u64, Failure> {
                let mut done = 0u64;
                while started.elapsed() < run_for {
                    op()?;
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker.join().map_err(|_| "a worker panicked")??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
