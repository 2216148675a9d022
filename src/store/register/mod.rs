//! The benefit register: the bitemporal reads here, the batched ingest in [`ingest`].
//!
//! Every accepted fact version is one row of `register_log`, numbered by the register sequence in
//! the transaction that stores it. Each transaction first updates the single `register_head` row;
//! that row lock serializes writers on PostgreSQL (SQLite has one writer connection anyway), so
//! sequences commit strictly in order and a reader of the log never sees a gap that could still
//! fill in. `register_records`, `register_persons` and `register_person_sources` hold the current
//! head of every fact and person, upserted in the same transaction.
//!
//! Reads that disclose register data to a party take the [`Permit`] the policy issued for it and
//! return only what it covers: nothing leaves the register without a decision. The operator's
//! view of one person ([`Store::person_history`]) is the admin API's, gated by the operator's role
//! and logged as an operator view.

mod ingest;
mod log_writer;
mod postgres;
mod sqlite;

pub use encodings::WIRE_FORMAT;
pub use ingest::Ingested;

use std::collections::HashMap;

use super::tx::{Conn, on_conn};
use super::{Store, StoreError, non_empty, stored_date, stored_opt_date, stored_person, to_i64, to_u64};
use crate::domain::Personnummer;
use crate::domain::clock::Micros;
use crate::domain::register::versions::{
    DeliveredVersion, EncodedVersion, StoredPerson, StoredRecord, Version, current_versions,
    snapshot_of_current,
};
use crate::domain::register::{DateRange, FactBody, FactType, PersonData, RecordKind};
use crate::policy::Permit;
use time::Date;

/// The columns of a `register_log` row, in [`LogView`]'s order, for reads that use the JSON body.
/// The stored encoding is not read: `CASE WHEN 1 = 0 THEN wire END` is a NULL of its type on both
/// backends.
const LOG_COLUMNS: &str = "seq, recorded_at, person, record_id, version, kind, retroactive, benefit_type, \
                           fact_type, valid_from, valid_to, body, source_system, source_id, source_version, \
                           CASE WHEN 1 = 0 THEN wire END";

/// [`LOG_COLUMNS`] for a delivery: the stored encoding, and the JSON body only where there is none.
/// Where there is one, the body's place holds the version's topic instead (the kind of a decision
/// or person event, for filtered subscriptions), never parsed: see [`delivered_version`]. (sqlx's
/// tuple rows end at 16 columns.)
const DELIVERY_COLUMNS: &str = "seq, recorded_at, person, record_id, version, kind, retroactive, benefit_type, \
                                fact_type, valid_from, valid_to, CASE WHEN wire IS NULL THEN body ELSE topic END, \
                                source_system, source_id, source_version, wire";

/// How a read of whole snapshots turns rows into records: the columns it selects and the
/// conversion of each row.
struct RowReader<R> {
    columns: &'static str,
    read: fn(&LogView<'_>, &Personnummer) -> Result<R, StoreError>,
}

/// Records read whole, JSON body parsed (queries, statistics).
const WHOLE: RowReader<StoredRecord> = RowReader {
    columns: LOG_COLUMNS,
    read: whole_record,
};

/// Records as a delivery sends them.
const DELIVERED: RowReader<DeliveredVersion> = RowReader {
    columns: DELIVERY_COLUMNS,
    read: delivered_version,
};

/// A person's own data and the records a snapshot of them holds: for a delivery, as it sends them
/// ([`DeliveredVersion`]); for a query or a statistics extract, read whole.
pub type Snapshot<R = DeliveredVersion> = (PersonData, Vec<R>);

/// A person, the benefit types and the period a snapshot covers.
type PersonAsk<'a> = (&'a Personnummer, &'a [String], DateRange);

/// One snapshot to read: the permit it discloses under and the business period it covers (the
/// benefit types are the permit's).
#[derive(Debug, Clone, Copy)]
pub struct SnapshotAsk<'a> {
    pub permit: &'a Permit,
    pub period: DateRange,
}

