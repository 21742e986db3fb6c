//! The behaviour every backend must show, run against each of them: `MemoryStore`,
//! `SqliteStore` in memory, `SqliteStore` on a WAL file (several connections, which
//! is where the one-time operations really race), and `PostgresStore` in a fresh schema
//! of the server at `SWITCHBOARD_TEST_POSTGRES_URL` (skipped when it is unreachable,
//! unless `SWITCHBOARD_REQUIRE_PEERS=1`).

// A failed step should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use serde_json::json;
use tempfile::TempDir;
use tokio::sync::Barrier;

use super::{
    AccountTokenPurpose, AccountTokenRecord, ApiKeyRecord, AuditEvent, AuditFilter,
    AuthRequestRecord, CheckedGroupWrite, CheckedWrite, CodeRecord, Confirmation, DeviceCodeRecord,
    DeviceCodeState, DevicePoll, GrantRecord, GroupRecord, HeldResourceRole, Holder, IdentityLink,
    LogoutNotice, Membership, MemoryStore, OutgoingMail, PageCursor, PendingRegistration,
    PostgresOptions, PostgresStore, RedeemOutcome, RedeemedToken, RefreshTokenRecord,
    ResourceGrantCursor, ResourceGrantRecord, ResourceGrantWrite, ResourceRef, RoleGrantRecord,
    RotateOutcome, SealedColumn, SealedRewrite, SealedRow, SessionRecord, SharedStore,
    SigningKeyRecord, SqliteStore, StoreError, UnixTime, UserFilter, UserRecord, UserResource,
    UserStatus,
};

const NOW: UnixTime = 1_700_000_000;
const HOUR: i64 = 3600;
const RACERS: usize = 16;

/// A store under test, with whatever must outlive it.
struct Fixture {
    store: SharedStore,
    _dir: Option<TempDir>,
    _schema: Option<SchemaGuard>,
}

/// `None`: the backend is not available here and the test is skipped.
async fn memory() -> Option<Fixture> {
    Some(Fixture {
        store: Arc::new(MemoryStore::new()),
        _dir: None,
        _schema: None,
    })
}

async fn sqlite_in_memory() -> Option<Fixture> {
    Some(Fixture {
        store: Arc::new(SqliteStore::open_in_memory().await.unwrap()),
        _dir: None,
        _schema: None,
    })
}

async fn sqlite_file() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("switchboard.db"))
        .await
        .unwrap();
    Some(Fixture {
        store: Arc::new(store),
        _dir: Some(dir),
        _schema: None,
    })
}

const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://root@127.0.0.1:5432/test";

fn test_postgres_url() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.to_owned())
}

/// A schema no other test (of this or another process) uses.
fn fresh_schema_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("sb_test_{}_{nanos}_{n}", std::process::id())
}

/// Drops the test's schema when the test ends, passed or failed. A drop cannot await,
/// so it runs on a thread of its own with its own runtime (the test's runtime may be
/// unwinding); a lock a failed test left behind makes it give up, not hang.
struct SchemaGuard {
    url: String,
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let url = self.url.clone();
        let schema = self.schema.clone();
        let dropped = std::thread::spawn(move || {
            use sqlx::Connection;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                sqlx::query("SET lock_timeout = '5s'")
                    .execute(&mut conn)
                    .await?;
                // The name is ours (fresh_schema_name): safe to splice.
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
            eprintln!(
                "could not drop the test schema {}: {dropped:?}",
                self.schema
            );
        }
    }
}

/// A `PostgresStore` in a schema of its own. Skips (`None`) with a message when the
/// server does not answer, unless `SWITCHBOARD_REQUIRE_PEERS=1`, where that fails.
async fn postgres() -> Option<Fixture> {
    use sqlx::Connection;
    let url = test_postgres_url();
    // Only an unreachable server skips: any failure after this is the backend's.
    match sqlx::PgConnection::connect(&url).await {
        Ok(conn) => conn.close().await.unwrap(),
        Err(e) if std::env::var("SWITCHBOARD_REQUIRE_PEERS").as_deref() == Ok("1") => {
            panic!("PostgreSQL (SWITCHBOARD_TEST_POSTGRES_URL) is required: {e}")
        }
        Err(e) => {
            eprintln!(
                "skipped: PostgreSQL (SWITCHBOARD_TEST_POSTGRES_URL, default \
                 {DEFAULT_TEST_POSTGRES_URL}) is unreachable: {e}"
            );
            return None;
        }
    }
    let schema = fresh_schema_name();
    let options = PostgresOptions {
        url: url.clone(),
        schema: schema.clone(),
        max_connections: 8,
    };
    // Made before the schema is, so a half-made one is dropped too.
    let guard = SchemaGuard { url, schema };
    let store = PostgresStore::connect(&options).await.unwrap();
    Some(Fixture {
        store: Arc::new(store),
        _dir: None,
        _schema: Some(guard),
    })
}

/// Replicas starting together all open (create, migrate) one new schema: the loser of
/// the race to create it, and the ones waiting for the migration, must not fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stores_opening_one_new_schema_at_once_all_succeed() {
    let Some(first) = postgres().await else {
        return;
    };
    let url = test_postgres_url();
    let schema = fresh_schema_name();
    let _guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let opened = race(&first.store, |_, _| {
        let options = PostgresOptions {
            url: url.clone(),
            schema: schema.clone(),
            max_connections: 2,
        };
        async move { PostgresStore::connect(&options).await.map(|_| ()) }
    })
    .await;
    assert!(opened.iter().all(Result::is_ok), "{opened:?}");
}

fn user(id: &str, username: Option<&str>, email: Option<&str>) -> UserRecord {
    UserRecord {
        id: id.to_owned(),
        username: username.map(str::to_owned),
        email: email.map(str::to_owned),
        email_verified: false,
        name: Some(format!("User {id}")),
        given_name: None,
        family_name: None,
        picture: None,
        groups: vec!["staff".to_owned()],
        status: UserStatus::Active,
        password_hash: None,
        created_at: NOW,
        updated_at: NOW,
        last_login_at: None,
        revision: 1,
    }
}

fn grant(id: &str, user_id: &str, expires_at: UnixTime) -> GrantRecord {
    GrantRecord {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        client_id: "app".to_owned(),
        session_id_hash: Some(format!("session-of-{id}")),
        scopes: vec!["openid".to_owned(), "profile".to_owned()],
        auth_time: NOW - 10,
        provider_id: "local".to_owned(),
        created_at: NOW,
        expires_at,
        revoked_at: None,
        resource: None,
        amr: vec!["pwd".to_owned(), "otp".to_owned(), "mfa".to_owned()],
    }
}

fn code(code_hash: &str, grant_id: &str, expires_at: UnixTime) -> CodeRecord {
    CodeRecord {
        code_hash: code_hash.to_owned(),
        grant_id: grant_id.to_owned(),
        client_id: "app".to_owned(),
        redirect_uri: "https://app.example/cb".to_owned(),
        code_challenge: Some("challenge".to_owned()),
        nonce: None,
        created_at: NOW,
        expires_at,
    }
}

fn auth_request(id_hash: &str, expires_at: UnixTime) -> AuthRequestRecord {
    AuthRequestRecord {
        id_hash: id_hash.to_owned(),
        request: json!({ "client_id": "app", "scope": ["openid"], "state": "xyz" }),
        created_at: NOW,
        expires_at,
    }
}

fn session(id_hash: &str, user_id: &str, expires_at: UnixTime) -> SessionRecord {
    SessionRecord {
        id_hash: id_hash.to_owned(),
        user_id: user_id.to_owned(),
        provider_id: "local".to_owned(),
        auth_time: NOW,
        created_at: NOW,
        expires_at,
        revoked_at: None,
        amr: vec!["pwd".to_owned(), "otp".to_owned(), "mfa".to_owned()],
    }
}

fn key(kid: &str, alg: &str, epoch: i64, expires_at: UnixTime) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.to_owned(),
        alg: alg.to_owned(),
        epoch,
        sealed_private_key: vec![0, 1, 2, 255, kid.len() as u8],
        public_jwk: json!({ "kty": "EC", "kid": kid }),
        created_at: NOW,
        activate_at: NOW,
        retire_at: expires_at - HOUR,
        expires_at,
    }
}

/// A user `u1` with a live grant `g1` whose code `c1` is live and refresh token is `t1`.
async fn seed_grant(store: &SharedStore) {
    store
        .create_user(&user("u1", Some("alice"), None))
        .await
        .unwrap();
    store
        .create_grant_with_code(
            &grant("g1", "u1", NOW + 24 * HOUR),
            &code("c1", "g1", NOW + 60),
        )
        .await
        .unwrap();
    store
        .put_refresh_token("t1", "g1", NOW + 12 * HOUR, NOW)
        .await
        .unwrap();
}

fn conflict_on(result: Result<impl std::fmt::Debug, StoreError>) -> &'static str {
    match result {
        Err(StoreError::Conflict { what }) => what,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

// ---- users and identity links ----

async fn created_user_reads_back_unchanged(store: SharedStore) {
    let mut alice = user("u1", Some("alice"), Some("alice@example.org"));
    alice.email_verified = true;
    alice.groups = vec!["admins".to_owned(), "staff".to_owned()];
    alice.password_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned());
    alice.last_login_at = Some(NOW - 5);
    store.create_user(&alice).await.unwrap();

    assert_eq!(store.get_user("u1").await.unwrap(), Some(alice));
    assert_eq!(store.get_user("nobody").await.unwrap(), None);
}

fn verified(mut user: UserRecord) -> UserRecord {
    user.email_verified = true;
    user
}

async fn login_lookup_ignores_case(store: SharedStore) {
    store
        .create_user(&verified(user(
            "u1",
            Some("Alice"),
            Some("Alice@Example.org"),
        )))
        .await
        .unwrap();
    store
        .create_user(&user("u2", Some("bob"), None))
        .await
        .unwrap();

    let by_name = store.find_user_by_login("ALICE").await.unwrap().unwrap();
    assert_eq!(by_name.id, "u1");
    let by_email = store
        .find_user_by_login("alice@example.ORG")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_email.id, "u1");
    assert_eq!(
        by_email.username.as_deref(),
        Some("Alice"),
        "stored case is kept"
    );
    assert_eq!(
        store.find_user_by_login("BoB").await.unwrap().unwrap().id,
        "u2"
    );
    assert_eq!(store.find_user_by_login("carol").await.unwrap(), None);
}

async fn duplicate_id_username_or_verified_email_conflicts(store: SharedStore) {
    store
        .create_user(&verified(user(
            "u1",
            Some("alice"),
            Some("alice@example.org"),
        )))
        .await
        .unwrap();

    assert_eq!(
        conflict_on(store.create_user(&user("u1", Some("other"), None)).await),
        "user"
    );
    assert_eq!(
        conflict_on(store.create_user(&user("u2", Some("ALICE"), None)).await),
        "username"
    );
    assert_eq!(
        conflict_on(
            store
                .create_user(&verified(user("u3", Some("al"), Some("Alice@EXAMPLE.org"))))
                .await
        ),
        "email"
    );
    assert_eq!(store.get_user("u2").await.unwrap(), None);
    assert_eq!(store.get_user("u3").await.unwrap(), None);
}

async fn only_verified_emails_are_unique(store: SharedStore) {
    // Any number of users may claim an email nobody verified...
    store
        .create_user(&user("u1", None, Some("ann@example.org")))
        .await
        .unwrap();
    store
        .create_user(&user("u2", None, Some("ANN@example.org")))
        .await
        .unwrap();
    // ...beside the one user whose verified email it is...
    store
        .create_user(&verified(user("u3", None, Some("Ann@Example.org"))))
        .await
        .unwrap();
    // ...and a second verified owner is refused, whatever the case.
    assert_eq!(
        conflict_on(
            store
                .create_user(&verified(user("u4", None, Some("ann@EXAMPLE.ORG"))))
                .await
        ),
        "email"
    );
    assert_eq!(store.get_user("u4").await.unwrap(), None);

    // The same holds when a profile update verifies a shared email.
    let mut u2 = store.get_user("u2").await.unwrap().unwrap();
    u2.email_verified = true;
    assert_eq!(conflict_on(store.update_profile(&u2).await), "email");
    assert!(!store.get_user("u2").await.unwrap().unwrap().email_verified);
    // A verified owner updating its own record is no conflict with itself, and an
    // unverified user may take an email some other user verified.
    let mut u3 = store.get_user("u3").await.unwrap().unwrap();
    u3.name = Some("Ann".to_owned());
    assert!(store.update_profile(&u3).await.unwrap());
    let mut u1 = store.get_user("u1").await.unwrap().unwrap();
    u1.email = Some("ANN@example.org".to_owned());
    assert!(store.update_profile(&u1).await.unwrap());
    assert_eq!(store.list_users().await.unwrap().len(), 3);
}

async fn login_lookup_sees_only_verified_emails(store: SharedStore) {
    store
        .create_user(&user("squatter", Some("alice"), Some("bob@corp.example")))
        .await
        .unwrap();
    assert_eq!(
        store.find_user_by_login("bob@corp.example").await.unwrap(),
        None,
        "an unverified email names nobody"
    );
    let mut bob = verified(user("bob", Some("bob"), Some("Bob@Corp.example")));
    bob.created_at = NOW + 10;
    store.create_user(&bob).await.unwrap();
    assert_eq!(
        store
            .find_user_by_login("BOB@corp.example")
            .await
            .unwrap()
            .unwrap()
            .id,
        "bob"
    );
    assert_eq!(
        store.find_user_by_login("Alice").await.unwrap().unwrap().id,
        "squatter",
        "usernames still log in"
    );
}

async fn a_verified_email_wins_over_a_username(store: SharedStore) {
    // An upstream username may look like someone's address; the older row must not
    // capture the login of the person whose verified address it is.
    store
        .create_user(&user("squatter", Some("bob@corp.example"), None))
        .await
        .unwrap();
    let mut bob = verified(user("bob", Some("bob"), Some("bob@corp.example")));
    bob.created_at = NOW + 10;
    store.create_user(&bob).await.unwrap();
    assert_eq!(
        store
            .find_user_by_login("Bob@Corp.Example")
            .await
            .unwrap()
            .unwrap()
            .id,
        "bob"
    );
}

/// SQLite's NOCASE folds A–Z and nothing else, and text orders as bytes (as Rust
/// strings do), whatever a server's locale would say.
async fn case_folds_in_ascii_only_and_text_orders_as_bytes(store: SharedStore) {
    store
        .create_user(&verified(user("u1", Some("Émile"), Some("Ève@x.io"))))
        .await
        .unwrap();
    store
        .create_user(&verified(user("u2", Some("émile"), Some("ève@x.io"))))
        .await
        .unwrap();
    assert_eq!(
        store.find_user_by_login("ÉMILE").await.unwrap().unwrap().id,
        "u1"
    );
    assert_eq!(
        store.find_user_by_login("éMILE").await.unwrap().unwrap().id,
        "u2"
    );
    assert_eq!(
        store
            .find_user_by_login("ève@X.IO")
            .await
            .unwrap()
            .unwrap()
            .id,
        "u2"
    );
    assert_eq!(store.find_user_by_login("eve@x.io").await.unwrap(), None);
    assert_eq!(
        conflict_on(store.create_user(&user("u3", Some("ÉMILE"), None)).await),
        "username"
    );

    for id in ["b", "é", "B", "a", "_", "Z"] {
        let mut u = user(id, None, None);
        u.created_at = NOW + 1;
        store.create_user(&u).await.unwrap();
    }
    let ids: Vec<String> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .filter(|u| u.created_at == NOW + 1)
        .map(|u| u.id)
        .collect();
    assert_eq!(ids, ["B", "Z", "_", "a", "b", "é"]);
    let after = PageCursor {
        created_at: NOW + 1,
        id: "Z".to_owned(),
    };
    let page: Vec<String> = store
        .list_users_page(&UserFilter::default(), Some(&after), 2)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(page, ["_", "a"]);
}

async fn users_without_username_or_email_do_not_collide(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    store
        .create_user(&user("u3", Some("carol"), None))
        .await
        .unwrap();
    assert_eq!(store.list_users().await.unwrap().len(), 3);
}

