//! Storage: one interface over SQLite (the embedded default) and PostgreSQL (production, several
//! replicas).
//!
//! Every query goes through one mechanism ([`tx`]): a connection of either backend and a macro
//! that compiles the body once per backend. Both backends run the same SQL wherever the dialects
//! agree (numbered `$1` parameters work in both); where they differ (bulk statements, row locks),
//! the macro takes one body per backend. There is no `Any` driver and no compile-time `query!`
//! macro: every query is a static string with bound values, except generated placeholder lists
//! (`tx::Dialect`) and column lists that are constants of this module.
//!
//! SQLite runs in WAL mode with one writer connection (so writes never meet "database is locked")
//! and a separate pool of readers.
//!
//! The rooms: [`catalogue`] (legal bases, benefit types), [`parties`] (parties, their lifecycle and
//! audit, operators), [`register`] (the bitemporal register and its ingest), [`delivery`]
//! (subscriptions and each party's delivery history), [`consents`] (consents and case
//! references), [`disclosure_log`] (the hash-chained log of every disclosure decision).

mod catalogue;
mod checkpoint;
pub mod consents;
mod copy;
pub mod delivery;
pub mod disclosure_log;
pub mod parties;
pub mod register;
pub mod statistics;
pub(crate) mod tx;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::config::redact_url;
use tx::on_conn;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// A database failure, kept opaque: callers learn only whether retrying may help
/// ([`StoreError::Unavailable`]) or not ([`StoreError::Database`]); the text is for the log.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DatabaseError(sqlx::Error);

/// Errors of the storage layer. Callers map them to gRPC statuses in one place (`grpc::status`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is neither `sqlite:` nor `postgres:`.
    #[error("unsupported database URL '{0}': use sqlite://path or postgres://user@host/db")]
    UnsupportedUrl(String),
    /// Connecting failed.
    #[error("cannot connect to the database '{url}': {source}")]
    Connect { url: String, source: DatabaseError },
    /// Applying migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database holds a migration this binary does not know: a newer release of lefi migrated
    /// it, and this one cannot serve it (nor run beside that release).
    #[error(
        "the database was migrated by a newer release of lefi (migration {0} is unknown to this \
         binary): run that release or a later one; a binary cannot be rolled back past a migration \
         (docs/OPERATIONS.md, \"Rolling back\")"
    )]
    NewerSchema(i64),
    /// The database cannot be reached right now (connection lost or refused, pool exhausted, the
    /// server restarting): retrying later may succeed.
    #[error("the database is unavailable: {0}")]
    Unavailable(DatabaseError),
    /// A statement failed for another reason.
    #[error("database query failed: {0}")]
    Database(DatabaseError),
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

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_connection_failure(&e) {
            StoreError::Unavailable(DatabaseError(e))
        } else {
            StoreError::Database(DatabaseError(e))
        }
    }
}

/// Whether a database error means "cannot reach the database now" rather than "this statement
/// failed": lost or refused connections, an exhausted pool, and PostgreSQL's connection
/// exceptions (class 08), operator intervention (57P01–57P03: shutting down, starting up) and
/// SQLite's busy/locked after its timeout.
fn is_connection_failure(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "53300" | "57P01" | "57P02" | "57P03" | "5" | "6" | "261" | "262" | "517"
                )
        }),
        _ => false,
    }
}

/// Whether a database error is a uniqueness violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}

/// Which database a [`Store`] talks to (for reports and wake-ups, not for choosing SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
enum Backend {
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
        /// The WAL checkpointer (`checkpoint.rs`).
        checkpoints: checkpoint::Checkpoints,
    },
    Postgres(PgPool),
}