/// Register statistics for the operator view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegisterStats {
    pub person_count: u64,
    /// Distinct benefit facts (record ids).
    pub fact_count: u64,
    /// Stored benefit fact versions (facts plus corrections and retractions).
    pub fact_version_count: u64,
    pub latest_seq: u64,
    /// When the head was recorded; `None` for an empty register.
    pub latest_recorded_at: Option<Micros>,
    pub accepted_last_minute: u64,
    pub accepted_last_hour: u64,
}

/// A `register_log` row as read, borrowing its text from the database row (reads of the log decode
/// hundreds of thousands of rows a second; owned strings are made only for what is kept).
struct LogView<'a> {
    seq: i64,
    recorded_at: i64,
    person: &'a str,
    record_id: &'a str,
    version: i64,
    kind: &'a str,
    retroactive: bool,
    benefit_type: &'a str,
    fact_type: &'a str,
    valid_from: &'a str,
    valid_to: Option<&'a str>,
    body: &'a str,
    source_system: &'a str,
    source_id: &'a str,
    source_version: i64,
    /// The stored encoding ([`DeliveredVersion`]); `None` for person updates and for versions
    /// stored without one.
    wire: Option<&'a [u8]>,
}

/// [`LOG_COLUMNS`] decoded by position (sqlx's tuple rows; a derived `FromRow` looks every column
/// up by name, which cost a fifth of the read).
type LogColumns<'a> = (
    i64,
    i64,
    &'a str,
    &'a str,
    i64,
    &'a str,
    bool,
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a str,
    &'a str,
    &'a str,
    i64,
    Option<&'a [u8]>,
);

impl<'a> From<LogColumns<'a>> for LogView<'a> {
    fn from(c: LogColumns<'a>) -> Self {
        Self {
            seq: c.0,
            recorded_at: c.1,
            person: c.2,
            record_id: c.3,
            version: c.4,
            kind: c.5,
            retroactive: c.6,
            benefit_type: c.7,
            fact_type: c.8,
            valid_from: c.9,
            valid_to: c.10,
            body: c.11,
            source_system: c.12,
            source_id: c.13,
            source_version: c.14,
            wire: c.15,
        }
    }
}

/// Runs `$sql` (selecting [`LOG_COLUMNS`]) on `$conn` with the values `$bind` binds to `$q`, and
/// runs `$each` for every row as it arrives, so that no fetched row outlives its conversion (holding
/// a large page of raw rows keeps the connection's receive buffers alive, and the read slowed down
/// by a third). The query is built inside each backend's arm: its type depends on the backend.
macro_rules! each_log_row {
    ($conn:expr, $sql:expr, |$q:ident| $bind:expr, |$row:ident| $each:expr) => {{
        on_conn!($conn, |c| {
            use futures::TryStreamExt as _;
            let $q = sqlx::query(sqlx::AssertSqlSafe($sql));
            let query = $bind;
            let mut fetched = query.fetch(c);
            while let Some(raw) = fetched.try_next().await? {
                let $row = LogView::from(<LogColumns<'_> as sqlx::FromRow<'_, _>>::from_row(&raw)?);
                $each;
            }
        })
    }};
}

// After the macro, which they use.
mod encodings;
mod person_state;

impl Store {
    /// The latest committed register sequence (facts and party events alike; 0 when empty).
    pub async fn head_seq(&self) -> Result<u64, StoreError> {
        let mut conn = self.read().await?;
        let seq: i64 = on_conn!(&mut conn, |c| {
            sqlx::query_scalar("SELECT last_seq FROM register_head WHERE id = 1")
                .fetch_one(c)
                .await?
        });
        to_u64(seq, "register_head.last_seq")
    }

