//! Two broker replicas on one PostgreSQL schema behind one issuer URL, as behind a
//! load balancer: a login begun on one finishes on the other, a refresh on one sees a
//! rotation on the other, a key made by one is published by both, a revocation on one
//! stops the token on the other at once although both cache it, and killing one
//! (`kill -9`) under a stream of logins and refreshes loses nothing that was answered.
//!
//! The server is `SWITCHBOARD_TEST_POSTGRES_URL` (default
//! `postgres://root@127.0.0.1:5432/test`); each test uses a fresh schema and drops it.
//! Without a server the tests skip, unless `SWITCHBOARD_REQUIRE_PEERS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, Broker, Browser, LoginForm, Setup, WEB_APP, free_port, jwt_header,
};
use tokio::task::JoinSet;
use url::Url;

const DEFAULT_URL: &str = "postgres://root@127.0.0.1:5432/test";

/// Both replicas seal and open the signing keys they share with this one master key.
const MASTER_KEY: &str = "c3dpdGNoYm9hcmQtcmVwbGljYXMtc2hhcmUtYS1rZXk=";

/// A schema of its own on the test server, dropped when the test ends.
struct Database {
    url: String,
    schema: String,
}

impl Database {
    /// `None` (the test skips) when the server does not answer, unless peers are
    /// required.
    async fn fresh() -> Option<Database> {
        let url = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_URL.to_string());
        match sqlx::PgConnection::connect(&url).await {
            Ok(conn) => conn.close().await.unwrap(),
            Err(e) if std::env::var("SWITCHBOARD_REQUIRE_PEERS").as_deref() == Ok("1") => {
                panic!("PostgreSQL (SWITCHBOARD_TEST_POSTGRES_URL) is required: {e}")
            }
            Err(e) => {
                eprintln!(
                    "skipped: PostgreSQL (SWITCHBOARD_TEST_POSTGRES_URL) is unreachable: {e}"
                );
                return None;
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let schema = format!("sb_e2e_{}_{nanos}", std::process::id());
        Some(Database { url, schema })
    }

    /// A replica's setup: this database, the shared master key and `issuer`. The URL
    /// goes through the environment, as a deployment's secret would.
    fn replica(&self, issuer: &str) -> Setup {
        Broker::setup()
            .issuer(issuer)
            .env("SWITCHBOARD_TEST_DATABASE_URL", &self.url)
            .extra(&format!(
                "[store]\nbackend = \"postgres\"\nurl_env = \"SWITCHBOARD_TEST_DATABASE_URL\"\n\
                 schema = \"{}\"\nmax_connections = 8\n\n[secrets]\nmaster_key = \"{MASTER_KEY}\"",
                self.schema
            ))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // A drop cannot await: a thread with its own runtime does it.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut conn = sqlx::PgConnection::connect(&url).await?;
                    sqlx::query("SET lock_timeout = '5s'")
                        .execute(&mut conn)
                        .await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                    )))
                    .execute(&mut conn)
                    .await?;
                    conn.close().await
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop schema {}: {dropped:?}", self.schema);
        }
    }
}

/// The address of the load balancer the replicas sit behind: the issuer both answer
/// as. Nothing listens there; the tests talk to each replica directly.
fn shared_issuer() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// Two replicas on `db`, started one after the other (the second finds the schema
/// made and migrated).
async fn two_replicas(db: &Database, tune: impl Fn(Setup) -> Setup) -> (Broker, Broker) {
    let issuer = shared_issuer();
    let a = tune(db.replica(&issuer)).start().await;
    let b = tune(db.replica(&issuer)).start().await;
    (a, b)
}

/// `url` moved to `broker`'s listener, path and query kept.
fn at(broker: &Broker, url: &Url) -> Url {
    let mut moved = broker.url(url.path());
    moved.set_query(url.query());
    moved
}

#[tokio::test]
async fn a_login_begun_on_one_replica_finishes_on_the_other() {
    let Some(db) = Database::fresh().await else {
        return;
    };
    let (a, b) = two_replicas(&db, |s| s).await;
    assert_eq!(a.issuer(), b.issuer());

    // The form comes from A; the person's answer lands on B (the load balancer
    // picked another replica), which finds the pending request A stored.
    let browser = Browser::new(&a);
    let request = AuthorizeRequest::new(WEB_APP).scope("openid email offline_access");
    let form = browser.open(&request.url(&a)).await.expect_form();
    let on_b = LoginForm {
        action: at(&b, &form.action),
        ..form
    };
    let response = browser
        .submit(&on_b, ADMIN.username, ADMIN.password)
        .await
        .expect_client();
    assert_eq!(response.state(), Some(request.state.as_str()));

    // The code B issued is redeemed at A, and A's tokens are good at B.
    let tokens = a
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await;
    tokens.assert_ok();
    for replica in [&a, &b] {
        let claims = replica.verify_with_jwks(tokens.id_token()).await;
        assert_eq!(claims["sub"], ADMIN.id);
    }
    let info = b.userinfo(tokens.access_token()).await;
    assert_eq!(info.status, StatusCode::OK, "{info:?}");

    // The code is spent for both: a replay at B is refused.
    b.redeem(&WEB_APP, response.code(), request.verifier())
        .await
        .assert_error("invalid_grant");
    for replica in [&a, &b] {
        assert!(
            !replica.log().contains(&db.url),
            "the database URL is a secret, never logged:\n{}",
            replica.log()
        );
    }
}

