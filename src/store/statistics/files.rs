//! The population (key) file and the extract's files of a statistics order: stored in the
//! database (so every replica serves them), in chunks of [`FILE_CHUNK_BYTES`]; read back for the
//! download; deleted at the end of the retention, when the manifest alone remains.

use time::Date;

use super::{Order, OrderError, OrderFilter, StepDetail};
use crate::domain::clock::{Micros, format_date};
use crate::domain::statistics::order::{OrderState, OrderStep, Side};
use crate::domain::statistics::population::Member;
use crate::store::tx::{Conn, on_conn};
use crate::store::{Store, StoreError, to_i64, to_u64};

/// What the manifest says of one file of an extract.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileFacts {
    pub name: String,
    pub media_type: String,
    pub size_bytes: u64,
    /// Data rows (CSV and Parquet files).
    pub rows: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// One file of an extract, as the producer wrote it to local disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractFile {
    pub facts: FileFacts,
    /// Where the producer wrote it (read once, into the database).
    pub path: std::path::PathBuf,
}

/// The bytes of one stored chunk of an extract file (the last chunk may be shorter).
pub const FILE_CHUNK_BYTES: usize = 1 << 20;

/// Reads until `buffer` is full or the file ends; how many bytes were read.
fn read_full(file: &mut std::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// What producing the extract again replaces.
const REPLACED_BY_EXTRACT: &[&str] = &[
    "statistics_file_chunks",
    "statistics_files",
    "statistics_extracts",
];

/// What the end of the retention deletes: the files and the population, not the manifest.
pub(super) const DELETED_AT_RETENTION: &[&str] = &[
    "statistics_file_chunks",
    "statistics_files",
    "statistics_population",
];

/// Deletes the order's rows from each of `tables` (one of the lists above: the statement is built
/// from these constants only).
pub(super) async fn delete_order_rows(
    conn: &mut Conn,
    order_id: &str,
    tables: &[&'static str],
) -> Result<(), StoreError> {
    for table in tables {
        on_conn!(&mut *conn, |c| {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE order_id = $1"
            )))
            .bind(order_id)
            .execute(c)
            .await?;
        });
    }
    Ok(())
}

/// Population rows per INSERT statement (four parameters each).
const POPULATION_ROWS_PER_STATEMENT: usize = 500;

/// Replaces the order's population; the text of the step's audit entry (a count, never a person).
pub(super) async fn store_population(
    conn: &mut Conn,
    order_id: &str,
    members: &[Member],
) -> Result<String, StoreError> {
    delete_order_rows(conn, order_id, &["statistics_population"]).await?;
    let dialect = conn.dialect();
    for chunk in members.chunks(POPULATION_ROWS_PER_STATEMENT) {
        // Built from constants and numbers only; every value is bound.
        let sql = format!(
            "INSERT INTO statistics_population (order_id, serial, person, extra) VALUES {}",
            dialect.values_list(chunk.len(), 4)
        );
        on_conn!(&mut *conn, |c| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for m in chunk {
                query = query
                    .bind(order_id)
                    .bind(&m.serial)
                    .bind(m.person.as_storage())
                    .bind(serde_json::to_string(&m.extra).unwrap_or_default());
            }
            query.execute(c).await?;
        });
    }
    on_conn!(&mut *conn, |c| {
        sqlx::query("UPDATE statistics_orders SET population_count = $2 WHERE order_id = $1")
            .bind(order_id)
            .bind(members.len() as i64)
            .execute(c)
            .await?;
    });
    Ok(format!("{} persons", members.len()))
}

