//! PostgreSQL backend on sqlx: the store several replicas share.
//!
//! It follows the SQLite backend's rules exactly (the conformance suite runs against
//! both); `migrations/postgres/0001_init.sql` says how the schema keeps SQLite's case
//! folding and byte ordering. Everything lives in one configured schema: each pooled
//! connection starts with `search_path` set to it, so no statement names it.
//!
//! One-time operations let the database decide the winner under READ COMMITTED:
//! a single `UPDATE … WHERE used_at IS NULL RETURNING`, `DELETE … RETURNING` or
//! `INSERT … ON CONFLICT DO NOTHING` that only one caller can match, or a transaction
//! that first locks the row it decides about (`SELECT … FOR UPDATE`), so a concurrent
//! caller waits and then reads the winner's committed row.

use std::borrow::Cow;
use std::str::FromStr;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{
    ConnectOptions, Connection, Decode, PgConnection, PgPool, Postgres, QueryBuilder, Row,
    SqlSafeStr, Type,
};

use super::PendingColumns;
use super::{
    AccountTokenPurpose, AccountTokenRecord, AccountTokenStore, ApiKeyRecord, ApiKeyStore,
    AuditEvent, AuditFilter, AuditStore, AuthRequestRecord, CheckedGroupWrite, CheckedWrite,
    CodeRecord, Confirmation, DeviceCodeRecord, DeviceCodeState, DeviceCodeStore, DevicePoll,
    GrantRecord, GrantStore, GroupRecord, GroupStore, HeldResourceRole, Holder, IdentityLink,
    KeyStore, LoginStore, LogoutDelivery, LogoutNotice, LogoutOutbox, MailDelivery, MailOutbox,
    Maintenance, Membership, MfaStore, OutgoingMail, PageCursor, PendingRegistration,
    RedeemOutcome, RedeemedToken, RefreshTokenRecord, ResourceGrantCursor, ResourceGrantRecord,
    ResourceGrantStore, ResourceGrantWrite, ResourceRef, RevocationStore, RoleGrantRecord,
    RoleGrantStore, RotateOutcome, SealedColumn, SealedRewrite, SealedRow, SealedStore,
    SealedValue, SessionRecord, SessionStore, SigningKeyRecord, StoreError, StoreResult,
    ThrottleStore, TotpRecord, UnixTime, UserFilter, UserRecord, UserResource, UserStatus,
    UserStore,
};

/// The `format_version` this code writes, and the only one it reads.
const FORMAT_VERSION: i64 = 1;

/// The first key of the advisory lock that orders audit inserts (the second is the
/// schema's hash), so the lock never collides with another application's.
const AUDIT_LOCK_CLASS: i32 = 0x5342_4155; // "SBAU"

/// Folds ASCII letters only, as SQLite's NOCASE does: `lower()` would also fold
/// non-ASCII letters, by locale. The schema's `*_folded` columns are made the same way.
macro_rules! fold {
    ($sql:literal) => {
        concat!(
            "translate(",
            $sql,
            ", 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
        )
    };
}

/// How to reach the database. The URL is a secret (it may hold a password): it is
/// never logged, and no error built here repeats it.
#[derive(Clone)]
pub struct PostgresOptions {
    pub url: String,
    /// The schema every table lives in; created if missing.
    pub schema: String,
    pub max_connections: u32,
}

impl Drop for PostgresOptions {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.url);
    }
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &"***")
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Whether `name` may be a schema of the store: a plain lowercase identifier, so it
/// needs no quoting in `search_path` or DDL and means the same wherever it is written.
pub fn valid_schema_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && !name.starts_with("pg_")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// PostgreSQL store. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    schema: String,
}

impl std::fmt::Debug for PostgresStore {
    // The pool's options hold the URL; only the schema is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects, creates the schema if missing and migrates it. Several processes may
    /// do this at once against one schema.
    pub async fn connect(options: &PostgresOptions) -> StoreResult<Self> {
        if !valid_schema_name(&options.schema) {
            return Err(StoreError::Backend(format!(
                "schema {:?} is not a plain lowercase identifier",
                options.schema
            )));
        }
        // sqlx's parse errors describe the problem, never the URL's text.
        let connect = PgConnectOptions::from_str(&options.url)
            .map_err(|e| StoreError::Backend(format!("the PostgreSQL URL is invalid: {e}")))?
            .options([("search_path", options.schema.as_str())]);
        create_schema(&connect, &options.schema).await?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .connect_with(connect)
            .await
            .map_err(backend)?;
        migrator()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migrating the database: {e}")))?;
        Ok(Self {
            pool,
            schema: options.schema.clone(),
        })
    }

    /// The `NOTIFY` channel of this schema's replicas: named by a hash of the schema,
    /// since a channel name, like any identifier, has at most 63 bytes.
    fn change_channel(&self) -> String {
        let hash = crate::secrets::sha256_hex(self.schema.as_bytes());
        format!("switchboard_changes_{}", &hash[..24])
    }

    /// Closes the pool's connections (tests drop their schema after this).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the schema unless it exists. `CREATE SCHEMA IF NOT EXISTS` is not safe
/// against itself: two processes can both see no schema, and the slower one fails on
/// the catalog's unique index; that loser's schema exists, which is all it wanted. An
/// existing schema is never created again, so a role without the database's CREATE
/// privilege can use a schema an administrator made.
async fn create_schema(connect: &PgConnectOptions, schema: &str) -> StoreResult<()> {
    let mut conn = connect.connect().await.map_err(backend)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut conn)
            .await
            .map_err(backend)?;
    if !exists {
        // `schema` is a checked plain identifier (valid_schema_name): safe to splice.
        let ddl = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
        match sqlx::query(sqlx::AssertSqlSafe(ddl))
            .execute(&mut conn)
            .await
        {
            Ok(_) => {}
            Err(sqlx::Error::Database(db))
                if db.is_unique_violation() || db.code().as_deref() == Some("42P06") => {}
            Err(e) => return Err(backend(e)),
        }
    }
    conn.close().await.map_err(backend)
}

/// The embedded migrations, listed by hand as in the SQLite backend (`sqlx::migrate!`
/// needs the `macros` feature, which the workspace leaves off). sqlx takes a
/// database-wide advisory lock while migrating, so replicas starting together apply
/// each migration once.
fn migrator() -> Migrator {
    let migration = |version, description, sql: &'static str| {
        Migration::new(
            version,
            Cow::Borrowed(description),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )
    };
    Migrator::with_migrations(vec![
        migration(
            1,
            "init",
            include_str!("../../migrations/postgres/0001_init.sql"),
        ),
        migration(
            2,
            "device codes",
            include_str!("../../migrations/postgres/0002_device_codes.sql"),
        ),
        migration(
            3,
            "logout outbox",
            include_str!("../../migrations/postgres/0003_logout_outbox.sql"),
        ),
        migration(
            4,
            "mail outbox and account tokens",
            include_str!("../../migrations/postgres/0004_mail_outbox.sql"),
        ),
        migration(
            5,
            "registrations and email verification",
            include_str!("../../migrations/postgres/0005_registrations.sql"),
        ),
        migration(
            6,
            "mfa",
            include_str!("../../migrations/postgres/0006_mfa.sql"),
        ),
    ])
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The name of the constraint a unique violation broke; `None` for any other error.
fn violated_unique(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Some(db.constraint().unwrap_or(""))
        }
        _ => None,
    }
}

/// A unique violation becomes `Conflict { what }`, anything else a backend failure.
fn conflict_or_backend(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match violated_unique(&e) {
        Some(_) => StoreError::Conflict { what },
        None => backend(e),
    }
}

/// Names the user key that collided, by the constraint (index) the schema names.
fn user_conflict(e: sqlx::Error) -> StoreError {
    let what = match violated_unique(&e) {
        Some("users_username") => "username",
        Some("users_verified_email") => "email",
        Some(_) => "user",
        None => return backend(e),
    };
    StoreError::Conflict { what }
}

fn to_json<T: Serialize + ?Sized>(value: &T, what: &str) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("encoding {what} as JSON: {e}")))
}

/// Reads the columns of one row of a `what`, reporting undecodable data as corrupt.
struct Columns<'r> {
    row: &'r PgRow,
    what: &'static str,
}

impl<'r> Columns<'r> {
    fn new(row: &'r PgRow, what: &'static str) -> Self {
        Self { row, what }
    }

    fn corrupt(&self, detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            what: self.what,
            detail: detail.to_string(),
        }
    }

    fn get<T>(&self, column: &str) -> StoreResult<T>
    where
        T: Decode<'r, Postgres> + Type<Postgres>,
    {
        self.row.try_get(column).map_err(|e| self.corrupt(e))
    }

    fn json<T: DeserializeOwned>(&self, column: &str) -> StoreResult<T> {
        let text: String = self.get(column)?;
        serde_json::from_str(&text).map_err(|e| self.corrupt(format!("{column}: {e}")))
    }

    /// Fails unless the row is in the one format this code understands.
    fn versioned(self) -> StoreResult<Self> {
        let version: i64 = self.get("format_version")?;
        if version == FORMAT_VERSION {
            Ok(self)
        } else {
            Err(self.corrupt(format!("unknown format version {version}")))
        }
    }
}

macro_rules! user_columns {
    () => {
        "id, username, email, email_verified, name, given_name, family_name, picture, \
         groups_json, status, password_hash, created_at, updated_at, last_login_at, \
         format_version, revision"
    };
}

