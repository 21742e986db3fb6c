//! A load generator for whole password logins, for `scripts/bench`: each login is a
//! fresh browser (no cookies) walking the authorization code flow of the demo config —
//! `/authorize`, the password form, the redirect back with a code — and redeeming the
//! code at `/token`, on CONCURRENCY connections for SECONDS.
//!
//!     cargo run --release -p switchboard-broker --example login_load -- \
//!         http://127.0.0.1:8080 10 16
//!
//! Prints logins per second, then the p50 and p99 of one login in milliseconds; any
//! failed login stops the run with the reason.

use regex::Regex;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, StatusCode, redirect};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENT_ID: &str = "example-app";
const CLIENT_SECRET: &str = "example-secret";
const REDIRECT_URI: &str = "http://127.0.0.1:5555/callback";
const USERNAME: &str = "admin@example.com";
const PASSWORD: &str = "password";
/// A fixed PKCE pair (the challenge is the verifier's SHA-256, base64url) is enough to
/// measure the broker.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

type Failure = Box<dyn std::error::Error + Send + Sync>;

struct Page {
    field: Regex,
    action: Regex,
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: login_load BASE_URL SECONDS CONCURRENCY";
    let base = args.next().ok_or(usage)?;
    let seconds: f64 = args.next().ok_or(usage)?.parse()?;
    let concurrency: usize = args.next().ok_or(usage)?.parse()?;
    let client = Client::builder()
        .use_preconfigured_tls(switchboard_upstream::tls::client_config()?)
        .redirect(redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?;
    let page = Arc::new(Page {
        field: Regex::new(r#"name="([a-z_]+)"\s+value="([^"]*)""#)?,
        action: Regex::new(r#"<form[^>]*action="([^"]*)""#)?,
    });
    let started = Instant::now();
    let run_for = Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (client, base, page) = (client.clone(), base.clone(), page.clone());
            tokio::spawn(async move {
                let mut took = Vec::new();
                while started.elapsed() < run_for {
                    let one = Instant::now();
                    log_in(&client, &base, &page).await?;
                    took.push(one.elapsed());
                }
                Ok::<_, Failure>(took)
            })
        })
        .collect();
    let mut took = Vec::new();
    for worker in workers {
        took.extend(worker.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    took.sort();
    let percentile = |p: f64| {
        took.get(((took.len() as f64 * p) as usize).min(took.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{:.1} {:.1} {:.1}",
        took.len() as f64 / elapsed,
        percentile(0.5),
        percentile(0.99)
    );
    Ok(())
}

/// One login from a cookie-less browser, ending with tokens.
async fn log_in(client: &Client, base: &str, page: &Page) -> Result<(), Failure> {
    let mut cookies = BTreeMap::new();
    let mut url = format!(
        "{base}/authorize?client_id={CLIENT_ID}&response_type=code&scope=openid&redirect_uri={REDIRECT_URI}&state=load&code_challenge={CHALLENGE}&code_challenge_method=S256"
    );
    // The authorization request lands on the password form, possibly by redirects.
    let html = loop {
        let res = with_cookies(client.get(&url), &cookies).send().await?;
        keep_cookies(&res, &mut cookies);
        if res.status().is_redirection() {
            url = absolute(base, location(&res)?);
            continue;
        }
        if res.status() != StatusCode::OK {
            return Err(format!("{url} answered {}", res.status()).into());
        }
        break res.text().await?;
    };
    let action = page
        .action
        .captures(&html)
        .map(|c| absolute(base, c[1].replace("&amp;", "&")))
        .ok_or("no form on the login page")?;
    let mut form: Vec<(String, String)> = page
        .field
        .captures_iter(&html)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .filter(|(name, _)| name != "username" && name != "password")
        .collect();
    form.push(("username".into(), USERNAME.into()));
    form.push(("password".into(), PASSWORD.into()));
    let res = with_cookies(client.post(&action), &cookies)
        .form(&form)
        .send()
        .await?;
    let back = location(&res)?;
    let code = url::Url::parse(&back)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| format!("the login did not end with a code ({})", res.status()))?;
    let res = client
        .post(format!("{base}/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await?;
    if res.status() != StatusCode::OK {
        return Err(format!("/token answered {}", res.status()).into());
    }
    Ok(())
}

fn with_cookies(
    req: reqwest::RequestBuilder,
    cookies: &BTreeMap<String, String>,
) -> reqwest::RequestBuilder {
    if cookies.is_empty() {
        return req;
    }
    let header = cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    req.header(COOKIE, header)
}

fn keep_cookies(res: &reqwest::Response, cookies: &mut BTreeMap<String, String>) {
    for set in res.headers().get_all(SET_COOKIE) {
        let Ok(set) = set.to_str() else { continue };
        let pair = set.split(';').next().unwrap_or_default();
        if let Some((name, value)) = pair.split_once('=') {
            cookies.insert(name.trim().to_string(), value.trim().to_string());
        }
    }
}

fn location(res: &reqwest::Response) -> Result<String, Failure> {
    Ok(res
        .headers()
        .get(LOCATION)
        .ok_or_else(|| format!("{} without a Location", res.status()))?
        .to_str()?
        .to_string())
}

fn absolute(base: &str, target: String) -> String {
    if target.starts_with("http") {
        target
    } else {
        format!("{base}{target}")
    }
}