    /// The person as of `as_of` (everything recorded up to and including it; `None` = now), or
    /// `None` when the register did not know the person then. For a party's query this is read
    /// after the policy allowed it; for the operator's view, after the role check.
    pub async fn person(
        &self,
        person: &Personnummer,
        as_of: Option<u64>,
    ) -> Result<Option<StoredPerson>, StoreError> {
        let mut conn = self.read().await?;
        let current: Option<(String, bool, Option<String>, i64, i64)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT name, protected_identity, date_of_death, created_seq, latest_seq \
                 FROM register_persons WHERE person = $1",
            )
            .bind(person.as_storage())
            .fetch_optional(c)
            .await?
        });
        let Some((name, protected_identity, death, created_seq, latest_seq)) = current else {
            return Ok(None);
        };
        let created_seq = to_u64(created_seq, "register_persons.created_seq")?;
        let Some(as_of) = as_of else {
            return Ok(Some(StoredPerson {
                person: person.clone(),
                data: PersonData {
                    name,
                    protected_identity,
                    date_of_death: stored_opt_date(death.as_deref(), "register_persons.date_of_death")?,
                },
                created_seq,
                latest_seq: to_u64(latest_seq, "register_persons.latest_seq")?,
            }));
        };
        if created_seq > as_of {
            return Ok(None);
        }
        let version: Option<(i64, String)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT seq, body FROM register_log \
                 WHERE person = $1 AND fact_type = 'PERSON' AND seq <= $2 ORDER BY seq DESC LIMIT 1",
            )
            .bind(person.as_storage())
            .bind(to_i64(as_of))
            .fetch_optional(c)
            .await?
        });
        let (data, latest_seq) = match version {
            Some((seq, body)) => (person_body(&body)?, to_u64(seq, "register_log.seq")?),
            None => (PersonData::default(), 0),
        };
        Ok(Some(StoredPerson {
            person: person.clone(),
            data,
            created_seq,
            latest_seq,
        }))
    }

    /// The latest version, as of `as_of`, of every benefit fact of the permit's person whose
    /// benefit type the permit covers (person events that concern no single benefit are always
    /// included) and whose valid period overlaps `overlapping`; retracted facts are left out.
    /// Ordered by benefit type, valid from, record id.
    pub async fn records_as_of(
        &self,
        permit: &Permit,
        overlapping: DateRange,
        as_of: u64,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let ask = (permit.person(), permit.benefit_codes(), overlapping);
        let mut found = self.snapshots_for(&[ask], as_of, WHOLE).await?;
        Ok(found.pop().map(|(_, records)| records).unwrap_or_default())
    }

    /// What a snapshot needs, in one read: the person's own data and the records (as
    /// [`Store::records_as_of`]) as of `as_of`. The person data is the default (no name) when no
    /// person update is recorded at or before `as_of`.
    pub async fn snapshot_of(
        &self,
        permit: &Permit,
        period: DateRange,
        as_of: u64,
    ) -> Result<Snapshot<DeliveredVersion>, StoreError> {
        let ask = SnapshotAsk { permit, period };
        Ok(self.snapshots_of(&[ask], as_of).await?.pop().unwrap_or_default())
    }

    /// [`Store::snapshot_of`] for many asks at one sequence; the answers come in the order of
    /// `asks`, each record as the delivery sends it. Each person's current state is read from
    /// their `register_person_state` row (one query for all). A person without one, or whose row is
    /// newer than `as_of` (a change since the snapshot's sequence was chosen, or an older sequence
    /// asked for), is read from the log as of `as_of` (a second query). So every snapshot is the
    /// register as of `as_of` whichever way it was read.
    pub async fn snapshots_of(
        &self,
        asks: &[SnapshotAsk<'_>],
        as_of: u64,
    ) -> Result<Vec<Snapshot<DeliveredVersion>>, StoreError> {
        let asks: Vec<PersonAsk<'_>> = asks
            .iter()
            .map(|a| (a.permit.person(), a.permit.benefit_codes(), a.period))
            .collect();
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let (persons, wanted) = persons_of(&asks);
        let (mut current, missing) = self.person_states(&persons, as_of, &wanted).await?;
        if !missing.is_empty() {
            let mut conn = self.read().await?;
            let rows = log_rows(&mut conn, &missing, as_of, DELIVERED, &wanted).await?;
            current.extend(rows.into_iter().map(|(key, rows)| (key, current_versions(rows))));
        }
        Ok(snapshots_from(&asks, current))
    }

    /// The records of a statistics release: for each person of `persons`, what
    /// [`Store::snapshot_of`] would give a permit for `benefit_codes` and `period` as of `as_of`.
    /// Only for producing an extract whose release the confidentiality review decided.
    pub async fn released_snapshots(
        &self,
        persons: &[Personnummer],
        benefit_codes: &[String],
        period: DateRange,
        as_of: u64,
    ) -> Result<Vec<Snapshot<StoredRecord>>, StoreError> {
        let asks: Vec<PersonAsk<'_>> = persons.iter().map(|p| (p, benefit_codes, period)).collect();
        self.snapshots_for(&asks, as_of, WHOLE).await
    }

    /// The latest version of every payment of `benefit` (retracted ones left out): what it covers
    /// and when it was paid, for the coverage of statistics orders.
    pub async fn benefit_payments(&self, benefit: &str) -> Result<Vec<(DateRange, Date)>, StoreError> {
        let mut conn = self.read().await?;
        let sql =
            format!("SELECT {LOG_COLUMNS} FROM register_log WHERE benefit_type = $1 AND fact_type = $2");
        let mut latest: HashMap<String, StoredRecord> = HashMap::new();
        each_log_row!(
            &mut conn,
            sql.as_str(),
            |q| q.bind(benefit).bind(FactType::Payment.as_str()),
            |row| {
                let record = stored_record(&row)?;
                match latest.get(&record.record_id) {
                    Some(seen) if seen.seq > record.seq => {}
                    _ => {
                        latest.insert(record.record_id.clone(), record);
                    }
                }
            }
        );
        Ok(latest
            .into_values()
            .filter(|r| r.kind != RecordKind::Retraction)
            .filter_map(|r| match r.body {
                FactBody::Payment(p) => Some((p.covered, p.payment_date)),
                _ => None,
            })
            .collect())
    }

    /// The snapshots of `asks` as of `as_of` from the log, each row read by `reader` as it arrives.
    async fn snapshots_for<R: Version + Clone>(
        &self,
        asks: &[PersonAsk<'_>],
        as_of: u64,
        reader: RowReader<R>,
    ) -> Result<Vec<Snapshot<R>>, StoreError> {
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let (persons, wanted) = persons_of(asks);
        let mut conn = self.read().await?;
        let rows = log_rows(&mut conn, &persons, as_of, reader, &wanted).await?;
        let current = rows
            .into_iter()
            .map(|(key, rows)| (key, current_versions(rows)))
            .collect();
        Ok(snapshots_from(asks, current))
    }

    /// Every version of every fact about `person` (benefit facts and person updates) recorded up
    /// to `as_of` (`None` = now), in sequence order: the operator's view of one person.
    pub async fn person_history(
        &self,
        person: &Personnummer,
        as_of: Option<u64>,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let mut conn = self.read().await?;
        let sql =
            format!("SELECT {LOG_COLUMNS} FROM register_log WHERE person = $1 AND seq <= $2 ORDER BY seq");
        let as_of = as_of.map_or(i64::MAX, to_i64);
        let mut history = Vec::new();
        each_log_row!(
            &mut conn,
            sql.as_str(),
            |q| q.bind(person.as_storage()).bind(as_of),
            |row| history.push(person_record(&row, person.clone())?)
        );
        Ok(history)
    }

    /// Up to `limit` log rows after `after_seq`, in commit order (person updates included): the
    /// register as a feed, for tools and tests that check what was stored.
    pub async fn log_after(&self, after_seq: u64, limit: u32) -> Result<Vec<StoredRecord>, StoreError> {
        let mut conn = self.read().await?;
        let sql = format!("SELECT {LOG_COLUMNS} FROM register_log WHERE seq > $1 ORDER BY seq LIMIT $2");
        let mut records = Vec::new();
        each_log_row!(
            &mut conn,
            sql.as_str(),
            |q| q.bind(to_i64(after_seq)).bind(i64::from(limit)),
            |row| records.push(stored_record(&row)?)
        );
        Ok(records)
    }

    /// A person from the demo register with facts of `benefit_type`, for the `serve --dev`
    /// start-up hint (synthetic, test-range identity numbers only).
    pub async fn demo_person(
        &self,
        source_system: &str,
        benefit_type: &str,
    ) -> Result<Option<Personnummer>, StoreError> {
        let mut conn = self.read().await?;
        let row: Option<(String,)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                // From the source's facts (its key), to the first version of each: found at once
                // in a register that has none from the source, however large.
                "SELECT l.person FROM register_records r \
                 JOIN register_log l ON l.record_id = r.record_id AND l.version = 1 \
                 WHERE r.source_system = $1 AND l.benefit_type = $2 ORDER BY l.seq LIMIT 1",
            )
            .bind(source_system)
            .bind(benefit_type)
            .fetch_optional(c)
            .await?
        });
        row.map(|(p,)| stored_person(&p, "register_log.person"))
            .transpose()
    }

    /// Every recorded version of the permits' persons' own data up to `up_to`, oldest first, keyed
    /// by the person's storage form: enough to say what each person's data was at any sequence up
    /// to `up_to` (none recorded at a sequence means the default, no name). One query per 500.
    pub async fn person_versions(
        &self,
        permits: &[&Permit],
        up_to: u64,
    ) -> Result<HashMap<String, Vec<(u64, PersonData)>>, StoreError> {
        let mut persons: Vec<&str> = permits.iter().map(|p| p.person().as_storage()).collect();
        persons.sort_unstable();
        persons.dedup();
        let mut conn = self.read().await?;
        let dialect = conn.dialect();
        let mut found: HashMap<String, Vec<(u64, PersonData)>> = HashMap::new();
        for chunk in persons.chunks(500) {
            let sql = format!(
                "SELECT person, seq, body FROM register_log \
                 WHERE fact_type = 'PERSON' AND person IN ({}) AND seq <= {} ORDER BY person, seq",
                dialect.in_list(chunk.len()),
                dialect.placeholder(chunk.len() + 1)
            );
            let rows: Vec<(String, i64, String)> = on_conn!(&mut conn, |c| {
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
                for person in chunk {
                    query = query.bind(*person);
                }
                query.bind(to_i64(up_to)).fetch_all(c).await?
            });
            for (person, seq, body) in rows {
                let version = (to_u64(seq, "register_log.seq")?, person_body(&body)?);
                found.entry(person).or_default().push(version);
            }
        }
        Ok(found)
    }

    /// The facts at the sequences of a delivery page's changes, each under the permit issued for
    /// its delivery, in one query per 500 sequences, keyed by sequence. A row is returned only when
    /// a permit for its sequence names its person and covers its benefit type. Each is read as the
    /// delivery sends it.
    pub async fn records_at(
        &self,
        changes: &[(u64, &Permit)],
    ) -> Result<HashMap<u64, DeliveredVersion>, StoreError> {
        let mut permits: HashMap<u64, Vec<&Permit>> = HashMap::with_capacity(changes.len());
        for (seq, permit) in changes {
            permits.entry(*seq).or_default().push(permit);
        }
        let mut seqs: Vec<u64> = permits.keys().copied().collect();
        seqs.sort_unstable();
        let mut conn = self.read().await?;
        let dialect = conn.dialect();
        let mut found = HashMap::with_capacity(seqs.len());
        for chunk in seqs.chunks(500) {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM register_log WHERE seq IN ({})",
                dialect.in_list(chunk.len())
            );
            each_log_row!(
                &mut conn,
                sql.as_str(),
                |q| {
                    let mut q = q;
                    for seq in chunk {
                        q = q.bind(to_i64(*seq));
                    }
                    q
                },
                |row| {
                    let seq = to_u64(row.seq, "register_log.seq")?;
                    let covered = permits.get(&seq).is_some_and(|ps| {
                        ps.iter().any(|p| {
                            p.person().as_storage() == row.person
                                && (row.benefit_type.is_empty()
                                    || p.benefit_codes().iter().any(|b| b == row.benefit_type))
                        })
                    });
                    if covered {
                        // The person is read from the row only for a version read whole.
                        let version = match encoded_version(&row)? {
                            Some(encoded) => DeliveredVersion::Encoded(encoded),
                            None => DeliveredVersion::Parsed(stored_record(&row)?),
                        };
                        found.insert(seq, version);
                    }
                }
            );
        }
        Ok(found)
    }

    /// Register statistics; `now` decides what "the last minute" and "the last hour" are.
    pub async fn stats(&self, now: Micros) -> Result<RegisterStats, StoreError> {
        type Head = (i64, i64, i64, i64, i64);
        let mut conn = self.read().await?;
        let head: Head = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT last_seq, last_recorded_at, person_count, fact_count, fact_version_count \
                 FROM register_head WHERE id = 1",
            )
            .fetch_one(c)
            .await?
        });
        let minute = accepted_since(&mut conn, now.saturating_sub(60_000_000)).await?;
        let hour = accepted_since(&mut conn, now.saturating_sub(3_600_000_000)).await?;
        let (last_seq, last_recorded_at, persons, facts, versions) = head;
        Ok(RegisterStats {
            person_count: to_u64(persons, "register_head.person_count")?,
            fact_count: to_u64(facts, "register_head.fact_count")?,
            fact_version_count: to_u64(versions, "register_head.fact_version_count")?,
            latest_seq: to_u64(last_seq, "register_head.last_seq")?,
            latest_recorded_at: (last_seq > 0).then_some(last_recorded_at),
            accepted_last_minute: minute,
            accepted_last_hour: hour,
        })
    }
}

