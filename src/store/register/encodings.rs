//! The stored record encodings' format, and bringing a register written by an older format (or
//! before encodings were kept) up to this binary's: [`Store::encode_stored_versions`], run by
//! [`Store::migrate`].

use super::{LOG_COLUMNS, LogColumns, LogView, stored_record};
use crate::store::tx::on_conn;
use crate::store::{Store, StoreError};

/// The format of the stored encodings (`grpc::wire`). Raise it in the release that changes what a
/// record's encoding holds (a field added to `BenefitRecord`, a conversion changed):
/// [`Store::migrate`] then encodes every stored version again.
pub const WIRE_FORMAT: i64 = 1;

/// Versions encoded again per transaction by [`Store::encode_stored_versions`].
const ENCODE_BATCH: i64 = 5_000;

impl Store {
    /// Brings the stored encodings of benefit versions to [`WIRE_FORMAT`] when the database holds an
    /// older format (0 for a register written before encodings were kept; a newer one is left as
    /// it is): every version is encoded again, 5,000 per transaction, and the format recorded last,
    /// so that an interrupted run starts over at the next start. Returns how many were encoded.
    pub async fn encode_stored_versions(&self) -> Result<u64, StoreError> {
        let format: i64 = {
            let mut conn = self.read().await?;
            on_conn!(&mut conn, |c| {
                sqlx::query_scalar("SELECT wire_format FROM register_head WHERE id = 1")
                    .fetch_one(c)
                    .await?
            })
        };
        if format == WIRE_FORMAT {
            return Ok(0);
        }
        if format > WIRE_FORMAT {
            // A newer lefi encoded them (a rolling upgrade, or a rollback of the binary): its
            // encodings are valid records of the same additive contract, and encoding them back
            // would only make the two releases undo each other at every start.
            tracing::warn!(
                database = format,
                binary = WIRE_FORMAT,
                "the stored record encodings are newer than this binary's format; left as they are"
            );
            return Ok(0);
        }
        let sql = format!(
            "SELECT {LOG_COLUMNS} FROM register_log WHERE seq > $1 AND fact_type <> 'PERSON' ORDER BY seq LIMIT $2"
        );
        let (mut after, mut encoded) = (0i64, 0u64);
        loop {
            let mut conn = self.write().await?;
            let mut batch: Vec<(i64, Vec<u8>)> = Vec::new();
            each_log_row!(
                &mut conn,
                sql.as_str(),
                |q| q.bind(after).bind(ENCODE_BATCH),
                |row| batch.push((row.seq, crate::grpc::wire::stored_form(stored_record(&row)?)))
            );
            let Some(&(last, _)) = batch.last() else {
                break;
            };
            let count = batch.len() as u64;
            let (seqs, wires): (Vec<i64>, Vec<Vec<u8>>) = batch.into_iter().unzip();
            on_conn!(&mut conn,
                sqlite: |c| {
                    for (seq, wire) in seqs.iter().zip(&wires) {
                        sqlx::query("UPDATE register_log SET wire = $1 WHERE seq = $2")
                            .bind(wire.as_slice())
                            .bind(*seq)
                            .execute(&mut *c)
                            .await?;
                    }
                },
                // One statement per batch (one per row made a register of 320,000 versions take
                // 36 s to encode).
                postgres: |c| sqlx::query(
                    "UPDATE register_log AS l SET wire = v.wire \
                     FROM UNNEST($1::bigint[], $2::bytea[]) AS v (seq, wire) WHERE l.seq = v.seq",
                )
                .bind(&seqs)
                .bind(&wires)
                .execute(c)
                .await
                .map(drop)?,
            );
            conn.commit().await?;
            encoded += count;
            after = last;
        }
        // The persons' states, which hold the old encodings, are deleted in the transaction that
        // records the format, and built again by `Store::fill_person_states`.
        let mut conn = self.write().await?;
        on_conn!(&mut conn, |c| {
            sqlx::query("DELETE FROM register_person_state")
                .execute(&mut *c)
                .await?;
            sqlx::query("UPDATE register_head SET wire_format = $1 WHERE id = 1")
                .bind(WIRE_FORMAT)
                .execute(&mut *c)
                .await
                .map(drop)?
        });
        conn.commit().await?;
        Ok(encoded)
    }
}