#[tokio::test]
async fn a_refresh_on_one_replica_sees_a_rotation_on_the_other() {
    let Some(db) = Database::fresh().await else {
        return;
    };
    let (a, b) = two_replicas(&db, |s| s).await;
    let first = a.sign_in(&Browser::new(&a), &WEB_APP, &ADMIN).await;

    let t0 = first.refresh_token().to_string();
    let on_b = b.refresh(&WEB_APP, &t0).await;
    on_b.assert_ok();
    let t1 = on_b.refresh_token().to_string();
    // A takes the successor B issued...
    let on_a = a.refresh(&WEB_APP, &t1).await;
    on_a.assert_ok();
    let t2 = on_a.refresh_token().to_string();
    let again_on_b = b.refresh(&WEB_APP, &t2).await;
    again_on_b.assert_ok();
    let t3 = again_on_b.refresh_token().to_string();

    // ...and knows that B spent t0, and A itself t1, whose successor is used: showing
    // t1 again is reuse, which revokes the family everywhere.
    a.refresh(&WEB_APP, &t1).await.assert_error("invalid_grant");
    b.refresh(&WEB_APP, &t3).await.assert_error("invalid_grant");
    a.refresh(&WEB_APP, &t0).await.assert_error("invalid_grant");
}

/// Each replica keeps what it learnt about a live token for a minute here, yet a
/// revocation on A stops the token on B within moments: B hears of it (LISTEN/NOTIFY)
/// instead of waiting out its cache.
#[tokio::test]
async fn a_revocation_on_one_replica_stops_the_token_on_the_other_at_once() {
    const NOTICE: Duration = Duration::from_secs(3);
    let Some(db) = Database::fresh().await else {
        return;
    };
    let (a, b) = two_replicas(&db, |s| s.tokens("status_cache_lifetime = \"60s\"")).await;
    let tokens = a.sign_in(&Browser::new(&a), &WEB_APP, &ADMIN).await;
    let access = tokens.access_token();
    // B learns the token is live, and keeps that.
    for _ in 0..2 {
        assert_eq!(b.introspect(&WEB_APP, access).await["active"], true);
        assert_eq!(b.userinfo(access).await.status, StatusCode::OK);
    }

    a.revoke(&WEB_APP, access).await;
    let revoked = Instant::now();
    loop {
        let active = b.introspect(&WEB_APP, access).await["active"] == true;
        if !active {
            break;
        }
        assert!(
            revoked.elapsed() < NOTICE,
            "B still calls the token active {NOTICE:?} after A revoked it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.userinfo(access).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.userinfo(access).await.status, StatusCode::UNAUTHORIZED);
}

fn kid(token: &str) -> String {
    jwt_header(token)["kid"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_by_one_replica_is_published_by_both() {
    const WATCH: Duration = Duration::from_secs(60);
    let Some(db) = Database::fresh().await else {
        return;
    };
    let (a, b) = two_replicas(&db, |s| {
        s.tokens("key_rotation_period = \"12s\"")
            .tokens("jwks_cache_lifetime = \"3s\"")
    })
    .await;
    let (kids_a, kids_b) = (a.jwks_kids().await, b.jwks_kids().await);
    assert_eq!(
        kids_a.iter().collect::<BTreeSet<_>>(),
        kids_b.iter().collect::<BTreeSet<_>>(),
        "both publish the keys in the store"
    );
    let initial: BTreeSet<String> = kids_a.into_iter().collect();

    // Refresh on each replica in turn until one signs with a key that was not there at
    // the start: whichever replica made it, the other must publish it already.
    let mut token = a
        .sign_in(&Browser::new(&a), &WEB_APP, &ADMIN)
        .await
        .refresh_token()
        .to_string();
    let mut rotated_on = BTreeSet::new();
    let deadline = Instant::now() + WATCH;
    let mut turn = 0usize;
    while rotated_on.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no new key signed on both replicas within {WATCH:?}"
        );
        let (signer, other, name) = match turn % 2 {
            0 => (&a, &b, "a"),
            _ => (&b, &a, "b"),
        };
        turn += 1;
        let reply = signer.refresh(&WEB_APP, &token).await;
        reply.assert_ok();
        token = reply.refresh_token().to_string();
        let signed_with = kid(reply.id_token());
        if initial.contains(&signed_with) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        assert!(
            other.jwks_kids().await.contains(&signed_with),
            "replica {name} signed with {signed_with}, which the other does not publish"
        );
        for replica in [&a, &b] {
            replica.verify_with_jwks(reply.id_token()).await;
            replica.verify_with_jwks(reply.access_token()).await;
        }
        rotated_on.insert(name);
    }
}

/// One app's refresh chain across both replicas: each refresh goes to the other
/// replica than the last; an answer that does not arrive (its replica died) is retried
/// with the same token at the other one, as a client behind a load balancer would.
/// Returns its last token and how many refreshes were answered.
async fn refresh_chain(
    http: reqwest::Client,
    token_urls: [Url; 2],
    mut token: String,
    mut turn: usize,
    stop: Arc<AtomicBool>,
) -> Result<(String, u32), String> {
    let mut answered = 0;
    let mut failures_in_a_row = 0;
    while !stop.load(Ordering::Relaxed) {
        turn += 1;
        let sent = http
            .post(token_urls[turn % 2].clone())
            .basic_auth(WEB_APP.id, WEB_APP.secret)
            .form(&[("grant_type", "refresh_token"), ("refresh_token", &token)])
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let reply = match sent {
            Ok(res) => (res.status(), res.text().await),
            Err(_) => (StatusCode::BAD_GATEWAY, Ok(String::new())),
        };
        match reply {
            (StatusCode::OK, Ok(body)) => {
                let body: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
                token = body["refresh_token"]
                    .as_str()
                    .ok_or("no refresh_token")?
                    .to_string();
                answered += 1;
                failures_in_a_row = 0;
            }
            // No answer, or one cut off mid-body: lost; the next turn retries it at the
            // other replica.
            (StatusCode::OK | StatusCode::BAD_GATEWAY, _) => {
                failures_in_a_row += 1;
                if failures_in_a_row > 100 {
                    return Err("no replica answers".into());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (status, body) => return Err(format!("refresh refused: {status} {body:?}")),
        }
    }
    Ok((token, answered))
}

/// What a stream of fresh logins got: the refresh token of every login answered with
/// tokens, and the logins that failed on the way, by replica.
#[derive(Debug, Default)]
struct Logins {
    tokens: Vec<String>,
    failed: [usize; 2],
}

/// Fresh password logins, each on the other replica than the last. A login that fails
/// on the way (its replica died) is lost, and that replica is used no more, as a load
/// balancer takes a dead replica out.
async fn login_stream(replicas: [Arc<Broker>; 2], stop: Arc<AtomicBool>) -> Logins {
    let mut logins = Logins::default();
    let mut turn = 0usize;
    while !stop.load(Ordering::Relaxed) {
        turn += 1;
        let i = turn % 2;
        if logins.failed[i] > 0 {
            continue;
        }
        let replica = replicas[i].clone();
        // A login on a dying replica panics somewhere in the support code (no
        // answer): as a task of its own, only this attempt is lost.
        let attempt = tokio::spawn(async move {
            replica
                .sign_in(&Browser::new(&replica), &WEB_APP, &ADMIN)
                .await
                .refresh_token()
                .to_string()
        });
        match attempt.await {
            Ok(token) => logins.tokens.push(token),
            Err(_) => logins.failed[i] += 1,
        }
    }
    logins
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_one_replica_under_load_loses_nothing_answered() {
    const CHAINS: usize = 6;
    let Some(db) = Database::fresh().await else {
        return;
    };
    let (a, b) = two_replicas(&db, |s| s).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut first_tokens = Vec::new();
    for i in 0..CHAINS {
        let replica = if i % 2 == 0 { &a } else { &b };
        let signed_in = replica
            .sign_in(&Browser::new(replica), &WEB_APP, &ADMIN)
            .await;
        first_tokens.push(signed_in.refresh_token().to_string());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::new();
    let mut chains = JoinSet::new();
    for (i, token) in first_tokens.into_iter().enumerate() {
        chains.spawn(refresh_chain(
            http.clone(),
            [a.url("/token"), b.url("/token")],
            token,
            i,
            stop.clone(),
        ));
    }
    let logins = tokio::spawn(login_stream([b.clone(), a.clone()], stop.clone()));

    // Under load, kill -9 replica A: answers in flight are lost, some after their
    // rotation committed. B goes on alone.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let pid = a.pid().expect("replica A runs");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for outcome in chains.join_all().await {
        let (token, answered) = outcome.expect("every chain keeps its login");
        total += answered;
        // Its last answered token is good at the replica still up.
        b.refresh(&WEB_APP, &token).await.assert_ok();
    }
    assert!(total > CHAINS as u32 * 4, "the load was real: {total}");
    let logins = logins.await.unwrap();
    assert_eq!(
        logins.failed[0], 0,
        "B, never killed, failed logins: {logins:?}"
    );
    assert!(logins.tokens.len() > 2, "logins went on: {logins:?}");
    for token in &logins.tokens {
        // Every login answered with tokens left a usable refresh token.
        b.refresh(&WEB_APP, token).await.assert_ok();
    }
    // B answers after A's death, and A's end is really a crash.
    b.sign_in(&Browser::new(&b), &WEB_APP, &ADMIN).await;
    assert!(
        a.http().get(a.url("/healthz")).send().await.is_err(),
        "replica A is dead"
    );
}
