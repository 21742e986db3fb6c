//! An API protected by Switchboard (README "Protect an API"). With the demo broker
//! running (`cargo run --bin broker -- serve --config config/broker.toml`):
//!
//! ```sh
//! cargo run -p switchboard-client --example api     # listens on 127.0.0.1:5557
//! cargo run -p switchboard-client --example login   # logs in as example-cli, calls /me
//! ```

use actix_web::{App, HttpServer, web};
use switchboard_client::actix::{Protect, require};
use switchboard_client::{ClientSecret, Introspector, Issuer, Principal, Validator};

async fn health() -> &'static str {
    "ok"
}

async fn me(caller: Principal) -> web::Json<Principal> {
    web::Json(caller)
}

async fn settings(caller: Principal) -> String {
    format!("{} may change the settings\n", caller.sub)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let issuer = Issuer::new("http://127.0.0.1:5556").map_err(std::io::Error::other)?;
    let protect = Protect::new(Validator::new(issuer.clone(), "http://127.0.0.1:5557"))
        .introspector(Introspector::new(
            issuer,
            "example-app",
            ClientSecret::new("example-secret"),
        ))
        .public("/health") // open to all
        .api_keys("/me"); // people's API keys work here (Authorization: Token sbk_…)
    HttpServer::new(move || {
        App::new()
            .wrap(protect.clone())
            .route("/health", web::get().to(health))
            .route("/me", web::get().to(me))
            .service(
                web::resource("/settings")
                    .wrap(require("admin:settings")) // 403 without it
                    .route(web::get().to(settings)),
            )
    })
    .bind("127.0.0.1:5557")?
    .run()
    .await
}
