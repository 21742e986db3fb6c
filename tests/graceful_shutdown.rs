#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

//! Graceful shutdown: on SIGTERM (or SIGINT) the broker stops accepting, lets a
//! request in flight finish, and exits 0 within `[server] shutdown_timeout` plus the
//! last back-channel logout pass.

use std::time::{Duration, Instant};
use switchboard_e2e::Broker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A `/token` request whose body is sent in two halves: it is in flight between them.
async fn request_in_flight(broker: &Broker) -> (TcpStream, &'static [u8]) {
    let body: &'static [u8] = b"grant_type=authorization_code&code=nope&client_id=nobody";
    let addr = broker.url("/").socket_addrs(|| None).unwrap()[0];
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    stream.flush().await.unwrap();
    (stream, &body[10..])
}

async fn finishes_in_flight_and_exits_cleanly(signal: &'static str) {
    let mut broker = Broker::setup()
        .server("shutdown_timeout = \"5s\"")
        .start()
        .await;
    let (mut stream, rest) = request_in_flight(&broker).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let addr = broker.url("/").socket_addrs(|| None).unwrap()[0];
    let stop = broker.signal_and_wait(signal, Duration::from_secs(15));
    // The request finishes while the broker is stopping.
    let finish = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stream.write_all(rest).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).to_string()
    };
    // New connections are refused soon after the signal, while the request above is
    // still unfinished.
    let refused = async {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match TcpStream::connect(addr).await {
                Err(_) => return true,
                Ok(_) if Instant::now() > deadline => return false,
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    let (status, answer, refused) = tokio::join!(stop, finish, refused);
    assert!(
        refused,
        "the broker still accepted connections after SIG{signal}"
    );
    let elapsed = started.elapsed();

    assert!(
        answer.starts_with("HTTP/1.1 4"),
        "the request in flight got its answer: {answer:?}"
    );
    assert!(
        answer.contains("invalid_"),
        "the token endpoint's own error: {answer}"
    );
    let status = status.unwrap_or_else(|| panic!("still running after 15 s:\n{}", broker.log()));
    assert!(status.success(), "exit status {status}:\n{}", broker.log());
    assert!(
        elapsed < Duration::from_secs(5 + 3 + 2),
        "stopped in {elapsed:?}: shutdown_timeout (5 s) plus the last outbox pass (3 s) bound it"
    );
    assert!(
        broker.log().contains(&format!("SIG{signal}")),
        "{}",
        broker.log()
    );
    assert!(broker.log().contains("stopped"), "{}", broker.log());
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish_and_exits_zero() {
    finishes_in_flight_and_exits_cleanly("TERM").await;
}

#[tokio::test]
async fn sigint_stops_as_gracefully_as_sigterm() {
    finishes_in_flight_and_exits_cleanly("INT").await;
}
