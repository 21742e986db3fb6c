//! A schema of its own on the PostgreSQL test server for one test, dropped when the
//! test ends: runs never see each other's rows.
//!
//! The server is `SWITCHBOARD_TEST_POSTGRES_URL` (default
//! `postgres://root@127.0.0.1:5432/test`). Without a server a test skips, unless
//! `SWITCHBOARD_REQUIRE_PEERS=1` makes that a failure.

use sqlx::Connection;

const DEFAULT_URL: &str = "postgres://root@127.0.0.1:5432/test";

/// A fresh schema on the test server.
#[derive(Debug)]
pub struct PgSchema {
    pub url: String,
    pub schema: String,
}

impl PgSchema {
    /// `None` (the test skips) when the server does not answer, unless peers are
    /// required.
    pub async fn fresh() -> Option<PgSchema> {
        let url = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_URL.to_string());
        match sqlx::PgConnection::connect(&url).await {
            Ok(conn) => conn.close().await.expect("close the probe connection"),
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
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_nanos();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let schema = format!("sb_e2e_{}_{nanos}_{n}", std::process::id());
        Some(PgSchema { url, schema })
    }

    /// A `[store]` table for this schema. The test server's URL holds no password,
    /// so it is written inline (a `broker` command run by the test reads it too).
    pub fn store_toml(&self) -> String {
        format!(
            "[store]\nbackend = \"postgres\"\nurl = {:?}\nschema = \"{}\"\nmax_connections = 8\n",
            self.url, self.schema
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // A drop cannot await: a thread with its own runtime does it.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
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
