#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

//! Back-channel logout deliveries survive a restart: the client's endpoint is down
//! when the person logs out, the broker that took the logout goes away (restarted on
//! SQLite; killed, with a second replica left, on PostgreSQL), the endpoint comes up,
//! and exactly one valid logout token arrives.

use reqwest::StatusCode;
use std::time::{Duration, Instant};
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, Broker, Browser, PgSchema, Setup, WEB_APP, free_port, jwt_claims,
    jwt_header,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Short timeouts and retries, so the test waits seconds, not minutes.
const OUTBOX: &str = "[backchannel_logout]\ntimeout = \"1s\"\nretry_delay = \"1s\"\nlease = \"3s\"\nmax_attempts = 30";

/// A setup whose web app takes back-channel logout at `port` (nothing listens yet).
fn with_backchannel(setup: Setup, port: u16) -> Setup {
    setup
        .client(
            WEB_APP.id,
            &format!("backchannel_logout_uri = \"http://127.0.0.1:{port}/backchannel\""),
        )
        .extra(OUTBOX)
}

/// Starts the client's back-channel endpoint on `port`: answers 200 to each POST and
/// hands over its body.
async fn endpoint(port: u16) -> mpsc::UnboundedReceiver<String> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        break None;
                    };
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            break Some(text[end + 4..end + 4 + length].to_string());
                        }
                    }
                };
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                if let Some(b) = body {
                    let _ = tx.send(b);
                }
            });
        }
    });
    rx
}

/// Logs in without `offline_access`, then logs out with the ID token as hint; returns
/// the ID token's claims.
async fn log_in_and_out(broker: &Broker) -> serde_json::Value {
    let browser = Browser::new(broker);
    let request = AuthorizeRequest::new(WEB_APP).scope("openid profile email");
    let response = browser.log_in(&request.url(broker), &ADMIN).await;
    let tokens = broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await;
    tokens.assert_ok();
    let id_token = tokens.id_token().to_string();
    let mut url = broker.url("/logout");
    url.query_pairs_mut()
        .append_pair("id_token_hint", &id_token);
    assert_eq!(browser.get_raw(&url).await.status(), StatusCode::OK);
    jwt_claims(&id_token)
}

/// Waits until `broker` logged a failed attempt (the endpoint is down).
async fn wait_for_failed_attempt(broker: &Broker) {
    broker.wait_for_log("back-channel logout failed").await;
}

/// The one logout token that arrives, checked against `verifier`'s JWKS and the ID
/// token it ends; and no second one within a few seconds.
async fn exactly_one_valid_token(
    bodies: &mut mpsc::UnboundedReceiver<String>,
    verifier: &Broker,
    id_claims: &serde_json::Value,
) {
    let body = tokio::time::timeout(Duration::from_secs(20), bodies.recv())
        .await
        .expect("a logout token within 20 s")
        .expect("a body");
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.to_string())
        .expect("a logout_token field");
    assert_eq!(jwt_header(&token)["typ"], "logout+jwt");
    let claims = verifier.verify_with_jwks(&token).await;
    assert_eq!(claims["iss"], verifier.issuer());
    assert_eq!(claims["aud"], WEB_APP.id);
    assert_eq!(claims["sub"], id_claims["sub"]);
    assert_eq!(
        claims["sid"], id_claims["sid"],
        "names the session that ended"
    );
    assert!(
        claims.get("nonce").is_none(),
        "a logout token never has a nonce"
    );
    assert!(
        claims["events"]
            .get("http://schemas.openid.net/event/backchannel-logout")
            .is_some()
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        claims["exp"].as_i64().unwrap() > now,
        "signed when sent, not when queued"
    );

    // Retries and the other replica's sender have had time to send it again.
    let quiet_until = Instant::now() + Duration::from_secs(5);
    if let Ok(Some(extra)) = tokio::time::timeout_at(quiet_until.into(), bodies.recv()).await {
        panic!("a second logout token arrived: {extra}");
    }
}

#[tokio::test]
async fn a_logout_notice_queued_before_a_restart_is_delivered_once_after_it() {
    let port = free_port();
    let mut broker = with_backchannel(Broker::setup(), port).start().await;
    let id_claims = log_in_and_out(&broker).await;
    wait_for_failed_attempt(&broker).await;

    broker.restart().await;
    let mut bodies = endpoint(port).await;
    exactly_one_valid_token(&mut bodies, &broker, &id_claims).await;
    assert!(broker.log().contains("back-channel logout delivered"));
}