/// Facts accepted in batches recorded after `since`.
async fn accepted_since(conn: &mut Conn, since: Micros) -> Result<u64, StoreError> {
    let sum: Option<i64> = on_conn!(conn, |c| {
        sqlx::query_scalar(
            "SELECT CAST(SUM(accepted) AS BIGINT) FROM register_batches WHERE recorded_at > $1",
        )
        .bind(since)
        .fetch_one(c)
        .await?
    });
    to_u64(sum.unwrap_or(0), "register_batches.accepted")
}

/// A person-update body as stored.
fn person_body(body: &str) -> Result<PersonData, StoreError> {
    match FactBody::from_json(FactType::Person, body) {
        Ok(FactBody::Person(data)) => Ok(data),
        _ => Err(StoreError::Corrupt("register_log.body")),
    }
}

/// A version's business period as `register_log` stores it: no `valid_from` for person updates.
fn stored_valid(from: &str, to: Option<&str>) -> Result<Option<DateRange>, StoreError> {
    if from.is_empty() {
        return Ok(None);
    }
    Ok(Some(DateRange {
        from: stored_date(from, "register_log.valid_from")?,
        to: stored_opt_date(to, "register_log.valid_to")?,
    }))
}

fn stored_record(row: &LogView<'_>) -> Result<StoredRecord, StoreError> {
    person_record(row, stored_person(row.person, "register_log.person")?)
}