async fn users_are_listed_by_creation_then_id(store: SharedStore) {
    let mut late = user("a-late", None, None);
    late.created_at = NOW + 10;
    let mut early_b = user("b-early", None, None);
    early_b.created_at = NOW;
    let mut early_a = user("a-early", None, None);
    early_a.created_at = NOW;
    for u in [&late, &early_b, &early_a] {
        store.create_user(u).await.unwrap();
    }

    let ids: Vec<String> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(ids, ["a-early", "b-early", "a-late"]);
}

async fn profile_update_keeps_status_password_and_creation(store: SharedStore) {
    let mut alice = user("u1", Some("alice"), Some("alice@example.org"));
    alice.password_hash = Some("phc".to_owned());
    store.create_user(&alice).await.unwrap();
    store
        .create_user(&user("u2", Some("bob"), Some("bob@example.org")))
        .await
        .unwrap();

    let mut changed = alice.clone();
    changed.username = Some("alice2".to_owned());
    changed.email = Some("a2@example.org".to_owned());
    changed.email_verified = true;
    changed.name = Some("Alice Two".to_owned());
    changed.given_name = Some("Alice".to_owned());
    changed.family_name = Some("Two".to_owned());
    changed.picture = Some("https://img.example/a.png".to_owned());
    changed.groups = vec!["admins".to_owned()];
    changed.updated_at = NOW + 50;
    changed.last_login_at = Some(NOW + 50);
    // Not profile fields: these must be ignored.
    changed.status = UserStatus::Disabled;
    changed.password_hash = None;
    changed.created_at = NOW + 999;
    assert!(store.update_profile(&changed).await.unwrap());

    let stored = store.get_user("u1").await.unwrap().unwrap();
    let expected = UserRecord {
        status: UserStatus::Active,
        password_hash: Some("phc".to_owned()),
        created_at: NOW,
        revision: 2,
        ..changed.clone()
    };
    assert_eq!(stored, expected);
    assert_eq!(
        store
            .find_user_by_login("ALICE2")
            .await
            .unwrap()
            .unwrap()
            .id,
        "u1"
    );
    assert_eq!(store.find_user_by_login("alice").await.unwrap(), None);

    let mut steal = changed.clone();
    steal.username = Some("BOB".to_owned());
    assert_eq!(conflict_on(store.update_profile(&steal).await), "username");

    assert!(
        !store
            .update_profile(&user("ghost", None, None))
            .await
            .unwrap()
    );
}

async fn status_and_password_changes_persist(store: SharedStore) {
    store
        .create_user(&user("u1", Some("alice"), None))
        .await
        .unwrap();

    assert!(
        store
            .set_user_status("u1", UserStatus::Disabled, NOW + 1)
            .await
            .unwrap()
    );
    let disabled = store.get_user("u1").await.unwrap().unwrap();
    assert_eq!(disabled.status, UserStatus::Disabled);
    assert_eq!(disabled.updated_at, NOW + 1);

    assert!(
        store
            .set_password_hash("u1", "new-phc", NOW + 2)
            .await
            .unwrap()
    );
    let rehashed = store.get_user("u1").await.unwrap().unwrap();
    assert_eq!(rehashed.password_hash.as_deref(), Some("new-phc"));
    assert_eq!(rehashed.status, UserStatus::Disabled);
    assert_eq!(rehashed.updated_at, NOW + 2);

    assert!(
        !store
            .set_user_status("ghost", UserStatus::Active, NOW)
            .await
            .unwrap()
    );
    assert!(!store.set_password_hash("ghost", "x", NOW).await.unwrap());
}

async fn identity_link_is_unique_per_provider_and_subject(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    let link = IdentityLink {
        provider_id: "google".to_owned(),
        subject: "12345".to_owned(),
        user_id: "u1".to_owned(),
        claims: json!({ "sub": "12345", "email": "a@example.org" }),
        sealed_provider_data: Some(vec![9, 8, 7]),
        created_at: NOW,
        updated_at: NOW,
    };
    store.link_identity(&link).await.unwrap();
    assert_eq!(
        store.find_identity("google", "12345").await.unwrap(),
        Some(link.clone())
    );

    let hijack = IdentityLink {
        user_id: "u2".to_owned(),
        ..link.clone()
    };
    assert_eq!(
        conflict_on(store.link_identity(&hijack).await),
        "identity link"
    );
    assert_eq!(
        store
            .find_identity("google", "12345")
            .await
            .unwrap()
            .unwrap()
            .user_id,
        "u1"
    );

    let other_provider = IdentityLink {
        provider_id: "github".to_owned(),
        user_id: "u2".to_owned(),
        sealed_provider_data: None,
        ..link.clone()
    };
    store.link_identity(&other_provider).await.unwrap();
    assert_eq!(
        store.find_identity("github", "12345").await.unwrap(),
        Some(other_provider)
    );
    assert_eq!(store.find_identity("google", "999").await.unwrap(), None);
}

async fn identity_update_replaces_claims_and_provider_data(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    let link = IdentityLink {
        provider_id: "google".to_owned(),
        subject: "s".to_owned(),
        user_id: "u1".to_owned(),
        claims: json!({ "name": "old" }),
        sealed_provider_data: Some(vec![1]),
        created_at: NOW,
        updated_at: NOW,
    };
    store.link_identity(&link).await.unwrap();

    let updated = IdentityLink {
        claims: json!({ "name": "new", "groups": ["a", "b"] }),
        sealed_provider_data: None,
        updated_at: NOW + 7,
        ..link.clone()
    };
    assert!(store.update_identity(&updated).await.unwrap());
    assert_eq!(
        store.find_identity("google", "s").await.unwrap(),
        Some(updated)
    );

    let unknown = IdentityLink {
        subject: "nobody".to_owned(),
        ..link
    };
    assert!(!store.update_identity(&unknown).await.unwrap());
}

async fn unlinking_removes_only_that_identity(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    let link = |provider: &str, subject: &str| IdentityLink {
        provider_id: provider.to_owned(),
        subject: subject.to_owned(),
        user_id: "u1".to_owned(),
        claims: json!({}),
        sealed_provider_data: None,
        created_at: NOW,
        updated_at: NOW,
    };
    store.link_identity(&link("ldap", "a")).await.unwrap();
    store.link_identity(&link("github", "a")).await.unwrap();
    assert!(store.unlink_identity("ldap", "a").await.unwrap());
    assert_eq!(store.find_identity("ldap", "a").await.unwrap(), None);
    assert!(!store.unlink_identity("ldap", "a").await.unwrap());
    assert!(!store.unlink_identity("github", "other").await.unwrap());
    let left: Vec<String> = store
        .list_user_identities("u1")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.provider_id)
        .collect();
    assert_eq!(left, vec!["github".to_owned()]);
    // Once unlinked, the identity may be linked again (to anyone).
    store.link_identity(&link("ldap", "a")).await.unwrap();
}

async fn identities_of_a_user_are_listed_in_order(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    let link = |provider: &str, subject: &str, user_id: &str| IdentityLink {
        provider_id: provider.to_owned(),
        subject: subject.to_owned(),
        user_id: user_id.to_owned(),
        claims: json!({}),
        sealed_provider_data: None,
        created_at: NOW,
        updated_at: NOW,
    };
    for l in [
        link("ldap", "b", "u1"),
        link("github", "z", "u1"),
        link("ldap", "a", "u2"),
    ] {
        store.link_identity(&l).await.unwrap();
    }
    let listed: Vec<(String, String)> = store
        .list_user_identities("u1")
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.provider_id, l.subject))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("github".to_owned(), "z".to_owned()),
            ("ldap".to_owned(), "b".to_owned())
        ]
    );
    assert!(
        store
            .list_user_identities("nobody")
            .await
            .unwrap()
            .is_empty()
    );
}

// ---- sealed values (master-key rotation) ----

async fn sealed_values_page_by_row_and_are_rewritten_only_where_unchanged(store: SharedStore) {
    for kid in ["k3", "k1", "k2"] {
        assert!(
            store
                .insert_key_if_absent(&key(kid, kid, 1, NOW + HOUR))
                .await
                .unwrap()
        );
    }
    store.create_user(&user("u1", None, None)).await.unwrap();
    let mut with_data = link("corp", "b", "u1");
    with_data.sealed_provider_data = Some(vec![9, 9]);
    store.link_identity(&with_data).await.unwrap();
    let mut other = link("corp", "a", "u1");
    other.sealed_provider_data = Some(vec![8]);
    store.link_identity(&other).await.unwrap();
    // A link without provider data has nothing sealed.
    store.link_identity(&link("aaa", "z", "u1")).await.unwrap();

    let first = store
        .list_sealed(SealedColumn::SigningKeys, None, 2)
        .await
        .unwrap();
    let kids: Vec<_> = first.iter().map(|v| v.row.clone()).collect();
    assert_eq!(
        kids,
        vec![
            SealedRow::SigningKey { kid: "k1".into() },
            SealedRow::SigningKey { kid: "k2".into() }
        ]
    );
    let rest = store
        .list_sealed(SealedColumn::SigningKeys, Some(&kids[1]), 2)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].row, SealedRow::SigningKey { kid: "k3".into() });
    assert_eq!(
        rest[0].sealed,
        key("k3", "k3", 1, NOW + HOUR).sealed_private_key
    );

    let links = store
        .list_sealed(SealedColumn::ProviderData, None, 10)
        .await
        .unwrap();
    let rows: Vec<_> = links
        .iter()
        .map(|v| (v.row.clone(), v.sealed.clone()))
        .collect();
    let pd = |s: &str| SealedRow::ProviderData {
        provider_id: "corp".into(),
        subject: s.into(),
    };
    assert_eq!(rows, vec![(pd("a"), vec![8]), (pd("b"), vec![9, 9])]);
    let after_a = store
        .list_sealed(SealedColumn::ProviderData, Some(&pd("a")), 10)
        .await
        .unwrap();
    assert_eq!(after_a.len(), 1);
    assert_eq!(after_a[0].row, pd("b"));

    let changed = store
        .rewrite_sealed(&[
            SealedRewrite {
                row: SealedRow::SigningKey { kid: "k1".into() },
                old: first[0].sealed.clone(),
                new: vec![1, 1, 1],
            },
            // Stale: the row holds something else now.
            SealedRewrite {
                row: pd("a"),
                old: vec![7],
                new: vec![2, 2],
            },
            SealedRewrite {
                row: pd("b"),
                old: vec![9, 9],
                new: vec![3, 3],
            },
        ])
        .await
        .unwrap();
    assert_eq!(changed, 2);
    let keys = store.list_keys(NOW).await.unwrap();
    let k1 = keys.iter().find(|k| k.kid == "k1").unwrap();
    assert_eq!(k1.sealed_private_key, vec![1, 1, 1]);
    let ids = store.list_user_identities("u1").await.unwrap();
    let data = |s: &str| {
        ids.iter()
            .find(|l| l.provider_id == "corp" && l.subject == s)
            .unwrap()
            .sealed_provider_data
            .clone()
    };
    assert_eq!(data("a"), Some(vec![8]), "a stale rewrite changes nothing");
    assert_eq!(data("b"), Some(vec![3, 3]));
}

// ---- mail outbox and account tokens ----

fn mail(to: &str) -> OutgoingMail {
    OutgoingMail {
        to: to.to_owned(),
        subject: "Reset your password".to_owned(),
        text: "Follow https://id.example/reset?t=secret".to_owned(),
        html: "<p>Follow <a href=\"https://id.example/reset?t=secret\">this</a></p>".to_owned(),
    }
}

fn reset_token(hash: &str, user_id: &str, expires_at: UnixTime) -> AccountTokenRecord {
    AccountTokenRecord {
        token_hash: hash.to_owned(),
        purpose: AccountTokenPurpose::PasswordReset,
        user_id: user_id.to_owned(),
        detail: None,
        created_at: NOW,
        expires_at,
    }
}

fn registration(hash: &str, user_id: &str, username: &str, email: &str) -> PendingRegistration {
    PendingRegistration {
        token_hash: hash.to_owned(),
        user_id: user_id.to_owned(),
        username: username.to_owned(),
        email: email.to_owned(),
        name: Some("New Person".to_owned()),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        created_at: NOW,
        expires_at: NOW + 3600,
    }
}

async fn mail_is_leased_to_one_sender_and_retried_when_due(store: SharedStore) {
    store
        .queue_mail("m1", &mail("a@example.com"), NOW)
        .await
        .unwrap();
    store
        .queue_mail("m2", &mail("b@example.com"), NOW + 5)
        .await
        .unwrap();
    // Queueing an id again keeps the first mail.
    store
        .queue_mail("m1", &mail("x@example.com"), NOW)
        .await
        .unwrap();

    let claimed = store
        .claim_mail_deliveries("a", NOW, NOW + 60, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "only m1 is due");
    assert_eq!(claimed[0].id, "m1");
    assert_eq!(
        claimed[0].mail,
        mail("a@example.com"),
        "bodies come back whole"
    );
    assert_eq!((claimed[0].created_at, claimed[0].attempts), (NOW, 0));
    assert!(
        store
            .claim_mail_deliveries("b", NOW + 59, NOW + 120, 10)
            .await
            .unwrap()
            .iter()
            .all(|d| d.id != "m1"),
        "leased to a until NOW + 60"
    );
    // b took m2 (due at NOW + 5) just now; a's lease on m1 ends at NOW + 60.
    let taken = store
        .claim_mail_deliveries("c", NOW + 60, NOW + 200, 10)
        .await
        .unwrap();
    assert_eq!(
        taken.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["m1"]
    );
    assert!(
        !store.finish_mail_delivery("m1", "a").await.unwrap(),
        "a lost the lease"
    );
    assert!(
        !store
            .defer_mail_delivery("m1", "a", 1, NOW + 70)
            .await
            .unwrap()
    );
    assert!(
        store
            .defer_mail_delivery("m1", "c", 1, NOW + 90)
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_mail_deliveries("d", NOW + 89, NOW + 300, 10)
            .await
            .unwrap()
            .iter()
            .all(|d| d.id != "m1"),
        "not due yet"
    );
    // At NOW + 120 m1 is due again and b's lease on m2 has ended.
    let again = store
        .claim_mail_deliveries("d", NOW + 120, NOW + 300, 10)
        .await
        .unwrap();
    let m1 = again.iter().find(|d| d.id == "m1").unwrap();
    assert_eq!(m1.attempts, 1);
    assert!(store.finish_mail_delivery("m1", "d").await.unwrap());
    assert!(store.finish_mail_delivery("m2", "d").await.unwrap());
    assert!(
        store
            .claim_mail_deliveries("e", NOW + 10_000, NOW + 20_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "sent mail is gone"
    );
}

async fn account_tokens_are_single_use_and_queue_their_mail(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    store
        .issue_account_token(
            &reset_token("h1", "u1", NOW + 1800),
            "m1",
            &mail("a@example.com"),
        )
        .await
        .unwrap();
    store
        .issue_account_token(
            &reset_token("h2", "u1", NOW + 1800),
            "m2",
            &mail("a@example.com"),
        )
        .await
        .unwrap();
    store
        .issue_account_token(
            &reset_token("h3", "u2", NOW + 1800),
            "m3",
            &mail("b@example.com"),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .issue_account_token(
                &reset_token("h1", "u2", NOW + 1800),
                "m4",
                &mail("b@example.com")
            )
            .await,
        Err(StoreError::Conflict { .. })
    ));
    let queued = store
        .claim_mail_deliveries("a", NOW, NOW + 60, 10)
        .await
        .unwrap();
    let mut ids: Vec<_> = queued.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        vec!["m1", "m2", "m3"],
        "each token's mail is queued with it, m4 is not"
    );

    assert_eq!(
        store
            .redeem_account_token("nope", AccountTokenPurpose::PasswordReset, NOW)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .redeem_account_token("h1", AccountTokenPurpose::PasswordReset, NOW + 1)
            .await
            .unwrap()
            .map(|r| r.user_id)
            .as_deref(),
        Some("u1")
    );
    assert_eq!(
        store
            .redeem_account_token("h1", AccountTokenPurpose::PasswordReset, NOW + 2)
            .await
            .unwrap(),
        None,
        "used once"
    );
    assert_eq!(
        store
            .redeem_account_token("h2", AccountTokenPurpose::PasswordReset, NOW + 2)
            .await
            .unwrap(),
        None,
        "the user's other links went with it"
    );
    assert_eq!(
        store
            .redeem_account_token("h3", AccountTokenPurpose::PasswordReset, NOW + 1800)
            .await
            .unwrap(),
        None,
        "expired at expires_at"
    );
    assert_eq!(
        store
            .redeem_account_token("h3", AccountTokenPurpose::PasswordReset, NOW + 1799)
            .await
            .unwrap()
            .map(|r| r.user_id)
            .as_deref(),
        Some("u2")
    );
}

