//! Appending an ingest batch's log rows while the next ones are planned.
//!
//! Ingest hands each [`LOG_CHUNK`] planned rows to a task that appends them on the transaction's
//! connection and gives it back ([`LogWriter`]), so that the database appends one chunk while
//! lefi plans and encodes the next, on the other core.

use tracing::Instrument as _;

use super::ingest::LogRow;
use super::{postgres, sqlite};
use crate::store::StoreError;
use crate::store::tx::{Conn, on_conn};

/// Appends rows to `register_log`.
pub(super) async fn insert_log(conn: &mut Conn, rows: Vec<LogRow>) -> Result<(), StoreError> {
    on_conn!(conn,
        sqlite: |c| sqlite::insert_log(c, rows).await?,
        postgres: |c| postgres::insert_log(c, rows).await?,
    );
    Ok(())
}

/// How many log rows the [`LogWriter`] appends at a time: small enough that planning the next
/// chunk overlaps most of a batch's appending, large enough that a statement's own cost is small
/// beside its rows'. (SQLite: ingest 10 % faster at 20,000 persons; PostgreSQL: no faster on two
/// cores, where its `COPY` slows by what the overlap saves; docs/BENCHMARKS.md.)
pub(super) const LOG_CHUNK: usize = 1000;

/// The ingest transaction's connection, idle or lent to a task that appends a chunk of log rows
/// (and gives the connection back), so that the database appends one chunk while the next is
/// planned. At most one chunk is in flight: the rows reach the log in sequence order.
pub(super) enum LogWriter {
    Idle(Conn),
    Appending(tokio::task::JoinHandle<Result<Conn, StoreError>>),
}

impl LogWriter {
    /// The connection, once the chunk in flight (if any) is appended.
    pub(super) async fn into_conn(self) -> Result<Conn, StoreError> {
        match self {
            Self::Idle(conn) => Ok(conn),
            Self::Appending(task) => match task.await {
                Ok(appended) => appended,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // The runtime is shutting down: the task, and with it the transaction, is gone.
                Err(_) => Err(sqlx::Error::WorkerCrashed.into()),
            },
        }
    }

    /// Starts appending `rows` once the chunk before them is in.
    pub(super) async fn append(self, rows: Vec<LogRow>) -> Result<Self, StoreError> {
        let mut conn = self.into_conn().await?;
        let append = async move {
            insert_log(&mut conn, rows).await?;
            Ok(conn)
        };
        let task = tokio::spawn(append.instrument(tracing::Span::current()));
        // A task spawned from a worker waits in that worker's next-task slot, which no other
        // worker takes, until the spawning task yields: yield once, so that the chunk is sent
        // before the next is planned (and either task may move to the other worker).
        tokio::task::yield_now().await;
        Ok(Self::Appending(task))
    }
}