/// A row as a delivery sends it: with its stored encoding, only what choosing it needs (the JSON
/// body is not read); without one, whole.
fn delivered_version(row: &LogView<'_>, person: &Personnummer) -> Result<DeliveredVersion, StoreError> {
    match encoded_version(row)? {
        Some(encoded) => Ok(DeliveredVersion::Encoded(encoded)),
        None => Ok(DeliveredVersion::Parsed(person_record(row, person.clone())?)),
    }
}

/// The row with its stored encoding, `None` when it has none (read with [`DELIVERY_COLUMNS`]: the
/// body's place holds the topic).
fn encoded_version(row: &LogView<'_>) -> Result<Option<EncodedVersion>, StoreError> {
    let Some(encoded) = row.wire else {
        return Ok(None);
    };
    Ok(Some(EncodedVersion {
        seq: to_u64(row.seq, "register_log.seq")?,
        recorded_at: row.recorded_at,
        record_id: row.record_id.to_string(),
        kind: RecordKind::parse(row.kind).ok_or(StoreError::Corrupt("register_log.kind"))?,
        benefit_type: non_empty(row.benefit_type.to_string()),
        valid: stored_valid(row.valid_from, row.valid_to)?,
        fact_type: FactType::parse(row.fact_type).ok_or(StoreError::Corrupt("register_log.fact_type"))?,
        topic: row.body.to_string(),
        encoded: bytes::Bytes::copy_from_slice(encoded),
    }))
}