async fn expired_account_tokens_are_purged_and_deleted_users_take_theirs(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    store
        .issue_account_token(
            &reset_token("old", "u1", NOW + 10),
            "m1",
            &mail("a@example.com"),
        )
        .await
        .unwrap();
    store
        .issue_account_token(
            &reset_token("live", "u1", NOW + 1800),
            "m2",
            &mail("a@example.com"),
        )
        .await
        .unwrap();
    store
        .issue_account_token(
            &reset_token("gone", "u2", NOW + 1800),
            "m3",
            &mail("b@example.com"),
        )
        .await
        .unwrap();
    assert!(store.delete_user("u2").await.unwrap());
    assert!(store.purge_expired(NOW + 10).await.unwrap() >= 1);
    assert_eq!(
        store
            .redeem_account_token("old", AccountTokenPurpose::PasswordReset, NOW)
            .await
            .unwrap(),
        None,
        "purged"
    );
    assert_eq!(
        store
            .redeem_account_token("gone", AccountTokenPurpose::PasswordReset, NOW)
            .await
            .unwrap(),
        None,
        "deleted with its user"
    );
    assert_eq!(
        store
            .redeem_account_token("live", AccountTokenPurpose::PasswordReset, NOW)
            .await
            .unwrap()
            .map(|r| r.user_id)
            .as_deref(),
        Some("u1")
    );
}

async fn verify_email_links_carry_their_address_and_differ_from_reset_links(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    let verify = AccountTokenRecord {
        purpose: AccountTokenPurpose::VerifyEmail,
        detail: Some("new@example.com".to_owned()),
        ..reset_token("v1", "u1", NOW + 1800)
    };
    store
        .issue_account_token(&verify, "m1", &mail("new@example.com"))
        .await
        .unwrap();
    store
        .issue_account_token(
            &reset_token("r1", "u1", NOW + 1800),
            "m2",
            &mail("a@example.com"),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .redeem_account_token("v1", AccountTokenPurpose::PasswordReset, NOW)
            .await
            .unwrap(),
        None,
        "a link is good for its own purpose only"
    );
    assert_eq!(
        store
            .redeem_account_token("v1", AccountTokenPurpose::VerifyEmail, NOW)
            .await
            .unwrap(),
        Some(RedeemedToken {
            user_id: "u1".to_owned(),
            detail: Some("new@example.com".to_owned()),
        })
    );
    assert!(
        store
            .redeem_account_token("r1", AccountTokenPurpose::PasswordReset, NOW)
            .await
            .unwrap()
            .is_some(),
        "using the verify link left the reset link alone"
    );
}

async fn registrations_are_confirmed_once_into_a_verified_active_user(store: SharedStore) {
    store
        .issue_registration(
            &registration("h1", "u1", "newbie", "newbie@example.com"),
            "m1",
            &mail("newbie@example.com"),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .issue_registration(
                &registration("h1", "u9", "other", "o@example.com"),
                "m9",
                &mail("o@example.com"),
            )
            .await,
        Err(StoreError::Conflict { .. })
    ));
    let queued = store
        .claim_mail_deliveries("a", NOW, NOW + 60, 10)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1, "the link's mail is queued with it");
    assert!(
        store.find_user_by_login("newbie").await.unwrap().is_none(),
        "no account before the link is used"
    );
    assert_eq!(
        store.confirm_registration("h1", NOW + 3600).await.unwrap(),
        Confirmation::Unknown,
        "expired at expires_at"
    );
    let Confirmation::Created(created) = store.confirm_registration("h1", NOW + 5).await.unwrap()
    else {
        panic!("the registration was not confirmed");
    };
    assert_eq!(created.id, "u1");
    assert!(created.email_verified);
    assert_eq!(created.status, UserStatus::Active);
    assert_eq!(created.created_at, NOW + 5);
    let stored = store
        .find_user_by_login("newbie@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.id, "u1");
    assert_eq!(stored.username.as_deref(), Some("newbie"));
    assert!(stored.password_hash.is_some());
    assert_eq!(
        store.confirm_registration("h1", NOW + 6).await.unwrap(),
        Confirmation::Unknown,
        "used once"
    );
}

async fn a_registration_whose_username_was_taken_meanwhile_makes_no_user(store: SharedStore) {
    for (hash, id) in [("h1", "u1"), ("h2", "u2")] {
        store
            .issue_registration(
                &registration(hash, id, "samename", &format!("{id}@example.com")),
                &format!("m-{id}"),
                &mail("x@example.com"),
            )
            .await
            .unwrap();
    }
    assert!(matches!(
        store.confirm_registration("h1", NOW).await.unwrap(),
        Confirmation::Created(_)
    ));
    assert_eq!(
        store.confirm_registration("h2", NOW).await.unwrap(),
        Confirmation::Taken { what: "username" }
    );
    assert!(store.get_user("u2").await.unwrap().is_none());
    assert_eq!(
        store.confirm_registration("h2", NOW).await.unwrap(),
        Confirmation::Unknown,
        "the failed link is used up"
    );
    // An expired registration is purged.
    store
        .issue_registration(
            &registration("h3", "u3", "late", "late@example.com"),
            "m3",
            &mail("late@example.com"),
        )
        .await
        .unwrap();
    assert!(store.purge_expired(NOW + 3600).await.unwrap() >= 1);
    assert_eq!(
        store.confirm_registration("h3", NOW).await.unwrap(),
        Confirmation::Unknown
    );
}

async fn concurrent_confirmations_of_one_registration_have_one_winner(store: SharedStore) {
    store
        .issue_registration(
            &registration("h1", "u1", "racer", "racer@example.com"),
            "m1",
            &mail("racer@example.com"),
        )
        .await
        .unwrap();
    let outcomes = race(&store, |s, _| async move {
        s.confirm_registration("h1", NOW).await.unwrap()
    })
    .await;
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, Confirmation::Created(_)))
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Confirmation::Created(_) | Confirmation::Unknown)),
        "{outcomes:?}"
    );
}

async fn concurrent_redeems_of_one_account_token_have_one_winner(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store
        .issue_account_token(
            &reset_token("h1", "u1", NOW + 1800),
            "m1",
            &mail("a@example.com"),
        )
        .await
        .unwrap();
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let (s, b) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            s.redeem_account_token("h1", AccountTokenPurpose::PasswordReset, NOW)
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap().is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

// ---- second factor (TOTP and recovery codes) ----

fn hashes(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

async fn totp_enrolment_is_pending_until_confirmed_with_its_own_secret(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    assert_eq!(store.get_totp("u1").await.unwrap(), None);
    assert!(
        store
            .put_pending_totp("u1", b"sealed-1", NOW)
            .await
            .unwrap()
    );
    let pending = store.get_totp("u1").await.unwrap().unwrap();
    assert_eq!(pending.sealed_secret, b"sealed-1");
    assert_eq!(pending.confirmed_at, None);
    assert_eq!(pending.created_at, NOW);
    // Starting over replaces the pending secret.
    assert!(
        store
            .put_pending_totp("u1", b"sealed-2", NOW + 5)
            .await
            .unwrap()
    );
    assert!(
        !store
            .confirm_totp("u1", b"sealed-1", 10, &hashes(&["r1"]), NOW + 6)
            .await
            .unwrap(),
        "a secret replaced meanwhile is not confirmed"
    );
    assert!(!store.use_totp_step("u1", 11).await.unwrap(), "pending");
    assert!(!store.use_recovery_code("u1", "r1").await.unwrap());
    assert!(
        store
            .confirm_totp("u1", b"sealed-2", 10, &hashes(&["r1", "r2"]), NOW + 6)
            .await
            .unwrap()
    );
    let confirmed = store.get_totp("u1").await.unwrap().unwrap();
    assert_eq!(confirmed.sealed_secret, b"sealed-2");
    assert_eq!(confirmed.confirmed_at, Some(NOW + 6));
    assert_eq!(confirmed.last_step, Some(10));
    assert_eq!(store.count_recovery_codes("u1").await.unwrap(), 2);
    assert!(
        !store
            .confirm_totp("u1", b"sealed-2", 12, &hashes(&["r3"]), NOW + 7)
            .await
            .unwrap(),
        "confirmed once"
    );
    assert!(
        !store
            .put_pending_totp("u1", b"sealed-3", NOW + 8)
            .await
            .unwrap(),
        "a confirmed enrolment is never replaced by a pending one"
    );
    assert_eq!(
        store.get_totp("u1").await.unwrap().unwrap().sealed_secret,
        b"sealed-2"
    );
    assert!(
        store.put_pending_totp("nobody", b"s", NOW).await.is_err(),
        "the user must exist"
    );
}

async fn a_totp_step_is_used_once_and_never_an_earlier_one(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.put_pending_totp("u1", b"s", NOW).await.unwrap();
    store
        .confirm_totp("u1", b"s", 100, &hashes(&["r1"]), NOW)
        .await
        .unwrap();
    assert!(
        !store.use_totp_step("u1", 100).await.unwrap(),
        "the confirming step"
    );
    assert!(store.use_totp_step("u1", 101).await.unwrap());
    assert!(!store.use_totp_step("u1", 101).await.unwrap(), "replayed");
    assert!(!store.use_totp_step("u1", 99).await.unwrap(), "earlier");
    assert!(store.use_totp_step("u1", 103).await.unwrap());
    assert!(
        !store.use_totp_step("u1", 102).await.unwrap(),
        "skipped over"
    );
    assert_eq!(
        store.get_totp("u1").await.unwrap().unwrap().last_step,
        Some(103)
    );
    assert!(!store.use_totp_step("nobody", 200).await.unwrap());
}

async fn recovery_codes_work_once_and_are_replaced_whole(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    assert!(
        !store
            .replace_recovery_codes("u1", &hashes(&["x"]), NOW)
            .await
            .unwrap(),
        "no enrolment"
    );
    store.put_pending_totp("u1", b"s", NOW).await.unwrap();
    store
        .confirm_totp("u1", b"s", 1, &hashes(&["r1", "r2", "r3"]), NOW)
        .await
        .unwrap();
    assert!(store.use_recovery_code("u1", "r2").await.unwrap());
    assert!(!store.use_recovery_code("u1", "r2").await.unwrap(), "once");
    assert!(
        !store.use_recovery_code("u2", "r1").await.unwrap(),
        "another user's code"
    );
    assert_eq!(store.count_recovery_codes("u1").await.unwrap(), 2);
    assert!(
        store
            .replace_recovery_codes("u1", &hashes(&["n1", "n2"]), NOW + 1)
            .await
            .unwrap()
    );
    assert!(
        !store.use_recovery_code("u1", "r1").await.unwrap(),
        "replaced"
    );
    assert_eq!(store.count_recovery_codes("u1").await.unwrap(), 2);
    assert!(store.use_recovery_code("u1", "n1").await.unwrap());
    assert_eq!(store.count_recovery_codes("u2").await.unwrap(), 0);
}

async fn removing_totp_or_the_user_takes_the_enrolment_and_its_codes(store: SharedStore) {
    for id in ["u1", "u2"] {
        store.create_user(&user(id, None, None)).await.unwrap();
        store.put_pending_totp(id, b"s", NOW).await.unwrap();
        store
            .confirm_totp(id, b"s", 1, &hashes(&["r1", "r2"]), NOW)
            .await
            .unwrap();
    }
    assert!(store.delete_totp("u1").await.unwrap());
    assert!(!store.delete_totp("u1").await.unwrap(), "gone already");
    assert_eq!(store.get_totp("u1").await.unwrap(), None);
    assert_eq!(store.count_recovery_codes("u1").await.unwrap(), 0);
    // A new enrolment starts clean.
    assert!(store.put_pending_totp("u1", b"t", NOW + 1).await.unwrap());
    assert_eq!(store.get_totp("u1").await.unwrap().unwrap().last_step, None);
    assert!(store.delete_user("u2").await.unwrap());
    assert_eq!(store.get_totp("u2").await.unwrap(), None);
    assert_eq!(store.count_recovery_codes("u2").await.unwrap(), 0);
}

async fn sessions_and_grants_keep_how_the_person_authenticated(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    let one_factor = SessionRecord {
        amr: vec!["pwd".to_owned()],
        ..session("s1", "u1", NOW + HOUR)
    };
    store.create_session(&one_factor).await.unwrap();
    store
        .create_session(&session("s2", "u1", NOW + HOUR))
        .await
        .unwrap();
    assert_eq!(
        store.get_session("s1", NOW).await.unwrap().unwrap().amr,
        ["pwd"]
    );
    assert_eq!(
        store.get_session("s2", NOW).await.unwrap().unwrap().amr,
        ["pwd", "otp", "mfa"]
    );
    let g = grant("g1", "u1", NOW + HOUR);
    store
        .create_grant_with_code(&g, &code("c1", "g1", NOW + 60))
        .await
        .unwrap();
    assert_eq!(
        store.get_grant("g1").await.unwrap().unwrap().amr,
        ["pwd", "otp", "mfa"]
    );
    store
        .put_refresh_token("rt1", "g1", NOW + HOUR, NOW)
        .await
        .unwrap();
    assert_eq!(
        store
            .refresh_token_grant("rt1", NOW)
            .await
            .unwrap()
            .unwrap()
            .amr,
        ["pwd", "otp", "mfa"],
        "what a refresh issues from"
    );
}

async fn totp_secrets_are_listed_and_rewritten_for_rekeying(store: SharedStore) {
    for id in ["u2", "u1", "u3"] {
        store.create_user(&user(id, None, None)).await.unwrap();
        store
            .put_pending_totp(id, format!("sealed-{id}").as_bytes(), NOW)
            .await
            .unwrap();
    }
    let row = |id: &str| SealedRow::TotpSecret {
        user_id: id.to_owned(),
    };
    let first = store
        .list_sealed(SealedColumn::TotpSecrets, None, 2)
        .await
        .unwrap();
    let rows: Vec<SealedRow> = first.iter().map(|v| v.row.clone()).collect();
    assert_eq!(rows, [row("u1"), row("u2")]);
    assert_eq!(first[0].sealed, b"sealed-u1");
    let rest = store
        .list_sealed(SealedColumn::TotpSecrets, Some(&row("u2")), 2)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].row, row("u3"));
    let changed = store
        .rewrite_sealed(&[
            SealedRewrite {
                row: row("u1"),
                old: b"sealed-u1".to_vec(),
                new: b"resealed-u1".to_vec(),
            },
            SealedRewrite {
                row: row("u2"),
                old: b"not what it holds".to_vec(),
                new: b"lost".to_vec(),
            },
        ])
        .await
        .unwrap();
    assert_eq!(changed, 1);
    assert_eq!(
        store.get_totp("u1").await.unwrap().unwrap().sealed_secret,
        b"resealed-u1"
    );
    assert_eq!(
        store.get_totp("u2").await.unwrap().unwrap().sealed_secret,
        b"sealed-u2"
    );
}

async fn concurrent_uses_of_one_recovery_code_have_one_winner(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.put_pending_totp("u1", b"s", NOW).await.unwrap();
    store
        .confirm_totp("u1", b"s", 1, &hashes(&["r1", "r2"]), NOW)
        .await
        .unwrap();
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let (s, b) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            s.use_recovery_code("u1", "r1").await.unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(store.count_recovery_codes("u1").await.unwrap(), 1);
}

