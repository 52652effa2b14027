//! Scratch Postgres databases: one per scenario (and one more for an
//! outsider node), created from the server URL and dropped at the end, also
//! on panic, like the root crate's `tests/common` `TestDb`.

use crate::error::{HarnessError, Result};
use sqlx::Connection;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// The environment variable naming the test Postgres server.
pub const TEST_DATABASE_ENV: &str = "TOLLGATE_TEST_DATABASE_URL";

/// A database that is dropped (`WITH (FORCE)`) when this value is.
#[derive(Debug)]
pub struct ScratchDb {
    url: String,
    /// Server URL and database name, for the drop.
    server: String,
    name: String,
}

impl ScratchDb {
    /// Creates `tollgate_cluster_<uuid>` on the server at `server_url`.
    pub async fn create(server_url: &str) -> Result<ScratchDb> {
        let name = format!("tollgate_cluster_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(server_url).await?;
        // `name` is made of a fixed prefix and hex digits only.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        let _ = admin.close().await;
        let mut url = reqwest::Url::parse(server_url)
            .map_err(|e| HarnessError::Config(format!("database URL {server_url:?}: {e}")))?;
        url.set_path(&format!("/{name}"));
        Ok(ScratchDb {
            url: url.to_string(),
            server: server_url.to_string(),
            name,
        })
    }

    /// The database's own URL, for `--database-url`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop may run inside a runtime (or while unwinding): do the async
        // work on a thread and runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&server).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop scratch database {} (harmless)", self.name);
        }
    }
}

/// A small pool for the invariant queries.
pub async fn pool(url: &str) -> Result<PgPool> {
    Ok(PgPoolOptions::new().max_connections(2).connect(url).await?)
}