/// The distinct persons of `asks` (sorted), and each one's [`Personnummer`] by its storage form.
fn persons_of<'a>(asks: &[PersonAsk<'a>]) -> (Vec<&'a str>, HashMap<&'a str, &'a Personnummer>) {
    let mut persons: Vec<&str> = asks.iter().map(|a| a.0.as_storage()).collect();
    persons.sort_unstable();
    persons.dedup();
    let wanted = asks.iter().map(|a| (a.0.as_storage(), a.0)).collect();
    (persons, wanted)
}

/// Every log row of `persons` up to `as_of`, read by `reader`, grouped by person (keys from
/// `wanted`), on `conn` (a read, or the caller's transaction).
async fn log_rows<'a, R>(
    conn: &mut Conn,
    persons: &[&'a str],
    as_of: u64,
    reader: RowReader<R>,
    wanted: &HashMap<&'a str, &'a Personnummer>,
) -> Result<HashMap<&'a str, Vec<R>>, StoreError> {
    let dialect = conn.dialect();
    // No ORDER BY: the rows are grouped by person here, and each fact's latest version is
    // found by its sequence (sorting them in the database cost more than the scan).
    let sql = format!(
        "SELECT {} FROM register_log WHERE person IN ({}) AND seq <= {}",
        reader.columns,
        dialect.in_list(persons.len()),
        dialect.placeholder(persons.len() + 1)
    );
    // Each row goes straight to its person's list as it arrives.
    let mut by_person: HashMap<&str, Vec<R>> = HashMap::with_capacity(persons.len());
    each_log_row!(
        &mut *conn,
        sql.as_str(),
        |q| persons
            .iter()
            .fold(q, |q, person| q.bind(*person))
            .bind(to_i64(as_of)),
        |row| {
            let Some((key, person)) = wanted.get_key_value(row.person) else {
                return Err(StoreError::Corrupt("register_log.person"));
            };
            let record = (reader.read)(&row, person)?;
            by_person.entry(*key).or_default().push(record);
        }
    );
    Ok(by_person)
}