async fn concurrent_uses_of_one_totp_step_have_one_winner(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.put_pending_totp("u1", b"s", NOW).await.unwrap();
    store
        .confirm_totp("u1", b"s", 1, &hashes(&["r1"]), NOW)
        .await
        .unwrap();
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let (s, b) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            s.use_totp_step("u1", 5).await.unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

// ---- back-channel logout outbox ----

fn notice(client_id: &str, sid: &str) -> LogoutNotice {
    LogoutNotice {
        client_id: client_id.to_owned(),
        sid: sid.to_owned(),
        user_id: "u1".to_owned(),
    }
}

async fn ending_a_session_queues_its_notices_once(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store
        .create_session(&session("s1", "u1", NOW + HOUR))
        .await
        .unwrap();
    let notices = [
        notice("app", "s1"),
        notice("other", "s1"),
        notice("app", "s1"),
    ];
    assert!(store.end_session("s1", NOW, &notices).await.unwrap());
    assert_eq!(store.get_session("s1", NOW).await.unwrap(), None, "ended");
    // Ending it again queues nothing more.
    assert!(!store.end_session("s1", NOW, &notices).await.unwrap());
    assert!(!store.end_session("nope", NOW, &notices).await.unwrap());

    let claimed = store
        .claim_logout_deliveries("a", NOW, NOW + 60, 10)
        .await
        .unwrap();
    let mut got: Vec<_> = claimed
        .iter()
        .map(|d| (d.notice.clone(), d.created_at, d.attempts))
        .collect();
    got.sort_by(|a, b| a.0.client_id.cmp(&b.0.client_id));
    assert_eq!(
        got,
        vec![
            (notice("app", "s1"), NOW, 0),
            (notice("other", "s1"), NOW, 0)
        ],
        "one notice per client and session"
    );
}

async fn ending_a_users_sessions_queues_a_notice_per_client_of_each_live_session(
    store: SharedStore,
) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    for (sid, owner, expires) in [
        ("s1", "u1", NOW + HOUR),
        ("s2", "u1", NOW + HOUR),
        ("old", "u1", NOW - 1),
        ("theirs", "u2", NOW + HOUR),
    ] {
        store
            .create_session(&session(sid, owner, expires))
            .await
            .unwrap();
    }
    let in_session = |id: &str, client: &str, sid: &str, owner: &str| GrantRecord {
        client_id: client.to_owned(),
        session_id_hash: Some(sid.to_owned()),
        ..grant(id, owner, NOW + 24 * HOUR)
    };
    for (i, g) in [
        in_session("g1", "app", "s1", "u1"),
        in_session("g2", "other", "s1", "u1"),
        in_session("g3", "app", "s1", "u1"),
        in_session("g4", "app", "s2", "u1"),
        in_session("g5", "app", "old", "u1"),
        in_session("g6", "app", "theirs", "u2"),
    ]
    .iter()
    .enumerate()
    {
        store
            .create_grant_with_code(g, &code(&format!("c{i}"), &g.id, NOW + 60))
            .await
            .unwrap();
    }
    assert_eq!(store.revoke_user_sessions("u1", NOW).await.unwrap(), 3);
    assert_eq!(
        store.revoke_user_sessions("u1", NOW + 1).await.unwrap(),
        0,
        "ending them again queues nothing more"
    );
    let claimed = store
        .claim_logout_deliveries("a", NOW, NOW + 60, 10)
        .await
        .unwrap();
    let mut got: Vec<(String, String, String)> = claimed
        .iter()
        .map(|d| {
            (
                d.notice.client_id.clone(),
                d.notice.sid.clone(),
                d.notice.user_id.clone(),
            )
        })
        .collect();
    got.sort();
    let want = |c: &str, s: &str| (c.to_owned(), s.to_owned(), "u1".to_owned());
    assert_eq!(
        got,
        vec![want("app", "s1"), want("app", "s2"), want("other", "s1")],
        "one per client and live session of this user; none for an expired one"
    );
    assert!(store.get_session("theirs", NOW).await.unwrap().is_some());
}