#[tokio::test]
async fn another_replica_delivers_the_notice_of_one_that_died() {
    let Some(db) = PgSchema::fresh().await else {
        return;
    };
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{}", free_port());
    let replica = || {
        with_backchannel(
            Broker::setup().issuer(&issuer).extra(&db.store_toml()),
            port,
        )
        .extra("[secrets]\nmaster_key = \"c3dpdGNoYm9hcmQtcmVwbGljYXMtc2hhcmUtYS1rZXk=\"")
    };
    let mut a = replica().start().await;
    let b = replica().start().await;

    let id_claims = log_in_and_out(&a).await;
    wait_for_failed_attempt(&a).await;
    a.stop(); // kill -9: whatever A held, it holds until its lease ends

    let mut bodies = endpoint(port).await;
    exactly_one_valid_token(&mut bodies, &b, &id_claims).await;
    assert!(
        b.log().contains("back-channel logout delivered"),
        "{}",
        b.log()
    );
}

#[tokio::test]
async fn two_live_replicas_send_a_notice_once() {
    let Some(db) = PgSchema::fresh().await else {
        return;
    };
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{}", free_port());
    let replica = || {
        with_backchannel(
            Broker::setup().issuer(&issuer).extra(&db.store_toml()),
            port,
        )
        .extra("[secrets]\nmaster_key = \"c3dpdGNoYm9hcmQtcmVwbGljYXMtc2hhcmUtYS1rZXk=\"")
    };
    let a = replica().start().await;
    let b = replica().start().await;

    let id_claims = log_in_and_out(&a).await;
    wait_for_failed_attempt(&a).await;
    // Both replicas' senders now race for the notice at every tick.
    let mut bodies = endpoint(port).await;
    exactly_one_valid_token(&mut bodies, &b, &id_claims).await;
    let delivered = [&a, &b]
        .iter()
        .map(|r| r.log().matches("back-channel logout delivered").count())
        .sum::<usize>();
    assert_eq!(delivered, 1);
}

#[tokio::test]
async fn a_notice_is_given_up_after_its_last_attempt_and_never_sent_late() {
    let port = free_port();
    let broker = Broker::setup()
        .client(
            WEB_APP.id,
            &format!("backchannel_logout_uri = \"http://127.0.0.1:{port}/backchannel\""),
        )
        .extra("[backchannel_logout]\ntimeout = \"1s\"\nretry_delay = \"1s\"\nlease = \"3s\"\nmax_attempts = 2")
        .start()
        .await;
    let id_claims = log_in_and_out(&broker).await;
    broker.wait_for_log("back-channel logout abandoned").await;
    let log = broker.log();
    assert_eq!(
        log.matches("back-channel logout failed").count(),
        1,
        "{log}"
    );
    let abandoned = log
        .lines()
        .find(|l| l.contains("back-channel logout abandoned"))
        .unwrap();
    assert!(
        abandoned.contains(WEB_APP.id),
        "names the client: {abandoned}"
    );
    assert!(
        abandoned.contains(id_claims["sub"].as_str().unwrap()),
        "names the user: {abandoned}"
    );

    let mut bodies = endpoint(port).await;
    let late = tokio::time::timeout(Duration::from_secs(4), bodies.recv()).await;
    assert!(late.is_err(), "a given-up notice is never sent: {late:?}");
}

#[tokio::test]
async fn disabling_a_user_sends_back_channel_logout_for_their_live_sessions() {
    let port = free_port();
    let mut bodies = endpoint(port).await;
    let broker = with_backchannel(Broker::setup(), port).start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).scope("openid profile email");
    let response = browser.log_in(&request.url(&broker), &ADMIN).await;
    let tokens = broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await;
    tokens.assert_ok();
    let id_claims = jwt_claims(tokens.id_token());
    // The operator's CLI writes to the store of the running broker, whose sender
    // finds the queued notice on its next pass.
    broker.user_command(&["disable", id_claims["sub"].as_str().unwrap()], "");
    exactly_one_valid_token(&mut bodies, &broker, &id_claims).await;
}

#[tokio::test]
async fn an_operator_ending_a_users_sessions_sends_back_channel_logout() {
    let port = free_port();
    let mut bodies = endpoint(port).await;
    let broker = with_backchannel(Broker::setup(), port).start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).scope("openid profile email");
    let response = browser.log_in(&request.url(&broker), &ADMIN).await;
    let tokens = broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await;
    tokens.assert_ok();
    let id_claims = jwt_claims(tokens.id_token());
    broker.user_command(
        &["set-password", id_claims["sub"].as_str().unwrap()],
        "a brand new password\n",
    );
    exactly_one_valid_token(&mut bodies, &broker, &id_claims).await;
}