/// The storage handle: cheap to clone, shared by every service.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// The legal-basis and benefit-type catalogues once read (see `catalogue.rs`).
    catalogue: catalogue::CatalogueCache,
    /// What each agreement read so far grants (see `parties::GrantsCache`).
    grants: parties::GrantsCache,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.kind()).finish()
    }
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
            source: DatabaseError(source),
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
            // The writer syncs every commit (`FULL`): an acknowledged ingest, subscription or log
            // entry survives a power failure, not only a crash of the process (`NORMAL` in WAL mode
            // may lose the last commits). Readers write nothing. The writer leaves WAL checkpoints
            // to a connection of their own (`checkpoint.rs`) unless the WAL grows very large.
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(
                    options
                        .clone()
                        .synchronous(SqliteSynchronous::Full)
                        .pragma("cache_size", "-65536")
                        .pragma("wal_autocheckpoint", checkpoint::WRITER_CHECKPOINT_PAGES),
                )
                .await
                .map_err(connect_err)?;
            let checkpoint = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options.clone().synchronous(SqliteSynchronous::Full))
                .await
                .map_err(connect_err)?;
            let read = SqlitePoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options.read_only(true).pragma("cache_size", "-8192"))
                .await
                .map_err(connect_err)?;
            Ok(Self {
                backend: Backend::Sqlite {
                    write,
                    read,
                    checkpoints: checkpoint::Checkpoints::start(checkpoint),
                },
                catalogue: Default::default(),
                grants: Default::default(),
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(2))
                .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
                .connect(url)
                .await
                .map_err(connect_err)?;
            Ok(Self {
                backend: Backend::Postgres(pool),
                catalogue: Default::default(),
                grants: Default::default(),
            })
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }

    /// Applies pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.write_unscoped().await?;
        let migrated = on_conn!(&mut conn,
            sqlite: |c| SQLITE_MIGRATIONS.run(c).await,
            postgres: |c| POSTGRES_MIGRATIONS.run(c).await,
        );
        drop(conn);
        match migrated {
            // sqlx refuses a database with an applied migration it does not know: a newer lefi
            // migrated it (see docs/OPERATIONS.md, "Rolling back").
            Err(sqlx::migrate::MigrateError::VersionMissing(version)) => {
                return Err(StoreError::NewerSchema(version));
            }
            other => other?,
        }
        // A migration may have changed the catalogues.
        self.catalogue.forget();
        let encoded = self.encode_stored_versions().await?;
        if encoded > 0 {
            tracing::info!(
                versions = encoded,
                "encoded the stored register versions in the current format"
            );
        }
        let built = self.fill_person_states().await?;
        if built > 0 {
            tracing::info!(
                persons = built,
                "built the persons' current states for delivery snapshots"
            );
        }
        Ok(())
    }

    /// Brings the database's housekeeping up to date after a bulk load, so that the first reads
    /// afterwards do not pay for it: on PostgreSQL `VACUUM (ANALYZE)` (planner statistics, and the
    /// visibility information the first reader of new rows would otherwise write); on SQLite
    /// `ANALYZE` and a WAL checkpoint. Runs outside any transaction; safe to run at any time.
    pub async fn settle(&self) -> Result<(), StoreError> {
        let mut conn = self.write_unscoped().await?;
        on_conn!(&mut conn,
            sqlite: |c| sqlx::raw_sql("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);").execute(c).await.map(drop)?,
            postgres: |c| sqlx::raw_sql("VACUUM (ANALYZE)").execute(c).await.map(drop)?,
        );
        Ok(())
    }

    /// Which backend this is.
    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite { .. } => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// Each connection pool's connections in use and idle: `("write" | "read" | "postgres", in
    /// use, idle)`.
    pub fn pool_use(&self) -> Vec<(&'static str, u32, u32)> {
        let usage = |pool: &'static str, size: u32, idle: usize| {
            let idle = u32::try_from(idle).unwrap_or(u32::MAX);
            (pool, size.saturating_sub(idle), idle)
        };
        match &self.backend {
            Backend::Sqlite { write, read, .. } => vec![
                usage("sqlite_write", write.size(), write.num_idle()),
                usage("sqlite_read", read.size(), read.num_idle()),
            ],
            Backend::Postgres(pool) => vec![usage("postgres", pool.size(), pool.num_idle())],
        }
    }

    /// Checks that the database answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.read().await?;
        on_conn!(&mut conn, |c| sqlx::query("SELECT 1")
            .execute(c)
            .await
            .map(drop)?);
        Ok(())
    }

    /// Closes every pooled connection (at shutdown, so SQLite checkpoints its WAL).
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite {
                write,
                read,
                checkpoints,
            } => {
                checkpoints.close().await;
                read.close().await;
                write.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}

/// The PostgreSQL channel on which replicas tell each other that something changed.
pub const CHANGES_CHANNEL: &str = "lefi_changes";