/// Each person's current state ([`current_versions`]), keyed by the person's storage form.
type CurrentByPerson<'a, R = DeliveredVersion> = HashMap<&'a str, (PersonData, Vec<R>)>;

/// Each ask's snapshot from its person's current state, in the order of `asks`. A person asked
/// for more than once (two subscriptions) gets a copy of the state for all but the last ask; the
/// last one takes it.
fn snapshots_from<R: Version + Clone>(
    asks: &[PersonAsk<'_>],
    mut by_person: CurrentByPerson<'_, R>,
) -> Vec<Snapshot<R>> {
    let mut left: HashMap<&str, usize> = HashMap::with_capacity(by_person.len());
    for ask in asks {
        *left.entry(ask.0.as_storage()).or_default() += 1;
    }
    asks.iter()
        .map(|ask| {
            let key = ask.0.as_storage();
            let remaining = left.get_mut(key).map_or(0, |n| {
                *n -= 1;
                *n
            });
            let current = match by_person.get_mut(key) {
                Some(current) if remaining == 0 => std::mem::take(current),
                Some(current) => current.clone(),
                None => Default::default(),
            };
            snapshot_of_current(current, ask.1, ask.2)
        })
        .collect()
}

/// [`person_record`] for [`Store::snapshots_for`].
fn whole_record(row: &LogView<'_>, person: &Personnummer) -> Result<StoredRecord, StoreError> {
    person_record(row, person.clone())
}

/// [`stored_record`] for a row already known to be about `person`.
fn person_record(row: &LogView<'_>, person: Personnummer) -> Result<StoredRecord, StoreError> {
    let fact_type = FactType::parse(row.fact_type).ok_or(StoreError::Corrupt("register_log.fact_type"))?;
    Ok(StoredRecord {
        seq: to_u64(row.seq, "register_log.seq")?,
        recorded_at: row.recorded_at,
        person,
        record_id: row.record_id.to_string(),
        version: u32::try_from(row.version).map_err(|_| StoreError::Corrupt("register_log.version"))?,
        kind: RecordKind::parse(row.kind).ok_or(StoreError::Corrupt("register_log.kind"))?,
        retroactive: row.retroactive,
        benefit_type: non_empty(row.benefit_type.to_string()),
        fact_type,
        valid: stored_valid(row.valid_from, row.valid_to)?,
        body: FactBody::from_json(fact_type, row.body)
            .map_err(|_| StoreError::Corrupt("register_log.body"))?,
        source_system: row.source_system.to_string(),
        source_id: non_empty(row.source_id.to_string()),
        source_version: to_u64(row.source_version, "register_log.source_version")?,
    })
}
