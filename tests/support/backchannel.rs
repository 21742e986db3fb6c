//! An app's back-channel logout endpoint on loopback: answers 200 to each POST and
//! hands over its body (the form with the `logout_token`).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Listens on a free loopback port; the endpoint's URI and the bodies it receives.
pub async fn backchannel_receiver() -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the back-channel receiver");
    let uri = format!(
        "http://{}/backchannel",
        listener.local_addr().expect("its address")
    );
    (uri, serve(listener))
}

/// Listens on `port` (chosen earlier, e.g. to configure the broker before the
/// endpoint comes up); the bodies it receives.
pub async fn backchannel_receiver_on(port: u16) -> mpsc::UnboundedReceiver<String> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the back-channel receiver");
    serve(listener)
}

fn serve(listener: TcpListener) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let body = read_body(&mut socket).await;
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

/// Reads one request and returns its body (by its Content-Length).
async fn read_body(socket: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
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
                return Some(text[end + 4..end + 4 + length].to_string());
            }
        }
    }
}
