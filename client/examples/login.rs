//! A command-line app that logs in through the browser against the demo broker (as
//! the public client `example-cli`), keeps its tokens in
//! `~/.config/switchboard-example-cli/tokens.json` (mode 0600) and calls the example
//! API (`--example api`) with them.
//!
//! ```sh
//! cargo run -p switchboard-client --example login            # log in (once) and call /me
//! cargo run -p switchboard-client --example login -- device  # log in by device code (RFC 8628)
//! cargo run -p switchboard-client --example login -- logout  # revoke and forget the tokens
//! ```

use switchboard_client::Issuer;
use switchboard_client::native::{FileStore, NativeLogin};

const API: &str = "http://127.0.0.1:5557/me";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = Issuer::new("http://127.0.0.1:5556")?;
    let store = FileStore::for_app("switchboard-example-cli")?;
    let login = NativeLogin::new(issuer.clone(), "example-cli", store).scopes([
        "openid",
        "profile",
        "offline_access",
        "roles",
        "permissions",
    ]);
    let command = std::env::args().nth(1);
    let session = match command.as_deref() {
        Some("device") => login.device_login().await?,
        _ => login.session().await?,
    };
    if command.as_deref() == Some("logout") {
        let done = session.logout().await?;
        println!("Logged out: the tokens are revoked and forgotten.");
        if let Some(url) = done.end_session_url {
            println!("To end the browser's session at the broker too, open:\n{url}");
        }
        return Ok(());
    }
    let mut token = session.access_token().await?;
    for _ in 0..2 {
        let answer = issuer.http().get(API).bearer_auth(&token).send().await?;
        if answer.status() == 401 {
            // Revoked or expired early: refresh once and retry.
            token = session.after_unauthorized(&token).await?;
            continue;
        }
        println!("{} {}", answer.status(), answer.text().await?);
        break;
    }
    Ok(())
}