impl Store {
    /// Tells other replicas on the same PostgreSQL database that something changed (a coalesced
    /// wake-up only: the tables are the truth); `payload` says whose histories
    /// ([`crate::wakeups::Wakeups::announcement`]). Does nothing on SQLite, which has one process.
    pub async fn announce_change(&self, payload: &str) -> Result<(), StoreError> {
        if self.kind() == BackendKind::Sqlite {
            return Ok(());
        }
        let mut conn = self.read().await?;
        on_conn!(&mut conn,
            sqlite: |_c| (),
            postgres: |c| {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANGES_CHANNEL)
                    .bind(payload)
                    .execute(c)
                    .await?;
            },
        );
        Ok(())
    }

    /// Passes `listener` the payload of every change announced by any replica, until the returned
    /// task is aborted. `None` on SQLite (one process: every change is made here).
    ///
    /// An announcement is lost when it is made while this replica's LISTEN connection is down
    /// (PostgreSQL restarting, a network cut). So the listener also hears `""` (wake everyone) once
    /// LISTEN is back after such a loss (whatever was committed meanwhile is then re-read), or,
    /// when reconnecting failed at first, at the head check after the database answers again and at
    /// the first announcement heard after it. And, as the safety net, the register head (which
    /// every history event moves) is checked every [`HEAD_CHECK_INTERVAL`]: when it moved, the
    /// watched parties with history events since the last check are woken (those whose streams have
    /// something new; usually their announcements woke them already, and a stream with nothing new
    /// would read an empty page), and everyone when that cannot be read.
    pub async fn watch_changes(
        &self,
        listener: std::sync::Arc<dyn ChangeListener>,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, StoreError> {
        // LISTEN needs a connection of its own that outlives this call: PgListener manages one.
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(None);
        };
        let mut pg_listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        pg_listener.listen(CHANGES_CHANNEL).await?;
        // Set when listening failed: announcements may have been lost while it did.
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let listen = {
            let listener = listener.clone();
            let failed = failed.clone();
            async move {
                // Whether listening failed since the last announcement heard.
                let mut lost = false;
                loop {
                    match pg_listener.try_recv().await {
                        Ok(Some(notification)) => {
                            if std::mem::take(&mut lost) {
                                listener.heard("");
                            }
                            listener.heard(notification.payload());
                        }
                        // The connection was lost and is back, listening again: announcements
                        // made meanwhile are gone, so re-read.
                        Ok(None) => {
                            tracing::warn!(
                                "the connection listening for other replicas' changes was lost and is back; \
                                 re-reading in case a change was missed"
                            );
                            listener.heard("");
                        }
                        // Reconnecting failed (the database is down). The next try reconnects,
                        // silently: everyone is woken at the first announcement heard after it,
                        // and by the head check once it can read again.
                        Err(e) => {
                            lost = true;
                            failed.store(true, std::sync::atomic::Ordering::SeqCst);
                            tracing::warn!(error = %DatabaseError(e), "listening for other replicas' changes failed; retrying in 1 s");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        };
        let store = self.clone();
        let check_head = async move {
            let mut seen = None;
            let mut ticks = tokio::time::interval(HEAD_CHECK_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match store.head_seq().await {
                    Ok(head) => {
                        if failed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                            listener.heard("");
                        } else if let Some(before) = seen.filter(|&s| s != head) {
                            store.wake_for_history(listener.as_ref(), before, head).await;
                        }
                        seen = Some(head);
                    }
                    Err(e) => tracing::debug!(error = %e, "checking the register head failed"),
                }
            }
        };
        Ok(Some(tokio::spawn(async move {
            tokio::join!(listen, check_head);
        })))
    }

    /// The head check's wake-up after the head moved from `before` to `head`: the watched
    /// parties whose histories grew in between, or everyone when that cannot be read (or the
    /// head went back: a restored database).
    async fn wake_for_history(&self, listener: &dyn ChangeListener, before: u64, head: u64) {
        if head < before {
            listener.heard("");
            return;
        }
        let watched = listener.watched_parties();
        match self.parties_with_history_between(&watched, before, head).await {
            Ok(grew) if grew.is_empty() => {}
            Ok(grew) => {
                tracing::debug!(
                    parties = grew.len(),
                    "the head check found history no announcement woke"
                );
                listener.wake(&grew);
            }
            Err(e) => {
                tracing::debug!(error = %e, "reading whose history grew failed; waking every stream");
                listener.heard("");
            }
        }
    }
}

/// What a replica's change watcher ([`Store::watch_changes`]) tells: implemented by
/// [`crate::wakeups::Wakeups`].
pub trait ChangeListener: Send + Sync + 'static {
    /// An announcement heard from a replica; `""` when changes may have been missed (everyone).
    fn heard(&self, payload: &str);
    /// The parties whose histories someone in this process is waiting on.
    fn watched_parties(&self) -> Vec<String>;
    /// Wakes the watchers of these parties.
    fn wake(&self, party_ids: &[String]);
}

/// How long a PostgreSQL call waits for a pooled connection before it fails UNAVAILABLE: long
/// enough to ride out a brief blip, short enough that a client learns of an outage promptly.
pub const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often each replica checks the register head for changes whose announcement it missed.
pub const HEAD_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// A new random, time-ordered identifier with a readable prefix, e.g. `pty_0190f3…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// A stored non-negative number (sequences, counts) as the unsigned value it stands for.
pub(crate) fn to_u64(v: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

/// An unsigned value as stored (saturating: sequences never come near `i64::MAX`).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored `YYYY-MM-DD` date.
pub(crate) fn stored_date(v: &str, what: &'static str) -> Result<time::Date, StoreError> {
    crate::domain::clock::parse_date(v).ok_or(StoreError::Corrupt(what))
}

/// A stored optional `YYYY-MM-DD` date.
pub(crate) fn stored_opt_date(v: Option<&str>, what: &'static str) -> Result<Option<time::Date>, StoreError> {
    v.map(|d| stored_date(d, what)).transpose()
}

/// A stored person id (always the 12-digit form).
pub(crate) fn stored_person(v: &str, what: &'static str) -> Result<crate::domain::Personnummer, StoreError> {
    crate::domain::Personnummer::from_storage(v).map_err(|_| StoreError::Corrupt(what))
}

/// Codes stored in one column: comma-separated.
pub(crate) fn join_codes(codes: &[String]) -> String {
    codes.join(",")
}

/// The codes of a column written by [`join_codes`].
pub(crate) fn split_codes(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// Text that stands for "none" in a column as `None`.
pub(crate) fn non_empty(v: String) -> Option<String> {
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What PRAGMA synchronous reads on a connection (0 OFF, 1 NORMAL, 2 FULL).
    async fn synchronous_of(conn: &mut tx::Conn) -> i64 {
        let tx::Conn::Sqlite(handle) = conn else {
            panic!("a SQLite store")
        };
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut **handle)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn sqlite_acknowledges_only_what_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("lefi.db").display());
        let store = Store::connect(&url, 2).await.unwrap();
        // The writer syncs every commit; readers write nothing, so theirs does not matter.
        assert_eq!(
            synchronous_of(&mut store.write_unscoped().await.unwrap()).await,
            2
        );
        store.close().await;
    }

    #[tokio::test]
    async fn sqlite_is_built_with_the_options_lefi_sets() {
        // A property of the linked library, so any connection tells.
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect("sqlite::memory:")
            .await
            .unwrap();
        let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        // .cargo/config.toml: no global memory statistics, and statement journals of up to 16 MiB
        // kept in memory.
        for expected in ["DEFAULT_MEMSTATUS=0", "STMTJRNL_SPILL=16777216"] {
            assert!(
                options.iter().any(|o| o == expected),
                "{expected} not in {options:?}"
            );
        }
    }

    /// Whether the database file at `path` holds `name` in `server_secrets` without its WAL,
    /// i.e. whether a checkpoint copied it there (read from a copy of the file alone).
    async fn checkpointed(path: &std::path::Path, name: &str) -> bool {
        let copy = path.with_extension("copy");
        for extra in ["copy-wal", "copy-shm"] {
            let _ = std::fs::remove_file(path.with_extension(extra));
        }
        if std::fs::copy(path, &copy).is_err() {
            return false;
        }
        let Ok(mut conn) =
            <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", copy.display()))
                .await
        else {
            return false;
        };
        let found: Result<i64, _> = sqlx::query_scalar("SELECT COUNT(*) FROM server_secrets WHERE name = ?")
            .bind(name)
            .fetch_one(&mut conn)
            .await;
        let _ = sqlx::Connection::close(conn).await;
        // A copy taken while a checkpoint wrote may not read: try again.
        found.is_ok_and(|n| n == 1)
    }

    #[tokio::test]
    async fn sqlite_checkpoints_its_wal_off_the_write_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lefi.db");
        let store = Store::connect(&format!("sqlite://{}", path.display()), 2)
            .await
            .unwrap();
        let mut conn = store.write().await.unwrap();
        let tx::Conn::Sqlite(handle) = &mut conn else {
            panic!("a SQLite store")
        };
        sqlx::query("INSERT INTO server_secrets (name, value) VALUES ('checkpoint test', 'x')")
            .execute(&mut **handle)
            .await
            .unwrap();
        // Still open when the checkpoint after its start runs: the one a second later copies it.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        conn.commit().await.unwrap();
        // The writer would checkpoint only past WRITER_CHECKPOINT_PAGES, far more than this test
        // writes: the row reaches the database file only through the checkpointer.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !checkpointed(&path, "checkpoint test").await {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL was not checkpointed into the database file within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        store.close().await;
    }

    #[test]
    fn code_lists_round_trip() {
        let codes = vec!["A".to_string(), "B_C".to_string()];
        assert_eq!(split_codes(&join_codes(&codes)), codes);
        assert!(split_codes("").is_empty());
    }

    #[test]
    fn connection_failures_are_told_from_statement_failures() {
        assert!(is_connection_failure(&sqlx::Error::PoolTimedOut));
        assert!(is_connection_failure(&sqlx::Error::Io(std::io::Error::other(
            "reset"
        ))));
        assert!(!is_connection_failure(&sqlx::Error::RowNotFound));
        assert!(matches!(
            StoreError::from(sqlx::Error::PoolClosed),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::Database(_)
        ));
    }
}
