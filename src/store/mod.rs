//! Storage: one interface over SQLite (the embedded default) and PostgreSQL (production, several
//! replicas).
//!
//! Both backends run the same SQL wherever the dialects agree (numbered `$1` parameters work in
//! both); where they differ, the method matches on the backend explicitly. There is no `Any`
//! driver and no compile-time `query!` macro: every query is a static string with bound values.
//!
//! SQLite runs in WAL mode with one writer connection (so writes never meet "database is locked")
//! and a separate pool of readers.

pub mod admin;
mod catalogue;
pub mod delivery;
mod parties;
pub mod policy;
mod register;
pub mod rows;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::config::redact_url;

pub use rows::*;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Errors of the storage layer. Callers map them to gRPC statuses in one place (`grpc::status`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is neither `sqlite:` nor `postgres:`.
    #[error("unsupported database URL '{0}': use sqlite://path or postgres://user@host/db")]
    UnsupportedUrl(String),
    /// Connecting failed.
    #[error("cannot connect to the database '{url}': {source}")]
    Connect { url: String, source: sqlx::Error },
    /// Applying migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A row the caller asked for does not exist.
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was violated; the text says which, without personal data.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Stored data did not parse into a domain value (a bug or manual tampering).
    #[error("corrupt stored value in {0}")]
    Corrupt(&'static str),
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
enum Backend {
    Sqlite { write: SqlitePool, read: SqlitePool },
    Postgres(PgPool),
}

/// The storage handle: cheap to clone, shared by every service.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.kind()).finish()
    }
}

/// Runs `$body` with `$pool` bound to the pool that reads (SQLite's reader pool, or PostgreSQL's).
/// The body is compiled once per backend, so it may use backend-specific types.
macro_rules! on_reader {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite { read: $pool, .. } => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}

/// Like [`on_reader`], with the pool that writes (SQLite's single writer connection).
macro_rules! on_writer {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite { write: $pool, .. } => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}

pub(crate) use {on_reader, on_writer};

/// Placeholders for generated statements: `$1, $2, …` for PostgreSQL, anonymous `?` for SQLite,
/// whose lookup of numbered names is linear per parameter (binding an 8,000-parameter statement
/// with `$N` names was quadratic and took 80 % of ingest time).
fn placeholder(numbered: bool, n: usize) -> String {
    if numbered {
        format!("${n}")
    } else {
        "?".to_string()
    }
}

/// `n` parameters for an `IN (…)` list, numbered from `$1` on PostgreSQL (see [`placeholder`]).
fn in_list(n: usize, numbered: bool) -> String {
    (1..=n)
        .map(|i| placeholder(numbered, i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(…), (…)` for `rows` rows of `cols` parameters, numbered from `$1` on PostgreSQL (see
/// [`placeholder`]).
fn values_list(rows: usize, cols: usize, numbered: bool) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=cols).map(|c| placeholder(numbered, r * cols + c)).collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Connects to `url` and applies the embedded migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let store = Self::connect_without_migrating(url, max_connections).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without touching the schema.
    pub async fn connect_without_migrating(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let connect_err = |source| StoreError::Connect {
            url: redact_url(url),
            source,
        };
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(connect_err)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            // The writer gets 64 MiB of page cache: bulk ingest touches the log's indexes all over,
            // and the default 2 MiB makes it read pages back again and again. Readers get 8 MiB
            // each: a reader's cache is emptied whenever another connection commits, so more buys
            // little, and eight readers at 64 MiB held most of the server's memory.
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options.clone().pragma("cache_size", "-65536"))
                .await
                .map_err(connect_err)?;
            let read = SqlitePoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options.read_only(true).pragma("cache_size", "-8192"))
                .await
                .map_err(connect_err)?;
            Ok(Self {
                backend: Backend::Sqlite { write, read },
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(2))
                .acquire_timeout(Duration::from_secs(30))
                .connect(url)
                .await
                .map_err(connect_err)?;
            Ok(Self {
                backend: Backend::Postgres(pool),
            })
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }

    /// Applies pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite { write, .. } => SQLITE_MIGRATIONS.run(write).await?,
            Backend::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// Brings the database's housekeeping up to date after a bulk load, so that the first reads
    /// afterwards do not pay for it: on PostgreSQL `VACUUM (ANALYZE)` (planner statistics, and the
    /// visibility information the first reader of new rows would otherwise write); on SQLite
    /// `ANALYZE` and a WAL checkpoint. Runs outside any transaction; safe to run at any time.
    pub async fn settle(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite { write, .. } => {
                sqlx::raw_sql("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")
                    .execute(write)
                    .await?;
            }
            Backend::Postgres(pool) => {
                sqlx::raw_sql("VACUUM (ANALYZE)").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// Which backend this is.
    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite { .. } => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// Checks that the database answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_reader!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Closes every pooled connection (at shutdown, so SQLite checkpoints its WAL).
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}

/// Whether a database error is a uniqueness violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}

/// The PostgreSQL channel on which replicas tell each other that something changed.
pub const CHANGES_CHANNEL: &str = "lefi_changes";

impl Store {
    /// Tells other replicas on the same PostgreSQL database that something changed (a coalesced
    /// wake-up only: the tables are the truth). Does nothing on SQLite, which has one process.
    pub async fn announce_change(&self) -> Result<(), StoreError> {
        if let Backend::Postgres(pool) = &self.backend {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANGES_CHANNEL)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// Calls `on_change` for every change announced by any replica, until the returned task is
    /// aborted. `None` on SQLite.
    pub async fn watch_changes(
        &self,
        on_change: impl Fn() + Send + 'static,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, StoreError> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(Some(tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(_) => on_change(),
                    Err(e) => {
                        // PgListener reconnects by itself on the next recv; wake streams meanwhile
                        // so they re-read the tables rather than miss anything.
                        tracing::warn!(error = %e, "listening for changes from other replicas failed; retrying");
                        on_change();
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::{in_list, values_list};

    #[test]
    fn placeholders_number_every_value() {
        assert_eq!(values_list(2, 3, false), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(values_list(1, 1, false), "(?)");
        assert_eq!(values_list(2, 2, true), "($1, $2), ($3, $4)");
        assert_eq!(in_list(3, true), "$1, $2, $3");
        assert_eq!(in_list(2, false), "?, ?");
    }
}