async fn outbox_notices_are_leased_to_one_sender_and_retried_when_due(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store
        .create_session(&session("s1", "u1", NOW + HOUR))
        .await
        .unwrap();
    assert!(
        store
            .end_session("s1", NOW, &[notice("app", "s1")])
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .claim_logout_deliveries("a", NOW - 1, NOW + 60, 10)
            .await
            .unwrap(),
        vec![],
        "not due before it was queued"
    );
    assert_eq!(
        store
            .claim_logout_deliveries("a", NOW, NOW + 60, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .claim_logout_deliveries("b", NOW + 59, NOW + 120, 10)
            .await
            .unwrap(),
        vec![],
        "leased to a"
    );
    // a's lease ends without a word from a: b takes the notice over.
    assert_eq!(
        store
            .claim_logout_deliveries("b", NOW + 60, NOW + 120, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        !store
            .finish_logout_delivery("app", "s1", "a")
            .await
            .unwrap(),
        "a lost its lease"
    );
    assert!(
        !store
            .defer_logout_delivery("app", "s1", "a", 1, NOW + 70)
            .await
            .unwrap()
    );
    assert!(
        store
            .defer_logout_delivery("app", "s1", "b", 1, NOW + 80)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .claim_logout_deliveries("c", NOW + 79, NOW + 200, 10)
            .await
            .unwrap(),
        vec![],
        "deferred until its next attempt"
    );
    let again = store
        .claim_logout_deliveries("c", NOW + 80, NOW + 200, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    assert!(
        store
            .finish_logout_delivery("app", "s1", "c")
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .claim_logout_deliveries("d", NOW + 1000, NOW + 2000, 10)
            .await
            .unwrap(),
        vec![],
        "a finished notice is gone"
    );
}

// ---- authorization requests ----

fn link(provider_id: &str, subject: &str, user_id: &str) -> IdentityLink {
    IdentityLink {
        provider_id: provider_id.to_owned(),
        subject: subject.to_owned(),
        user_id: user_id.to_owned(),
        claims: json!({ "sub": subject }),
        sealed_provider_data: None,
        created_at: NOW,
        updated_at: NOW,
    }
}

fn role_grant(user_id: &str, role: &str, client_id: Option<&str>) -> RoleGrantRecord {
    RoleGrantRecord {
        user_id: user_id.to_owned(),
        role: role.to_owned(),
        client_id: client_id.map(str::to_owned),
        granted_at: NOW,
    }
}

async fn role_grants_are_kept_once_and_listed_global_first(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    for g in [
        role_grant("u1", "viewer", Some("wiki")),
        role_grant("u1", "ops", None),
        role_grant("u1", "approver", Some("billing")),
        role_grant("u1", "admin", None),
        role_grant("u2", "ops", None),
    ] {
        assert!(store.grant_role(&g).await.unwrap(), "{g:?} is new");
    }
    assert!(
        !store
            .grant_role(&RoleGrantRecord {
                granted_at: NOW + 5,
                ..role_grant("u1", "ops", None)
            })
            .await
            .unwrap(),
        "the same grant twice is one grant"
    );
    assert!(
        store
            .grant_role(&role_grant("u1", "ops", Some("wiki")))
            .await
            .unwrap(),
        "a client's role of the same name is another grant"
    );
    let listed = store.list_role_grants("u1").await.unwrap();
    let shown: Vec<(Option<&str>, &str)> = listed
        .iter()
        .map(|g| (g.client_id.as_deref(), g.role.as_str()))
        .collect();
    assert_eq!(
        shown,
        vec![
            (None, "admin"),
            (None, "ops"),
            (Some("billing"), "approver"),
            (Some("wiki"), "ops"),
            (Some("wiki"), "viewer"),
        ]
    );
    assert_eq!(listed[1], role_grant("u1", "ops", None), "first grant kept");
    assert!(store.list_role_grants("nobody").await.unwrap().is_empty());
}

async fn revoking_a_role_grant_removes_only_that_grant(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    for g in [
        role_grant("u1", "ops", None),
        role_grant("u1", "ops", Some("wiki")),
        role_grant("u2", "ops", None),
    ] {
        store.grant_role(&g).await.unwrap();
    }
    assert!(store.revoke_role("u1", "ops", None).await.unwrap());
    assert!(!store.revoke_role("u1", "ops", None).await.unwrap());
    assert!(
        !store
            .revoke_role("u1", "ops", Some("billing"))
            .await
            .unwrap()
    );
    assert_eq!(
        store.list_role_grants("u1").await.unwrap(),
        vec![role_grant("u1", "ops", Some("wiki"))]
    );
    assert_eq!(
        store.list_role_grants("u2").await.unwrap(),
        vec![role_grant("u2", "ops", None)]
    );
}

async fn role_grant_needs_an_existing_user(store: SharedStore) {
    assert!(
        store
            .grant_role(&role_grant("ghost", "ops", None))
            .await
            .is_err()
    );
    assert!(store.list_role_grants("ghost").await.unwrap().is_empty());
}

async fn audit_events_are_listed_per_user_oldest_first(store: SharedStore) {
    let event = |user_id: &str, kind: &str, at: UnixTime| AuditEvent {
        user_id: user_id.to_owned(),
        actor: Some("cli".to_owned()),
        kind: kind.to_owned(),
        detail: json!({ "provider": "github", "n": kind.len() }),
        at,
    };
    for e in [
        event("u1", "later", NOW + 10),
        event("u2", "other", NOW),
        event("u1", "first", NOW),
        event("u1", "second", NOW),
    ] {
        store.record_audit(&e).await.unwrap();
    }
    let listed = store.list_audit("u1").await.unwrap();
    assert_eq!(
        listed,
        vec![
            event("u1", "first", NOW),
            event("u1", "second", NOW),
            event("u1", "later", NOW + 10),
        ],
        "by time, then in recording order"
    );
    assert_eq!(store.list_audit("u2").await.unwrap().len(), 1);
    assert!(
        store.list_audit("nobody").await.unwrap().is_empty(),
        "an event needs no existing user, and none are invented"
    );
}

async fn auth_request_is_taken_once(store: SharedStore) {
    let rec = auth_request("req", NOW + 600);
    store.put_auth_request(&rec).await.unwrap();

    assert_eq!(
        store.get_auth_request("req", NOW).await.unwrap(),
        Some(rec.clone())
    );
    assert_eq!(
        store.get_auth_request("req", NOW).await.unwrap(),
        Some(rec.clone()),
        "reading does not consume"
    );
    assert_eq!(
        store.take_auth_request("req", NOW).await.unwrap(),
        Some(rec)
    );
    assert_eq!(store.take_auth_request("req", NOW).await.unwrap(), None);
    assert_eq!(store.get_auth_request("req", NOW).await.unwrap(), None);
    assert_eq!(store.take_auth_request("unknown", NOW).await.unwrap(), None);
}

async fn expired_auth_request_is_neither_read_nor_taken(store: SharedStore) {
    store
        .put_auth_request(&auth_request("req", NOW + 600))
        .await
        .unwrap();

    assert_eq!(
        store.get_auth_request("req", NOW + 600).await.unwrap(),
        None
    );
    assert_eq!(
        store.take_auth_request("req", NOW + 600).await.unwrap(),
        None
    );
    assert!(
        store
            .get_auth_request("req", NOW + 599)
            .await
            .unwrap()
            .is_some(),
        "an expired take must not consume a request that is still live at an earlier time"
    );
}

// ---- codes and grants ----

async fn code_redeems_once_then_reports_its_grant(store: SharedStore) {
    seed_grant(&store).await;

    assert_eq!(
        store.redeem_code("c1", NOW + 1).await.unwrap(),
        RedeemOutcome::Redeemed(code("c1", "g1", NOW + 60))
    );
    assert_eq!(
        store.redeem_code("c1", NOW + 2).await.unwrap(),
        RedeemOutcome::AlreadyUsed {
            grant_id: "g1".to_owned()
        }
    );
    assert_eq!(
        store.redeem_code("c1", NOW + 3600).await.unwrap(),
        RedeemOutcome::AlreadyUsed {
            grant_id: "g1".to_owned()
        },
        "a replay after expiry still names the grant to revoke"
    );
}

async fn expired_or_unknown_code_is_invalid(store: SharedStore) {
    seed_grant(&store).await;

    assert_eq!(
        store.redeem_code("c1", NOW + 60).await.unwrap(),
        RedeemOutcome::Invalid
    );
    assert_eq!(
        store.redeem_code("nope", NOW).await.unwrap(),
        RedeemOutcome::Invalid
    );
}

async fn grant_and_code_are_stored_together_or_not_at_all(store: SharedStore) {
    seed_grant(&store).await;
    assert_eq!(
        store.get_grant("g1").await.unwrap(),
        Some(grant("g1", "u1", NOW + 24 * HOUR))
    );

    let result = store
        .create_grant_with_code(&grant("g2", "u1", NOW + HOUR), &code("c1", "g2", NOW + 60))
        .await;
    assert_eq!(conflict_on(result), "code");
    assert_eq!(
        store.get_grant("g2").await.unwrap(),
        None,
        "the grant of a rejected code is not kept"
    );

    let result = store
        .create_grant_with_code(&grant("g1", "u1", NOW + HOUR), &code("c9", "g1", NOW + 60))
        .await;
    assert_eq!(conflict_on(result), "grant");
    assert_eq!(
        store.redeem_code("c9", NOW).await.unwrap(),
        RedeemOutcome::Invalid
    );
}

async fn refresh_token_rotates_along_the_family(store: SharedStore) {
    seed_grant(&store).await;
    let g1 = store.get_grant("g1").await.unwrap().unwrap();

    assert_eq!(
        store
            .rotate_refresh("t1", "t2", NOW + 12 * HOUR, NOW + 10, 0)
            .await
            .unwrap(),
        RotateOutcome::Rotated(Box::new(g1.clone()))
    );
    assert_eq!(
        store
            .rotate_refresh("t2", "t3", NOW + 12 * HOUR, NOW + 20, 0)
            .await
            .unwrap(),
        RotateOutcome::Rotated(Box::new(g1))
    );
    assert_eq!(
        store
            .rotate_refresh("unknown", "t4", NOW + 12 * HOUR, NOW + 30, 0)
            .await
            .unwrap(),
        RotateOutcome::Invalid
    );
}

async fn refresh_token_grant_is_read_without_spending(store: SharedStore) {
    seed_grant(&store).await;
    let g1 = store.get_grant("g1").await.unwrap().unwrap();
    assert_eq!(
        store.refresh_token_grant("t1", NOW).await.unwrap(),
        Some(g1.clone())
    );
    // Peeking spent nothing: the token still rotates.
    assert!(matches!(
        store
            .rotate_refresh("t1", "t2", NOW + HOUR, NOW + 1, 0)
            .await
            .unwrap(),
        RotateOutcome::Rotated(_)
    ));
    assert_eq!(store.refresh_token_grant("nope", NOW).await.unwrap(), None);
    assert_eq!(
        store
            .refresh_token_grant("t2", NOW + 2 * HOUR)
            .await
            .unwrap(),
        None,
        "expired"
    );
    store.revoke_grant("g1", NOW + 2).await.unwrap();
    assert_eq!(
        store.refresh_token_grant("t2", NOW + 3).await.unwrap(),
        None,
        "revoked"
    );
}

async fn refresh_token_reads_back_with_its_own_times_and_first_spend(store: SharedStore) {
    seed_grant(&store).await;
    let t1 = |spent_at| RefreshTokenRecord {
        token_hash: "t1".to_owned(),
        grant_id: "g1".to_owned(),
        created_at: NOW,
        expires_at: NOW + 12 * HOUR,
        spent_at,
        parent_hash: None,
        superseded_at: None,
    };
    assert_eq!(store.get_refresh_token("t1").await.unwrap(), Some(t1(None)));
    assert_eq!(store.get_refresh_token("nope").await.unwrap(), None);

    let grace = 30;
    store
        .rotate_refresh("t1", "t2", NOW + 5 * HOUR, NOW + 10, grace)
        .await
        .unwrap();
    assert_eq!(
        store.get_refresh_token("t1").await.unwrap(),
        Some(t1(Some(NOW + 10))),
        "spent at its first use"
    );
    assert_eq!(
        store.get_refresh_token("t2").await.unwrap(),
        Some(RefreshTokenRecord {
            token_hash: "t2".to_owned(),
            grant_id: "g1".to_owned(),
            created_at: NOW + 10,
            expires_at: NOW + 5 * HOUR,
            spent_at: None,
            parent_hash: Some("t1".to_owned()),
            superseded_at: None,
        }),
        "the successor has its own issue time and expiry, not the grant's"
    );
    // A retry within the grace rotates again; the first spend is what counts, and
    // the unused successor is superseded.
    store
        .rotate_refresh("t1", "t3", NOW + 5 * HOUR, NOW + 20, grace)
        .await
        .unwrap();
    assert_eq!(
        store.get_refresh_token("t1").await.unwrap(),
        Some(t1(Some(NOW + 10)))
    );
    let t2 = store.get_refresh_token("t2").await.unwrap().unwrap();
    assert_eq!((t2.spent_at, t2.superseded_at), (None, Some(NOW + 20)));
    assert!(t2.is_ended());
    let t3 = store.get_refresh_token("t3").await.unwrap().unwrap();
    assert_eq!(t3.parent_hash.as_deref(), Some("t1"));
    assert!(!t3.is_ended());

    // Read as stored: past its expiry and with its grant revoked, it still answers.
    store.revoke_grant("g1", NOW + 30).await.unwrap();
    assert_eq!(
        store
            .get_refresh_token("t2")
            .await
            .unwrap()
            .map(|t| t.spent_at),
        Some(None)
    );
}

async fn grants_of_a_session_are_listed_oldest_first(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    let in_session = |id: &str, created: i64, session: Option<&str>| GrantRecord {
        session_id_hash: session.map(str::to_owned),
        created_at: created,
        ..grant(id, "u1", NOW + HOUR)
    };
    let grants = [
        in_session("g2", NOW + 2, Some("s1")),
        in_session("g1", NOW + 1, Some("s1")),
        in_session("g3", NOW + 3, Some("s2")),
        in_session("g4", NOW + 4, None),
    ];
    for (i, g) in grants.iter().enumerate() {
        store
            .create_grant_with_code(g, &code(&format!("c{i}"), &g.id, NOW + 60))
            .await
            .unwrap();
    }
    store.revoke_grant("g2", NOW + 5).await.unwrap();
    let ids: Vec<String> = store
        .list_session_grants("s1")
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(
        ids,
        vec!["g1".to_owned(), "g2".to_owned()],
        "revoked ones included"
    );
    assert!(store.list_session_grants("none").await.unwrap().is_empty());
}

async fn reused_refresh_token_revokes_the_family(store: SharedStore) {
    seed_grant(&store).await;
    assert!(matches!(
        store
            .rotate_refresh("t1", "t2", NOW + 12 * HOUR, NOW + 10, 0)
            .await
            .unwrap(),
        RotateOutcome::Rotated(_)
    ));

    assert_eq!(
        store
            .rotate_refresh("t1", "t3", NOW + 12 * HOUR, NOW + 20, 0)
            .await
            .unwrap(),
        RotateOutcome::Reused {
            grant_id: "g1".to_owned()
        }
    );
    assert_eq!(
        store.get_grant("g1").await.unwrap().unwrap().revoked_at,
        Some(NOW + 20)
    );
    assert_eq!(
        store
            .rotate_refresh("t2", "t4", NOW + 12 * HOUR, NOW + 30, 0)
            .await
            .unwrap(),
        RotateOutcome::Invalid,
        "the legitimate successor dies with the family"
    );
    assert_eq!(
        store
            .rotate_refresh("t3", "t5", NOW + 12 * HOUR, NOW + 30, 0)
            .await
            .unwrap(),
        RotateOutcome::Invalid,
        "the reuse attempt got no usable token"
    );
}

async fn reuse_within_grace_rotates_instead_of_revoking(store: SharedStore) {
    seed_grant(&store).await;
    let grace = 30;
    let rotate = |old: &'static str, new: &'static str, at: UnixTime| {
        let store = store.clone();
        async move {
            store
                .rotate_refresh(old, new, NOW + 12 * HOUR, at, grace)
                .await
                .unwrap()
        }
    };
    let live = |store: SharedStore| async move {
        let mut live = Vec::new();
        for t in ["t1", "t2", "t3", "t4", "t5", "t6"] {
            if let Some(r) = store.get_refresh_token(t).await.unwrap()
                && !r.is_ended()
            {
                live.push(t);
            }
        }
        live
    };
    assert!(matches!(
        rotate("t1", "t2", NOW).await,
        RotateOutcome::Rotated(_)
    ));

    // The client lost the answer and retries with the old token, twice: each retry
    // gets a working successor and the unused one dies.
    assert!(matches!(
        rotate("t1", "t3", NOW + 1).await,
        RotateOutcome::Rotated(_)
    ));
    assert!(matches!(
        rotate("t1", "t4", NOW + grace).await,
        RotateOutcome::Rotated(_)
    ));
    assert_eq!(live(store.clone()).await, ["t4"], "the family never forks");
    assert_eq!(
        rotate("t2", "t5", NOW + grace).await,
        RotateOutcome::Superseded,
        "a superseded token is dead"
    );
    assert_eq!(
        store.get_grant("g1").await.unwrap().unwrap().revoked_at,
        None,
        "but the family lives: it was never exchanged"
    );

    // Once the successor has been used, the old token is no retry any more.
    assert!(matches!(
        rotate("t4", "t5", NOW + grace).await,
        RotateOutcome::Rotated(_)
    ));
    assert_eq!(
        rotate("t1", "t6", NOW + grace).await,
        RotateOutcome::Reused {
            grant_id: "g1".to_owned()
        }
    );
    assert!(
        store
            .get_grant("g1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
}

async fn reuse_past_the_grace_revokes_the_family(store: SharedStore) {
    seed_grant(&store).await;
    let grace = 30;
    assert!(matches!(
        store
            .rotate_refresh("t1", "t2", NOW + 12 * HOUR, NOW, grace)
            .await
            .unwrap(),
        RotateOutcome::Rotated(_)
    ));
    // Measured from the first spend, even with the successor unused.
    assert_eq!(
        store
            .rotate_refresh("t1", "t3", NOW + 12 * HOUR, NOW + grace + 1, grace)
            .await
            .unwrap(),
        RotateOutcome::Reused {
            grant_id: "g1".to_owned()
        }
    );
    assert_eq!(
        store
            .rotate_refresh("t2", "t4", NOW + 12 * HOUR, NOW + grace + 2, grace)
            .await
            .unwrap(),
        RotateOutcome::Invalid,
        "the successor died with the family"
    );
}

async fn revoked_grant_makes_refresh_invalid(store: SharedStore) {
    seed_grant(&store).await;

    assert!(store.revoke_grant("g1", NOW + 5).await.unwrap());
    assert!(
        !store.revoke_grant("g1", NOW + 6).await.unwrap(),
        "already revoked"
    );
    assert!(!store.revoke_grant("nope", NOW + 6).await.unwrap());
    assert_eq!(
        store.get_grant("g1").await.unwrap().unwrap().revoked_at,
        Some(NOW + 5)
    );
    assert_eq!(
        store
            .rotate_refresh("t1", "t2", NOW + 12 * HOUR, NOW + 10, 0)
            .await
            .unwrap(),
        RotateOutcome::Invalid
    );
}

async fn expired_refresh_token_or_grant_is_invalid(store: SharedStore) {
    seed_grant(&store).await;
    store
        .create_grant_with_code(&grant("g2", "u1", NOW + HOUR), &code("c2", "g2", NOW + 60))
        .await
        .unwrap();
    store
        .put_refresh_token("t-short", "g1", NOW + 100, NOW)
        .await
        .unwrap();
    store
        .put_refresh_token("t-long", "g2", NOW + 48 * HOUR, NOW)
        .await
        .unwrap();

    assert_eq!(
        store
            .rotate_refresh("t-short", "n1", NOW + 12 * HOUR, NOW + 100, 0)
            .await
            .unwrap(),
        RotateOutcome::Invalid,
        "token past its own expiry"
    );
    assert_eq!(
        store
            .rotate_refresh("t-long", "n2", NOW + 48 * HOUR, NOW + HOUR, 0)
            .await
            .unwrap(),
        RotateOutcome::Invalid,
        "grant past its expiry"
    );
    assert!(matches!(
        store
            .rotate_refresh("t1", "n3", NOW + 12 * HOUR, NOW + 100, 0)
            .await
            .unwrap(),
        RotateOutcome::Rotated(_)
    ));
}

async fn revoking_a_users_grants_counts_the_newly_revoked(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    for (g, u) in [("g1", "u1"), ("g2", "u1"), ("g3", "u1"), ("g4", "u2")] {
        store
            .create_grant_with_code(
                &grant(g, u, NOW + HOUR),
                &code(&format!("c-{g}"), g, NOW + 60),
            )
            .await
            .unwrap();
    }
    assert!(store.revoke_grant("g3", NOW).await.unwrap());

    assert_eq!(store.revoke_user_grants("u1", NOW + 1).await.unwrap(), 2);
    assert_eq!(store.revoke_user_grants("u1", NOW + 2).await.unwrap(), 0);
    assert_eq!(
        store.get_grant("g1").await.unwrap().unwrap().revoked_at,
        Some(NOW + 1)
    );
    assert_eq!(
        store.get_grant("g3").await.unwrap().unwrap().revoked_at,
        Some(NOW),
        "an earlier revocation keeps its time"
    );
    assert_eq!(
        store.get_grant("g4").await.unwrap().unwrap().revoked_at,
        None
    );
}

// ---- sessions ----

async fn session_lives_until_expiry_or_revocation(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    let s = session("s1", "u1", NOW + HOUR);
    store.create_session(&s).await.unwrap();
    assert_eq!(conflict_on(store.create_session(&s).await), "session");

    assert_eq!(store.get_session("s1", NOW).await.unwrap(), Some(s.clone()));
    assert_eq!(store.get_session("s1", NOW + HOUR).await.unwrap(), None);
    assert_eq!(store.get_session("nope", NOW).await.unwrap(), None);

    assert!(store.revoke_session("s1", NOW + 5).await.unwrap());
    assert!(!store.revoke_session("s1", NOW + 6).await.unwrap());
    assert!(!store.revoke_session("nope", NOW + 6).await.unwrap());
    assert_eq!(store.get_session("s1", NOW + 10).await.unwrap(), None);
}

async fn revoking_a_users_sessions_ends_only_theirs(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    for (s, u) in [("s1", "u1"), ("s2", "u1"), ("s3", "u2")] {
        store
            .create_session(&session(s, u, NOW + HOUR))
            .await
            .unwrap();
    }

    assert_eq!(store.revoke_user_sessions("u1", NOW).await.unwrap(), 2);
    assert_eq!(store.revoke_user_sessions("u1", NOW).await.unwrap(), 0);
    assert_eq!(store.get_session("s1", NOW).await.unwrap(), None);
    assert_eq!(store.get_session("s2", NOW).await.unwrap(), None);
    assert!(store.get_session("s3", NOW).await.unwrap().is_some());
}

// ---- signing keys ----

async fn first_key_for_an_epoch_wins(store: SharedStore) {
    let first = key("k-first", "ES256", 7, NOW + 10 * HOUR);
    assert!(store.insert_key_if_absent(&first).await.unwrap());
    assert!(
        !store
            .insert_key_if_absent(&key("k-second", "ES256", 7, NOW + 10 * HOUR))
            .await
            .unwrap()
    );
    assert!(
        store
            .insert_key_if_absent(&key("k-rsa", "RS256", 7, NOW + 10 * HOUR))
            .await
            .unwrap(),
        "another algorithm has its own epochs"
    );

    let keys = store.list_keys(NOW).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], first);
    assert_eq!(keys[1].kid, "k-rsa");
}

async fn keys_are_listed_by_alg_then_epoch_until_expiry(store: SharedStore) {
    for k in [
        key("rs-2", "RS256", 2, NOW + 10 * HOUR),
        key("es-3", "ES256", 3, NOW + 10 * HOUR),
        key("es-1", "ES256", 1, NOW + HOUR),
        key("es-2", "ES256", 2, NOW + 10 * HOUR),
        key("rs-1", "RS256", 1, NOW + HOUR),
    ] {
        assert!(store.insert_key_if_absent(&k).await.unwrap());
    }

    let kids =
        |keys: Vec<SigningKeyRecord>| -> Vec<String> { keys.into_iter().map(|k| k.kid).collect() };
    assert_eq!(
        kids(store.list_keys(NOW).await.unwrap()),
        ["es-1", "es-2", "es-3", "rs-1", "rs-2"]
    );
    assert_eq!(
        kids(store.list_keys(NOW + HOUR).await.unwrap()),
        ["es-2", "es-3", "rs-2"]
    );
}

// ---- throttling ----

async fn throttle_counts_within_a_window_and_restarts_after(store: SharedStore) {
    let window = 60;
    assert_eq!(store.hit("login:alice", window, NOW).await.unwrap(), 1);
    assert_eq!(store.hit("login:alice", window, NOW + 1).await.unwrap(), 2);
    assert_eq!(store.hit("login:alice", window, NOW + 59).await.unwrap(), 3);
    assert_eq!(
        store.hit("login:bob", window, NOW + 59).await.unwrap(),
        1,
        "keys count apart"
    );
    assert_eq!(
        store.hit("login:alice", window, NOW + 60).await.unwrap(),
        1,
        "a new window starts once the old one has elapsed"
    );
    assert_eq!(store.hit("login:alice", window, NOW + 61).await.unwrap(), 2);
}

async fn throttle_current_reads_without_counting(store: SharedStore) {
    assert_eq!(store.current("k", NOW).await.unwrap(), 0);
    store.hit("k", 60, NOW).await.unwrap();
    store.hit("k", 60, NOW).await.unwrap();
    assert_eq!(store.current("k", NOW + 1).await.unwrap(), 2);
    assert_eq!(
        store.current("k", NOW + 1).await.unwrap(),
        2,
        "reading counts nothing"
    );
    assert_eq!(
        store.current("k", NOW + 60).await.unwrap(),
        0,
        "the window ended"
    );
}

async fn throttle_clear_forgets_the_key(store: SharedStore) {
    for _ in 0..3 {
        store.hit("login:alice", 60, NOW).await.unwrap();
    }
    store.hit("login:bob", 60, NOW).await.unwrap();
    store.clear("login:alice").await.unwrap();
    store.clear("never-seen").await.unwrap();

    assert_eq!(store.hit("login:alice", 60, NOW + 1).await.unwrap(), 1);
    assert_eq!(store.hit("login:bob", 60, NOW + 1).await.unwrap(), 2);
}

// ---- access-token denials ----

async fn access_token_denial_holds_until_purged_after_the_tokens_expiry(store: SharedStore) {
    assert!(!store.access_token_denied("j1").await.unwrap());
    assert!(store.deny_access_token("j1", NOW + 600, NOW).await.unwrap());
    assert!(
        !store
            .deny_access_token("j1", NOW + 9999, NOW + 1)
            .await
            .unwrap(),
        "already denied"
    );
    assert!(store.access_token_denied("j1").await.unwrap());
    assert!(
        !store.access_token_denied("j2").await.unwrap(),
        "only that token"
    );

    assert_eq!(store.purge_expired(NOW + 599).await.unwrap(), 0);
    assert!(store.access_token_denied("j1").await.unwrap());
    // The first denial's expiry stands: the second did not extend it.
    assert_eq!(store.purge_expired(NOW + 600).await.unwrap(), 1);
    assert!(!store.access_token_denied("j1").await.unwrap());
}

// ---- maintenance ----

async fn purge_removes_expired_rows_and_keeps_live_ones(store: SharedStore) {
    let cut = NOW + 100;
    store.create_user(&user("u1", None, None)).await.unwrap();

    // Live grant: expired code and token go, live ones stay.
    store
        .create_grant_with_code(
            &grant("g-live", "u1", cut + HOUR),
            &code("c-old", "g-live", cut),
        )
        .await
        .unwrap();
    store
        .put_refresh_token("t-old", "g-live", cut - 1, NOW)
        .await
        .unwrap();
    store
        .put_refresh_token("t-live", "g-live", cut + HOUR, NOW)
        .await
        .unwrap();
    // Expired grant: it goes with its live-looking code and token.
    store
        .create_grant_with_code(
            &grant("g-dead", "u1", cut),
            &code("c-dead", "g-dead", cut + 10),
        )
        .await
        .unwrap();
    store
        .put_refresh_token("t-dead", "g-dead", cut + HOUR, NOW)
        .await
        .unwrap();
    // A live code on the live grant.
    store
        .create_grant_with_code(
            &grant("g-live2", "u1", cut + HOUR),
            &code("c-live", "g-live2", cut + 60),
        )
        .await
        .unwrap();

    store
        .put_auth_request(&auth_request("r-old", cut))
        .await
        .unwrap();
    store
        .put_auth_request(&auth_request("r-live", cut + 1))
        .await
        .unwrap();
    store
        .create_session(&session("s-old", "u1", cut))
        .await
        .unwrap();
    store
        .create_session(&session("s-live", "u1", cut + 1))
        .await
        .unwrap();
    assert!(
        store
            .insert_key_if_absent(&key("k-old", "ES256", 1, cut))
            .await
            .unwrap()
    );
    assert!(
        store
            .insert_key_if_absent(&key("k-live", "ES256", 2, cut + 1))
            .await
            .unwrap()
    );
    store.hit("w-old", 50, NOW + 50).await.unwrap(); // ends at cut
    store.hit("w-live", 50, NOW + 51).await.unwrap(); // ends at cut + 1
    store.deny_access_token("j-old", cut, NOW).await.unwrap();
    store
        .deny_access_token("j-live", cut + 1, NOW)
        .await
        .unwrap();

    // c-old, t-old, c-dead, t-dead, g-dead, r-old, s-old, k-old, w-old, j-old
    assert_eq!(store.purge_expired(cut).await.unwrap(), 10);
    assert_eq!(
        store.purge_expired(cut).await.unwrap(),
        0,
        "nothing left to purge"
    );

    assert!(store.get_grant("g-live").await.unwrap().is_some());
    assert!(store.get_grant("g-live2").await.unwrap().is_some());
    assert_eq!(store.get_grant("g-dead").await.unwrap(), None);
    assert!(matches!(
        store.redeem_code("c-live", cut).await.unwrap(),
        RedeemOutcome::Redeemed(_)
    ));
    assert_eq!(
        store.redeem_code("c-old", NOW).await.unwrap(),
        RedeemOutcome::Invalid,
        "purged, even when asked at an earlier time"
    );
    assert!(matches!(
        store
            .rotate_refresh("t-live", "t-next", cut + HOUR, cut, 0)
            .await
            .unwrap(),
        RotateOutcome::Rotated(_)
    ));
    assert_eq!(
        store
            .rotate_refresh("t-old", "t-x", cut + HOUR, NOW, 0)
            .await
            .unwrap(),
        RotateOutcome::Invalid
    );
    assert!(
        store
            .take_auth_request("r-live", cut)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.get_auth_request("r-old", NOW).await.unwrap(), None);
    assert!(store.get_session("s-live", cut).await.unwrap().is_some());
    assert_eq!(store.get_session("s-old", NOW).await.unwrap(), None);
    let kids: Vec<String> = store
        .list_keys(NOW)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["k-live"]);
    assert_eq!(store.hit("w-live", 50, cut).await.unwrap(), 2);
    assert_eq!(store.hit("w-old", 50, NOW + 51).await.unwrap(), 1);
    assert!(store.access_token_denied("j-live").await.unwrap());
    assert!(!store.access_token_denied("j-old").await.unwrap());
}

// ---- what the admin API reads and writes ----

async fn users_page_in_creation_order_with_filters(store: SharedStore) {
    for (i, id) in ["u3", "u1", "u2", "u4"].iter().enumerate() {
        let mut u = user(id, Some(&format!("name-{id}")), Some(&format!("{id}@x.io")));
        // u1 and u2 share a second: the id breaks the tie.
        u.created_at = NOW + [0, 1, 1, 2][i];
        store.create_user(&u).await.unwrap();
    }
    store
        .set_user_status("u2", UserStatus::Disabled, NOW)
        .await
        .unwrap();
    let ids = |users: Vec<UserRecord>| users.into_iter().map(|u| u.id).collect::<Vec<_>>();
    let all = UserFilter::default();
    assert_eq!(
        ids(store.list_users_page(&all, None, 10).await.unwrap()),
        ["u3", "u1", "u2", "u4"]
    );
    let first = store.list_users_page(&all, None, 2).await.unwrap();
    assert_eq!(ids(first.clone()), ["u3", "u1"]);
    let after = PageCursor {
        created_at: first[1].created_at,
        id: first[1].id.clone(),
    };
    assert_eq!(
        ids(store.list_users_page(&all, Some(&after), 2).await.unwrap()),
        ["u2", "u4"]
    );
    let by = |f: UserFilter| {
        let store = store.clone();
        async move { ids(store.list_users_page(&f, None, 10).await.unwrap()) }
    };
    assert_eq!(
        by(UserFilter {
            email: Some("U4@X.IO".into()),
            ..UserFilter::default()
        })
        .await,
        ["u4"]
    );
    assert_eq!(
        by(UserFilter {
            username: Some("NAME-u1".into()),
            ..UserFilter::default()
        })
        .await,
        ["u1"]
    );
    assert_eq!(
        by(UserFilter {
            status: Some(UserStatus::Disabled),
            ..UserFilter::default()
        })
        .await,
        ["u2"]
    );
    store
        .link_identity(&link("github", "s1", "u4"))
        .await
        .unwrap();
    assert_eq!(
        by(UserFilter {
            provider: Some("github".into()),
            ..UserFilter::default()
        })
        .await,
        ["u4"]
    );
}

async fn every_user_write_bumps_the_revision_and_stale_writes_change_nothing(store: SharedStore) {
    store
        .create_user(&user("u1", Some("alice"), None))
        .await
        .unwrap();
    store
        .create_user(&user("u2", Some("bob"), None))
        .await
        .unwrap();
    let revision =
        |store: SharedStore| async move { store.get_user("u1").await.unwrap().unwrap().revision };
    assert_eq!(revision(store.clone()).await, 1);
    store.set_password_hash("u1", "phc2", NOW).await.unwrap();
    assert_eq!(revision(store.clone()).await, 2);
    store
        .set_user_status("u1", UserStatus::Disabled, NOW)
        .await
        .unwrap();
    assert_eq!(revision(store.clone()).await, 3);

    let mut edited = store.get_user("u1").await.unwrap().unwrap();
    edited.name = Some("Alice".into());
    edited.status = UserStatus::Active;
    let written = store.update_user_checked(&edited, 3).await.unwrap();
    let CheckedWrite::Written(stored) = written else {
        panic!("{written:?}");
    };
    assert_eq!(
        (stored.name.as_deref(), stored.status, stored.revision),
        (Some("Alice"), UserStatus::Active, 4)
    );
    edited.name = Some("Mallory".into());
    assert_eq!(
        store.update_user_checked(&edited, 3).await.unwrap(),
        CheckedWrite::Stale
    );
    assert_eq!(
        store.get_user("u1").await.unwrap().unwrap().name.as_deref(),
        Some("Alice"),
        "a stale write changes nothing"
    );
    edited.username = Some("BOB".into());
    assert_eq!(
        conflict_on(store.update_user_checked(&edited, 4).await),
        "username"
    );
    edited.id = "ghost".into();
    assert_eq!(
        store.update_user_checked(&edited, 1).await.unwrap(),
        CheckedWrite::NoSuchUser
    );
}

async fn deleting_a_user_takes_what_hangs_off_it_and_keeps_the_audit(store: SharedStore) {
    seed_grant(&store).await;
    store
        .link_identity(&link("github", "s1", "u1"))
        .await
        .unwrap();
    store
        .create_session(&session("s1", "u1", NOW + HOUR))
        .await
        .unwrap();
    store
        .grant_role(&role_grant("u1", "ops", None))
        .await
        .unwrap();
    store
        .create_api_key(&api_key("k1", "u1", "h1", NOW + HOUR))
        .await
        .unwrap();
    store
        .record_audit(&AuditEvent {
            user_id: "u1".into(),
            actor: Some("cli".into()),
            kind: "role_granted".into(),
            detail: json!({}),
            at: NOW,
        })
        .await
        .unwrap();

    assert!(store.delete_user("u1").await.unwrap());
    assert!(!store.delete_user("u1").await.unwrap());
    assert_eq!(store.get_user("u1").await.unwrap(), None);
    assert_eq!(store.find_identity("github", "s1").await.unwrap(), None);
    assert_eq!(store.get_grant("g1").await.unwrap(), None);
    assert_eq!(store.get_refresh_token("t1").await.unwrap(), None);
    assert_eq!(store.get_session("s1", NOW).await.unwrap(), None);
    assert!(store.list_role_grants("u1").await.unwrap().is_empty());
    assert_eq!(store.find_api_key("h1").await.unwrap(), None);
    assert_eq!(store.list_audit("u1").await.unwrap().len(), 1);
    // The id is free again (a new user, nothing inherited).
    store.create_user(&user("u1", None, None)).await.unwrap();
    assert!(store.list_role_grants("u1").await.unwrap().is_empty());
}

fn api_key(id: &str, user_id: &str, secret_hash: &str, expires_at: UnixTime) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        name: format!("key {id}"),
        secret_hash: secret_hash.to_owned(),
        scopes: vec!["admin:users:read".to_owned(), "profile:read".to_owned()],
        created_at: NOW,
        expires_at,
        last_used_at: None,
        revoked_at: None,
        created_by: format!("user:{user_id}"),
    }
}

