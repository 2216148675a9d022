//! SQLite's WAL checkpoints, taken off the write path.
//!
//! In WAL mode every commit appends pages to the WAL, and a checkpoint copies them back into the
//! database file. By default the committing connection does that itself whenever the WAL has grown
//! past 1,000 pages, so every few commits an ingest, subscription or disclosure-log entry waited
//! for pages of earlier commits to be copied and synced. Here a connection of its own checkpoints
//! (`PASSIVE`: it never blocks the writer or a reader) shortly after writes begin and a second
//! after the last, on the other core, and the writer checkpoints itself only if the WAL ever grows
//! past [`WRITER_CHECKPOINT_PAGES`] (the checkpointer failing, or falling far behind).

use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::mpsc;

/// The WAL size (pages of 4 KiB) at which the writer checkpoints itself: the bound on the WAL
/// whatever happens to the checkpointer.
pub(super) const WRITER_CHECKPOINT_PAGES: &str = "16384";

/// How long the checkpointer waits after a write began: the write commits meanwhile, and the
/// writes of a burst share one checkpoint. Under a steady feed it checkpoints this often: each
/// checkpoint copies pages back into the database file and syncs it, and a commit's sync of the
/// WAL waits behind those writes, so small and frequent checkpoints keep commits' tail short (at
/// 100,000 persons and 1,000 commits/s, commit → delivery p99 17.6–21.7 ms with 25 ms against
/// 21.5–28.1 ms with 100 ms and 41 ms with 1 s; bulk ingest and snapshots 1–3 % slower:
/// docs/BENCHMARKS.md).
const AFTER_WRITES: Duration = Duration::from_millis(25);

/// How long after the last write began the checkpointer checkpoints once more.
const SETTLED: Duration = Duration::from_secs(1);

/// The checkpointer: its connection, and the hint that a write transaction began. Cheap to clone;
/// when the last clone (the last [`super::Store`] of the database) is dropped, it stops.
#[derive(Clone, Debug)]
pub(super) struct Checkpoints {
    pool: SqlitePool,
    hints: mpsc::Sender<()>,
}

impl Checkpoints {
    /// Starts the checkpointer on `pool` (its own read-write connection).
    pub(super) fn start(pool: SqlitePool) -> Self {
        // One pending hint is enough: the checkpoint it causes covers every write before it.
        let (hints, pending) = mpsc::channel(1);
        tokio::spawn(checkpoint_after_writes(pool.clone(), pending));
        Self { pool, hints }
    }

    /// A write began: checkpoint soon.
    pub(super) fn wrote(&self) {
        // Full: a checkpoint is already due. Closed: the checkpointer stopped with its pool.
        let _ = self.hints.try_send(());
    }

    /// Stops the checkpointer and closes its connection (before the writer's, which then
    /// checkpoints as the last connection to close).
    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

/// Checkpoints [`AFTER_WRITES`] after writes begin, again while they go on, and once more
/// [`SETTLED`] after the last one began (a transaction still open at the previous checkpoint has
/// committed by then); until the hints end (the store was dropped) or the pool is closed
/// ([`super::Store::close`]).
async fn checkpoint_after_writes(pool: SqlitePool, mut pending: mpsc::Receiver<()>) {
    'idle: while pending.recv().await.is_some() {
        loop {
            tokio::time::sleep(AFTER_WRITES).await;
            if !checkpoint(&pool).await {
                return;
            }
            match tokio::time::timeout(SETTLED, pending.recv()).await {
                Ok(Some(())) => {}
                Ok(None) => break 'idle,
                Err(_) => {
                    if !checkpoint(&pool).await {
                        return;
                    }
                    continue 'idle;
                }
            }
        }
    }
    pool.close().await;
}

/// One passive checkpoint; `false` once the pool is closed.
async fn checkpoint(pool: &SqlitePool) -> bool {
    if pool.is_closed() {
        return false;
    }
    if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(pool).await {
        if pool.is_closed() {
            return false;
        }
        tracing::warn!(
            error = %e,
            "a WAL checkpoint failed; the writer checkpoints itself if the WAL grows past {WRITER_CHECKPOINT_PAGES} pages"
        );
    }
    true
}
