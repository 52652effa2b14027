//! Helpers for tests across the crate: a fresh, migrated store per test.
//!
//! Not part of the API (hidden from docs). They panic with a clear message
//! when the database cannot be set up, as a test should.

use super::{PgStore, Store};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use std::str::FromStr;

/// The environment variable naming the Postgres server tests may use
/// (any database on it; each test creates its own).
pub const TEST_DATABASE_URL_VAR: &str = "TOLLGATE_TEST_DATABASE_URL";

/// A migrated SQLite store in a new temporary directory. Keep the
/// `TempDir` alive as long as the store: dropping it deletes the file.
pub async fn fresh_sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
    let path = dir.path().join("tollgate.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot open SQLite store at {url}: {e}"));
    (store, dir)
}

/// A SQLite store migrated only up to `version`, as an older release left
/// it: for testing that later migrations apply to existing databases.
pub async fn fresh_sqlite_at(version: i64) -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
    let url = format!("sqlite://{}", dir.path().join("tollgate.db").display());
    let store = Store::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot open SQLite store at {url}: {e}"));
    migrate_to(&store, version).await;
    (store, dir)
}

/// A migrated Postgres store on a brand-new database named
/// `tollgate_t_<uuid>`, created on the server named by
/// `TOLLGATE_TEST_DATABASE_URL`. None (with a note on stderr) when the
/// variable is unset outside CI; panics if it is unset under `CI`, or set
/// but the server cannot be used, so CI fails loudly. Drop the database at the end
/// of the test with [`drop_postgres`].
pub async fn fresh_postgres() -> Option<Store> {
    let store = new_postgres_database().await?;
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("cannot migrate test database: {e}"));
    Some(store)
}

/// Like [`fresh_postgres`], but migrated only up to `version`, as an older
/// release left it.
pub async fn fresh_postgres_at(version: i64) -> Option<Store> {
    let store = new_postgres_database().await?;
    migrate_to(&store, version).await;
    Some(store)
}

/// A store on a new, empty test database (see [`fresh_postgres`]).
async fn new_postgres_database() -> Option<Store> {
    let Ok(url) = std::env::var(TEST_DATABASE_URL_VAR) else {
        // Under CI a missing database is a failure, never a silent skip.
        assert!(
            std::env::var("CI").is_err(),
            "CI is set but {TEST_DATABASE_URL_VAR} is not: the Postgres tests cannot run"
        );
        eprintln!("{TEST_DATABASE_URL_VAR} unset: skipping Postgres");
        return None;
    };
    let name = format!("tollgate_t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to Postgres at {TEST_DATABASE_URL_VAR}={url}: {e}"));
    // `name` is generated above from hex digits only; safe to splice.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name} on {url}: {e}"));
    let _ = admin.close().await;

    let options = PgConnectOptions::from_str(&url)
        .unwrap_or_else(|e| panic!("bad {TEST_DATABASE_URL_VAR} {url}: {e}"))
        .database(&name);
    let store = PgStore::connect_with(options, super::StoreOptions::default())
        .await
        .map(Store::Postgres)
        .unwrap_or_else(|e| panic!("cannot connect to test database {name}: {e}"));
    Some(store)
}

/// Applies a store's migrations up to and including `version`.
async fn migrate_to(store: &Store, version: i64) {
    let migrated = match store {
        Store::Sqlite(s) => s.migrate_to(version).await,
        Store::Postgres(s) => s.migrate_to(version).await,
    };
    migrated.unwrap_or_else(|e| panic!("cannot migrate the test database to version {version}: {e}"));
}

/// `users.organization_id` of a user (None: no such user, or in no
/// organisation). The API has no reader for it: the organisation directory
/// reads memberships; this column is kept for the chat product's own queries.
pub async fn user_organization_id(store: &Store, user_id: &str) -> Option<String> {
    const SQL: &str = "SELECT organization_id FROM users WHERE id = $1";
    let found: Result<Option<Option<String>>, sqlx::Error> = match store {
        Store::Sqlite(s) => sqlx::query_scalar(SQL).bind(user_id).fetch_optional(s.pool()).await,
        Store::Postgres(s) => sqlx::query_scalar(SQL).bind(user_id).fetch_optional(s.pool()).await,
    };
    found
        .unwrap_or_else(|e| panic!("cannot read users.organization_id of {user_id}: {e}"))
        .flatten()
}