/// Stores a produced extract (replacing an earlier production before delivery): its sequence,
/// every file in chunks, and the manifest; the text of the step's audit entry.
pub(super) async fn store_extract(
    conn: &mut Conn,
    order_id: &str,
    sequence: u64,
    files: &[ExtractFile],
    manifest: &str,
    now: Micros,
) -> Result<String, OrderError> {
    on_conn!(&mut *conn, |c| {
        sqlx::query("UPDATE statistics_orders SET extracted_sequence = $2 WHERE order_id = $1")
            .bind(order_id)
            .bind(to_i64(sequence))
            .execute(&mut *c)
            .await?;
    });
    delete_order_rows(conn, order_id, REPLACED_BY_EXTRACT).await?;
    let mut buffer = vec![0u8; FILE_CHUNK_BYTES];
    for ExtractFile { facts: f, path } in files {
        on_conn!(&mut *conn, |c| {
            sqlx::query(
                "INSERT INTO statistics_files (order_id, name, media_type, size_bytes, row_count, sha256) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(order_id)
            .bind(&f.name)
            .bind(&f.media_type)
            .bind(to_i64(f.size_bytes))
            .bind(to_i64(f.rows))
            .bind(&f.sha256)
            .execute(c)
            .await?;
        });
        let mut file = std::fs::File::open(path).map_err(OrderError::File)?;
        let mut n: i64 = 0;
        loop {
            let filled = read_full(&mut file, &mut buffer).map_err(OrderError::File)?;
            if filled == 0 {
                break;
            }
            on_conn!(&mut *conn, |c| {
                sqlx::query(
                    "INSERT INTO statistics_file_chunks (order_id, name, n, data) VALUES ($1, $2, $3, $4)",
                )
                .bind(order_id)
                .bind(&f.name)
                .bind(n)
                .bind(&buffer[..filled])
                .execute(c)
                .await?;
            });
            n += 1;
        }
    }
    on_conn!(&mut *conn, |c| {
        sqlx::query("INSERT INTO statistics_extracts (order_id, sequence, manifest, produced_at) VALUES ($1, $2, $3, $4)")
            .bind(order_id)
            .bind(to_i64(sequence))
            .bind(manifest)
            .bind(now)
            .execute(c)
            .await?;
    });
    Ok(format!(
        "as of register sequence {sequence}; {} files",
        files.len()
    ))
}

impl Store {
    /// The population of an order: (serial, person in storage form), by serial.
    pub async fn order_population(&self, order_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut conn = self.read().await?;
        Ok(on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT serial, person FROM statistics_population WHERE order_id = $1 ORDER BY serial",
            )
            .bind(order_id)
            .fetch_all(c)
            .await?
        }))
    }

    /// The manifest (JSON) of the order's extract, if one was produced (kept after deletion).
    pub async fn extract_manifest(&self, order_id: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.read().await?;
        let row: Option<(String,)> = on_conn!(&mut conn, |c| {
            sqlx::query_as("SELECT manifest FROM statistics_extracts WHERE order_id = $1")
                .bind(order_id)
                .fetch_optional(c)
                .await?
        });
        Ok(row.map(|(m,)| m))
    }

    /// A stored file of the order's extract: its size and SHA-256, if it exists.
    pub async fn extract_file(
        &self,
        order_id: &str,
        name: &str,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let mut conn = self.read().await?;
        let row: Option<(i64, String)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT size_bytes, sha256 FROM statistics_files WHERE order_id = $1 AND name = $2",
            )
            .bind(order_id)
            .bind(name)
            .fetch_optional(c)
            .await?
        });
        row.map(|(size, sha)| Ok((to_u64(size, "statistics_files.size_bytes")?, sha)))
            .transpose()
    }

    /// Chunk `n` (0-based, [`FILE_CHUNK_BYTES`] each) of a stored extract file; `None` past its end.
    pub async fn extract_chunk(
        &self,
        order_id: &str,
        name: &str,
        n: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.read().await?;
        let row: Option<(Vec<u8>,)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT data FROM statistics_file_chunks WHERE order_id = $1 AND name = $2 AND n = $3",
            )
            .bind(order_id)
            .bind(name)
            .bind(to_i64(n))
            .fetch_optional(c)
            .await?
        });
        Ok(row.map(|(d,)| d))
    }

    /// Deletes the files and population of every order past its deletion date (as of `today`;
    /// [`Order::deletion_due`]), each as a DELETE step of its history; the orders deleted. Safe to
    /// run on several replicas at once: the step's key makes a second deletion of the same order a
    /// no-op.
    pub async fn purge_expired_orders(
        &self,
        today: Date,
        side: Side,
        actor: &str,
        now: Micros,
    ) -> Result<Vec<Order>, StoreError> {
        let mut deleted = Vec::new();
        for order in self.orders_past_retention(today).await? {
            let due = order.deletion_due().map(format_date).unwrap_or_default();
            let detail = StepDetail::Text(if order.state == OrderState::Delivered {
                format!("retention ended {due}")
            } else {
                format!("not delivered; kept until {due} after its last step")
            });
            match self
                .order_step(
                    &order.order_id,
                    None,
                    OrderStep::Delete,
                    side,
                    actor,
                    &detail,
                    Some("retention-deletion"),
                    now,
                )
                .await
            {
                Ok(_) => deleted.push(order),
                // Deleted meanwhile (another replica, an operator): nothing to do.
                Err(OrderError::Refused(_) | OrderError::NotFound) => {}
                Err(OrderError::Store(e)) => return Err(e),
                Err(OrderError::KeyReused) => {}
                Err(OrderError::File(e)) => return Err(StoreError::Conflict(e.to_string())),
            }
        }
        Ok(deleted)
    }

    /// Orders whose deletion date ([`Order::deletion_due`]) is before `today`: delivered orders
    /// past their retention, and orders that hold a population but stood undelivered for the
    /// retention period.
    pub async fn orders_past_retention(&self, today: Date) -> Result<Vec<Order>, StoreError> {
        let holding = self
            .orders(&OrderFilter {
                states: vec![
                    OrderState::Delivered,
                    OrderState::Released,
                    OrderState::QuoteAccepted,
                    OrderState::Extracted,
                ],
                ..OrderFilter::default()
            })
            .await?;
        Ok(holding
            .into_iter()
            .filter(|o| o.deletion_due().is_some_and(|until| until < today))
            .collect())
    }
}
