//! The loopback listener a login comes back to (RFC 8252 §7.3): `127.0.0.1` on a
//! port the system picks, one tiny HTTP/1.1 answer per connection.

use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

/// The most a request head may be.
const MAX_HEAD: usize = 16 * 1024;
/// How long one connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the browser brought back.
#[derive(Debug)]
pub(crate) struct Answer {
    pub code: Option<String>,
    pub error: Option<String>,
    pub iss: Option<String>,
}

pub(crate) struct Listener {
    listener: TcpListener,
    port: u16,
}

impl Listener {
    pub(crate) async fn bind() -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        Ok(Listener { listener, port })
    }

    pub(crate) fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.port)
    }

    /// Answers requests until one to `/callback` carries `state`. Requests for other
    /// paths get 404 and requests with another or no `state` get 400; both keep the
    /// listener waiting (something else on this machine may knock; it cannot end or
    /// hijack the login).
    pub(crate) async fn wait_for(self, state: &str) -> io::Result<Answer> {
        loop {
            let (mut stream, _) = self.listener.accept().await?;
            let Ok(Ok(target)) = tokio::time::timeout(READ_TIMEOUT, read_target(&mut stream)).await
            else {
                continue;
            };
            let Some(url) = target.and_then(|t| Url::parse(&format!("http://127.0.0.1{t}")).ok())
            else {
                reply(&mut stream, "400 Bad Request", "Bad request.").await;
                continue;
            };
            if url.path() != "/callback" {
                reply(&mut stream, "404 Not Found", "Not found.").await;
                continue;
            }
            let param = |name: &str| {
                url.query_pairs()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            };
            if param("state").as_deref() != Some(state) {
                reply(
                    &mut stream,
                    "400 Bad Request",
                    "This is not the login this app started.",
                )
                .await;
                continue;
            }
            let answer = Answer {
                code: param("code"),
                error: param("error"),
                iss: param("iss"),
            };
            let text = if answer.error.is_some() {
                "The login did not succeed. You can close this window and return to the app."
            } else {
                "You are logged in. You can close this window and return to the app."
            };
            reply(&mut stream, "200 OK", text).await;
            return Ok(answer);
        }
    }
}

/// The request target of a `GET`, or `None` for anything else.
async fn read_target(stream: &mut TcpStream) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut line = text.lines().next().unwrap_or_default().split(' ');
    match (line.next(), line.next(), line.next()) {
        (Some("GET"), Some(target), Some(version))
            if version.starts_with("HTTP/1.") && target.starts_with('/') =>
        {
            Ok(Some(target.to_string()))
        }
        _ => Ok(None),
    }
}

async fn reply(stream: &mut TcpStream, status: &str, text: &str) {
    let body = format!("<!doctype html><meta charset=\"utf-8\"><title>Login</title><p>{text}</p>");
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(port: u16, target: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = s
            .write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    }

    #[tokio::test]
    async fn only_the_callback_with_this_logins_state_ends_the_wait() {
        let listener = Listener::bind().await.unwrap_or_else(|e| panic!("{e}"));
        let port = listener.port;
        assert_eq!(
            listener.redirect_uri(),
            format!("http://127.0.0.1:{port}/callback")
        );
        let waiting = tokio::spawn(listener.wait_for("the-state"));
        assert!(get(port, "/favicon.ico").await.starts_with("HTTP/1.1 404"));
        assert!(
            get(port, "/callback?code=evil&state=other")
                .await
                .starts_with("HTTP/1.1 400")
        );
        assert!(
            get(port, "/callback?code=evil")
                .await
                .starts_with("HTTP/1.1 400")
        );
        let ok = get(
            port,
            "/callback?code=the-code&state=the-state&iss=http%3A%2F%2Fi",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        let answer = waiting
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer.code.as_deref(), Some("the-code"));
        assert_eq!(answer.iss.as_deref(), Some("http://i"));
        assert!(answer.error.is_none());
    }
}