fn user_from_row(row: &PgRow) -> StoreResult<UserRecord> {
    let c = Columns::new(row, "user").versioned()?;
    let status: String = c.get("status")?;
    Ok(UserRecord {
        id: c.get("id")?,
        username: c.get("username")?,
        email: c.get("email")?,
        email_verified: c.get("email_verified")?,
        name: c.get("name")?,
        given_name: c.get("given_name")?,
        family_name: c.get("family_name")?,
        picture: c.get("picture")?,
        groups: c.json("groups_json")?,
        status: UserStatus::parse(&status)
            .ok_or_else(|| c.corrupt(format!("unknown status {status:?}")))?,
        password_hash: c.get("password_hash")?,
        created_at: c.get("created_at")?,
        updated_at: c.get("updated_at")?,
        last_login_at: c.get("last_login_at")?,
        revision: c.get("revision")?,
    })
}

fn audit_from_row(row: &PgRow) -> StoreResult<(i64, AuditEvent)> {
    let c = Columns::new(row, "audit event").versioned()?;
    Ok((
        c.get("seq")?,
        AuditEvent {
            user_id: c.get("user_id")?,
            actor: c.get("actor")?,
            kind: c.get("kind")?,
            detail: c.json("detail_json")?,
            at: c.get("at")?,
        },
    ))
}

macro_rules! link_columns {
    () => {
        "provider_id, subject, user_id, claims_json, sealed_provider_data, created_at, \
         updated_at, format_version"
    };
}

fn link_from_row(row: &PgRow) -> StoreResult<IdentityLink> {
    let c = Columns::new(row, "identity link").versioned()?;
    Ok(IdentityLink {
        provider_id: c.get("provider_id")?,
        subject: c.get("subject")?,
        user_id: c.get("user_id")?,
        claims: c.json("claims_json")?,
        sealed_provider_data: c.get("sealed_provider_data")?,
        created_at: c.get("created_at")?,
        updated_at: c.get("updated_at")?,
    })
}

macro_rules! auth_request_columns {
    () => {
        "id_hash, request_json, created_at, expires_at, format_version"
    };
}

fn auth_request_from_row(row: &PgRow) -> StoreResult<AuthRequestRecord> {
    let c = Columns::new(row, "auth request").versioned()?;
    Ok(AuthRequestRecord {
        id_hash: c.get("id_hash")?,
        request: c.json("request_json")?,
        created_at: c.get("created_at")?,
        expires_at: c.get("expires_at")?,
    })
}

macro_rules! grant_columns {
    () => {
        "id, user_id, client_id, session_id_hash, scopes_json, auth_time, provider_id, \
         created_at, expires_at, revoked_at, format_version, resource, amr_json"
    };
}

fn grant_from_row(row: &PgRow) -> StoreResult<GrantRecord> {
    let c = Columns::new(row, "grant").versioned()?;
    Ok(GrantRecord {
        id: c.get("id")?,
        user_id: c.get("user_id")?,
        client_id: c.get("client_id")?,
        session_id_hash: c.get("session_id_hash")?,
        scopes: c.json("scopes_json")?,
        auth_time: c.get("auth_time")?,
        provider_id: c.get("provider_id")?,
        created_at: c.get("created_at")?,
        expires_at: c.get("expires_at")?,
        revoked_at: c.get("revoked_at")?,
        resource: c.get("resource")?,
        amr: c.json("amr_json")?,
    })
}

macro_rules! code_columns {
    () => {
        "code_hash, grant_id, client_id, redirect_uri, code_challenge, nonce, created_at, \
         expires_at"
    };
}

fn code_from_row(row: &PgRow) -> StoreResult<CodeRecord> {
    let c = Columns::new(row, "code");
    Ok(CodeRecord {
        code_hash: c.get("code_hash")?,
        grant_id: c.get("grant_id")?,
        client_id: c.get("client_id")?,
        redirect_uri: c.get("redirect_uri")?,
        code_challenge: c.get("code_challenge")?,
        nonce: c.get("nonce")?,
        created_at: c.get("created_at")?,
        expires_at: c.get("expires_at")?,
    })
}

macro_rules! refresh_token_columns {
    () => {
        "token_hash, grant_id, created_at, expires_at, spent_at, parent_hash, superseded_at"
    };
}

fn refresh_token_from_row(row: &PgRow) -> StoreResult<RefreshTokenRecord> {
    let c = Columns::new(row, "refresh token");
    Ok(RefreshTokenRecord {
        token_hash: c.get("token_hash")?,
        grant_id: c.get("grant_id")?,
        created_at: c.get("created_at")?,
        expires_at: c.get("expires_at")?,
        spent_at: c.get("spent_at")?,
        parent_hash: c.get("parent_hash")?,
        superseded_at: c.get("superseded_at")?,
    })
}

macro_rules! session_columns {
    () => {
        "id_hash, user_id, provider_id, auth_time, created_at, expires_at, revoked_at, amr_json"
    };
}

fn session_from_row(row: &PgRow) -> StoreResult<SessionRecord> {
    let c = Columns::new(row, "session");
    Ok(SessionRecord {
        id_hash: c.get("id_hash")?,
        user_id: c.get("user_id")?,
        provider_id: c.get("provider_id")?,
        auth_time: c.get("auth_time")?,
        created_at: c.get("created_at")?,
        expires_at: c.get("expires_at")?,
        revoked_at: c.get("revoked_at")?,
        amr: c.json("amr_json")?,
    })
}

macro_rules! key_columns {
    () => {
        "kid, alg, epoch, sealed_private_key, public_jwk_json, created_at, activate_at, \
         retire_at, expires_at, format_version"
    };
}

fn key_from_row(row: &PgRow) -> StoreResult<SigningKeyRecord> {
    let c = Columns::new(row, "signing key").versioned()?;
    Ok(SigningKeyRecord {
        kid: c.get("kid")?,
        alg: c.get("alg")?,
        epoch: c.get("epoch")?,
        sealed_private_key: c.get("sealed_private_key")?,
        public_jwk: c.json("public_jwk_json")?,
        created_at: c.get("created_at")?,
        activate_at: c.get("activate_at")?,
        retire_at: c.get("retire_at")?,
        expires_at: c.get("expires_at")?,
    })
}