async fn api_keys_are_found_by_hash_and_listed_per_user_oldest_first(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    let later = ApiKeyRecord {
        created_at: NOW + 5,
        ..api_key("k-a", "u1", "h-a", NOW + HOUR)
    };
    store.create_api_key(&later).await.unwrap();
    store
        .create_api_key(&api_key("k-b", "u1", "h-b", NOW + HOUR))
        .await
        .unwrap();
    store
        .create_api_key(&api_key("k-c", "u2", "h-c", NOW + HOUR))
        .await
        .unwrap();

    assert_eq!(store.find_api_key("h-a").await.unwrap(), Some(later));
    assert_eq!(store.find_api_key("nope").await.unwrap(), None);
    let ids: Vec<String> = store
        .list_user_api_keys("u1")
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, ["k-b", "k-a"]);
    assert!(store.list_user_api_keys("nobody").await.unwrap().is_empty());

    // One secret hash is one key; so is one id.
    let same_hash = api_key("k-d", "u2", "h-a", NOW + HOUR);
    assert_eq!(
        conflict_on(store.create_api_key(&same_hash).await),
        "API key"
    );
    let same_id = api_key("k-a", "u2", "h-other", NOW + HOUR);
    assert_eq!(conflict_on(store.create_api_key(&same_id).await), "API key");
    // A key needs its user.
    assert!(
        store
            .create_api_key(&api_key("k-e", "ghost", "h-e", NOW + HOUR))
            .await
            .is_err()
    );
}

async fn revoking_an_api_key_needs_its_owner_and_the_first_revocation_stands(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    for (id, owner, hash) in [("k1", "u1", "h1"), ("k2", "u1", "h2"), ("k3", "u2", "h3")] {
        store
            .create_api_key(&api_key(id, owner, hash, NOW + HOUR))
            .await
            .unwrap();
    }
    assert!(
        !store.revoke_api_key("u2", "k1", NOW).await.unwrap(),
        "not u2's key"
    );
    assert_eq!(
        store.find_api_key("h1").await.unwrap().unwrap().revoked_at,
        None
    );
    assert!(store.revoke_api_key("u1", "k1", NOW + 1).await.unwrap());
    assert!(!store.revoke_api_key("u1", "k1", NOW + 2).await.unwrap());
    assert_eq!(
        store.find_api_key("h1").await.unwrap().unwrap().revoked_at,
        Some(NOW + 1)
    );
    assert!(!store.revoke_api_key("u1", "nope", NOW).await.unwrap());

    assert_eq!(store.revoke_user_api_keys("u1", NOW + 3).await.unwrap(), 1);
    assert_eq!(
        store.find_api_key("h2").await.unwrap().unwrap().revoked_at,
        Some(NOW + 3)
    );
    assert_eq!(
        store.find_api_key("h1").await.unwrap().unwrap().revoked_at,
        Some(NOW + 1),
        "an earlier revocation is kept"
    );
    assert_eq!(
        store.find_api_key("h3").await.unwrap().unwrap().revoked_at,
        None
    );
}

async fn api_key_use_is_recorded_coarsely(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store
        .create_api_key(&api_key("k1", "u1", "h1", NOW + HOUR))
        .await
        .unwrap();
    let last_used = || async {
        store
            .find_api_key("h1")
            .await
            .unwrap()
            .unwrap()
            .last_used_at
    };
    assert!(store.touch_api_key("k1", NOW, 300).await.unwrap());
    assert_eq!(last_used().await, Some(NOW));
    assert!(!store.touch_api_key("k1", NOW + 299, 300).await.unwrap());
    assert_eq!(last_used().await, Some(NOW));
    assert!(store.touch_api_key("k1", NOW + 300, 300).await.unwrap());
    assert_eq!(last_used().await, Some(NOW + 300));
    assert!(!store.touch_api_key("nope", NOW, 300).await.unwrap());
}

async fn expired_api_keys_are_purged_and_live_ones_kept(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store
        .create_api_key(&api_key("old", "u1", "h-old", NOW))
        .await
        .unwrap();
    store
        .create_api_key(&api_key("live", "u1", "h-live", NOW + 1))
        .await
        .unwrap();
    assert_eq!(store.purge_expired(NOW).await.unwrap(), 1);
    assert_eq!(store.find_api_key("h-old").await.unwrap(), None);
    assert!(store.find_api_key("h-live").await.unwrap().is_some());
}

async fn audit_queries_filter_and_page_by_sequence(store: SharedStore) {
    let event = |user_id: &str, actor: Option<&str>, kind: &str, at: UnixTime| AuditEvent {
        user_id: user_id.to_owned(),
        actor: actor.map(str::to_owned),
        kind: kind.to_owned(),
        detail: json!({ "k": kind }),
        at,
    };
    for e in [
        event("u1", Some("cli"), "role_granted", NOW),
        event("u2", None, "identity_linked", NOW + 1),
        event("u1", Some("user:admin"), "user_disabled", NOW + 2),
        event("u1", Some("user:admin"), "role_revoked", NOW + 3),
    ] {
        store.record_audit(&e).await.unwrap();
    }
    let all = store
        .query_audit(&AuditFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "by sequence");
    assert_eq!(all[1].1, event("u2", None, "identity_linked", NOW + 1));

    let page = store
        .query_audit(&AuditFilter::default(), Some(all[1].0), 1)
        .await
        .unwrap();
    assert_eq!(page, vec![all[2].clone()]);
    let kinds = |f: AuditFilter| {
        let store = store.clone();
        async move {
            store
                .query_audit(&f, None, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|(_, e)| e.kind)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        kinds(AuditFilter {
            actor: Some("user:admin".into()),
            ..AuditFilter::default()
        })
        .await,
        ["user_disabled", "role_revoked"]
    );
    assert_eq!(
        kinds(AuditFilter {
            user_id: Some("u1".into()),
            since: Some(NOW + 1),
            until: Some(NOW + 3),
            ..AuditFilter::default()
        })
        .await,
        ["user_disabled"]
    );
    assert_eq!(
        kinds(AuditFilter {
            kind: Some("identity_linked".into()),
            ..AuditFilter::default()
        })
        .await,
        ["identity_linked"]
    );
}

async fn a_users_live_sessions_are_listed_oldest_first(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    let mut later = session("s2", "u1", NOW + HOUR);
    later.created_at = NOW + 5;
    for s in [
        later,
        session("s1", "u1", NOW + HOUR),
        session("s3", "u1", NOW + HOUR),
        session("old", "u1", NOW - 1),
        session("theirs", "u2", NOW + HOUR),
    ] {
        store.create_session(&s).await.unwrap();
    }
    store.revoke_session("s3", NOW).await.unwrap();
    let ids: Vec<String> = store
        .list_user_sessions("u1", NOW)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id_hash)
        .collect();
    assert_eq!(ids, ["s1", "s2"]);
}