/// Inserts a `usage_alerts` row the way releases before 0005 did (no id,
/// no kind), for testing that migration on an old database.
pub async fn insert_legacy_alert(store: &Store, entity: &str, period: &str, threshold: i32) {
    let done: Result<(), sqlx::Error> = match store {
        Store::Sqlite(s) => sqlx::query(
            "INSERT INTO usage_alerts (entity, period, threshold, level, spent_usd, limit_usd) \
                 VALUES ($1, $2, $3, 'info', '5', '10')",
        )
        .bind(entity)
        .bind(period)
        .bind(threshold)
        .execute(s.pool())
        .await
        .map(drop),
        Store::Postgres(s) => sqlx::query(
            "INSERT INTO usage_alerts (entity, period, threshold, level, spent_usd, limit_usd) \
                 VALUES ($1, $2, $3, 'info', 5, 10)",
        )
        .bind(entity)
        .bind(period)
        .bind(threshold)
        .execute(s.pool())
        .await
        .map(drop),
    };
    done.unwrap_or_else(|e| panic!("cannot insert a legacy alert: {e}"));
}

/// Records one usage row (and its spend) for `user` with the 0001 schema's
/// columns only, as an old release did: the current `record_usage` reads
/// columns later migrations added. 1 234 input and 567 output tokens.
pub async fn insert_legacy_usage(store: &Store, user: &str, cost: &str, at_ms: i64) {
    let period = crate::limits::calendar::Period::containing(at_ms).to_string();
    let event = uuid::Uuid::new_v4();
    let entity = format!("user:{user}");
    let done: Result<(), sqlx::Error> = match store {
        Store::Sqlite(s) => {
            async {
                sqlx::query(
                    "INSERT INTO model_usage (event_id, user_id, model, input_tokens, output_tokens, cost_usd, period, \
                     created_at) VALUES ($1, $2, 'test-model', 1234, 567, $3, $4, $5)",
                )
                .bind(event.hyphenated().to_string())
                .bind(user)
                .bind(cost)
                .bind(&period)
                .bind(at_ms)
                .execute(s.pool())
                .await?;
                sqlx::query("INSERT INTO entity_spend (entity, period, spent_usd) VALUES ($1, $2, $3)")
                    .bind(&entity)
                    .bind(&period)
                    .bind(cost)
                    .execute(s.pool())
                    .await
                    .map(drop)
            }
            .await
        }
        Store::Postgres(s) => {
            async {
                sqlx::query(
                    "INSERT INTO model_usage (event_id, user_id, model, input_tokens, output_tokens, cost_usd, period, \
                     created_at) \
                 VALUES ($1, $2, 'test-model', 1234, 567, $3::numeric, $4, \
                         timestamptz 'epoch' + $5 * interval '1 millisecond')",
                )
                .bind(event)
                .bind(user)
                .bind(cost)
                .bind(&period)
                .bind(at_ms)
                .execute(s.pool())
                .await?;
                sqlx::query("INSERT INTO entity_spend (entity, period, spent_usd) VALUES ($1, $2, $3::numeric)")
                    .bind(&entity)
                    .bind(&period)
                    .bind(cost)
                    .execute(s.pool())
                    .await
                    .map(drop)
            }
            .await
        }
    };
    done.unwrap_or_else(|e| panic!("cannot insert legacy usage: {e}"));
}

/// Closes a store made by [`fresh_postgres`] and drops its database (best
/// effort: failures are printed, not raised). Does nothing for SQLite.
pub async fn drop_postgres(store: Store) {
    let Store::Postgres(pg) = store else {
        return;
    };
    let name: Result<String, _> = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pg.pool())
        .await;
    pg.pool().close().await;
    let name = match name {
        Ok(name) if name.starts_with("tollgate_t_") && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            name
        }
        Ok(name) => {
            eprintln!("not dropping database {name}: not a test database");
            return;
        }
        Err(e) => {
            eprintln!("cannot name the test database to drop it: {e}");
            return;
        }
    };
    let Ok(url) = std::env::var(TEST_DATABASE_URL_VAR) else {
        return;
    };
    let dropped = async {
        let mut admin = PgConnection::connect(&url).await?;
        // `name` was checked above to be a generated test database name.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
        admin.close().await
    };
    if let Err(e) = dropped.await {
        eprintln!("cannot drop test database {name}: {e}");
    }
}