/// Inserts a new user (revision 1) through `executor`: the pool or a transaction.
async fn insert_user<'e, E>(executor: E, user: &UserRecord) -> StoreResult<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    sqlx::query(concat!(
        "INSERT INTO users (",
        user_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 1)"
    ))
    .bind(&user.id)
    .bind(user.username.as_deref())
    .bind(user.email.as_deref())
    .bind(user.email_verified)
    .bind(user.name.as_deref())
    .bind(user.given_name.as_deref())
    .bind(user.family_name.as_deref())
    .bind(user.picture.as_deref())
    .bind(to_json(&user.groups, "groups")?)
    .bind(user.status.as_str())
    .bind(user.password_hash.as_deref())
    .bind(user.created_at)
    .bind(user.updated_at)
    .bind(user.last_login_at)
    .bind(FORMAT_VERSION)
    .execute(executor)
    .await
    .map_err(user_conflict)?;
    Ok(())
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        insert_user(&self.pool, user).await
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn find_user_by_login(&self, login: &str) -> StoreResult<Option<UserRecord>> {
        // Only a verified email names an account, and it wins over a username (see the
        // trait); each matches at most one user.
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username_folded = ",
            fold!("$1"),
            " OR (email_folded = ",
            fold!("$1"),
            " AND email_verified)",
            " ORDER BY (email_folded = ",
            fold!("$1"),
            " AND email_verified) DESC, created_at, id LIMIT 1"
        ))
        .bind(login)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(user_from_row)
        .collect()
    }

    async fn list_users_page(
        &self,
        filter: &UserFilter,
        after: Option<&PageCursor>,
        limit: u32,
    ) -> StoreResult<Vec<UserRecord>> {
        let mut q = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE TRUE"
        ));
        if let Some(email) = &filter.email {
            q.push(" AND email_folded = translate(")
                .push_bind(email)
                .push(", 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')");
        }
        if let Some(username) = &filter.username {
            q.push(" AND username_folded = translate(")
                .push_bind(username)
                .push(", 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')");
        }
        if let Some(status) = filter.status {
            q.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(provider) = &filter.provider {
            q.push(
                " AND EXISTS (SELECT 1 FROM identity_links l WHERE l.user_id = users.id \
                 AND l.provider_id = ",
            )
            .push_bind(provider)
            .push(")");
        }
        if let Some(group) = &filter.group {
            q.push(
                " AND EXISTS (SELECT 1 FROM group_members m WHERE m.user_id = users.id \
                 AND m.group_id = ",
            )
            .push_bind(group)
            .push(")");
        }
        if let Some(after) = after {
            q.push(" AND (created_at, id) > (")
                .push_bind(after.created_at)
                .push(", ")
                .push_bind(&after.id)
                .push(")");
        }
        q.push(" ORDER BY created_at, id LIMIT ")
            .push_bind(i64::from(limit));
        q.build()
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(user_from_row)
            .collect()
    }

    async fn update_user_checked(
        &self,
        user: &UserRecord,
        expected_revision: i64,
    ) -> StoreResult<CheckedWrite> {
        // The revision test runs against the latest committed row: a concurrent writer
        // makes this UPDATE wait, then match nothing.
        let written = sqlx::query(concat!(
            "UPDATE users SET username = $2, email = $3, email_verified = $4, name = $5, \
             given_name = $6, family_name = $7, picture = $8, status = $9, updated_at = $10, \
             revision = revision + 1 WHERE id = $1 AND revision = $11 RETURNING ",
            user_columns!()
        ))
        .bind(&user.id)
        .bind(user.username.as_deref())
        .bind(user.email.as_deref())
        .bind(user.email_verified)
        .bind(user.name.as_deref())
        .bind(user.given_name.as_deref())
        .bind(user.family_name.as_deref())
        .bind(user.picture.as_deref())
        .bind(user.status.as_str())
        .bind(user.updated_at)
        .bind(expected_revision)
        .fetch_optional(&self.pool)
        .await
        .map_err(user_conflict)?;
        if let Some(row) = written {
            return Ok(CheckedWrite::Written(Box::new(user_from_row(&row)?)));
        }
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
            .bind(&user.id)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(if exists {
            CheckedWrite::Stale
        } else {
            CheckedWrite::NoSuchUser
        })
    }

    async fn delete_user(&self, id: &str) -> StoreResult<bool> {
        // Foreign keys cascade to links, grants (codes, refresh tokens), sessions, role
        // and resource grants, memberships and API keys; audit events stay.
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn update_profile(&self, user: &UserRecord) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE users SET username = $2, email = $3, email_verified = $4, name = $5, \
             given_name = $6, family_name = $7, picture = $8, groups_json = $9, \
             updated_at = $10, last_login_at = $11, revision = revision + 1 WHERE id = $1",
        )
        .bind(&user.id)
        .bind(user.username.as_deref())
        .bind(user.email.as_deref())
        .bind(user.email_verified)
        .bind(user.name.as_deref())
        .bind(user.given_name.as_deref())
        .bind(user.family_name.as_deref())
        .bind(user.picture.as_deref())
        .bind(to_json(&user.groups, "groups")?)
        .bind(user.updated_at)
        .bind(user.last_login_at)
        .execute(&self.pool)
        .await
        .map_err(user_conflict)?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_user_status(
        &self,
        id: &str,
        status: UserStatus,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE users SET status = $2, updated_at = $3, revision = revision + 1 WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_password_hash(&self, id: &str, hash: &str, now: UnixTime) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE users SET password_hash = $2, updated_at = $3, revision = revision + 1 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn link_identity(&self, link: &IdentityLink) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO identity_links (",
            link_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&link.provider_id)
        .bind(&link.subject)
        .bind(&link.user_id)
        .bind(to_json(&link.claims, "claims")?)
        .bind(link.sealed_provider_data.as_deref())
        .bind(link.created_at)
        .bind(link.updated_at)
        .bind(FORMAT_VERSION)
        .execute(&self.pool)
        .await
        .map_err(conflict_or_backend("identity link"))?;
        Ok(())
    }

    async fn find_identity(
        &self,
        provider_id: &str,
        subject: &str,
    ) -> StoreResult<Option<IdentityLink>> {
        sqlx::query(concat!(
            "SELECT ",
            link_columns!(),
            " FROM identity_links WHERE provider_id = $1 AND subject = $2"
        ))
        .bind(provider_id)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(link_from_row)
        .transpose()
    }

    async fn list_user_identities(&self, user_id: &str) -> StoreResult<Vec<IdentityLink>> {
        sqlx::query(concat!(
            "SELECT ",
            link_columns!(),
            " FROM identity_links WHERE user_id = $1 ORDER BY provider_id, subject"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(link_from_row)
        .collect()
    }

    async fn update_identity(&self, link: &IdentityLink) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE identity_links SET claims_json = $3, sealed_provider_data = $4, \
             updated_at = $5 WHERE provider_id = $1 AND subject = $2",
        )
        .bind(&link.provider_id)
        .bind(&link.subject)
        .bind(to_json(&link.claims, "claims")?)
        .bind(link.sealed_provider_data.as_deref())
        .bind(link.updated_at)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn unlink_identity(&self, provider_id: &str, subject: &str) -> StoreResult<bool> {
        let done =
            sqlx::query("DELETE FROM identity_links WHERE provider_id = $1 AND subject = $2")
                .bind(provider_id)
                .bind(subject)
                .execute(&self.pool)
                .await
                .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
}

/// Global grants are stored under the empty client id.
const GLOBAL_CLIENT: &str = "";

fn role_grant_from_row(row: &PgRow) -> StoreResult<RoleGrantRecord> {
    let c = Columns::new(row, "role grant");
    let client_id: String = c.get("client_id")?;
    Ok(RoleGrantRecord {
        user_id: c.get("user_id")?,
        role: c.get("role")?,
        client_id: (client_id != GLOBAL_CLIENT).then_some(client_id),
        granted_at: c.get("granted_at")?,
    })
}

#[async_trait]
impl RoleGrantStore for PostgresStore {
    async fn grant_role(&self, grant: &RoleGrantRecord) -> StoreResult<bool> {
        // A missing user fails the foreign key: an error, as the trait says.
        let inserted = sqlx::query(
            "INSERT INTO role_grants (user_id, client_id, role, granted_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&grant.user_id)
        .bind(grant.client_id.as_deref().unwrap_or(GLOBAL_CLIENT))
        .bind(&grant.role)
        .bind(grant.granted_at)
        .execute(&self.pool)
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn revoke_role(
        &self,
        user_id: &str,
        role: &str,
        client_id: Option<&str>,
    ) -> StoreResult<bool> {
        let deleted = sqlx::query(
            "DELETE FROM role_grants WHERE user_id = $1 AND client_id = $2 AND role = $3",
        )
        .bind(user_id)
        .bind(client_id.unwrap_or(GLOBAL_CLIENT))
        .bind(role)
        .execute(&self.pool)
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(deleted > 0)
    }

    async fn list_role_grants(&self, user_id: &str) -> StoreResult<Vec<RoleGrantRecord>> {
        sqlx::query(
            "SELECT user_id, client_id, role, granted_at FROM role_grants \
             WHERE user_id = $1 ORDER BY client_id, role",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(role_grant_from_row)
        .collect()
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn record_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        // A sequence hands out numbers before commit, so without the lock a reader
        // paging by `seq` could see N+1 committed while N is not yet, page past N and
        // never see it. Taking the schema's audit lock for the insert's transaction
        // makes numbers commit in order.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
            .bind(AUDIT_LOCK_CLASS)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(
            "INSERT INTO audit_events (user_id, kind, detail_json, at, format_version, actor) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&event.user_id)
        .bind(&event.kind)
        .bind(to_json(&event.detail, "audit detail")?)
        .bind(event.at)
        .bind(FORMAT_VERSION)
        .bind(event.actor.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn list_audit(&self, user_id: &str) -> StoreResult<Vec<AuditEvent>> {
        sqlx::query(
            "SELECT seq, user_id, actor, kind, detail_json, at, format_version FROM audit_events \
             WHERE user_id = $1 ORDER BY at, seq",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(|row| audit_from_row(row).map(|(_, event)| event))
        .collect()
    }

    async fn query_audit(
        &self,
        filter: &AuditFilter,
        after: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<(i64, AuditEvent)>> {
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT seq, user_id, actor, kind, detail_json, at, format_version FROM audit_events \
             WHERE seq > ",
        );
        q.push_bind(after.unwrap_or(0));
        if let Some(user_id) = &filter.user_id {
            q.push(" AND user_id = ").push_bind(user_id);
        }
        if let Some(actor) = &filter.actor {
            q.push(" AND actor = ").push_bind(actor);
        }
        if let Some(kind) = &filter.kind {
            q.push(" AND kind = ").push_bind(kind);
        }
        if let Some(since) = filter.since {
            q.push(" AND at >= ").push_bind(since);
        }
        if let Some(until) = filter.until {
            q.push(" AND at < ").push_bind(until);
        }
        q.push(" ORDER BY seq LIMIT ").push_bind(i64::from(limit));
        q.build()
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(audit_from_row)
            .collect()
    }
}

macro_rules! group_columns {
    () => {
        "id, name, description, created_at, updated_at, revision"
    };
}

fn group_from_row(row: &PgRow) -> StoreResult<GroupRecord> {
    let c = Columns::new(row, "group");
    Ok(GroupRecord {
        id: c.get("id")?,
        name: c.get("name")?,
        description: c.get("description")?,
        created_at: c.get("created_at")?,
        updated_at: c.get("updated_at")?,
        revision: c.get("revision")?,
    })
}

/// Whether the row `id` of `table` exists, locked against deletion until the
/// transaction ends (`FOR KEY SHARE`, which concurrent inserts referencing it share).
async fn exists_locked(conn: &mut PgConnection, sql: &'static str, id: &str) -> StoreResult<bool> {
    Ok(sqlx::query(sql)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .is_some())
}

const GROUP_EXISTS: &str = "SELECT 1 FROM managed_groups WHERE id = $1 FOR KEY SHARE";
const USER_EXISTS: &str = "SELECT 1 FROM users WHERE id = $1 FOR KEY SHARE";

#[async_trait]
impl GroupStore for PostgresStore {
    async fn create_group(&self, group: &GroupRecord) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO managed_groups (",
            group_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, 1)"
        ))
        .bind(&group.id)
        .bind(&group.name)
        .bind(group.description.as_deref())
        .bind(group.created_at)
        .bind(group.updated_at)
        .execute(&self.pool)
        .await
        .map_err(conflict_or_backend("group"))?;
        Ok(())
    }

    async fn get_group(&self, id: &str) -> StoreResult<Option<GroupRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            group_columns!(),
            " FROM managed_groups WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(group_from_row)
        .transpose()
    }

    async fn list_groups_page(
        &self,
        after: Option<&PageCursor>,
        limit: u32,
    ) -> StoreResult<Vec<GroupRecord>> {
        let (created_at, id) = after.map_or((i64::MIN, ""), |a| (a.created_at, a.id.as_str()));
        sqlx::query(concat!(
            "SELECT ",
            group_columns!(),
            " FROM managed_groups WHERE (created_at, id) > ($1, $2) \
             ORDER BY created_at, id LIMIT $3"
        ))
        .bind(created_at)
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(group_from_row)
        .collect()
    }

    async fn update_group_checked(
        &self,
        group: &GroupRecord,
        expected_revision: i64,
    ) -> StoreResult<CheckedGroupWrite> {
        let written = sqlx::query(concat!(
            "UPDATE managed_groups SET name = $2, description = $3, updated_at = $4, \
             revision = revision + 1 WHERE id = $1 AND revision = $5 RETURNING ",
            group_columns!()
        ))
        .bind(&group.id)
        .bind(&group.name)
        .bind(group.description.as_deref())
        .bind(group.updated_at)
        .bind(expected_revision)
        .fetch_optional(&self.pool)
        .await
        .map_err(conflict_or_backend("group"))?;
        if let Some(row) = written {
            return Ok(CheckedGroupWrite::Written(group_from_row(&row)?));
        }
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM managed_groups WHERE id = $1)")
                .bind(&group.id)
                .fetch_one(&self.pool)
                .await
                .map_err(backend)?;
        Ok(if exists {
            CheckedGroupWrite::Stale
        } else {
            CheckedGroupWrite::NoSuchGroup
        })
    }

    async fn delete_group(&self, id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM managed_groups WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn add_member(
        &self,
        group_id: &str,
        user_id: &str,
        now: UnixTime,
    ) -> StoreResult<Membership> {
        // The checks lock both rows against deletion, so they still hold at the insert
        // (and the group is checked first, as the other backends do).
        let mut tx = self.pool.begin().await.map_err(backend)?;
        if !exists_locked(&mut tx, GROUP_EXISTS, group_id).await? {
            return Ok(Membership::NoSuchGroup);
        }
        if !exists_locked(&mut tx, USER_EXISTS, user_id).await? {
            return Ok(Membership::NoSuchUser);
        }
        let done = sqlx::query(
            "INSERT INTO group_members (group_id, user_id, added_at) VALUES ($1, $2, $3) \
             ON CONFLICT (group_id, user_id) DO NOTHING",
        )
        .bind(group_id)
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(match done.rows_affected() {
            1 => Membership::Added,
            _ => Membership::AlreadyMember,
        })
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(group_id)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_user_groups(&self, user_id: &str) -> StoreResult<Vec<GroupRecord>> {
        // By name as SQLite's NOCASE column orders it: ASCII case folded, else bytes.
        sqlx::query(
            "SELECT g.id, g.name, g.description, g.created_at, g.updated_at, g.revision \
             FROM managed_groups g JOIN group_members m ON m.group_id = g.id \
             WHERE m.user_id = $1 ORDER BY g.name_folded",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(group_from_row)
        .collect()
    }
}

#[async_trait]
impl LoginStore for PostgresStore {
    async fn put_auth_request(&self, rec: &AuthRequestRecord) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO auth_requests (",
            auth_request_columns!(),
            ") VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind(&rec.id_hash)
        .bind(to_json(&rec.request, "auth request")?)
        .bind(rec.created_at)
        .bind(rec.expires_at)
        .bind(FORMAT_VERSION)
        .execute(&self.pool)
        .await
        .map_err(conflict_or_backend("auth request"))?;
        Ok(())
    }

    async fn get_auth_request(
        &self,
        id_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<AuthRequestRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            auth_request_columns!(),
            " FROM auth_requests WHERE id_hash = $1 AND expires_at > $2"
        ))
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(auth_request_from_row)
        .transpose()
    }

    async fn take_auth_request(
        &self,
        id_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<AuthRequestRecord>> {
        // Only one DELETE can remove the row: a concurrent one waits for it, then finds
        // nothing to delete.
        sqlx::query(concat!(
            "DELETE FROM auth_requests WHERE id_hash = $1 AND expires_at > $2 RETURNING ",
            auth_request_columns!()
        ))
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(auth_request_from_row)
        .transpose()
    }
}

async fn fetch_grant(conn: &mut PgConnection, id: &str) -> StoreResult<Option<GrantRecord>> {
    sqlx::query(concat!(
        "SELECT ",
        grant_columns!(),
        " FROM grants WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(backend)?
    .as_ref()
    .map(grant_from_row)
    .transpose()
}

async fn insert_grant(conn: &mut PgConnection, grant: &GrantRecord) -> StoreResult<()> {
    sqlx::query(concat!(
        "INSERT INTO grants (",
        grant_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(&grant.id)
    .bind(&grant.user_id)
    .bind(&grant.client_id)
    .bind(grant.session_id_hash.as_deref())
    .bind(to_json(&grant.scopes, "scopes")?)
    .bind(grant.auth_time)
    .bind(&grant.provider_id)
    .bind(grant.created_at)
    .bind(grant.expires_at)
    .bind(grant.revoked_at)
    .bind(FORMAT_VERSION)
    .bind(grant.resource.as_deref())
    .bind(to_json(&grant.amr, "amr")?)
    .execute(conn)
    .await
    .map_err(conflict_or_backend("grant"))?;
    Ok(())
}

async fn insert_code(conn: &mut PgConnection, code: &CodeRecord) -> StoreResult<()> {
    sqlx::query(concat!(
        "INSERT INTO codes (",
        code_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(&code.code_hash)
    .bind(&code.grant_id)
    .bind(&code.client_id)
    .bind(&code.redirect_uri)
    .bind(code.code_challenge.as_deref())
    .bind(code.nonce.as_deref())
    .bind(code.created_at)
    .bind(code.expires_at)
    .execute(conn)
    .await
    .map_err(conflict_or_backend("code"))?;
    Ok(())
}

async fn insert_refresh_token(
    conn: &mut PgConnection,
    token_hash: &str,
    parent_hash: Option<&str>,
    grant_id: &str,
    expires_at: UnixTime,
    now: UnixTime,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at, parent_hash) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(grant_id)
    .bind(now)
    .bind(expires_at)
    .bind(parent_hash)
    .execute(conn)
    .await
    .map_err(conflict_or_backend("refresh token"))?;
    Ok(())
}

/// Rotation inside the caller's transaction. The old token's row is locked first, so
/// rotations of one token run one after another, each reading what the one before
/// committed.
async fn rotate_in(
    conn: &mut PgConnection,
    old_hash: &str,
    new_hash: &str,
    new_expires_at: UnixTime,
    now: UnixTime,
    reuse_grace_secs: i64,
) -> StoreResult<RotateOutcome> {
    let found = sqlx::query(
        "SELECT grant_id, expires_at, spent_at, superseded_at FROM refresh_tokens \
         WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(old_hash)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    let Some(row) = found else {
        return Ok(RotateOutcome::Invalid);
    };
    let token = Columns::new(&row, "refresh token");
    let grant_id: String = token.get("grant_id")?;
    let token_expires_at: UnixTime = token.get("expires_at")?;
    let spent_at: Option<UnixTime> = token.get("spent_at")?;
    let superseded_at: Option<UnixTime> = token.get("superseded_at")?;
    // Read after the lock: a revocation committed while this waited is seen.
    let Some(grant) = fetch_grant(&mut *conn, &grant_id).await? else {
        return Ok(RotateOutcome::Invalid);
    };
    if token_expires_at <= now || grant.revoked_at.is_some() || grant.expires_at <= now {
        return Ok(RotateOutcome::Invalid);
    }
    if superseded_at.is_some() {
        return Ok(RotateOutcome::Superseded);
    }
    match spent_at {
        None => {
            sqlx::query("UPDATE refresh_tokens SET spent_at = $2 WHERE token_hash = $1")
                .bind(old_hash)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
        }
        Some(spent_at) if reuse_grace_secs > 0 && now - spent_at <= reuse_grace_secs => {
            // A retry of a lost answer: its successor must still be unused, and dies. A
            // concurrent use of the successor holds its row; this waits for it and then
            // sees it spent.
            let superseded = sqlx::query(
                "UPDATE refresh_tokens SET superseded_at = $2 WHERE parent_hash = $1 \
                 AND spent_at IS NULL AND superseded_at IS NULL",
            )
            .bind(old_hash)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            if superseded.rows_affected() == 0 {
                return revoke_family(conn, grant.id, now).await;
            }
        }
        Some(_) => return revoke_family(conn, grant.id, now).await,
    }
    insert_refresh_token(
        conn,
        new_hash,
        Some(old_hash),
        &grant.id,
        new_expires_at,
        now,
    )
    .await?;
    Ok(RotateOutcome::Rotated(Box::new(grant)))
}

async fn revoke_family(
    conn: &mut PgConnection,
    grant_id: String,
    now: UnixTime,
) -> StoreResult<RotateOutcome> {
    sqlx::query("UPDATE grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(&grant_id)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(RotateOutcome::Reused { grant_id })
}

#[async_trait]
impl GrantStore for PostgresStore {
    async fn create_grant_with_code(
        &self,
        grant: &GrantRecord,
        code: &CodeRecord,
    ) -> StoreResult<()> {
        // On an error the transaction is dropped, which rolls it back.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        insert_grant(&mut tx, grant).await?;
        insert_code(&mut tx, code).await?;
        tx.commit().await.map_err(backend)
    }

    async fn redeem_code(&self, code_hash: &str, now: UnixTime) -> StoreResult<RedeemOutcome> {
        // The winner is whoever flips `used_at` from NULL; a concurrent UPDATE waits for
        // it, re-reads the row and no longer matches.
        let won = sqlx::query(concat!(
            "UPDATE codes SET used_at = $2",
            " WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING ",
            code_columns!()
        ))
        .bind(code_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        if let Some(row) = won {
            return code_from_row(&row).map(RedeemOutcome::Redeemed);
        }
        let seen = sqlx::query("SELECT grant_id, used_at FROM codes WHERE code_hash = $1")
            .bind(code_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        let Some(row) = seen else {
            return Ok(RedeemOutcome::Invalid);
        };
        let c = Columns::new(&row, "code");
        // A used code reports its grant even once expired, so a late replay still revokes
        // what the first redemption issued.
        Ok(match c.get::<Option<UnixTime>>("used_at")? {
            Some(_) => RedeemOutcome::AlreadyUsed {
                grant_id: c.get("grant_id")?,
            },
            None => RedeemOutcome::Invalid,
        })
    }

    async fn get_grant(&self, id: &str) -> StoreResult<Option<GrantRecord>> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        fetch_grant(&mut conn, id).await
    }

    async fn revoke_grant(&self, id: &str, now: UnixTime) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_session_grants(&self, session_id_hash: &str) -> StoreResult<Vec<GrantRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            grant_columns!(),
            " FROM grants WHERE session_id_hash = $1 ORDER BY created_at, id"
        ))
        .bind(session_id_hash)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(grant_from_row)
        .collect()
    }

    async fn revoke_user_grants(&self, user_id: &str, now: UnixTime) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE grants SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn put_refresh_token(
        &self,
        token_hash: &str,
        grant_id: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        insert_refresh_token(&mut conn, token_hash, None, grant_id, expires_at, now).await
    }

    async fn refresh_token_grant(
        &self,
        token_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<GrantRecord>> {
        sqlx::query(
            "SELECT g.id, g.user_id, g.client_id, g.session_id_hash, g.scopes_json, \
             g.auth_time, g.provider_id, g.created_at, g.expires_at, g.revoked_at, \
             g.format_version, g.resource, g.amr_json \
             FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id \
             WHERE t.token_hash = $1 AND t.expires_at > $2 \
             AND g.revoked_at IS NULL AND g.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(grant_from_row)
        .transpose()
    }

    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            refresh_token_columns!(),
            " FROM refresh_tokens WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(refresh_token_from_row)
        .transpose()
    }

    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_at: UnixTime,
        now: UnixTime,
        reuse_grace_secs: i64,
    ) -> StoreResult<RotateOutcome> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // On an error the transaction is dropped, which rolls it back.
        let outcome = rotate_in(
            &mut tx,
            old_hash,
            new_hash,
            new_expires_at,
            now,
            reuse_grace_secs,
        )
        .await?;
        tx.commit().await.map_err(backend)?;
        Ok(outcome)
    }
}

#[async_trait]
impl RevocationStore for PostgresStore {
    async fn deny_access_token(
        &self,
        jti: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool> {
        // The first denial stands: a concurrent one waits for it, then inserts nothing.
        let done = sqlx::query(
            "INSERT INTO denied_access_tokens (jti, expires_at, denied_at) VALUES ($1, $2, $3) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn access_token_denied(&self, jti: &str) -> StoreResult<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM denied_access_tokens WHERE jti = $1)")
            .bind(jti)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO sessions (",
            session_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&session.id_hash)
        .bind(&session.user_id)
        .bind(&session.provider_id)
        .bind(session.auth_time)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(session.revoked_at)
        .bind(to_json(&session.amr, "amr")?)
        .execute(&self.pool)
        .await
        .map_err(conflict_or_backend("session"))?;
        Ok(())
    }

    async fn get_session(
        &self,
        id_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<SessionRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > $2"
        ))
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(session_from_row)
        .transpose()
    }

    async fn revoke_session(&self, id_hash: &str, now: UnixTime) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $2 WHERE id_hash = $1 AND revoked_at IS NULL",
        )
        .bind(id_hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_user_sessions(&self, user_id: &str, now: UnixTime) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO logout_outbox (client_id, sid, user_id, created_at, next_attempt_at) \
             SELECT DISTINCT g.client_id, s.id_hash, s.user_id, $2, $2 \
             FROM sessions s JOIN grants g ON g.session_id_hash = s.id_hash \
             WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 \
             ON CONFLICT (client_id, sid) DO NOTHING",
        )
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn list_user_sessions(
        &self,
        user_id: &str,
        now: UnixTime,
    ) -> StoreResult<Vec<SessionRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
             ORDER BY created_at, id_hash"
        ))
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(session_from_row)
        .collect()
    }
}

#[async_trait]
impl SealedStore for PostgresStore {
    async fn list_sealed(
        &self,
        column: SealedColumn,
        after: Option<&SealedRow>,
        limit: u32,
    ) -> StoreResult<Vec<SealedValue>> {
        match column {
            SealedColumn::SigningKeys => {
                let after = match after {
                    Some(SealedRow::SigningKey { kid }) => Some(kid.as_str()),
                    _ => None,
                };
                let rows = sqlx::query(
                    "SELECT kid, sealed_private_key FROM signing_keys \
                     WHERE $1::text IS NULL OR kid > $1::text ORDER BY kid LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
                rows.iter()
                    .map(|r| {
                        Ok(SealedValue {
                            row: SealedRow::SigningKey {
                                kid: r.try_get("kid").map_err(backend)?,
                            },
                            sealed: r.try_get("sealed_private_key").map_err(backend)?,
                        })
                    })
                    .collect()
            }
            SealedColumn::ProviderData => {
                let (p, sub) = match after {
                    Some(SealedRow::ProviderData {
                        provider_id,
                        subject,
                    }) => (Some(provider_id.as_str()), Some(subject.as_str())),
                    _ => (None, None),
                };
                let rows = sqlx::query(
                    "SELECT provider_id, subject, sealed_provider_data FROM identity_links \
                     WHERE sealed_provider_data IS NOT NULL \
                       AND ($1::text IS NULL OR (provider_id, subject) > ($1::text, $2::text)) \
                     ORDER BY provider_id, subject LIMIT $3",
                )
                .bind(p)
                .bind(sub)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
                rows.iter()
                    .map(|r| {
                        Ok(SealedValue {
                            row: SealedRow::ProviderData {
                                provider_id: r.try_get("provider_id").map_err(backend)?,
                                subject: r.try_get("subject").map_err(backend)?,
                            },
                            sealed: r.try_get("sealed_provider_data").map_err(backend)?,
                        })
                    })
                    .collect()
            }
            SealedColumn::TotpSecrets => {
                let after = match after {
                    Some(SealedRow::TotpSecret { user_id }) => Some(user_id.as_str()),
                    _ => None,
                };
                let rows = sqlx::query(
                    "SELECT user_id, sealed_secret FROM totp_enrolments \
                     WHERE $1::text IS NULL OR user_id > $1::text ORDER BY user_id LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
                rows.iter()
                    .map(|r| {
                        Ok(SealedValue {
                            row: SealedRow::TotpSecret {
                                user_id: r.try_get("user_id").map_err(backend)?,
                            },
                            sealed: r.try_get("sealed_secret").map_err(backend)?,
                        })
                    })
                    .collect()
            }
        }
    }

    async fn rewrite_sealed(&self, rewrites: &[SealedRewrite]) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let mut changed = 0;
        for r in rewrites {
            let done = match &r.row {
                SealedRow::SigningKey { kid } => sqlx::query(
                    "UPDATE signing_keys SET sealed_private_key = $3 \
                     WHERE kid = $1 AND sealed_private_key = $2",
                )
                .bind(kid),
                SealedRow::ProviderData {
                    provider_id,
                    subject,
                } => sqlx::query(
                    "UPDATE identity_links SET sealed_provider_data = $4 \
                     WHERE provider_id = $1 AND subject = $2 AND sealed_provider_data = $3",
                )
                .bind(provider_id)
                .bind(subject),
                SealedRow::TotpSecret { user_id } => sqlx::query(
                    "UPDATE totp_enrolments SET sealed_secret = $3 \
                     WHERE user_id = $1 AND sealed_secret = $2",
                )
                .bind(user_id),
            }
            .bind(r.old.as_slice())
            .bind(r.new.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            changed += done.rows_affected();
        }
        tx.commit().await.map_err(backend)?;
        Ok(changed)
    }
}

// `SKIP LOCKED`: a replica claiming at the same moment passes over these rows.
const CLAIM_MAIL: &str = "UPDATE mail_outbox o SET lease_owner = $1, lease_until = $3 \
     FROM (SELECT id FROM mail_outbox \
           WHERE next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until <= $2) \
           ORDER BY next_attempt_at, created_at LIMIT $4 FOR UPDATE SKIP LOCKED) d \
     WHERE o.id = d.id \
     RETURNING o.id, o.recipient, o.subject, o.body_text, o.body_html, o.created_at, o.attempts";

fn mail_delivery_from_row(r: &PgRow) -> StoreResult<MailDelivery> {
    let attempts: i64 = r.try_get("attempts").map_err(backend)?;
    Ok(MailDelivery {
        id: r.try_get("id").map_err(backend)?,
        mail: OutgoingMail {
            to: r.try_get("recipient").map_err(backend)?,
            subject: r.try_get("subject").map_err(backend)?,
            text: r.try_get("body_text").map_err(backend)?,
            html: r.try_get("body_html").map_err(backend)?,
        },
        created_at: r.try_get("created_at").map_err(backend)?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
    })
}

const QUEUE_MAIL: &str = "INSERT INTO mail_outbox \
     (id, recipient, subject, body_text, body_html, created_at, next_attempt_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (id) DO NOTHING";

#[async_trait]
impl MailOutbox for PostgresStore {
    async fn queue_mail(&self, id: &str, mail: &OutgoingMail, now: UnixTime) -> StoreResult<()> {
        sqlx::query(QUEUE_MAIL)
            .bind(id)
            .bind(&mail.to)
            .bind(&mail.subject)
            .bind(&mail.text)
            .bind(&mail.html)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn claim_mail_deliveries(
        &self,
        owner: &str,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> StoreResult<Vec<MailDelivery>> {
        sqlx::query(CLAIM_MAIL)
            .bind(owner)
            .bind(now)
            .bind(lease_until)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(mail_delivery_from_row)
            .collect()
    }

    async fn finish_mail_delivery(&self, id: &str, owner: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM mail_outbox WHERE id = $1 AND lease_owner = $2")
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn defer_mail_delivery(
        &self,
        id: &str,
        owner: &str,
        attempts: u32,
        next_attempt_at: UnixTime,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE mail_outbox SET attempts = $3, next_attempt_at = $4, \
             lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(owner)
        .bind(i64::from(attempts))
        .bind(next_attempt_at)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
}

#[async_trait]
impl AccountTokenStore for PostgresStore {
    async fn issue_account_token(
        &self,
        token: &AccountTokenRecord,
        mail_id: &str,
        mail: &OutgoingMail,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO account_tokens \
             (token_hash, purpose, user_id, detail, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&token.token_hash)
        .bind(token.purpose.as_str())
        .bind(&token.user_id)
        .bind(token.detail.as_deref())
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict_or_backend("account token"))?;
        sqlx::query(QUEUE_MAIL)
            .bind(mail_id)
            .bind(&mail.to)
            .bind(&mail.subject)
            .bind(&mail.text)
            .bind(&mail.html)
            .bind(token.created_at)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    async fn redeem_account_token(
        &self,
        token_hash: &str,
        purpose: AccountTokenPurpose,
        now: UnixTime,
    ) -> StoreResult<Option<RedeemedToken>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "DELETE FROM account_tokens \
             WHERE token_hash = $1 AND purpose = $2 AND expires_at > $3 \
             RETURNING user_id, detail",
        )
        .bind(token_hash)
        .bind(purpose.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some((user_id, detail)) = row else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM account_tokens WHERE user_id = $1 AND purpose = $2")
            .bind(&user_id)
            .bind(purpose.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(RedeemedToken { user_id, detail }))
    }

    async fn issue_registration(
        &self,
        registration: &PendingRegistration,
        mail_id: &str,
        mail: &OutgoingMail,
    ) -> StoreResult<()> {
        let r = registration;
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO pending_registrations \
             (token_hash, user_id, username, email, name, password_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&r.token_hash)
        .bind(&r.user_id)
        .bind(&r.username)
        .bind(&r.email)
        .bind(r.name.as_deref())
        .bind(&r.password_hash)
        .bind(r.created_at)
        .bind(r.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict_or_backend("registration"))?;
        sqlx::query(QUEUE_MAIL)
            .bind(mail_id)
            .bind(&mail.to)
            .bind(&mail.subject)
            .bind(&mail.text)
            .bind(&mail.html)
            .bind(r.created_at)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    async fn confirm_registration(
        &self,
        token_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Confirmation> {
        const TAKE: &str = "DELETE FROM pending_registrations \
             WHERE token_hash = $1 AND expires_at > $2 \
             RETURNING token_hash, user_id, username, email, name, password_hash, \
             created_at, expires_at";
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let row: Option<PendingColumns> = sqlx::query_as(TAKE)
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        let Some(row) = row else {
            return Ok(Confirmation::Unknown);
        };
        let user = PendingRegistration::from(row).into_user(now);
        match insert_user(&mut *tx, &user).await {
            Ok(()) => {
                tx.commit().await.map_err(backend)?;
                Ok(Confirmation::Created(Box::new(user)))
            }
            Err(StoreError::Conflict { what }) => {
                // The failed insert aborted the transaction: use the link up alone.
                tx.rollback().await.map_err(backend)?;
                sqlx::query(TAKE)
                    .bind(token_hash)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(backend)?;
                Ok(Confirmation::Taken { what })
            }
            Err(e) => Err(e),
        }
    }
}

fn totp_from_row(row: &PgRow) -> StoreResult<TotpRecord> {
    let c = Columns::new(row, "totp enrolment");
    Ok(TotpRecord {
        user_id: c.get("user_id")?,
        sealed_secret: c.get("sealed_secret")?,
        created_at: c.get("created_at")?,
        confirmed_at: c.get("confirmed_at")?,
        last_step: c.get("last_step")?,
    })
}

/// Replaces a user's recovery codes inside a transaction.
async fn put_recovery_codes(
    conn: &mut PgConnection,
    user_id: &str,
    hashes: &[String],
    now: UnixTime,
) -> StoreResult<()> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    for h in hashes {
        sqlx::query(
            "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(h)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    Ok(())
}

#[async_trait]
impl MfaStore for PostgresStore {
    async fn put_pending_totp(
        &self,
        user_id: &str,
        sealed_secret: &[u8],
        now: UnixTime,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO totp_enrolments (user_id, sealed_secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET sealed_secret = excluded.sealed_secret, \
             created_at = excluded.created_at, last_step = NULL \
             WHERE totp_enrolments.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(sealed_secret)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_totp(&self, user_id: &str) -> StoreResult<Option<TotpRecord>> {
        sqlx::query(
            "SELECT user_id, sealed_secret, created_at, confirmed_at, last_step \
             FROM totp_enrolments WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(totp_from_row)
        .transpose()
    }

    async fn confirm_totp(
        &self,
        user_id: &str,
        sealed_secret: &[u8],
        step: i64,
        recovery_hashes: &[String],
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let done = sqlx::query(
            "UPDATE totp_enrolments SET confirmed_at = $3, last_step = $4 \
             WHERE user_id = $1 AND sealed_secret = $2 AND confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(sealed_secret)
        .bind(now)
        .bind(step)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        put_recovery_codes(&mut tx, user_id, recovery_hashes, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE totp_enrolments SET last_step = $2 WHERE user_id = $1 \
             AND confirmed_at IS NOT NULL AND (last_step IS NULL OR last_step < $2)",
        )
        .bind(user_id)
        .bind(step)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_totp(&self, user_id: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let done = sqlx::query("DELETE FROM totp_enrolments WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[String],
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // The enrolment's row lock orders concurrent replacements.
        let confirmed: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM totp_enrolments WHERE user_id = $1 AND confirmed_at IS NOT NULL \
             FOR UPDATE",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if confirmed.is_none() {
            return Ok(false);
        }
        put_recovery_codes(&mut tx, user_id, hashes, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn use_recovery_code(&self, user_id: &str, code_hash: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "DELETE FROM recovery_codes WHERE user_id = $1 AND code_hash = $2 AND EXISTS \
             (SELECT 1 FROM totp_enrolments t WHERE t.user_id = $1 AND t.confirmed_at IS NOT NULL)",
        )
        .bind(user_id)
        .bind(code_hash)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_recovery_codes(&self, user_id: &str) -> StoreResult<u32> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

#[async_trait]
impl LogoutOutbox for PostgresStore {
    async fn end_session(
        &self,
        id_hash: &str,
        now: UnixTime,
        notices: &[LogoutNotice],
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $2 WHERE id_hash = $1 AND revoked_at IS NULL",
        )
        .bind(id_hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        for n in notices {
            sqlx::query(
                "INSERT INTO logout_outbox (client_id, sid, user_id, created_at, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (client_id, sid) DO NOTHING",
            )
            .bind(&n.client_id)
            .bind(&n.sid)
            .bind(&n.user_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn claim_logout_deliveries(
        &self,
        owner: &str,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> StoreResult<Vec<LogoutDelivery>> {
        // `SKIP LOCKED`: a replica claiming at the same moment passes over the rows
        // this statement is taking instead of waiting and then taking them too.
        sqlx::query(
            "UPDATE logout_outbox o SET lease_owner = $1, lease_until = $3 \
             FROM (SELECT client_id, sid FROM logout_outbox \
                   WHERE next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until <= $2) \
                   ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) d \
             WHERE o.client_id = d.client_id AND o.sid = d.sid \
             RETURNING o.client_id, o.sid, o.user_id, o.created_at, o.attempts",
        )
        .bind(owner)
        .bind(now)
        .bind(lease_until)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(delivery_from_row)
        .collect()
    }

    async fn finish_logout_delivery(
        &self,
        client_id: &str,
        sid: &str,
        owner: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "DELETE FROM logout_outbox WHERE client_id = $1 AND sid = $2 AND lease_owner = $3",
        )
        .bind(client_id)
        .bind(sid)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn defer_logout_delivery(
        &self,
        client_id: &str,
        sid: &str,
        owner: &str,
        attempts: u32,
        next_attempt_at: UnixTime,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE logout_outbox SET attempts = $4, next_attempt_at = $5, \
             lease_owner = NULL, lease_until = NULL \
             WHERE client_id = $1 AND sid = $2 AND lease_owner = $3",
        )
        .bind(client_id)
        .bind(sid)
        .bind(owner)
        .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
        .bind(next_attempt_at)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
}

fn delivery_from_row(r: &PgRow) -> StoreResult<LogoutDelivery> {
    let attempts: i32 = r.try_get("attempts").map_err(backend)?;
    Ok(LogoutDelivery {
        notice: LogoutNotice {
            client_id: r.try_get("client_id").map_err(backend)?,
            sid: r.try_get("sid").map_err(backend)?,
            user_id: r.try_get("user_id").map_err(backend)?,
        },
        created_at: r.try_get("created_at").map_err(backend)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
    })
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn insert_key_if_absent(&self, key: &SigningKeyRecord) -> StoreResult<bool> {
        // Concurrent inserts for one `(alg, epoch)` wait for the first and then do
        // nothing; a taken kid is a conflict, as in SQLite.
        let done = sqlx::query(concat!(
            "INSERT INTO signing_keys (",
            key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            " ON CONFLICT (alg, epoch) DO NOTHING"
        ))
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(key.epoch)
        .bind(key.sealed_private_key.as_slice())
        .bind(to_json(&key.public_jwk, "public JWK")?)
        .bind(key.created_at)
        .bind(key.activate_at)
        .bind(key.retire_at)
        .bind(key.expires_at)
        .bind(FORMAT_VERSION)
        .execute(&self.pool)
        .await
        .map_err(conflict_or_backend("signing key"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_keys(&self, now: UnixTime) -> StoreResult<Vec<SigningKeyRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM signing_keys WHERE expires_at > $1 ORDER BY alg, epoch"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(key_from_row)
        .collect()
    }
}

#[async_trait]
impl ThrottleStore for PostgresStore {
    async fn hit(&self, key: &str, window_secs: i64, now: UnixTime) -> StoreResult<u32> {
        // One statement: the upsert reads and bumps the window atomically. A window
        // that has ended starts over at 1.
        let hits: i64 = sqlx::query_scalar(
            "INSERT INTO throttle_windows AS w (throttle_key, hits, expires_at) \
             VALUES ($1, 1, $2 + $3) \
             ON CONFLICT (throttle_key) DO UPDATE SET \
               hits = CASE WHEN w.expires_at <= $2 THEN 1 ELSE w.hits + 1 END, \
               expires_at = CASE WHEN w.expires_at <= $2 THEN $2 + $3 ELSE w.expires_at END \
             RETURNING hits",
        )
        .bind(key)
        .bind(now)
        .bind(window_secs)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        Ok(u32::try_from(hits).unwrap_or(u32::MAX))
    }

    async fn current(&self, key: &str, now: UnixTime) -> StoreResult<u32> {
        let hits: Option<i64> = sqlx::query_scalar(
            "SELECT hits FROM throttle_windows WHERE throttle_key = $1 AND expires_at > $2",
        )
        .bind(key)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(hits.map_or(0, |h| u32::try_from(h).unwrap_or(u32::MAX)))
    }

    async fn clear(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM throttle_windows WHERE throttle_key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

macro_rules! api_key_columns {
    () => {
        "id, user_id, name, secret_hash, scopes_json, created_at, expires_at, \
         last_used_at, revoked_at, created_by"
    };
}

fn api_key_from_row(row: &PgRow) -> StoreResult<ApiKeyRecord> {
    let c = Columns::new(row, "API key");
    Ok(ApiKeyRecord {
        id: c.get("id")?,
        user_id: c.get("user_id")?,
        name: c.get("name")?,
        secret_hash: c.get("secret_hash")?,
        scopes: c.json("scopes_json")?,
        created_at: c.get("created_at")?,
        expires_at: c.get("expires_at")?,
        last_used_at: c.get("last_used_at")?,
        revoked_at: c.get("revoked_at")?,
        created_by: c.get("created_by")?,
    })
}

#[async_trait]
impl ApiKeyStore for PostgresStore {
    async fn create_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO api_keys (",
            api_key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&key.id)
        .bind(&key.user_id)
        .bind(&key.name)
        .bind(&key.secret_hash)
        .bind(to_json(&key.scopes, "API key scopes")?)
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(key.last_used_at)
        .bind(key.revoked_at)
        .bind(&key.created_by)
        .execute(&self.pool)
        .await
        .map_err(conflict_or_backend("API key"))?;
        Ok(())
    }

    async fn find_api_key(&self, secret_hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE secret_hash = $1"
        ))
        .bind(secret_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(api_key_from_row)
        .transpose()
    }

    async fn list_user_api_keys(&self, user_id: &str) -> StoreResult<Vec<ApiKeyRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(api_key_from_row)
        .collect()
    }

    async fn revoke_api_key(&self, user_id: &str, id: &str, now: UnixTime) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 \
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(user_id)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_user_api_keys(&self, user_id: &str, now: UnixTime) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn touch_api_key(&self, id: &str, now: UnixTime, coarseness: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET last_used_at = $2 \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $2 - $3)",
        )
        .bind(id)
        .bind(now)
        .bind(coarseness)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
}

/// What `purge_expired` deletes, in order. Tokens and codes of expiring grants go
/// first so the count includes them (rows removed by a cascade are not counted).
const PURGES: [&str; 12] = [
    "DELETE FROM account_tokens WHERE expires_at <= $1",
    "DELETE FROM pending_registrations WHERE expires_at <= $1",
    "DELETE FROM device_codes WHERE expires_at <= $1 \
     OR grant_id IN (SELECT id FROM grants WHERE expires_at <= $1)",
    "DELETE FROM refresh_tokens WHERE expires_at <= $1 \
     OR grant_id IN (SELECT id FROM grants WHERE expires_at <= $1)",
    "DELETE FROM codes WHERE expires_at <= $1 \
     OR grant_id IN (SELECT id FROM grants WHERE expires_at <= $1)",
    "DELETE FROM grants WHERE expires_at <= $1",
    "DELETE FROM auth_requests WHERE expires_at <= $1",
    "DELETE FROM sessions WHERE expires_at <= $1",
    "DELETE FROM signing_keys WHERE expires_at <= $1",
    "DELETE FROM throttle_windows WHERE expires_at <= $1",
    "DELETE FROM denied_access_tokens WHERE expires_at <= $1",
    "DELETE FROM api_keys WHERE expires_at <= $1",
];

/// The roles one user holds on one resource, directly or through a group: this answers
/// every access check, so both halves are primary-key lookups.
const USER_RESOURCE_ROLES: &str = "SELECT role, NULL::text AS via_group FROM user_resource_grants \
     WHERE resource_type = $1 AND resource_id = $2 AND user_id = $3 \
     UNION ALL \
     SELECT g.role, mg.name FROM group_members m \
     JOIN group_resource_grants g ON g.resource_type = $1 AND g.resource_id = $2 \
       AND g.group_id = m.group_id \
     JOIN managed_groups mg ON mg.id = m.group_id \
     WHERE m.user_id = $3";

/// A page of the resources of one type a user holds roles on, walked through the holder
/// indexes: from the user's memberships to their groups' grants.
const USER_RESOURCES: &str = "WITH held AS ( \
               SELECT resource_id, role FROM user_resource_grants \
               WHERE user_id = $1 AND resource_type = $2 AND resource_id > $3 \
               UNION \
               SELECT g.resource_id, g.role FROM group_members m \
               JOIN group_resource_grants g ON g.group_id = m.group_id \
                 AND g.resource_type = $2 AND g.resource_id > $3 \
               WHERE m.user_id = $1), \
             page AS (SELECT DISTINCT resource_id FROM held ORDER BY resource_id LIMIT $4) \
             SELECT held.resource_id, held.role FROM held \
             JOIN page ON page.resource_id = held.resource_id \
             ORDER BY held.resource_id, held.role";

/// The statements for one kind of holder; each kind has its own table so that a
/// foreign key ends its grants when the user or group goes.
struct HolderStatements {
    exists: &'static str,
    insert: &'static str,
    delete: &'static str,
}

fn holder_statements(holder: &Holder) -> HolderStatements {
    match holder {
        Holder::User(_) => HolderStatements {
            exists: USER_EXISTS,
            insert: "INSERT INTO user_resource_grants (resource_type, resource_id, user_id, \
                     role, granted_at, granted_by) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT DO NOTHING",
            delete: "DELETE FROM user_resource_grants WHERE resource_type = $1 \
                     AND resource_id = $2 AND user_id = $3 AND role = $4",
        },
        Holder::Group(_) => HolderStatements {
            exists: GROUP_EXISTS,
            insert: "INSERT INTO group_resource_grants (resource_type, resource_id, group_id, \
                     role, granted_at, granted_by) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT DO NOTHING",
            delete: "DELETE FROM group_resource_grants WHERE resource_type = $1 \
                     AND resource_id = $2 AND group_id = $3 AND role = $4",
        },
    }
}

/// How a listing of one resource's grants sorts holders: groups, then users.
fn holder_rank(holder: &Holder) -> i32 {
    match holder {
        Holder::Group(_) => 0,
        Holder::User(_) => 1,
    }
}

#[async_trait]
impl ResourceGrantStore for PostgresStore {
    async fn grant_resource_role(
        &self,
        grant: &ResourceGrantRecord,
    ) -> StoreResult<ResourceGrantWrite> {
        let statements = holder_statements(&grant.holder);
        // The holder stays locked against deletion until the insert commits; of
        // concurrent inserts of one grant, `ON CONFLICT` lets exactly one add it.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        if !exists_locked(&mut tx, statements.exists, grant.holder.id()).await? {
            return Ok(ResourceGrantWrite::NoSuchHolder);
        }
        let done = sqlx::query(statements.insert)
            .bind(&grant.resource.resource_type)
            .bind(&grant.resource.id)
            .bind(grant.holder.id())
            .bind(&grant.role)
            .bind(grant.granted_at)
            .bind(&grant.granted_by)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(match done.rows_affected() {
            0 => ResourceGrantWrite::AlreadyGranted,
            _ => ResourceGrantWrite::Added,
        })
    }

    async fn revoke_resource_role(
        &self,
        resource: &ResourceRef,
        holder: &Holder,
        role: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(holder_statements(holder).delete)
            .bind(&resource.resource_type)
            .bind(&resource.id)
            .bind(holder.id())
            .bind(role)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_resource_grants(
        &self,
        resource: &ResourceRef,
        after: Option<&ResourceGrantCursor>,
        limit: u32,
    ) -> StoreResult<Vec<ResourceGrantRecord>> {
        // (-1, '', '') sorts before every grant: no cursor is the same query.
        let (rank, holder_id, role) = after.map_or((-1, "", ""), |c| {
            (holder_rank(&c.holder), c.holder.id(), c.role.as_str())
        });
        let rows = sqlx::query(
            "SELECT holder_rank, holder_id, role, granted_at, granted_by FROM ( \
               SELECT 0 AS holder_rank, group_id AS holder_id, role, granted_at, granted_by \
               FROM group_resource_grants WHERE resource_type = $1 AND resource_id = $2 \
               UNION ALL \
               SELECT 1, user_id, role, granted_at, granted_by \
               FROM user_resource_grants WHERE resource_type = $1 AND resource_id = $2) AS g \
             WHERE (holder_rank, holder_id, role) > ($3, $4, $5) \
             ORDER BY holder_rank, holder_id, role LIMIT $6",
        )
        .bind(&resource.resource_type)
        .bind(&resource.id)
        .bind(rank)
        .bind(holder_id)
        .bind(role)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let c = Columns::new(row, "resource grant");
                let rank: i32 = c.get("holder_rank")?;
                let holder_id: String = c.get("holder_id")?;
                Ok(ResourceGrantRecord {
                    resource: resource.clone(),
                    holder: match rank {
                        0 => Holder::Group(holder_id),
                        _ => Holder::User(holder_id),
                    },
                    role: c.get("role")?,
                    granted_at: c.get("granted_at")?,
                    granted_by: c.get("granted_by")?,
                })
            })
            .collect()
    }

    async fn user_resource_roles(
        &self,
        user_id: &str,
        resource: &ResourceRef,
    ) -> StoreResult<Vec<HeldResourceRole>> {
        let rows = sqlx::query(USER_RESOURCE_ROLES)
            .bind(&resource.resource_type)
            .bind(&resource.id)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        let mut held = rows
            .iter()
            .map(|row| {
                let c = Columns::new(row, "resource grant");
                Ok(HeldResourceRole {
                    role: c.get("role")?,
                    via_group: c.get("via_group")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        held.sort();
        Ok(held)
    }

    async fn list_user_resources(
        &self,
        user_id: &str,
        resource_type: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<UserResource>> {
        let rows = sqlx::query(USER_RESOURCES)
            .bind(user_id)
            .bind(resource_type)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        let mut out: Vec<UserResource> = Vec::new();
        for row in &rows {
            let c = Columns::new(row, "resource grant");
            let id: String = c.get("resource_id")?;
            let role: String = c.get("role")?;
            match out.last_mut() {
                Some(last) if last.id == id => last.roles.push(role),
                _ => out.push(UserResource {
                    id,
                    roles: vec![role],
                }),
            }
        }
        Ok(out)
    }
}

macro_rules! device_code_columns {
    () => {
        "device_code_hash, user_code_hash, client_id, scopes_json, created_at, expires_at, \
         poll_interval, last_polled_at, state, grant_id"
    };
}

fn device_code_from_row(row: &PgRow) -> StoreResult<DeviceCodeRecord> {
    let c = Columns::new(row, "device code");
    let state: String = c.get("state")?;
    Ok(DeviceCodeRecord {
        device_code_hash: c.get("device_code_hash")?,
        user_code_hash: c.get("user_code_hash")?,
        client_id: c.get("client_id")?,
        scopes: c.json("scopes_json")?,
        created_at: c.get("created_at")?,
        expires_at: c.get("expires_at")?,
        interval: c.get("poll_interval")?,
        last_polled_at: c.get("last_polled_at")?,
        state: DeviceCodeState::parse(&state)
            .ok_or_else(|| c.corrupt(format!("unknown state {state:?}")))?,
        grant_id: c.get("grant_id")?,
    })
}

#[async_trait]
impl DeviceCodeStore for PostgresStore {
    async fn create_device_code(&self, record: &DeviceCodeRecord) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO device_codes (",
            device_code_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&record.device_code_hash)
        .bind(&record.user_code_hash)
        .bind(&record.client_id)
        .bind(to_json(&record.scopes, "scopes")?)
        .bind(record.created_at)
        .bind(record.expires_at)
        .bind(record.interval)
        .bind(record.last_polled_at)
        .bind(record.state.as_str())
        .bind(record.grant_id.as_deref())
        .execute(&self.pool)
        .await
        .map_err(conflict_or_backend("device code"))?;
        Ok(())
    }

    async fn find_device_code(
        &self,
        user_code_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<DeviceCodeRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            device_code_columns!(),
            " FROM device_codes WHERE user_code_hash = $1 AND state = 'pending' AND expires_at > $2"
        ))
        .bind(user_code_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(device_code_from_row).transpose()
    }

    async fn approve_device_code(
        &self,
        user_code_hash: &str,
        grant: &GrantRecord,
        now: UnixTime,
    ) -> StoreResult<bool> {
        // The winner is whoever flips the state from pending; a concurrent UPDATE waits
        // for it, re-reads the row and no longer matches. The grant goes in the same
        // transaction, so a lost race stores nothing.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        insert_grant(&mut tx, grant).await?;
        let done = sqlx::query(
            "UPDATE device_codes SET state = 'approved', grant_id = $2 \
             WHERE user_code_hash = $1 AND state = 'pending' AND expires_at > $3",
        )
        .bind(user_code_hash)
        .bind(&grant.id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() != 1 {
            // Dropping the transaction rolls the grant back.
            return Ok(false);
        }
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn deny_device_code(&self, user_code_hash: &str, now: UnixTime) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE device_codes SET state = 'denied' \
             WHERE user_code_hash = $1 AND state = 'pending' AND expires_at > $2",
        )
        .bind(user_code_hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn poll_device_code(
        &self,
        device_code_hash: &str,
        client_id: &str,
        now: UnixTime,
        slow_down_secs: i64,
    ) -> StoreResult<DevicePoll> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let row = sqlx::query(concat!(
            "SELECT ",
            device_code_columns!(),
            " FROM device_codes WHERE device_code_hash = $1 FOR UPDATE"
        ))
        .bind(device_code_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(row) = row else {
            return Ok(DevicePoll::Unknown);
        };
        let record = device_code_from_row(&row)?;
        let (outcome, next) = super::device_poll(&record, client_id, now, slow_down_secs);
        if let Some(next) = next {
            sqlx::query(
                "UPDATE device_codes SET state = $2, poll_interval = $3, last_polled_at = $4 \
                 WHERE device_code_hash = $1",
            )
            .bind(device_code_hash)
            .bind(next.state.as_str())
            .bind(next.interval)
            .bind(next.last_polled_at)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(outcome)
    }
}

/// Replicas tell each other through `NOTIFY` on one channel per schema, so stores in
/// other schemas of the database (other brokers, test runs) never hear them.
#[async_trait]
impl super::ChangeFeed for PostgresStore {
    async fn announce_change(&self) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(self.change_channel())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn follow_changes(&self, changed: &(dyn Fn() + Send + Sync)) -> StoreResult<()> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool)
            .await
            .map_err(backend)?;
        listener
            .listen(&self.change_channel())
            .await
            .map_err(backend)?;
        // What was announced before listening went unheard.
        changed();
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => changed(),
                // The connection was lost (it reconnects on the next call): whatever was
                // announced meanwhile is lost with it.
                Ok(None) => changed(),
                Err(e) => {
                    changed();
                    tracing::warn!(error = %e, "listening for other replicas' changes failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }
}

#[async_trait]
impl Maintenance for PostgresStore {
    async fn purge_expired(&self, now: UnixTime) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let mut removed = 0;
        for statement in PURGES {
            removed += sqlx::query(statement)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
        }
        tx.commit().await.map_err(backend)?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_lowercase_identifiers() {
        for good in ["public", "switchboard", "sb_test_01", "_x"] {
            assert!(valid_schema_name(good), "{good}");
        }
        let too_long = "x".repeat(64);
        for bad in [
            "",
            "Public",
            "1st",
            "pg_catalog",
            "a-b",
            "a\"b",
            "a b",
            "schéma",
            too_long.as_str(),
        ] {
            assert!(!valid_schema_name(bad), "{bad}");
        }
    }

    #[test]
    fn options_never_print_the_url() {
        let options = PostgresOptions {
            url: "postgres://app:hunter2@db/switchboard".to_owned(),
            schema: "public".to_owned(),
            max_connections: 4,
        };
        assert!(!format!("{options:?}").contains("hunter2"));
    }
}
