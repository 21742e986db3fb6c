//! SQLite backend on sqlx: one file in WAL mode, shared safely by several pool
//! connections (and processes on the same host).
//!
//! One-time operations let the database decide the winner: a conditional `UPDATE` or a
//! `DELETE … RETURNING` that only one caller can match, or a `BEGIN IMMEDIATE`
//! transaction that holds the write lock from its first statement, so its reads cannot
//! go stale before its writes.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{
    ConnectOptions, Decode, QueryBuilder, Row, SqlSafeStr, Sqlite, SqliteConnection, SqlitePool,
    Type,
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

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections of a file pool: readers run in parallel under WAL, writers queue.
const FILE_POOL_CONNECTIONS: u32 = 8;

/// Starts a write transaction that takes the write lock at once (waiting up to the busy
/// timeout), so nothing it reads can change before it commits.
const BEGIN_IMMEDIATE: &str = "BEGIN IMMEDIATE";

/// SQLite store. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The file's connection options, for the change watcher; `None` in memory.
    file: Option<SqliteConnectOptions>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and migrates it.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(FILE_POOL_CONNECTIONS)
            .connect_with(options.clone())
            .await
            .map_err(backend)?;
        Self::migrated(pool, Some(options)).await
    }

    /// A private in-memory database for tests. It lives in a single connection that the
    /// pool never closes (an in-memory database dies with its connection).
    pub async fn open_in_memory() -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(backend)?;
        Self::migrated(pool, None).await
    }

    async fn migrated(pool: SqlitePool, file: Option<SqliteConnectOptions>) -> StoreResult<Self> {
        migrator()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migrating the database: {e}")))?;
        Ok(Self { pool, file })
    }
}

/// The embedded migrations. `sqlx::migrate!` needs sqlx's `macros` feature, which the
/// workspace leaves off, so the files are listed here; version and description follow
/// the file names, as `migrate!` would derive them.
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
            include_str!("../../migrations/sqlite/0001_init.sql"),
        ),
        migration(
            2,
            "role grants",
            include_str!("../../migrations/sqlite/0002_role_grants.sql"),
        ),
        migration(
            3,
            "audit events",
            include_str!("../../migrations/sqlite/0003_audit_events.sql"),
        ),
        migration(
            4,
            "denied access tokens",
            include_str!("../../migrations/sqlite/0004_denied_access_tokens.sql"),
        ),
        migration(
            5,
            "refresh successors and resource",
            include_str!("../../migrations/sqlite/0005_refresh_successors_and_resource.sql"),
        ),
        migration(
            6,
            "verified email unique",
            include_str!("../../migrations/sqlite/0006_verified_email_unique.sql"),
        ),
        migration(
            7,
            "admin",
            include_str!("../../migrations/sqlite/0007_admin.sql"),
        ),
        migration(
            8,
            "managed groups",
            include_str!("../../migrations/sqlite/0008_managed_groups.sql"),
        ),
        migration(
            9,
            "api keys",
            include_str!("../../migrations/sqlite/0009_api_keys.sql"),
        ),
        migration(
            10,
            "resource grants",
            include_str!("../../migrations/sqlite/0010_resource_grants.sql"),
        ),
        migration(
            11,
            "device codes",
            include_str!("../../migrations/sqlite/0011_device_codes.sql"),
        ),
        migration(
            12,
            "logout outbox",
            include_str!("../../migrations/sqlite/0012_logout_outbox.sql"),
        ),
        migration(
            13,
            "mail outbox and account tokens",
            include_str!("../../migrations/sqlite/0013_mail_outbox.sql"),
        ),
        migration(
            14,
            "registrations and email verification",
            include_str!("../../migrations/sqlite/0014_registrations.sql"),
        ),
        migration(
            15,
            "mfa",
            include_str!("../../migrations/sqlite/0015_mfa.sql"),
        ),
    ])
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// A unique violation becomes `Conflict { what }`, anything else a backend failure.
fn conflict_or_backend(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| {
        if is_unique_violation(&e) {
            StoreError::Conflict { what }
        } else {
            backend(e)
        }
    }
}

/// Names the user key that collided; SQLite's message names the index's column.
fn user_conflict(e: sqlx::Error) -> StoreError {
    let what = match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            let message = db.message();
            if message.contains("users.username") {
                "username"
            } else if message.contains("users.email") {
                "email"
            } else {
                "user"
            }
        }
        _ => return backend(e),
    };
    StoreError::Conflict { what }
}

fn to_json<T: Serialize + ?Sized>(value: &T, what: &str) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("encoding {what} as JSON: {e}")))
}

/// Reads the columns of one row of a `what`, reporting undecodable data as corrupt.
struct Columns<'r> {
    row: &'r SqliteRow,
    what: &'static str,
}