async fn groups_have_unique_names_members_and_checked_renames(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    let group = |id: &str, name: &str, created_at: UnixTime| GroupRecord {
        id: id.to_owned(),
        name: name.to_owned(),
        description: None,
        created_at,
        updated_at: created_at,
        revision: 1,
    };
    store.create_group(&group("g1", "Ops", NOW)).await.unwrap();
    store.create_group(&group("g2", "dev", NOW)).await.unwrap();
    assert_eq!(
        conflict_on(store.create_group(&group("g3", "OPS", NOW + 1)).await),
        "group"
    );
    let page = store.list_groups_page(None, 1).await.unwrap();
    assert_eq!(page[0].id, "g1");
    let after = PageCursor {
        created_at: page[0].created_at,
        id: page[0].id.clone(),
    };
    let rest = store.list_groups_page(Some(&after), 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
        ["g2"]
    );

    assert_eq!(
        store.add_member("g1", "u1", NOW).await.unwrap(),
        Membership::Added
    );
    assert_eq!(
        store.add_member("g1", "u1", NOW).await.unwrap(),
        Membership::AlreadyMember
    );
    assert_eq!(
        store.add_member("nope", "u1", NOW).await.unwrap(),
        Membership::NoSuchGroup
    );
    assert_eq!(
        store.add_member("g1", "ghost", NOW).await.unwrap(),
        Membership::NoSuchUser
    );
    store.add_member("g2", "u1", NOW).await.unwrap();
    store.add_member("g2", "u2", NOW).await.unwrap();
    let names = |groups: Vec<GroupRecord>| groups.into_iter().map(|g| g.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.list_user_groups("u1").await.unwrap()),
        ["dev", "Ops"]
    );
    let members = store
        .list_users_page(
            &UserFilter {
                group: Some("g2".into()),
                ..UserFilter::default()
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(members.len(), 2);

    let mut renamed = group("g1", "Operations", NOW);
    renamed.updated_at = NOW + 5;
    let CheckedGroupWrite::Written(written) =
        store.update_group_checked(&renamed, 1).await.unwrap()
    else {
        panic!("not written");
    };
    assert_eq!((written.name.as_str(), written.revision), ("Operations", 2));
    assert_eq!(
        store.update_group_checked(&renamed, 1).await.unwrap(),
        CheckedGroupWrite::Stale
    );
    renamed.name = "DEV".into();
    assert_eq!(
        conflict_on(store.update_group_checked(&renamed, 2).await),
        "group"
    );

    assert!(store.remove_member("g2", "u2").await.unwrap());
    assert!(!store.remove_member("g2", "u2").await.unwrap());
    assert!(store.delete_group("g2").await.unwrap());
    assert!(!store.delete_group("g2").await.unwrap());
    assert_eq!(
        names(store.list_user_groups("u1").await.unwrap()),
        ["Operations"]
    );
    // A deleted user leaves their groups.
    store.delete_user("u1").await.unwrap();
    assert!(store.list_user_groups("u1").await.unwrap().is_empty());
}

// ---- resource grants ----

fn list(id: &str) -> ResourceRef {
    ResourceRef {
        resource_type: "list".to_owned(),
        id: id.to_owned(),
    }
}

fn resource_grant(resource: ResourceRef, holder: Holder, role: &str) -> ResourceGrantRecord {
    ResourceGrantRecord {
        resource,
        holder,
        role: role.to_owned(),
        granted_at: NOW,
        granted_by: "admin".to_owned(),
    }
}

async fn seed_group(store: &SharedStore, id: &str, name: &str) {
    store
        .create_group(&GroupRecord {
            id: id.to_owned(),
            name: name.to_owned(),
            description: None,
            created_at: NOW,
            updated_at: NOW,
            revision: 1,
        })
        .await
        .unwrap();
}

async fn resource_grants_are_kept_once_and_need_their_holder(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    seed_group(&store, "g1", "editors").await;
    let grant = resource_grant(list("42"), Holder::User("u1".into()), "viewer");
    assert_eq!(
        store.grant_resource_role(&grant).await.unwrap(),
        ResourceGrantWrite::Added
    );
    assert_eq!(
        store.grant_resource_role(&grant).await.unwrap(),
        ResourceGrantWrite::AlreadyGranted
    );
    for holder in [Holder::User("ghost".into()), Holder::Group("ghost".into())] {
        assert_eq!(
            store
                .grant_resource_role(&resource_grant(list("42"), holder, "viewer"))
                .await
                .unwrap(),
            ResourceGrantWrite::NoSuchHolder
        );
    }
    // A user id that happens to be a group id does not make a group grant.
    assert_eq!(
        store
            .grant_resource_role(&resource_grant(list("42"), Holder::User("g1".into()), "x"))
            .await
            .unwrap(),
        ResourceGrantWrite::NoSuchHolder
    );
    let listed = store
        .list_resource_grants(&list("42"), None, 10)
        .await
        .unwrap();
    assert_eq!(listed, [grant]);
    assert!(
        store
            .revoke_resource_role(&list("42"), &Holder::User("u1".into()), "viewer")
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_resource_role(&list("42"), &Holder::User("u1".into()), "viewer")
            .await
            .unwrap()
    );
    assert!(
        store
            .list_resource_grants(&list("42"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn resource_roles_come_from_the_user_and_their_groups_now(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    seed_group(&store, "g1", "editors").await;
    store.add_member("g1", "u1", NOW).await.unwrap();
    for grant in [
        resource_grant(list("42"), Holder::User("u1".into()), "viewer"),
        resource_grant(list("42"), Holder::Group("g1".into()), "editor"),
        resource_grant(list("42"), Holder::User("u2".into()), "owner"),
        // The same type and id elsewhere, and another type with the same id.
        resource_grant(list("43"), Holder::User("u1".into()), "owner"),
        resource_grant(
            ResourceRef {
                resource_type: "board".into(),
                id: "42".into(),
            },
            Holder::User("u1".into()),
            "owner",
        ),
    ] {
        store.grant_resource_role(&grant).await.unwrap();
    }
    assert_eq!(
        store.user_resource_roles("u1", &list("42")).await.unwrap(),
        [
            HeldResourceRole {
                role: "editor".into(),
                via_group: Some("editors".into()),
            },
            HeldResourceRole {
                role: "viewer".into(),
                via_group: None,
            },
        ]
    );
    // Membership ends: so does what came through it.
    store.remove_member("g1", "u1").await.unwrap();
    assert_eq!(
        store.user_resource_roles("u1", &list("42")).await.unwrap(),
        [HeldResourceRole {
            role: "viewer".into(),
            via_group: None,
        }]
    );
    assert!(
        store
            .user_resource_roles("nobody", &list("42"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn deleting_a_user_or_group_takes_its_resource_grants(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    store.create_user(&user("u2", None, None)).await.unwrap();
    seed_group(&store, "g1", "editors").await;
    store.add_member("g1", "u2", NOW).await.unwrap();
    store
        .grant_resource_role(&resource_grant(list("1"), Holder::User("u1".into()), "a"))
        .await
        .unwrap();
    store
        .grant_resource_role(&resource_grant(list("1"), Holder::Group("g1".into()), "b"))
        .await
        .unwrap();
    store.delete_user("u1").await.unwrap();
    assert_eq!(
        store
            .list_resource_grants(&list("1"), None, 10)
            .await
            .unwrap()
            .iter()
            .map(|g| g.holder.clone())
            .collect::<Vec<_>>(),
        [Holder::Group("g1".into())]
    );
    store.delete_group("g1").await.unwrap();
    assert!(
        store
            .list_resource_grants(&list("1"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A user re-created with the old id does not inherit anything.
    store.create_user(&user("u1", None, None)).await.unwrap();
    assert!(
        store
            .user_resource_roles("u1", &list("1"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn resource_grants_page_groups_first_then_users_by_id_and_role(store: SharedStore) {
    for id in ["u1", "u2"] {
        store.create_user(&user(id, None, None)).await.unwrap();
    }
    seed_group(&store, "g2", "two").await;
    seed_group(&store, "g1", "one").await;
    let holders_roles = [
        (Holder::User("u2".into()), "a"),
        (Holder::User("u1".into()), "b"),
        (Holder::User("u1".into()), "a"),
        (Holder::Group("g2".into()), "a"),
        (Holder::Group("g1".into()), "z"),
    ];
    for (holder, role) in holders_roles.clone() {
        store
            .grant_resource_role(&resource_grant(list("7"), holder, role))
            .await
            .unwrap();
    }
    let mut walked = Vec::new();
    let mut after: Option<ResourceGrantCursor> = None;
    loop {
        let page = store
            .list_resource_grants(&list("7"), after.as_ref(), 2)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(ResourceGrantCursor {
            holder: last.holder.clone(),
            role: last.role.clone(),
        });
        walked.extend(page.into_iter().map(|g| (g.holder, g.role)));
    }
    let expected: Vec<(Holder, String)> = [
        (Holder::Group("g1".into()), "z"),
        (Holder::Group("g2".into()), "a"),
        (Holder::User("u1".into()), "a"),
        (Holder::User("u1".into()), "b"),
        (Holder::User("u2".into()), "a"),
    ]
    .into_iter()
    .map(|(h, r)| (h, r.to_owned()))
    .collect();
    assert_eq!(walked, expected);
}

async fn a_users_resources_page_by_id_with_every_role_held(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    seed_group(&store, "g1", "editors").await;
    store.add_member("g1", "u1", NOW).await.unwrap();
    for (id, holder, role) in [
        ("b", Holder::User("u1".into()), "viewer"),
        ("b", Holder::Group("g1".into()), "editor"),
        // Held twice (directly and through the group): listed once.
        ("b", Holder::Group("g1".into()), "viewer"),
        ("a", Holder::Group("g1".into()), "editor"),
        ("c", Holder::User("u1".into()), "owner"),
        ("d", Holder::User("u1".into()), "owner"),
    ] {
        store
            .grant_resource_role(&resource_grant(list(id), holder, role))
            .await
            .unwrap();
    }
    store
        .grant_resource_role(&resource_grant(
            ResourceRef {
                resource_type: "board".into(),
                id: "a0".into(),
            },
            Holder::User("u1".into()),
            "owner",
        ))
        .await
        .unwrap();
    let first = store
        .list_user_resources("u1", "list", None, 2)
        .await
        .unwrap();
    assert_eq!(
        first,
        [
            UserResource {
                id: "a".into(),
                roles: vec!["editor".into()],
            },
            UserResource {
                id: "b".into(),
                roles: vec!["editor".into(), "viewer".into()],
            },
        ]
    );
    let rest = store
        .list_user_resources("u1", "list", Some("b"), 10)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["c", "d"]
    );
    assert_eq!(
        store
            .list_user_resources("u1", "board", None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn concurrent_grants_of_one_resource_role_have_one_winner(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    let outcomes = race(&store, |store, _| async move {
        store
            .grant_resource_role(&resource_grant(list("9"), Holder::User("u1".into()), "r"))
            .await
            .unwrap()
    })
    .await;
    let added = outcomes
        .iter()
        .filter(|o| **o == ResourceGrantWrite::Added)
        .count();
    assert_eq!(added, 1, "{outcomes:?}");
}

// ---- device authorization (RFC 8628) ----

fn device_code(device_hash: &str, user_hash: &str, expires_at: UnixTime) -> DeviceCodeRecord {
    DeviceCodeRecord {
        device_code_hash: device_hash.to_owned(),
        user_code_hash: user_hash.to_owned(),
        client_id: "tv".to_owned(),
        scopes: vec!["openid".to_owned(), "offline_access".to_owned()],
        created_at: NOW,
        expires_at,
        interval: 5,
        last_polled_at: None,
        state: DeviceCodeState::Pending,
        grant_id: None,
    }
}

/// A user, and a pending device code `d1` / user code `u1` of client `tv`.
async fn seed_device_code(store: &SharedStore) {
    store
        .create_user(&user("u1", Some("alice"), None))
        .await
        .unwrap();
    store
        .create_device_code(&device_code("d1", "uc1", NOW + 600))
        .await
        .unwrap();
}

async fn device_code_is_found_by_user_code_while_pending_and_live(store: SharedStore) {
    seed_device_code(&store).await;
    let found = store
        .find_device_code("uc1", NOW + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, device_code("d1", "uc1", NOW + 600));
    assert_eq!(store.find_device_code("nope", NOW).await.unwrap(), None);
    assert_eq!(
        store.find_device_code("uc1", NOW + 600).await.unwrap(),
        None,
        "expired"
    );
    // Either code taken again is a conflict.
    for (d, u) in [("d1", "uc9"), ("d9", "uc1")] {
        let again = store
            .create_device_code(&device_code(d, u, NOW + 600))
            .await;
        assert!(
            matches!(again, Err(StoreError::Conflict { .. })),
            "{d}/{u}: {again:?}"
        );
    }
    assert!(store.deny_device_code("uc1", NOW + 2).await.unwrap());
    assert_eq!(
        store.find_device_code("uc1", NOW + 3).await.unwrap(),
        None,
        "decided"
    );
    assert!(!store.deny_device_code("uc1", NOW + 3).await.unwrap());
    assert!(
        !store
            .approve_device_code("uc1", &grant("g1", "u1", NOW + HOUR), NOW + 3)
            .await
            .unwrap(),
        "a denied code cannot be approved"
    );
    assert_eq!(
        store.get_grant("g1").await.unwrap(),
        None,
        "a refused approval stores no grant"
    );
    assert_eq!(
        store
            .poll_device_code("d1", "tv", NOW + 10, 5)
            .await
            .unwrap(),
        DevicePoll::Denied
    );
}

async fn device_code_polls_wait_slow_down_and_redeem_once(store: SharedStore) {
    seed_device_code(&store).await;
    let poll = |at: UnixTime| {
        let store = store.clone();
        async move { store.poll_device_code("d1", "tv", at, 5).await.unwrap() }
    };
    assert_eq!(poll(NOW + 1).await, DevicePoll::Pending);
    assert_eq!(
        poll(NOW + 3).await,
        DevicePoll::SlowDown { interval: 10 },
        "2 s after the last poll, with an interval of 5"
    );
    assert_eq!(
        poll(NOW + 12).await,
        DevicePoll::SlowDown { interval: 15 },
        "9 s is too soon for the grown interval of 10"
    );
    assert_eq!(poll(NOW + 27).await, DevicePoll::Pending, "15 s later");
    assert_eq!(
        store
            .poll_device_code("d1", "other", NOW + 60, 5)
            .await
            .unwrap(),
        DevicePoll::Unknown,
        "another client's code"
    );
    assert_eq!(
        store.poll_device_code("nope", "tv", NOW, 5).await.unwrap(),
        DevicePoll::Unknown
    );
    let g = grant("g1", "u1", NOW + HOUR);
    assert!(
        store
            .approve_device_code("uc1", &g, NOW + 30)
            .await
            .unwrap()
    );
    assert_eq!(store.get_grant("g1").await.unwrap(), Some(g));
    assert!(!store.deny_device_code("uc1", NOW + 31).await.unwrap());
    match poll(NOW + 32).await {
        DevicePoll::Approved(record) => {
            assert_eq!(record.grant_id.as_deref(), Some("g1"));
            assert_eq!(record.scopes, vec!["openid", "offline_access"]);
        }
        other => panic!("expected the approved code, got {other:?}"),
    }
    assert_eq!(
        poll(NOW + 40).await,
        DevicePoll::AlreadyRedeemed {
            grant_id: Some("g1".to_owned())
        }
    );
    assert_eq!(
        poll(NOW + 700).await,
        DevicePoll::AlreadyRedeemed {
            grant_id: Some("g1".to_owned())
        },
        "redeemed stays redeemed past the expiry"
    );
}

async fn deleting_a_user_takes_their_approved_device_code(store: SharedStore) {
    seed_device_code(&store).await;
    assert!(
        store
            .approve_device_code("uc1", &grant("g1", "u1", NOW + HOUR), NOW + 1)
            .await
            .unwrap()
    );
    assert!(store.delete_user("u1").await.unwrap());
    assert_eq!(
        store
            .poll_device_code("d1", "tv", NOW + 2, 5)
            .await
            .unwrap(),
        DevicePoll::Unknown,
        "the grant and its device code went with the user"
    );
}

async fn expired_device_codes_answer_expired_and_are_purged(store: SharedStore) {
    seed_device_code(&store).await;
    store
        .create_device_code(&device_code("d2", "uc2", NOW + 6000))
        .await
        .unwrap();
    assert_eq!(
        store
            .poll_device_code("d1", "tv", NOW + 600, 5)
            .await
            .unwrap(),
        DevicePoll::Expired
    );
    assert!(
        !store
            .approve_device_code("uc1", &grant("g1", "u1", NOW + HOUR), NOW + 600)
            .await
            .unwrap()
    );
    assert!(store.purge_expired(NOW + 600).await.unwrap() >= 1);
    assert_eq!(
        store
            .poll_device_code("d1", "tv", NOW + 601, 5)
            .await
            .unwrap(),
        DevicePoll::Unknown,
        "purged"
    );
    assert_eq!(
        store
            .poll_device_code("d2", "tv", NOW + 601, 5)
            .await
            .unwrap(),
        DevicePoll::Pending,
        "a live one is kept"
    );
}

// ---- races: one winner, whatever the interleaving ----

/// Runs `op` in `RACERS` tasks released together and returns their results.
async fn race<T, F, Fut>(store: &SharedStore, op: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(SharedStore, usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let start = Arc::new(Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let start = Arc::clone(&start);
            let run = op(Arc::clone(store), i);
            tokio::spawn(async move {
                start.wait().await;
                run.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(RACERS);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

async fn concurrent_redeems_of_one_code_have_one_winner(store: SharedStore) {
    seed_grant(&store).await;
    let outcomes = race(&store, |s, _| async move {
        s.redeem_code("c1", NOW + 1).await.unwrap()
    })
    .await;

    let won = outcomes
        .iter()
        .filter(|o| matches!(o, RedeemOutcome::Redeemed(_)))
        .count();
    let replays = outcomes
        .iter()
        .filter(|o| {
            **o == RedeemOutcome::AlreadyUsed {
                grant_id: "g1".to_owned(),
            }
        })
        .count();
    assert_eq!((won, replays), (1, RACERS - 1), "{outcomes:?}");
}

async fn concurrent_polls_of_an_approved_device_code_have_one_winner(store: SharedStore) {
    seed_device_code(&store).await;
    assert!(
        store
            .approve_device_code("uc1", &grant("g1", "u1", NOW + HOUR), NOW + 1)
            .await
            .unwrap()
    );
    let outcomes = race(&store, |s, _| async move {
        s.poll_device_code("d1", "tv", NOW + 2, 5).await.unwrap()
    })
    .await;
    let won = outcomes
        .iter()
        .filter(|o| matches!(o, DevicePoll::Approved(_)))
        .count();
    let late = outcomes
        .iter()
        .filter(|o| matches!(o, DevicePoll::AlreadyRedeemed { .. }))
        .count();
    assert_eq!((won, late), (1, RACERS - 1), "{outcomes:?}");
}

async fn concurrent_approvals_of_one_device_code_have_one_winner(store: SharedStore) {
    seed_device_code(&store).await;
    let outcomes = race(&store, |s, i| async move {
        let g = grant(&format!("g{i}"), "u1", NOW + HOUR);
        s.approve_device_code("uc1", &g, NOW + 1).await.unwrap()
    })
    .await;
    assert_eq!(
        outcomes.iter().filter(|won| **won).count(),
        1,
        "{outcomes:?}"
    );
    let mut grants = 0;
    for i in 0..RACERS {
        grants += usize::from(store.get_grant(&format!("g{i}")).await.unwrap().is_some());
    }
    assert_eq!(grants, 1, "only the winner's grant is stored");
}

async fn concurrent_rotations_of_one_token_have_one_winner(store: SharedStore) {
    seed_grant(&store).await;
    let outcomes = race(&store, |s, i| async move {
        s.rotate_refresh("t1", &format!("next-{i}"), NOW + HOUR, NOW + 1, 0)
            .await
            .unwrap()
    })
    .await;

    let won = outcomes
        .iter()
        .filter(|o| matches!(o, RotateOutcome::Rotated(_)))
        .count();
    let reused = outcomes
        .iter()
        .filter(|o| {
            **o == RotateOutcome::Reused {
                grant_id: "g1".to_owned(),
            }
        })
        .count();
    // The first loser revokes the family; losers after it find a revoked grant.
    let invalid = outcomes
        .iter()
        .filter(|o| **o == RotateOutcome::Invalid)
        .count();
    assert_eq!(won, 1, "{outcomes:?}");
    assert!(reused >= 1, "{outcomes:?}");
    assert_eq!(won + reused + invalid, RACERS, "{outcomes:?}");
    assert!(
        store
            .get_grant("g1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some(),
        "the losers' reuse revoked the family"
    );
}

async fn concurrent_rotations_within_the_grace_leave_one_live_token(store: SharedStore) {
    seed_grant(&store).await;
    let outcomes = race(&store, |s, i| async move {
        s.rotate_refresh("t1", &format!("next-{i}"), NOW + HOUR, NOW + 1, 10)
            .await
            .unwrap()
    })
    .await;

    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, RotateOutcome::Rotated(_))),
        "every parallel refresh is answered: {outcomes:?}"
    );
    let mut live = 0;
    for i in 0..RACERS {
        let token = store
            .get_refresh_token(&format!("next-{i}"))
            .await
            .unwrap()
            .unwrap();
        live += usize::from(!token.is_ended());
    }
    assert_eq!(live, 1, "one family, one live token");
    assert_eq!(
        store.get_grant("g1").await.unwrap().unwrap().revoked_at,
        None
    );
}

async fn concurrent_takes_of_one_auth_request_have_one_winner(store: SharedStore) {
    store
        .put_auth_request(&auth_request("req", NOW + 600))
        .await
        .unwrap();
    let taken = race(&store, |s, _| async move {
        s.take_auth_request("req", NOW).await.unwrap()
    })
    .await;

    assert_eq!(taken.iter().filter(|t| t.is_some()).count(), 1, "{taken:?}");
}

async fn concurrent_key_inserts_for_one_epoch_have_one_winner(store: SharedStore) {
    let inserted = race(&store, |s, i| async move {
        let k = key(&format!("kid-{i}"), "ES256", 42, NOW + HOUR);
        let won = s.insert_key_if_absent(&k).await.unwrap();
        (won, k.kid)
    })
    .await;

    let winners: Vec<&String> = inserted
        .iter()
        .filter(|(won, _)| *won)
        .map(|(_, kid)| kid)
        .collect();
    assert_eq!(winners.len(), 1, "{inserted:?}");
    let keys = store.list_keys(NOW).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(&keys[0].kid, winners[0], "the stored key is the winner's");
}

async fn concurrent_claims_of_the_outbox_take_each_notice_once(store: SharedStore) {
    store.create_user(&user("u1", None, None)).await.unwrap();
    for i in 0..40 {
        let sid = format!("s{i}");
        store
            .create_session(&session(&sid, "u1", NOW + HOUR))
            .await
            .unwrap();
        store
            .end_session(&sid, NOW, &[notice("app", &sid)])
            .await
            .unwrap();
    }
    let claims = race(&store, |s, i| async move {
        s.claim_logout_deliveries(&format!("owner-{i}"), NOW, NOW + 60, 5)
            .await
            .unwrap()
    })
    .await;
    let mut sids: Vec<String> = claims
        .iter()
        .flatten()
        .map(|d| d.notice.sid.clone())
        .collect();
    let claimed = sids.len();
    sids.sort();
    sids.dedup();
    assert_eq!(sids.len(), claimed, "no notice was claimed twice");
    assert_eq!(claimed, 40, "every notice was claimed once");
}

/// A reader following the audit by sequence number while events are recorded
/// concurrently never pages past one that commits late: numbers become visible in
/// order.
async fn audit_readers_never_page_past_an_event_recorded_concurrently(store: SharedStore) {
    const PER_RACER: usize = 20;
    let writers_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, writers_done) = (store.clone(), writers_done.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                // Read after the writers are done too, until a page comes back empty:
                // whatever was skipped then is skipped for good.
                let done = writers_done.load(std::sync::atomic::Ordering::SeqCst);
                let page = store
                    .query_audit(&AuditFilter::default(), after, 7)
                    .await
                    .unwrap();
                match page.last() {
                    Some((seq, _)) => after = Some(*seq),
                    None if done => break,
                    None => tokio::task::yield_now().await,
                }
                seen.extend(page.into_iter().map(|(_, e)| e.kind));
            }
            seen
        })
    };
    race(&store, |s, i| async move {
        for n in 0..PER_RACER {
            s.record_audit(&AuditEvent {
                user_id: format!("u{i}"),
                actor: None,
                kind: format!("e{i}-{n}"),
                detail: json!({}),
                at: NOW,
            })
            .await
            .unwrap();
        }
    })
    .await;
    writers_done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!(
        (seen.len(), distinct.len()),
        (RACERS * PER_RACER, RACERS * PER_RACER),
        "the reader saw every event once"
    );
}

async fn concurrent_denials_of_one_access_token_have_one_winner(store: SharedStore) {
    let denied = race(&store, |s, i| async move {
        s.deny_access_token("j1", NOW + 600, NOW + i as i64)
            .await
            .unwrap()
    })
    .await;

    assert_eq!(denied.iter().filter(|d| **d).count(), 1, "{denied:?}");
    assert!(store.access_token_denied("j1").await.unwrap());
}

macro_rules! conformance_tests {
    ($backend:ident, $fixture:ident) => {
        mod $backend {
            conformance_tests!(@cases $fixture, #[tokio::test], [
                created_user_reads_back_unchanged,
                login_lookup_ignores_case,
                duplicate_id_username_or_verified_email_conflicts,
                only_verified_emails_are_unique,
                login_lookup_sees_only_verified_emails,
                a_verified_email_wins_over_a_username,
                users_without_username_or_email_do_not_collide,
                case_folds_in_ascii_only_and_text_orders_as_bytes,
                users_are_listed_by_creation_then_id,
                profile_update_keeps_status_password_and_creation,
                status_and_password_changes_persist,
                identity_link_is_unique_per_provider_and_subject,
                identity_update_replaces_claims_and_provider_data,
                identities_of_a_user_are_listed_in_order,
                unlinking_removes_only_that_identity,
                role_grants_are_kept_once_and_listed_global_first,
                revoking_a_role_grant_removes_only_that_grant,
                role_grant_needs_an_existing_user,
                audit_events_are_listed_per_user_oldest_first,
                auth_request_is_taken_once,
                expired_auth_request_is_neither_read_nor_taken,
                code_redeems_once_then_reports_its_grant,
                expired_or_unknown_code_is_invalid,
                grant_and_code_are_stored_together_or_not_at_all,
                refresh_token_rotates_along_the_family,
                refresh_token_grant_is_read_without_spending,
                refresh_token_reads_back_with_its_own_times_and_first_spend,
                grants_of_a_session_are_listed_oldest_first,
                reused_refresh_token_revokes_the_family,
                reuse_within_grace_rotates_instead_of_revoking,
                reuse_past_the_grace_revokes_the_family,
                revoked_grant_makes_refresh_invalid,
                expired_refresh_token_or_grant_is_invalid,
                revoking_a_users_grants_counts_the_newly_revoked,
                session_lives_until_expiry_or_revocation,
                revoking_a_users_sessions_ends_only_theirs,
                first_key_for_an_epoch_wins,
                keys_are_listed_by_alg_then_epoch_until_expiry,
                throttle_counts_within_a_window_and_restarts_after,
                throttle_clear_forgets_the_key,
                throttle_current_reads_without_counting,
                access_token_denial_holds_until_purged_after_the_tokens_expiry,
                purge_removes_expired_rows_and_keeps_live_ones,
                users_page_in_creation_order_with_filters,
                every_user_write_bumps_the_revision_and_stale_writes_change_nothing,
                deleting_a_user_takes_what_hangs_off_it_and_keeps_the_audit,
                audit_queries_filter_and_page_by_sequence,
                a_users_live_sessions_are_listed_oldest_first,
                groups_have_unique_names_members_and_checked_renames,
                api_keys_are_found_by_hash_and_listed_per_user_oldest_first,
                revoking_an_api_key_needs_its_owner_and_the_first_revocation_stands,
                api_key_use_is_recorded_coarsely,
                expired_api_keys_are_purged_and_live_ones_kept,
                resource_grants_are_kept_once_and_need_their_holder,
                resource_roles_come_from_the_user_and_their_groups_now,
                deleting_a_user_or_group_takes_its_resource_grants,
                resource_grants_page_groups_first_then_users_by_id_and_role,
                a_users_resources_page_by_id_with_every_role_held,
                device_code_is_found_by_user_code_while_pending_and_live,
                device_code_polls_wait_slow_down_and_redeem_once,
                expired_device_codes_answer_expired_and_are_purged,
                deleting_a_user_takes_their_approved_device_code,
                sealed_values_page_by_row_and_are_rewritten_only_where_unchanged,
                ending_a_session_queues_its_notices_once,
                ending_a_users_sessions_queues_a_notice_per_client_of_each_live_session,
                outbox_notices_are_leased_to_one_sender_and_retried_when_due,
                mail_is_leased_to_one_sender_and_retried_when_due,
                account_tokens_are_single_use_and_queue_their_mail,
                expired_account_tokens_are_purged_and_deleted_users_take_theirs,
    a_registration_whose_username_was_taken_meanwhile_makes_no_user, a_totp_step_is_used_once_and_never_an_earlier_one, recovery_codes_work_once_and_are_replaced_whole, registrations_are_confirmed_once_into_a_verified_active_user, removing_totp_or_the_user_takes_the_enrolment_and_its_codes, sessions_and_grants_keep_how_the_person_authenticated, totp_enrolment_is_pending_until_confirmed_with_its_own_secret, totp_secrets_are_listed_and_rewritten_for_rekeying, verify_email_links_carry_their_address_and_differ_from_reset_links,
            ]);
            conformance_tests!(@cases $fixture,
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)], [
                concurrent_redeems_of_one_code_have_one_winner,
                concurrent_rotations_of_one_token_have_one_winner,
                concurrent_rotations_within_the_grace_leave_one_live_token,
                concurrent_takes_of_one_auth_request_have_one_winner,
                concurrent_key_inserts_for_one_epoch_have_one_winner,
                concurrent_denials_of_one_access_token_have_one_winner,
                concurrent_grants_of_one_resource_role_have_one_winner,
                audit_readers_never_page_past_an_event_recorded_concurrently,
                concurrent_polls_of_an_approved_device_code_have_one_winner,
                concurrent_approvals_of_one_device_code_have_one_winner,
                concurrent_claims_of_the_outbox_take_each_notice_once,
                concurrent_redeems_of_one_account_token_have_one_winner,
    concurrent_confirmations_of_one_registration_have_one_winner, concurrent_uses_of_one_recovery_code_have_one_winner, concurrent_uses_of_one_totp_step_have_one_winner,
            ]);
        }
    };
    (@cases $fixture:ident, #[$test:meta], [$($case:ident),* $(,)?]) => {
        $(
            #[$test]
            async fn $case() {
                let Some(fixture) = super::$fixture().await else {
                    return;
                };
                super::$case(fixture.store.clone()).await;
            }
        )*
    };
}

conformance_tests!(memory, memory);
conformance_tests!(sqlite, sqlite_in_memory);
conformance_tests!(sqlite_file, sqlite_file);
conformance_tests!(postgres, postgres);
