//! Fresh Postgres databases for the cluster mode, dropped at the end.

use anyhow::{Context, Result, bail};
use sqlx::Connection;

/// The server the cluster mode creates its databases on (any database on it
/// that the user can connect to; trust auth locally).
pub const DATABASE_URL_ENV: &str = "TOLLGATE_BENCH_DATABASE_URL";
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn server_url() -> String {
    std::env::var(DATABASE_URL_ENV)
        .or_else(|_| std::env::var("TOLLGATE_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_string())
}

/// A database created for this run, dropped (`WITH (FORCE)`) by
/// [`FreshDatabase::drop_database`] or, failing that, when this is dropped.
pub struct FreshDatabase {
    server_url: String,
    name: String,
    url: String,
    dropped: bool,
}

impl FreshDatabase {
    /// `tollgate_bench_<run>_<suffix>` on the server at `server_url`.
    pub async fn create(server_url: &str, run: &str, suffix: &str) -> Result<FreshDatabase> {
        let name = format!("tollgate_bench_{run}_{suffix}");
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            bail!("{name:?} is not a plain database name");
        }
        let mut url = url::Url::parse(server_url).with_context(|| format!("{DATABASE_URL_ENV}={server_url:?}"))?;
        url.set_path(&format!("/{name}"));
        let mut admin = sqlx::PgConnection::connect(server_url)
            .await
            .with_context(|| format!("connecting to Postgres at {server_url} (set {DATABASE_URL_ENV})"))?;
        // `name` was checked above to hold only [a-z0-9_].
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
        let _ = admin.close().await;
        Ok(FreshDatabase {
            server_url: server_url.to_string(),
            name,
            url: url.to_string(),
            dropped: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's own URL, for `--database-url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn drop_database(&mut self) -> Result<()> {
        if self.dropped {
            return Ok(());
        }
        self.dropped = true;
        let mut admin = sqlx::PgConnection::connect(&self.server_url)
            .await
            .with_context(|| format!("connecting to Postgres at {}", self.server_url))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .with_context(|| format!("dropping database {}", self.name))?;
        let _ = admin.close().await;
        Ok(())
    }
}

impl Drop for FreshDatabase {
    /// Best effort, on an error path: never inside an async context here.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let dropped = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(self.drop_database()));
        if let Err(err) = dropped {
            eprintln!("could not drop database {}: {err:#}", self.name);
        }
    }
}