impl<'r> Columns<'r> {
    fn new(row: &'r SqliteRow, what: &'static str) -> Self {
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
        T: Decode<'r, Sqlite> + Type<Sqlite>,
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

fn user_from_row(row: &SqliteRow) -> StoreResult<UserRecord> {
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

fn audit_from_row(row: &SqliteRow) -> StoreResult<(i64, AuditEvent)> {
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

fn link_from_row(row: &SqliteRow) -> StoreResult<IdentityLink> {
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

fn auth_request_from_row(row: &SqliteRow) -> StoreResult<AuthRequestRecord> {
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

fn grant_from_row(row: &SqliteRow) -> StoreResult<GrantRecord> {
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

fn code_from_row(row: &SqliteRow) -> StoreResult<CodeRecord> {
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

fn refresh_token_from_row(row: &SqliteRow) -> StoreResult<RefreshTokenRecord> {
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

fn session_from_row(row: &SqliteRow) -> StoreResult<SessionRecord> {
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

fn key_from_row(row: &SqliteRow) -> StoreResult<SigningKeyRecord> {
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
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query(concat!(
        "INSERT INTO users (",
        user_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, 1)"
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
impl UserStore for SqliteStore {
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        insert_user(&self.pool, user).await
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ?1"
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
        // Both columns are NOCASE. Only a verified email names an account, and it
        // wins over a username (see the trait); each matches at most one user.
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = ?1 OR (email = ?1 AND email_verified = 1)",
            " ORDER BY (email = ?1 AND email_verified = 1) DESC, created_at, id LIMIT 1"
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
        let mut q = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE 1 = 1"
        ));
        if let Some(email) = &filter.email {
            q.push(" AND email = ")
                .push_bind(email)
                .push(" COLLATE NOCASE");
        }
        if let Some(username) = &filter.username {
            q.push(" AND username = ")
                .push_bind(username)
                .push(" COLLATE NOCASE");
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
            q.push(" AND (created_at > ")
                .push_bind(after.created_at)
                .push(" OR (created_at = ")
                .push_bind(after.created_at)
                .push(" AND id > ")
                .push_bind(&after.id)
                .push("))");
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
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        let done = sqlx::query(
            "UPDATE users SET username = ?2, email = ?3, email_verified = ?4, name = ?5, \
             given_name = ?6, family_name = ?7, picture = ?8, status = ?9, updated_at = ?10, \
             revision = revision + 1 WHERE id = ?1 AND revision = ?11",
        )
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
        .execute(&mut *tx)
        .await
        .map_err(user_conflict)?;
        let stored = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ?1"
        ))
        .bind(&user.id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        .as_ref()
        .map(user_from_row)
        .transpose()?;
        tx.commit().await.map_err(backend)?;
        Ok(match (done.rows_affected(), stored) {
            (_, None) => CheckedWrite::NoSuchUser,
            (1, Some(user)) => CheckedWrite::Written(Box::new(user)),
            (_, Some(_)) => CheckedWrite::Stale,
        })
    }

    async fn delete_user(&self, id: &str) -> StoreResult<bool> {
        // Foreign keys cascade to links, grants (codes, refresh tokens), sessions, role
        // grants and API keys; audit events have no key to users and stay.
        let done = sqlx::query("DELETE FROM users WHERE id = ?1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn update_profile(&self, user: &UserRecord) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE users SET username = ?2, email = ?3, email_verified = ?4, name = ?5, \
             given_name = ?6, family_name = ?7, picture = ?8, groups_json = ?9, \
             updated_at = ?10, last_login_at = ?11, revision = revision + 1 WHERE id = ?1",
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
            "UPDATE users SET status = ?2, updated_at = ?3, revision = revision + 1 WHERE id = ?1",
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
            "UPDATE users SET password_hash = ?2, updated_at = ?3, revision = revision + 1 \
                 WHERE id = ?1",
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
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
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
            " FROM identity_links WHERE provider_id = ?1 AND subject = ?2"
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
        let rows = sqlx::query(concat!(
            "SELECT ",
            link_columns!(),
            " FROM identity_links WHERE user_id = ?1 ORDER BY provider_id, subject"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(link_from_row).collect()
    }

    async fn update_identity(&self, link: &IdentityLink) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE identity_links SET claims_json = ?3, sealed_provider_data = ?4, \
             updated_at = ?5 WHERE provider_id = ?1 AND subject = ?2",
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
            sqlx::query("DELETE FROM identity_links WHERE provider_id = ?1 AND subject = ?2")
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

fn role_grant_from_row(row: &SqliteRow) -> StoreResult<RoleGrantRecord> {
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
impl RoleGrantStore for SqliteStore {
    async fn grant_role(&self, grant: &RoleGrantRecord) -> StoreResult<bool> {
        let inserted = sqlx::query(
            "INSERT INTO role_grants (user_id, client_id, role, granted_at) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
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
            "DELETE FROM role_grants WHERE user_id = ?1 AND client_id = ?2 AND role = ?3",
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
             WHERE user_id = ?1 ORDER BY client_id, role",
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
impl AuditStore for SqliteStore {
    async fn record_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_events (user_id, kind, detail_json, at, format_version, actor) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&event.user_id)
        .bind(&event.kind)
        .bind(to_json(&event.detail, "audit detail")?)
        .bind(event.at)
        .bind(FORMAT_VERSION)
        .bind(event.actor.as_deref())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn list_audit(&self, user_id: &str) -> StoreResult<Vec<AuditEvent>> {
        sqlx::query(
            "SELECT seq, user_id, actor, kind, detail_json, at, format_version FROM audit_events \
             WHERE user_id = ?1 ORDER BY at, seq",
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
        let mut q = QueryBuilder::<Sqlite>::new(
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

fn group_from_row(row: &SqliteRow) -> StoreResult<GroupRecord> {
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

#[async_trait]
impl GroupStore for SqliteStore {
    async fn create_group(&self, group: &GroupRecord) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO managed_groups (",
            group_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, 1)"
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
            " FROM managed_groups WHERE id = ?1"
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
            " FROM managed_groups WHERE created_at > ?1 OR (created_at = ?1 AND id > ?2) \
             ORDER BY created_at, id LIMIT ?3"
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
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        let done = sqlx::query(
            "UPDATE managed_groups SET name = ?2, description = ?3, updated_at = ?4, \
             revision = revision + 1 WHERE id = ?1 AND revision = ?5",
        )
        .bind(&group.id)
        .bind(&group.name)
        .bind(group.description.as_deref())
        .bind(group.updated_at)
        .bind(expected_revision)
        .execute(&mut *tx)
        .await
        .map_err(conflict_or_backend("group"))?;
        let stored = sqlx::query(concat!(
            "SELECT ",
            group_columns!(),
            " FROM managed_groups WHERE id = ?1"
        ))
        .bind(&group.id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        .as_ref()
        .map(group_from_row)
        .transpose()?;
        tx.commit().await.map_err(backend)?;
        Ok(match (done.rows_affected(), stored) {
            (_, None) => CheckedGroupWrite::NoSuchGroup,
            (1, Some(group)) => CheckedGroupWrite::Written(group),
            (_, Some(_)) => CheckedGroupWrite::Stale,
        })
    }

    async fn delete_group(&self, id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM managed_groups WHERE id = ?1")
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
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        let exists = |table: &'static str| {
            let sql = match table {
                "group" => "SELECT 1 FROM managed_groups WHERE id = ?1",
                _ => "SELECT 1 FROM users WHERE id = ?1",
            };
            sqlx::query_scalar::<_, i64>(sql)
        };
        if exists("group")
            .bind(group_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .is_none()
        {
            return Ok(Membership::NoSuchGroup);
        }
        if exists("user")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .is_none()
        {
            return Ok(Membership::NoSuchUser);
        }
        let done = sqlx::query(
            "INSERT INTO group_members (group_id, user_id, added_at) VALUES (?1, ?2, ?3) \
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
        let done = sqlx::query("DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2")
            .bind(group_id)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_user_groups(&self, user_id: &str) -> StoreResult<Vec<GroupRecord>> {
        sqlx::query(
            "SELECT g.id, g.name, g.description, g.created_at, g.updated_at, g.revision \
             FROM managed_groups g JOIN group_members m ON m.group_id = g.id \
             WHERE m.user_id = ?1 ORDER BY g.name",
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
impl LoginStore for SqliteStore {
    async fn put_auth_request(&self, rec: &AuthRequestRecord) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO auth_requests (",
            auth_request_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5)"
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
            " FROM auth_requests WHERE id_hash = ?1 AND expires_at > ?2"
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
        // Only one DELETE can remove the row, so only one caller sees it returned.
        sqlx::query(concat!(
            "DELETE FROM auth_requests WHERE id_hash = ?1 AND expires_at > ?2 RETURNING ",
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

async fn fetch_grant(conn: &mut SqliteConnection, id: &str) -> StoreResult<Option<GrantRecord>> {
    sqlx::query(concat!(
        "SELECT ",
        grant_columns!(),
        " FROM grants WHERE id = ?1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(backend)?
    .as_ref()
    .map(grant_from_row)
    .transpose()
}

async fn insert_grant(conn: &mut SqliteConnection, grant: &GrantRecord) -> StoreResult<()> {
    sqlx::query(concat!(
        "INSERT INTO grants (",
        grant_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
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

async fn insert_code(conn: &mut SqliteConnection, code: &CodeRecord) -> StoreResult<()> {
    sqlx::query(concat!(
        "INSERT INTO codes (",
        code_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
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
    conn: &mut SqliteConnection,
    token_hash: &str,
    parent_hash: Option<&str>,
    grant_id: &str,
    expires_at: UnixTime,
    now: UnixTime,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at, parent_hash) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
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

/// Redemption inside the caller's write transaction.
async fn redeem_in(
    conn: &mut SqliteConnection,
    code_hash: &str,
    now: UnixTime,
) -> StoreResult<RedeemOutcome> {
    // The winner is whoever flips `used_at` from NULL; everyone after matches no row.
    let won = sqlx::query(concat!(
        "UPDATE codes SET used_at = ?2",
        " WHERE code_hash = ?1 AND used_at IS NULL AND expires_at > ?2 RETURNING ",
        code_columns!()
    ))
    .bind(code_hash)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    if let Some(row) = won {
        return code_from_row(&row).map(RedeemOutcome::Redeemed);
    }
    let seen = sqlx::query("SELECT grant_id, used_at FROM codes WHERE code_hash = ?1")
        .bind(code_hash)
        .fetch_optional(&mut *conn)
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

/// Rotation inside the caller's `BEGIN IMMEDIATE` transaction: what it reads stays
/// true until commit.
async fn rotate_in(
    conn: &mut SqliteConnection,
    old_hash: &str,
    new_hash: &str,
    new_expires_at: UnixTime,
    now: UnixTime,
    reuse_grace_secs: i64,
) -> StoreResult<RotateOutcome> {
    let found = sqlx::query(
        "SELECT grant_id, expires_at, spent_at, superseded_at FROM refresh_tokens \
         WHERE token_hash = ?1",
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
            let spent = sqlx::query(
                "UPDATE refresh_tokens SET spent_at = ?2 WHERE token_hash = ?1 \
                 AND spent_at IS NULL",
            )
            .bind(old_hash)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            // Cannot happen under the write lock; if it ever does, nobody wins.
            if spent.rows_affected() != 1 {
                return Err(StoreError::Backend(
                    "refresh token was spent concurrently".to_owned(),
                ));
            }
        }
        Some(spent_at) if reuse_grace_secs > 0 && now - spent_at <= reuse_grace_secs => {
            // A retry of a lost answer: its successor must still be unused, and dies.
            let superseded = sqlx::query(
                "UPDATE refresh_tokens SET superseded_at = ?2 WHERE parent_hash = ?1 \
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
    conn: &mut SqliteConnection,
    grant_id: String,
    now: UnixTime,
) -> StoreResult<RotateOutcome> {
    sqlx::query("UPDATE grants SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")
        .bind(&grant_id)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(RotateOutcome::Reused { grant_id })
}

#[async_trait]
impl GrantStore for SqliteStore {
    async fn create_grant_with_code(
        &self,
        grant: &GrantRecord,
        code: &CodeRecord,
    ) -> StoreResult<()> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        insert_grant(&mut tx, grant).await?;
        insert_code(&mut tx, code).await?;
        tx.commit().await.map_err(backend)
    }

    async fn redeem_code(&self, code_hash: &str, now: UnixTime) -> StoreResult<RedeemOutcome> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        let outcome = redeem_in(&mut tx, code_hash, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(outcome)
    }

    async fn get_grant(&self, id: &str) -> StoreResult<Option<GrantRecord>> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        fetch_grant(&mut conn, id).await
    }

    async fn revoke_grant(&self, id: &str, now: UnixTime) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE grants SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_user_grants(&self, user_id: &str, now: UnixTime) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE grants SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
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

    async fn list_session_grants(&self, session_id_hash: &str) -> StoreResult<Vec<GrantRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            grant_columns!(),
            " FROM grants WHERE session_id_hash = ?1 ORDER BY created_at, id"
        ))
        .bind(session_id_hash)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn refresh_token_grant(
        &self,
        token_hash: &str,
        now: UnixTime,
    ) -> StoreResult<Option<GrantRecord>> {
        let grant_id: Option<String> = sqlx::query_scalar(
            "SELECT grant_id FROM refresh_tokens WHERE token_hash = ?1 AND expires_at > ?2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let Some(grant_id) = grant_id else {
            return Ok(None);
        };
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        Ok(fetch_grant(&mut conn, &grant_id)
            .await?
            .filter(|g| g.revoked_at.is_none() && g.expires_at > now))
    }

    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            refresh_token_columns!(),
            " FROM refresh_tokens WHERE token_hash = ?1"
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
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
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
impl RevocationStore for SqliteStore {
    async fn deny_access_token(
        &self,
        jti: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool> {
        // The first denial stands: a second one matches the key and inserts nothing.
        let done = sqlx::query(
            "INSERT INTO denied_access_tokens (jti, expires_at, denied_at) VALUES (?1, ?2, ?3) \
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
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM denied_access_tokens WHERE jti = ?1")
                .bind(jti)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        Ok(found.is_some())
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO sessions (",
            session_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
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
            " FROM sessions WHERE id_hash = ?1 AND revoked_at IS NULL AND expires_at > ?2"
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
            "UPDATE sessions SET revoked_at = ?2 WHERE id_hash = ?1 AND revoked_at IS NULL",
        )
        .bind(id_hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_user_sessions(
        &self,
        user_id: &str,
        now: UnixTime,
    ) -> StoreResult<Vec<SessionRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2 \
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

    async fn revoke_user_sessions(&self, user_id: &str, now: UnixTime) -> StoreResult<u64> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        sqlx::query(
            "INSERT INTO logout_outbox (client_id, sid, user_id, created_at, next_attempt_at) \
             SELECT DISTINCT g.client_id, s.id_hash, s.user_id, ?2, ?2 \
             FROM sessions s JOIN grants g ON g.session_id_hash = s.id_hash \
             WHERE s.user_id = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2 \
             ON CONFLICT (client_id, sid) DO NOTHING",
        )
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl SealedStore for SqliteStore {
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
                     WHERE ?1 IS NULL OR kid > ?1 ORDER BY kid LIMIT ?2",
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
                       AND (?1 IS NULL OR provider_id > ?1 OR (provider_id = ?1 AND subject > ?2)) \
                     ORDER BY provider_id, subject LIMIT ?3",
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
                     WHERE ?1 IS NULL OR user_id > ?1 ORDER BY user_id LIMIT ?2",
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
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        let mut changed = 0;
        for r in rewrites {
            let done = match &r.row {
                SealedRow::SigningKey { kid } => sqlx::query(
                    "UPDATE signing_keys SET sealed_private_key = ?3 \
                     WHERE kid = ?1 AND sealed_private_key = ?2",
                )
                .bind(kid),
                SealedRow::ProviderData {
                    provider_id,
                    subject,
                } => sqlx::query(
                    "UPDATE identity_links SET sealed_provider_data = ?4 \
                     WHERE provider_id = ?1 AND subject = ?2 AND sealed_provider_data = ?3",
                )
                .bind(provider_id)
                .bind(subject),
                SealedRow::TotpSecret { user_id } => sqlx::query(
                    "UPDATE totp_enrolments SET sealed_secret = ?3 \
                     WHERE user_id = ?1 AND sealed_secret = ?2",
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

// One statement: SQLite runs it under the write lock, so no two callers match the
// same free row.
const CLAIM_MAIL: &str = "UPDATE mail_outbox SET lease_owner = ?1, lease_until = ?3 \
     WHERE id IN ( \
       SELECT id FROM mail_outbox \
       WHERE next_attempt_at <= ?2 AND (lease_until IS NULL OR lease_until <= ?2) \
       ORDER BY next_attempt_at, created_at LIMIT ?4) \
     RETURNING id, recipient, subject, body_text, body_html, created_at, attempts";

fn mail_delivery_from_row(r: &SqliteRow) -> StoreResult<MailDelivery> {
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
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (id) DO NOTHING";

#[async_trait]
impl MailOutbox for SqliteStore {
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
        let done = sqlx::query("DELETE FROM mail_outbox WHERE id = ?1 AND lease_owner = ?2")
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
            "UPDATE mail_outbox SET attempts = ?3, next_attempt_at = ?4, \
             lease_owner = NULL, lease_until = NULL WHERE id = ?1 AND lease_owner = ?2",
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
impl AccountTokenStore for SqliteStore {
    async fn issue_account_token(
        &self,
        token: &AccountTokenRecord,
        mail_id: &str,
        mail: &OutgoingMail,
    ) -> StoreResult<()> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        sqlx::query(
            "INSERT INTO account_tokens \
             (token_hash, purpose, user_id, detail, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&token.token_hash)
        .bind(token.purpose.as_str())
        .bind(&token.user_id)
        .bind(token.detail.as_deref())
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict {
                    what: "account token",
                }
            } else {
                backend(e)
            }
        })?;
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
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "DELETE FROM account_tokens \
             WHERE token_hash = ?1 AND purpose = ?2 AND expires_at > ?3 \
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
        sqlx::query("DELETE FROM account_tokens WHERE user_id = ?1 AND purpose = ?2")
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
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        sqlx::query(
            "INSERT INTO pending_registrations \
             (token_hash, user_id, username, email, name, password_hash, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict {
                    what: "registration",
                }
            } else {
                backend(e)
            }
        })?;
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
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        let row: Option<PendingColumns> = sqlx::query_as(
            "DELETE FROM pending_registrations WHERE token_hash = ?1 AND expires_at > ?2 \
             RETURNING token_hash, user_id, username, email, name, password_hash, \
             created_at, expires_at",
        )
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
            Ok(()) => {}
            Err(StoreError::Conflict { what }) => {
                // Commit the deletion alone: the link is used up either way.
                tx.commit().await.map_err(backend)?;
                return Ok(Confirmation::Taken { what });
            }
            Err(e) => return Err(e),
        }
        tx.commit().await.map_err(backend)?;
        Ok(Confirmation::Created(Box::new(user)))
    }
}

fn totp_from_row(row: &SqliteRow) -> StoreResult<TotpRecord> {
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
    conn: &mut SqliteConnection,
    user_id: &str,
    hashes: &[String],
    now: UnixTime,
) -> StoreResult<()> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?1")
        .bind(user_id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    for h in hashes {
        sqlx::query(
            "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES (?1, ?2, ?3) \
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
impl MfaStore for SqliteStore {
    async fn put_pending_totp(
        &self,
        user_id: &str,
        sealed_secret: &[u8],
        now: UnixTime,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO totp_enrolments (user_id, sealed_secret, created_at) VALUES (?1, ?2, ?3) \
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
             FROM totp_enrolments WHERE user_id = ?1",
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
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        let done = sqlx::query(
            "UPDATE totp_enrolments SET confirmed_at = ?3, last_step = ?4 \
             WHERE user_id = ?1 AND sealed_secret = ?2 AND confirmed_at IS NULL",
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
            "UPDATE totp_enrolments SET last_step = ?2 WHERE user_id = ?1 \
             AND confirmed_at IS NOT NULL AND (last_step IS NULL OR last_step < ?2)",
        )
        .bind(user_id)
        .bind(step)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_totp(&self, user_id: &str) -> StoreResult<bool> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let done = sqlx::query("DELETE FROM totp_enrolments WHERE user_id = ?1")
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
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        let confirmed: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM totp_enrolments WHERE user_id = ?1 AND confirmed_at IS NOT NULL",
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
            "DELETE FROM recovery_codes WHERE user_id = ?1 AND code_hash = ?2 AND EXISTS \
             (SELECT 1 FROM totp_enrolments t WHERE t.user_id = ?1 AND t.confirmed_at IS NOT NULL)",
        )
        .bind(user_id)
        .bind(code_hash)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_recovery_codes(&self, user_id: &str) -> StoreResult<u32> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?1")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

#[async_trait]
impl LogoutOutbox for SqliteStore {
    async fn end_session(
        &self,
        id_hash: &str,
        now: UnixTime,
        notices: &[LogoutNotice],
    ) -> StoreResult<bool> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = ?2 WHERE id_hash = ?1 AND revoked_at IS NULL",
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
                 VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (client_id, sid) DO NOTHING",
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
        // One statement: SQLite runs it under the write lock, so no two callers match
        // the same free row.
        sqlx::query(
            "UPDATE logout_outbox SET lease_owner = ?1, lease_until = ?3 \
             WHERE (client_id, sid) IN ( \
               SELECT client_id, sid FROM logout_outbox \
               WHERE next_attempt_at <= ?2 AND (lease_until IS NULL OR lease_until <= ?2) \
               ORDER BY next_attempt_at LIMIT ?4) \
             RETURNING client_id, sid, user_id, created_at, attempts",
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
            "DELETE FROM logout_outbox WHERE client_id = ?1 AND sid = ?2 AND lease_owner = ?3",
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
            "UPDATE logout_outbox SET attempts = ?4, next_attempt_at = ?5, \
             lease_owner = NULL, lease_until = NULL \
             WHERE client_id = ?1 AND sid = ?2 AND lease_owner = ?3",
        )
        .bind(client_id)
        .bind(sid)
        .bind(owner)
        .bind(i64::from(attempts))
        .bind(next_attempt_at)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
}

fn delivery_from_row(r: &SqliteRow) -> StoreResult<LogoutDelivery> {
    let attempts: i64 = r.try_get("attempts").map_err(backend)?;
    Ok(LogoutDelivery {
        notice: LogoutNotice {
            client_id: r.try_get("client_id").map_err(backend)?,
            sid: r.try_get("sid").map_err(backend)?,
            user_id: r.try_get("user_id").map_err(backend)?,
        },
        created_at: r.try_get("created_at").map_err(backend)?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
    })
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_key_if_absent(&self, key: &SigningKeyRecord) -> StoreResult<bool> {
        let done = sqlx::query(concat!(
            "INSERT INTO signing_keys (",
            key_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
            " FROM signing_keys WHERE expires_at > ?1 ORDER BY alg, epoch"
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
impl ThrottleStore for SqliteStore {
    async fn hit(&self, key: &str, window_secs: i64, now: UnixTime) -> StoreResult<u32> {
        // One statement: the upsert reads and bumps the window atomically. A window
        // that has ended starts over at 1.
        let hits: i64 = sqlx::query(
            "INSERT INTO throttle_windows (throttle_key, hits, expires_at) VALUES (?1, 1, ?2 + ?3) \
             ON CONFLICT (throttle_key) DO UPDATE SET \
               hits = CASE WHEN expires_at <= ?2 THEN 1 ELSE hits + 1 END, \
               expires_at = CASE WHEN expires_at <= ?2 THEN ?2 + ?3 ELSE expires_at END \
             RETURNING hits",
        )
        .bind(key)
        .bind(now)
        .bind(window_secs)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?
        .try_get("hits")
        .map_err(backend)?;
        Ok(u32::try_from(hits).unwrap_or(u32::MAX))
    }

    async fn current(&self, key: &str, now: UnixTime) -> StoreResult<u32> {
        let hits: Option<i64> = sqlx::query_scalar(
            "SELECT hits FROM throttle_windows WHERE throttle_key = ?1 AND expires_at > ?2",
        )
        .bind(key)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(hits.map_or(0, |h| u32::try_from(h).unwrap_or(u32::MAX)))
    }

    async fn clear(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM throttle_windows WHERE throttle_key = ?1")
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

fn api_key_from_row(row: &SqliteRow) -> StoreResult<ApiKeyRecord> {
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
impl ApiKeyStore for SqliteStore {
    async fn create_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO api_keys (",
            api_key_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
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
            " FROM api_keys WHERE secret_hash = ?1"
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
            " FROM api_keys WHERE user_id = ?1 ORDER BY created_at, id"
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
            "UPDATE api_keys SET revoked_at = ?3 \
             WHERE id = ?1 AND user_id = ?2 AND revoked_at IS NULL",
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
            "UPDATE api_keys SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
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
            "UPDATE api_keys SET last_used_at = ?2 \
             WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at <= ?2 - ?3)",
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
/// first so the count includes them (cascaded deletes are not counted by SQLite).
const PURGES: [&str; 12] = [
    "DELETE FROM account_tokens WHERE expires_at <= ?1",
    "DELETE FROM pending_registrations WHERE expires_at <= ?1",
    "DELETE FROM device_codes WHERE expires_at <= ?1 \
     OR grant_id IN (SELECT id FROM grants WHERE expires_at <= ?1)",
    "DELETE FROM refresh_tokens WHERE expires_at <= ?1 \
     OR grant_id IN (SELECT id FROM grants WHERE expires_at <= ?1)",
    "DELETE FROM codes WHERE expires_at <= ?1 \
     OR grant_id IN (SELECT id FROM grants WHERE expires_at <= ?1)",
    "DELETE FROM grants WHERE expires_at <= ?1",
    "DELETE FROM auth_requests WHERE expires_at <= ?1",
    "DELETE FROM sessions WHERE expires_at <= ?1",
    "DELETE FROM signing_keys WHERE expires_at <= ?1",
    "DELETE FROM throttle_windows WHERE expires_at <= ?1",
    "DELETE FROM denied_access_tokens WHERE expires_at <= ?1",
    "DELETE FROM api_keys WHERE expires_at <= ?1",
];

/// The roles one user holds on one resource, directly or through a group: this answers
/// every access check, so both halves are primary-key lookups (a test reads the plan).
const USER_RESOURCE_ROLES: &str = "SELECT role, NULL AS via_group FROM user_resource_grants \
     WHERE resource_type = ?1 AND resource_id = ?2 AND user_id = ?3 \
     UNION ALL \
     SELECT g.role, mg.name FROM group_members m \
     JOIN group_resource_grants g ON g.resource_type = ?1 AND g.resource_id = ?2 \
       AND g.group_id = m.group_id \
     JOIN managed_groups mg ON mg.id = m.group_id \
     WHERE m.user_id = ?3";

/// A page of the resources of one type a user holds roles on, walked through the holder
/// indexes: from the user's memberships to their groups' grants (`CROSS JOIN` keeps
/// SQLite from starting at every grant of the type instead).
const USER_RESOURCES: &str = "WITH held AS ( \
               SELECT resource_id, role FROM user_resource_grants \
               WHERE user_id = ?1 AND resource_type = ?2 AND resource_id > ?3 \
               UNION \
               SELECT g.resource_id, g.role FROM group_members m \
               CROSS JOIN group_resource_grants g ON g.group_id = m.group_id \
                 AND g.resource_type = ?2 AND g.resource_id > ?3 \
               WHERE m.user_id = ?1), \
             page AS (SELECT DISTINCT resource_id FROM held ORDER BY resource_id LIMIT ?4) \
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
            exists: "SELECT 1 FROM users WHERE id = ?1",
            insert: "INSERT INTO user_resource_grants (resource_type, resource_id, user_id, \
                     role, granted_at, granted_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT DO NOTHING",
            delete: "DELETE FROM user_resource_grants WHERE resource_type = ?1 \
                     AND resource_id = ?2 AND user_id = ?3 AND role = ?4",
        },
        Holder::Group(_) => HolderStatements {
            exists: "SELECT 1 FROM managed_groups WHERE id = ?1",
            insert: "INSERT INTO group_resource_grants (resource_type, resource_id, group_id, \
                     role, granted_at, granted_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT DO NOTHING",
            delete: "DELETE FROM group_resource_grants WHERE resource_type = ?1 \
                     AND resource_id = ?2 AND group_id = ?3 AND role = ?4",
        },
    }
}

#[async_trait]
impl ResourceGrantStore for SqliteStore {
    async fn grant_resource_role(
        &self,
        grant: &ResourceGrantRecord,
    ) -> StoreResult<ResourceGrantWrite> {
        let statements = holder_statements(&grant.holder);
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        let holder_exists = sqlx::query_scalar::<_, i64>(statements.exists)
            .bind(grant.holder.id())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .is_some();
        if !holder_exists {
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
        // ('', '', '') sorts before every grant: no cursor is the same query.
        let (kind, holder_id, role) = after.map_or(("", "", ""), |c| {
            (c.holder.kind(), c.holder.id(), c.role.as_str())
        });
        let rows = sqlx::query(
            "SELECT kind, holder_id, role, granted_at, granted_by FROM ( \
               SELECT 'group' AS kind, group_id AS holder_id, role, granted_at, granted_by \
               FROM group_resource_grants WHERE resource_type = ?1 AND resource_id = ?2 \
               UNION ALL \
               SELECT 'user', user_id, role, granted_at, granted_by \
               FROM user_resource_grants WHERE resource_type = ?1 AND resource_id = ?2) \
             WHERE (kind, holder_id, role) > (?3, ?4, ?5) \
             ORDER BY kind, holder_id, role LIMIT ?6",
        )
        .bind(&resource.resource_type)
        .bind(&resource.id)
        .bind(kind)
        .bind(holder_id)
        .bind(role)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let kind: String = Columns::new(row, "resource grant").get("kind")?;
                let holder_id: String = Columns::new(row, "resource grant").get("holder_id")?;
                Ok(ResourceGrantRecord {
                    resource: resource.clone(),
                    holder: match kind.as_str() {
                        "group" => Holder::Group(holder_id),
                        _ => Holder::User(holder_id),
                    },
                    role: Columns::new(row, "resource grant").get("role")?,
                    granted_at: Columns::new(row, "resource grant").get("granted_at")?,
                    granted_by: Columns::new(row, "resource grant").get("granted_by")?,
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
                Ok(HeldResourceRole {
                    role: Columns::new(row, "resource grant").get("role")?,
                    via_group: Columns::new(row, "resource grant").get("via_group")?,
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
            let id: String = Columns::new(row, "resource grant").get("resource_id")?;
            let role: String = Columns::new(row, "resource grant").get("role")?;
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

/// How often the change watcher asks SQLite whether the file changed.
const CHANGE_POLL: Duration = Duration::from_millis(100);

/// A SQLite file has no channel between processes, but it knows when another
/// connection wrote to it: `PRAGMA data_version` changes. One connection of its own
/// asks every [`CHANGE_POLL`], so a `broker` command writing the file of a running
/// server (disabling a user, revoking a grant) reaches the server's caches within that.
/// The server's own writes (on its pool's other connections) count too: harmless, as
/// they already moved the epoch or change nothing a cached answer says.
#[async_trait]
impl super::ChangeFeed for SqliteStore {
    async fn follow_changes(&self, changed: &(dyn Fn() + Send + Sync)) -> StoreResult<()> {
        let Some(file) = &self.file else {
            return Ok(()); // in memory: only this process can write it
        };
        let mut seen = None;
        let mut conn: Option<SqliteConnection> = None;
        loop {
            let version = match conn.as_mut() {
                Some(c) => sqlx::query_scalar::<_, i64>("PRAGMA data_version")
                    .fetch_one(c)
                    .await
                    .map_err(backend),
                None => match file.connect().await {
                    Ok(c) => {
                        conn = Some(c);
                        continue;
                    }
                    Err(e) => Err(backend(e)),
                },
            };
            match version {
                // The first read counts as a change too: what was written before it,
                // since the start or while the watcher was cut off, went unseen.
                Ok(v) if seen != Some(v) => {
                    changed();
                    seen = Some(v);
                }
                Ok(_) => {}
                Err(e) => {
                    changed();
                    conn = None;
                    seen = None;
                    tracing::warn!(error = %e, "watching the database for other processes' writes failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            tokio::time::sleep(CHANGE_POLL).await;
        }
    }
}
macro_rules! device_code_columns {
    () => {
        "device_code_hash, user_code_hash, client_id, scopes_json, created_at, expires_at, \
         poll_interval, last_polled_at, state, grant_id"
    };
}

fn device_code_from_row(row: &SqliteRow) -> StoreResult<DeviceCodeRecord> {
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

/// The pending, unexpired request with this user code, read on `conn`.
async fn pending_device_code(
    conn: &mut SqliteConnection,
    user_code_hash: &str,
    now: UnixTime,
) -> StoreResult<Option<DeviceCodeRecord>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        device_code_columns!(),
        " FROM device_codes WHERE user_code_hash = ?1 AND state = 'pending' AND expires_at > ?2"
    ))
    .bind(user_code_hash)
    .bind(now)
    .fetch_optional(conn)
    .await
    .map_err(backend)?;
    row.as_ref().map(device_code_from_row).transpose()
}

#[async_trait]
impl DeviceCodeStore for SqliteStore {
    async fn create_device_code(&self, record: &DeviceCodeRecord) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO device_codes (",
            device_code_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
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
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        pending_device_code(&mut conn, user_code_hash, now).await
    }

    async fn approve_device_code(
        &self,
        user_code_hash: &str,
        grant: &GrantRecord,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        if pending_device_code(&mut tx, user_code_hash, now)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        insert_grant(&mut tx, grant).await?;
        sqlx::query(
            "UPDATE device_codes SET state = 'approved', grant_id = ?2 \
             WHERE user_code_hash = ?1 AND state = 'pending'",
        )
        .bind(user_code_hash)
        .bind(&grant.id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn deny_device_code(&self, user_code_hash: &str, now: UnixTime) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE device_codes SET state = 'denied' \
             WHERE user_code_hash = ?1 AND state = 'pending' AND expires_at > ?2",
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
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
        let row = sqlx::query(concat!(
            "SELECT ",
            device_code_columns!(),
            " FROM device_codes WHERE device_code_hash = ?1"
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
                "UPDATE device_codes SET state = ?2, poll_interval = ?3, last_polled_at = ?4 \
                 WHERE device_code_hash = ?1",
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

#[async_trait]
impl Maintenance for SqliteStore {
    async fn purge_expired(&self, now: UnixTime) -> StoreResult<u64> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(backend)?;
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
#[allow(clippy::unwrap_used)] // a failed step should fail the test loudly
mod tests {
    use super::*;
    use crate::store::ChangeFeed;

    fn alice() -> UserRecord {
        UserRecord {
            id: "u1".to_owned(),
            username: Some("alice".to_owned()),
            email: None,
            email_verified: false,
            name: None,
            given_name: None,
            family_name: None,
            picture: None,
            groups: vec!["staff".to_owned()],
            status: UserStatus::Active,
            password_hash: None,
            created_at: 1,
            updated_at: 1,
            last_login_at: None,
            revision: 1,
        }
    }

    /// What a `broker` command writes to the file of a running server reaches the
    /// server's caches: the change watcher sees another connection's write.
    #[tokio::test]
    async fn a_write_by_another_process_is_seen_as_a_change() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.db");
        let server = std::sync::Arc::new(SqliteStore::open(&path).await.unwrap());
        let changes = std::sync::Arc::new(AtomicUsize::new(0));
        let watcher = {
            let (server, changes) = (server.clone(), changes.clone());
            tokio::spawn(async move {
                let count = move || {
                    changes.fetch_add(1, Ordering::SeqCst);
                };
                server.follow_changes(&count).await
            })
        };
        // The version it starts from counts once: what came before went unseen.
        tokio::time::sleep(CHANGE_POLL * 3).await;
        assert_eq!(changes.load(Ordering::SeqCst), 1);

        let cli = SqliteStore::open(&path).await.unwrap();
        cli.create_user(&alice()).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while changes.load(Ordering::SeqCst) == 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the write was never seen"
            );
            tokio::time::sleep(CHANGE_POLL / 2).await;
        }
        watcher.abort();
    }

    #[tokio::test]
    async fn an_in_memory_store_has_no_changes_to_follow() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let nothing = || {};
        tokio::time::timeout(Duration::from_secs(1), store.follow_changes(&nothing))
            .await
            .expect("returns at once")
            .unwrap();
    }

    /// An access check must stay an index lookup however many grants there are: no
    /// step of either plan may scan a table.
    #[tokio::test]
    async fn resource_role_lookups_use_indexes() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        for (sql, arguments) in [(USER_RESOURCE_ROLES, 3), (USER_RESOURCES, 4)] {
            let explain = format!("EXPLAIN QUERY PLAN {sql}");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(explain));
            for _ in 0..arguments {
                query = query.bind("x");
            }
            let plan: Vec<String> = query
                .fetch_all(&store.pool)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>("detail"))
                .collect();
            let scans: Vec<&String> = plan
                .iter()
                .filter(|step| {
                    step.starts_with("SCAN")
                        && !step.starts_with("SCAN held")
                        && !step.starts_with("SCAN page")
                })
                .collect();
            assert!(scans.is_empty(), "{sql}: {plan:#?}");
            if sql == USER_RESOURCES {
                assert!(
                    plan.iter()
                        .any(|step| step.contains("group_resource_grants_holder")),
                    "{plan:#?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn reopening_a_file_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.db");
        let store = SqliteStore::open(&path).await.unwrap();
        store.create_user(&alice()).await.unwrap();
        store.pool.close().await;

        let reopened = SqliteStore::open(&path).await.unwrap();
        assert_eq!(reopened.get_user("u1").await.unwrap(), Some(alice()));
        let mode: String = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&reopened.pool)
            .await
            .unwrap()
            .get(0);
        assert_eq!(mode, "wal");
    }

    /// Schema 6 makes only verified emails unique, and verifies the emails of the
    /// accounts `broker user add` made (a password, no upstream identity) so that they
    /// keep logging in by email; nobody else's email changes.
    #[tokio::test]
    async fn schema_6_verifies_only_emails_of_accounts_the_operator_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        let before_6: Vec<Migration> = migrator()
            .iter()
            .filter(|m| m.version < 6)
            .cloned()
            .collect();
        Migrator::with_migrations(before_6)
            .run(&pool)
            .await
            .unwrap();
        let old = SqliteStore { pool, file: None };
        // Written as schema 5 had it (today's columns came later).
        let account = |id: &str, email: &str, password: bool| {
            (
                id.to_owned(),
                email.to_owned(),
                password.then(|| "phc".to_owned()),
            )
        };
        let link = |user: &str, provider: &str, subject: &str| IdentityLink {
            provider_id: provider.to_owned(),
            subject: subject.to_owned(),
            user_id: user.to_owned(),
            claims: serde_json::json!({}),
            sealed_provider_data: None,
            created_at: 1,
            updated_at: 1,
        };
        for user in [
            account("added", "ann@x.io", true),
            account("added-never-seen", "dan@x.io", true),
            account("federated", "bob@x.io", false),
            account("federated-with-password", "carl@x.io", true),
        ] {
            let (id, email, password_hash) = user;
            sqlx::query(
                "INSERT INTO users (id, email, email_verified, groups_json, status, \
                 password_hash, created_at, updated_at, format_version) \
                 VALUES (?1, ?2, 0, '[]', 'active', ?3, 1, 1, 1)",
            )
            .bind(id)
            .bind(email)
            .bind(password_hash)
            .execute(&old.pool)
            .await
            .unwrap();
        }
        for l in [
            link("added", "local", "added"),
            link("federated", "github", "gh-1"),
            link("federated-with-password", "github", "gh-2"),
        ] {
            old.link_identity(&l).await.unwrap();
        }
        old.pool.close().await;

        let store = SqliteStore::open(&path).await.unwrap();
        let verified = |id: &'static str| {
            let store = store.clone();
            async move { store.get_user(id).await.unwrap().unwrap().email_verified }
        };
        assert!(verified("added").await);
        assert!(verified("added-never-seen").await);
        assert!(!verified("federated").await);
        assert!(!verified("federated-with-password").await);
        // The claim of an unverified email no longer blocks anyone; a verified one does.
        let today = |id: &str, email: &str, verified: bool| UserRecord {
            id: id.to_owned(),
            username: None,
            email: Some(email.to_owned()),
            email_verified: verified,
            ..alice()
        };
        let mut squatter = today("squatter", "BOB@x.io", false);
        squatter.username = Some("squatter".to_owned());
        store.create_user(&squatter).await.unwrap();
        let second = today("second", "Ann@X.io", true);
        assert!(matches!(
            store.create_user(&second).await,
            Err(StoreError::Conflict { what: "email" })
        ));
    }

    #[tokio::test]
    async fn row_of_unknown_format_version_is_corrupt() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        store.create_user(&alice()).await.unwrap();
        sqlx::query("UPDATE users SET format_version = 2")
            .execute(&store.pool)
            .await
            .unwrap();

        let err = store.get_user("u1").await.unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { what: "user", ref detail } if detail.contains("version 2")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn undecodable_json_is_corrupt() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        store.create_user(&alice()).await.unwrap();
        sqlx::query("UPDATE users SET groups_json = 'not json'")
            .execute(&store.pool)
            .await
            .unwrap();

        assert!(matches!(
            store.find_user_by_login("ALICE").await,
            Err(StoreError::Corrupt { what: "user", .. })
        ));
    }
}
