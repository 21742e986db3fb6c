//! Refresh retries within `refresh_reuse_grace` (issue 12, item 11): a client that
//! refreshes twice at once, or retries after its answer was lost (here: the broker
//! killed with -9 mid-request), keeps its login, and the family never holds two live
//! refresh tokens. Outside the window, a second use still revokes the family.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard_e2e::{ADMIN, Broker, Browser, TestClient, TokenReply, WEB_APP};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

async fn introspect(broker: &Broker, client: &TestClient, token: &str) -> Value {
    let res = broker
        .http()
        .post(broker.url("/introspect"))
        .basic_auth(client.id, client.secret)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// `count` refreshes of `token` released at the same instant.
async fn parallel_refreshes(broker: &Arc<Broker>, token: &str, count: usize) -> Vec<TokenReply> {
    let start = Arc::new(Barrier::new(count));
    let mut set = JoinSet::new();
    for _ in 0..count {
        let (broker, start, token) = (broker.clone(), start.clone(), token.to_string());
        set.spawn(async move {
            start.wait().await;
            broker.refresh(&WEB_APP, &token).await
        });
    }
    set.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_refreshes_within_the_default_grace_keep_the_login_with_one_live_token() {
    let broker = Arc::new(Broker::start().await);
    let first = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;

    let replies = parallel_refreshes(&broker, first.refresh_token(), 6).await;
    for reply in &replies {
        reply.assert_ok();
    }
    let mut live = Vec::new();
    let mut dead = Vec::new();
    for reply in &replies {
        let token = reply.refresh_token().to_string();
        match introspect(&broker, &WEB_APP, &token).await["active"].as_bool() {
            Some(true) => live.push(token),
            _ => dead.push(token),
        }
    }
    assert_eq!(live.len(), 1, "one family, one live refresh token");

    // A superseded token is refused, and that is no sign of theft: the family lives.
    for token in &dead {
        broker
            .refresh(&WEB_APP, token)
            .await
            .assert_error("invalid_grant");
    }
    let next = broker.refresh(&WEB_APP, &live[0]).await;
    next.assert_ok();
    broker
        .userinfo(next.access_token())
        .await
        .status
        .is_success()
        .then_some(())
        .expect("the login goes on");
}

#[tokio::test]
async fn a_retry_after_the_successor_was_used_is_reuse() {
    let broker = Broker::start().await;
    let first = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;
    let second = broker.refresh(&WEB_APP, first.refresh_token()).await;
    second.assert_ok();
    let third = broker.refresh(&WEB_APP, second.refresh_token()).await;
    third.assert_ok();

    // The first token's answer was plainly not lost: its successor was used.
    broker
        .refresh(&WEB_APP, first.refresh_token())
        .await
        .assert_error("invalid_grant");
    broker
        .refresh(&WEB_APP, third.refresh_token())
        .await
        .assert_error("invalid_grant");
}

#[tokio::test]
async fn a_retry_past_the_grace_is_reuse() {
    let broker = Broker::setup()
        .tokens("refresh_reuse_grace = \"1s\"")
        .start()
        .await;
    let first = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;
    let second = broker.refresh(&WEB_APP, first.refresh_token()).await;
    second.assert_ok();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    broker
        .refresh(&WEB_APP, first.refresh_token())
        .await
        .assert_error("invalid_grant");
    broker
        .refresh(&WEB_APP, second.refresh_token())
        .await
        .assert_error("invalid_grant");
}

/// One app's refresh chain: refreshes in a loop, and when an answer does not arrive
/// (the broker died) retries the same token, as a real client would.
async fn refresh_chain(
    http: reqwest::Client,
    token_url: reqwest::Url,
    mut token: String,
    stop: Arc<AtomicBool>,
) -> Result<(String, u32), String> {
    let mut refreshes = 0;
    let mut failures_in_a_row = 0;
    while !stop.load(Ordering::Relaxed) {
        let sent = http
            .post(token_url.clone())
            .basic_auth(WEB_APP.id, WEB_APP.secret)
            .form(&[("grant_type", "refresh_token"), ("refresh_token", &token)])
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let reply = match sent {
            Ok(res) => (res.status(), res.text().await),
            Err(_) => {
                failures_in_a_row += 1;
                if failures_in_a_row > 300 {
                    return Err("the broker never came back".into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        match reply {
            (StatusCode::OK, Ok(body)) => {
                let body: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
                token = body["refresh_token"]
                    .as_str()
                    .ok_or("no refresh_token")?
                    .to_string();
                refreshes += 1;
                failures_in_a_row = 0;
            }
            // The answer was cut off mid-body: as lost as no answer at all.
            (StatusCode::OK, Err(_)) => failures_in_a_row += 1,
            (status, body) => return Err(format!("refresh refused: {status} {body:?}")),
        }
    }
    Ok((token, refreshes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_under_refresh_load_loses_no_login() {
    const CHAINS: usize = 8;
    let mut broker = Broker::start().await;
    let mut tokens = Vec::new();
    for _ in 0..CHAINS {
        let signed_in = broker
            .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
            .await;
        tokens.push(signed_in.refresh_token().to_string());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::new();
    let mut chains = JoinSet::new();
    for token in tokens {
        chains.spawn(refresh_chain(
            http.clone(),
            broker.url("/token"),
            token,
            stop.clone(),
        ));
    }
    // Under load, kill -9 (answers in flight are lost, some after their rotation
    // committed), then start again on the same data.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    broker.stop();
    broker.restart().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for outcome in chains.join_all().await {
        let (token, refreshes) = outcome.expect("every chain keeps its login");
        total += refreshes;
        // Still alive after the crash: one more refresh works.
        broker.refresh(&WEB_APP, &token).await.assert_ok();
    }
    assert!(total > CHAINS as u32 * 4, "the load was real: {total}");
}
