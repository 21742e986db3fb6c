//! The ceiling `scripts/bench` measures the broker against: an actix-web server with
//! the broker's runtime and defaults and one handler that does nothing.
//!
//!     cargo run --release -p switchboard-broker --example empty_handler -- 127.0.0.1:8080

use actix_web::{App, HttpServer, web};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_string());
    HttpServer::new(|| App::new().route("/", web::get().to(|| async { "ok" })))
        .bind(listen)?
        .run()
        .await
}
