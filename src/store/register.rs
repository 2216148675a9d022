//! The benefit register: ingest (batched, one transaction per batch) and the bitemporal reads.
//!
//! Every accepted fact version is one row of `register_log`, numbered by the register sequence in
//! the transaction that stores it. Each transaction first updates the single `register_head` row;
//! that row lock serializes writers on PostgreSQL (SQLite has one writer connection anyway), so
//! sequences commit strictly in order and a reader of the log never sees a gap that could still
//! fill in. `register_records`, `register_persons` and `register_person_sources` hold the current
//! head of every fact and person, upserted in the same transaction.
//!
//! Bulk statements differ per backend: PostgreSQL binds one array per column and reads them with
//! `UNNEST`; SQLite gets generated multi-row `VALUES` lists (anonymous `?` placeholders only,
//! every value bound) within its parameter limit.

use std::collections::{HashMap, HashSet};

use sqlx::{PgConnection, SqliteConnection};

use super::delivery::FAN_OUT_SQL;
use super::{Backend, Store, StoreError, on_reader};
use crate::domain::Personnummer;
use crate::domain::clock::{Micros, format_date, parse_date};
use crate::domain::register::{
    DateRange, FactBody, FactError, FactType, NewFact, PersonData, RecordKind, RejectReason,
};
use crate::store::rows::{IngestResult, IngestedVersion, RegisterStats, StoredPerson, StoredRecord};

/// Rows per generated SQLite statement (16 columns × 500 rows stays far below SQLite's limit of
/// 32,766 parameters).
const SQLITE_ROWS_PER_STATEMENT: usize = 500;

/// The columns of a `register_log` row, in [`LogView`]'s order.
const LOG_COLUMNS: &str = "seq, recorded_at, person, record_id, version, kind, retroactive, benefit_type, \
                           fact_type, valid_from, valid_to, body, source_system, source_id, source_version";

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
        }
    }
}

/// Runs a query selecting [`LOG_COLUMNS`] and converts each row to a [`StoredRecord`] as it
/// arrives, so that no fetched row outlives its conversion (holding a large page of raw rows keeps
/// the connection's receive buffers alive, and the read slowed down by a third).
macro_rules! stored_records {
    ($query:expr, $pool:expr, |$row:ident| $convert:expr) => {{
        let mut records = Vec::new();
        stored_records!($query, $pool, for |$row| records.push($convert?));
        records
    }};
    // Runs `$each` for every row instead of collecting the records.
    ($query:expr, $pool:expr, for |$row:ident| $each:expr) => {{
        use futures::TryStreamExt as _;
        let mut fetched = $query.fetch($pool);
        while let Some(raw) = fetched.try_next().await? {
            let $row = LogView::from(<LogColumns<'_> as sqlx::FromRow<'_, _>>::from_row(&raw)?);
            $each;
        }
    }};
}

impl Store {
    /// Stores a batch of facts in one transaction and says, per fact and in order, what became of
    /// it. A rejected fact never blocks the others; on a storage error nothing is stored.
    ///
    /// Semantics (see `lefi.admin.v1.RegisterAdminService.Ingest`): a fact is identified by
    /// (source system, source id) — person updates by (source system, person); re-sending an
    /// accepted version with the same content is `Unchanged`, with other content
    /// `SOURCE_VERSION_CONFLICT`; a version below the latest that was never accepted is
    /// `SOURCE_VERSION_OUT_OF_ORDER`; a NEW for a known fact is stored as a CORRECTION; a
    /// CORRECTION or RETRACTION of an unknown fact is `RECORD_NOT_FOUND`. A benefit fact for a
    /// person the register does not know creates the person without a name.
    pub async fn ingest(&self, facts: Vec<NewFact>, now: Micros) -> Result<Vec<IngestResult>, StoreError> {
        if facts.is_empty() {
            return Ok(Vec::new());
        }
        let results = match &self.backend {
            Backend::Sqlite { write, .. } => {
                let mut tx = write.begin().await?;
                let results = run_ingest(&mut *tx, &facts, now).await?;
                if let Some((first, last)) = accepted_range(&results) {
                    sqlx::query(FAN_OUT_SQL)
                        .bind(first)
                        .bind(last)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                results
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let results = run_ingest(&mut *tx, &facts, now).await?;
                if let Some((first, last)) = accepted_range(&results) {
                    sqlx::query(FAN_OUT_SQL)
                        .bind(first)
                        .bind(last)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                results
            }
        };
        Ok(results)
    }

    /// The latest committed register sequence (0 for an empty register).
    pub async fn head_seq(&self) -> Result<u64, StoreError> {
        let (seq,): (i64,) = on_reader!(self, |pool| {
            sqlx::query_as("SELECT last_seq FROM register_head WHERE id = 1")
                .fetch_one(pool)
                .await?
        });
        to_u64(seq, "register_head.last_seq")
    }

    /// The person as of `as_of` (everything recorded up to and including it; `None` = now), or
    /// `None` when the register did not know the person then.
    pub async fn person(
        &self,
        person: &Personnummer,
        as_of: Option<u64>,
    ) -> Result<Option<StoredPerson>, StoreError> {
        let id = person.as_storage();
        let current: Option<(String, bool, Option<String>, i64, i64)> = on_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT name, protected_identity, date_of_death, created_seq, latest_seq \
                 FROM register_persons WHERE person = $1",
            )
            .bind(id)
            .fetch_optional(pool)
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
                    date_of_death: opt_date(death.as_deref(), "register_persons.date_of_death")?,
                },
                created_seq,
                latest_seq: to_u64(latest_seq, "register_persons.latest_seq")?,
            }));
        };
        if created_seq > as_of {
            return Ok(None);
        }
        let version: Option<(i64, String)> = on_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT seq, body FROM register_log \
                 WHERE person = $1 AND fact_type = 'PERSON' AND seq <= $2 ORDER BY seq DESC LIMIT 1",
            )
            .bind(id)
            .bind(to_i64(as_of))
            .fetch_optional(pool)
            .await?
        });
        let (data, latest_seq) = match version {
            Some((seq, body)) => match FactBody::from_json(FactType::Person, &body) {
                Ok(FactBody::Person(data)) => (data, to_u64(seq, "register_log.seq")?),
                _ => return Err(StoreError::Corrupt("register_log.body")),
            },
            None => (PersonData::default(), 0),
        };
        Ok(Some(StoredPerson {
            person: person.clone(),
            data,
            created_seq,
            latest_seq,
        }))
    }

    /// The latest version, as of `as_of` (`None` = now), of every benefit fact of `person` whose
    /// benefit type is one of `benefit_codes` (person events that concern no single benefit are
    /// always included) and whose valid period overlaps `overlapping`; retracted facts are left
    /// out. Ordered by benefit type, valid from, record id.
    pub async fn records_as_of(
        &self,
        person: &Personnummer,
        benefit_codes: &[String],
        overlapping: DateRange,
        as_of: Option<u64>,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let (_, records) = self
            .snapshot_of(person, benefit_codes, overlapping, as_of.unwrap_or(u64::MAX))
            .await?;
        Ok(records)
    }

    /// [`Store::snapshot_of`] for many persons at one sequence, in one query: the answers come in
    /// the order of `items` (person, benefit types, period).
    pub async fn snapshots_of(
        &self,
        items: &[(Personnummer, Vec<String>, DateRange)],
        as_of: u64,
    ) -> Result<Vec<(PersonData, Vec<StoredRecord>)>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut persons: Vec<&str> = items.iter().map(|(p, _, _)| p.as_storage()).collect();
        persons.sort_unstable();
        persons.dedup();
        let numbered = self.kind() == super::BackendKind::Postgres;
        // No ORDER BY: the rows are grouped by person here, and each fact's latest version is
        // found by its sequence (sorting them in the database cost more than the scan).
        let sql = format!(
            "SELECT {LOG_COLUMNS} FROM register_log WHERE person IN ({}) AND seq <= {}",
            super::in_list(persons.len(), numbered),
            super::placeholder(numbered, persons.len() + 1)
        );
        let wanted: HashMap<&str, &Personnummer> =
            items.iter().map(|(p, _, _)| (p.as_storage(), p)).collect();
        // Each row goes straight to its person's list as it arrives.
        let mut by_person: HashMap<&str, Vec<StoredRecord>> = HashMap::with_capacity(persons.len());
        on_reader!(self, |pool| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for person in &persons {
                query = query.bind(*person);
            }
            let query = query.bind(to_i64(as_of));
            stored_records!(query, pool, for |row| {
                let Some((key, person)) = wanted.get_key_value(row.person) else {
                    return Err(StoreError::Corrupt("register_log.person"));
                };
                let record = person_record(&row, (*person).clone())?;
                by_person.entry(*key).or_default().push(record);
            })
        });
        // A person asked for more than once (two subscriptions) gets a copy of the records for all
        // but the last ask; the last one takes them.
        let mut asks: HashMap<&str, usize> = HashMap::with_capacity(persons.len());
        for (person, _, _) in items {
            *asks.entry(person.as_storage()).or_default() += 1;
        }
        items
            .iter()
            .map(|(person, benefits, period)| {
                let key = person.as_storage();
                let left = asks.get_mut(key).map_or(0, |n| {
                    *n -= 1;
                    *n
                });
                let records = match by_person.get_mut(key) {
                    Some(records) if left == 0 => std::mem::take(records),
                    Some(records) => records.clone(),
                    None => Vec::new(),
                };
                person_snapshot(records, benefits, *period)
            })
            .collect()
    }

    /// What a snapshot needs, in one read: the person's own data and the latest version of each
    /// fact (as [`Store::records_as_of`]) as of `as_of`. The person data is the default (no name)
    /// when no person update is recorded at or before `as_of`.
    pub async fn snapshot_of(
        &self,
        person: &Personnummer,
        benefit_codes: &[String],
        overlapping: DateRange,
        as_of: u64,
    ) -> Result<(PersonData, Vec<StoredRecord>), StoreError> {
        let item = (person.clone(), benefit_codes.to_vec(), overlapping);
        Ok(self
            .snapshots_of(std::slice::from_ref(&item), as_of)
            .await?
            .pop()
            .unwrap_or_default())
    }

    /// Every version of every fact about `person` (benefit facts and person updates) recorded up
    /// to `as_of` (`None` = now), in sequence order.
    pub async fn person_history(
        &self,
        person: &Personnummer,
        as_of: Option<u64>,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let as_of = as_of.map_or(i64::MAX, to_i64);
        let history = on_reader!(self, |pool| {
            let query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {LOG_COLUMNS} FROM register_log WHERE person = $1 AND seq <= $2 ORDER BY seq"
            )))
            .bind(person.as_storage())
            .bind(as_of);
            stored_records!(query, pool, |row| person_record(&row, person.clone()))
        });
        Ok(history)
    }

    /// A person from the demo register with facts of `benefit_type`, for the `serve --dev`
    /// start-up hint (synthetic, test-range identity numbers only).
    pub async fn demo_person(
        &self,
        source_system: &str,
        benefit_type: &str,
    ) -> Result<Option<Personnummer>, StoreError> {
        let row: Option<(String,)> = on_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT person FROM register_log WHERE source_system = $1 AND benefit_type = $2 ORDER BY seq LIMIT 1",
            )
            .bind(source_system)
            .bind(benefit_type)
            .fetch_optional(pool)
            .await?
        });
        row.map(|(p,)| Personnummer::from_storage(&p).map_err(|_| StoreError::Corrupt("register_log.person")))
            .transpose()
    }

    /// Every recorded version of the given persons' own data up to `up_to`, oldest first, keyed
    /// by the person's storage form: enough to say what each person's data was at any sequence up
    /// to `up_to` (none recorded at a sequence means the default, no name). One query per 500.
    pub async fn person_versions(
        &self,
        persons: &[&str],
        up_to: u64,
    ) -> Result<HashMap<String, Vec<(u64, PersonData)>>, StoreError> {
        let numbered = self.kind() == super::BackendKind::Postgres;
        let mut found: HashMap<String, Vec<(u64, PersonData)>> = HashMap::new();
        for chunk in persons.chunks(500) {
            let sql = format!(
                "SELECT person, seq, body FROM register_log \
                 WHERE fact_type = 'PERSON' AND person IN ({}) AND seq <= {} ORDER BY person, seq",
                super::in_list(chunk.len(), numbered),
                super::placeholder(numbered, chunk.len() + 1)
            );
            let rows: Vec<(String, i64, String)> = on_reader!(self, |pool| {
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
                for person in chunk {
                    query = query.bind(*person);
                }
                query.bind(to_i64(up_to)).fetch_all(pool).await?
            });
            for (person, seq, body) in rows {
                let data = match FactBody::from_json(FactType::Person, &body) {
                    Ok(FactBody::Person(data)) => data,
                    _ => return Err(StoreError::Corrupt("register_log.body")),
                };
                found
                    .entry(person)
                    .or_default()
                    .push((to_u64(seq, "register_log.seq")?, data));
            }
        }
        Ok(found)
    }

    /// The log rows at the given sequences (those that hold a fact), in one query per 500, keyed
    /// by sequence: the changes of one delivery page.
    pub async fn records_at(&self, seqs: &[u64]) -> Result<HashMap<u64, StoredRecord>, StoreError> {
        let numbered = self.kind() == super::BackendKind::Postgres;
        let mut found = HashMap::with_capacity(seqs.len());
        for chunk in seqs.chunks(500) {
            let sql = format!(
                "SELECT {LOG_COLUMNS} FROM register_log WHERE seq IN ({})",
                super::in_list(chunk.len(), numbered)
            );
            on_reader!(self, |pool| {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                for seq in chunk {
                    query = query.bind(to_i64(*seq));
                }
                for record in stored_records!(query, pool, |row| stored_record(&row)) {
                    found.insert(record.seq, record);
                }
            });
        }
        Ok(found)
    }

    /// Up to `limit` log rows after `after_seq`, in commit order: the page a delivery reads next.
    /// Person updates are included (fact type `PERSON`).
    pub async fn log_after(&self, after_seq: u64, limit: u32) -> Result<Vec<StoredRecord>, StoreError> {
        let records = on_reader!(self, |pool| {
            let query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {LOG_COLUMNS} FROM register_log WHERE seq > $1 ORDER BY seq LIMIT $2"
            )))
            .bind(to_i64(after_seq))
            .bind(i64::from(limit));
            stored_records!(query, pool, |row| stored_record(&row))
        });
        Ok(records)
    }

    /// Register statistics; `now` decides what "the last minute" and "the last hour" are.
    pub async fn stats(&self, now: Micros) -> Result<RegisterStats, StoreError> {
        type Head = (i64, i64, i64, i64, i64);
        let (head, minute, hour): (Head, (Option<i64>,), (Option<i64>,)) = on_reader!(self, |pool| {
            let head = sqlx::query_as(
                "SELECT last_seq, last_recorded_at, person_count, fact_count, fact_version_count \
                     FROM register_head WHERE id = 1",
            )
            .fetch_one(pool)
            .await?;
            let minute = sqlx::query_as(
                "SELECT CAST(SUM(accepted) AS BIGINT) FROM register_batches WHERE recorded_at > $1",
            )
            .bind(now.saturating_sub(60_000_000))
            .fetch_one(pool)
            .await?;
            let hour = sqlx::query_as(
                "SELECT CAST(SUM(accepted) AS BIGINT) FROM register_batches WHERE recorded_at > $1",
            )
            .bind(now.saturating_sub(3_600_000_000))
            .fetch_one(pool)
            .await?;
            (head, minute, hour)
        });
        let (last_seq, last_recorded_at, persons, facts, versions) = head;
        Ok(RegisterStats {
            person_count: to_u64(persons, "register_head.person_count")?,
            fact_count: to_u64(facts, "register_head.fact_count")?,
            fact_version_count: to_u64(versions, "register_head.fact_version_count")?,
            latest_seq: to_u64(last_seq, "register_head.last_seq")?,
            latest_recorded_at: (last_seq > 0).then_some(last_recorded_at),
            accepted_last_minute: to_u64(minute.0.unwrap_or(0), "register_batches.accepted")?,
            accepted_last_hour: to_u64(hour.0.unwrap_or(0), "register_batches.accepted")?,
        })
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

fn opt_date(v: Option<&str>, what: &'static str) -> Result<Option<time::Date>, StoreError> {
    v.map(|d| parse_date(d).ok_or(StoreError::Corrupt(what)))
        .transpose()
}

fn stored_record(row: &LogView<'_>) -> Result<StoredRecord, StoreError> {
    let person =
        Personnummer::from_storage(row.person).map_err(|_| StoreError::Corrupt("register_log.person"))?;
    person_record(row, person)
}

/// [`stored_record`] for a row already known to be about `person`.
fn person_record(row: &LogView<'_>, person: Personnummer) -> Result<StoredRecord, StoreError> {
    let fact_type = FactType::parse(row.fact_type).ok_or(StoreError::Corrupt("register_log.fact_type"))?;
    let valid = if row.valid_from.is_empty() {
        None
    } else {
        Some(DateRange {
            from: parse_date(row.valid_from).ok_or(StoreError::Corrupt("register_log.valid_from"))?,
            to: opt_date(row.valid_to, "register_log.valid_to")?,
        })
    };
    Ok(StoredRecord {
        seq: to_u64(row.seq, "register_log.seq")?,
        recorded_at: row.recorded_at,
        person,
        record_id: row.record_id.to_string(),
        version: u32::try_from(row.version).map_err(|_| StoreError::Corrupt("register_log.version"))?,
        kind: RecordKind::parse(row.kind).ok_or(StoreError::Corrupt("register_log.kind"))?,
        retroactive: row.retroactive,
        benefit_type: row.benefit_type.to_string(),
        fact_type,
        valid,
        body: FactBody::from_json(fact_type, row.body)
            .map_err(|_| StoreError::Corrupt("register_log.body"))?,
        source_system: row.source_system.to_string(),
        source_id: row.source_id.to_string(),
        source_version: to_u64(row.source_version, "register_log.source_version")?,
    })
}

// ---------------------------------------------------------------------------------------------
// Ingest
// ---------------------------------------------------------------------------------------------

/// One row of `register_log` to insert.
#[derive(Debug, Clone)]
struct LogRow {
    seq: i64,
    recorded_at: i64,
    person: String,
    record_id: String,
    version: i64,
    kind: &'static str,
    retroactive: bool,
    benefit_type: String,
    fact_type: &'static str,
    valid_from: String,
    valid_to: Option<String>,
    body: String,
    source_system: String,
    source_id: String,
    source_version: i64,
    content_hash: String,
}

/// The head of one benefit fact (`register_records`).
#[derive(Debug, Clone)]
struct RecordRow {
    record_id: String,
    source_system: String,
    source_id: String,
    person: String,
    latest_version: i64,
    latest_seq: i64,
    latest_source_version: i64,
    retracted: bool,
}

/// What the latest version of a fact held, for corrections and retractions.
#[derive(Debug, Clone)]
struct LastVersion {
    fact_type: FactType,
    benefit_type: String,
    valid: Option<DateRange>,
    body: String,
}

/// One person to write to `register_persons`: a new person, or one whose data changed.
#[derive(Debug, Clone)]
struct PersonRow {
    person: String,
    data: PersonData,
    created_seq: i64,
    latest_seq: i64,
}

/// The latest person-data version from one source system (`register_person_sources`).
#[derive(Debug, Clone)]
struct PersonSourceRow {
    person: String,
    source_system: String,
    latest_version: i64,
    latest_seq: i64,
    latest_source_version: i64,
}

/// What the transaction changes in `register_head`.
#[derive(Debug, Clone, Copy)]
struct HeadUpdate {
    last_seq: i64,
    last_recorded_at: i64,
    new_persons: i64,
    new_facts: i64,
    new_versions: i64,
}

/// The statements ingest needs, per backend. Implemented for both connection types so that
/// [`run_ingest`] is written once.
trait RegisterConn: Send {
    async fn lock_head(&mut self) -> Result<(i64, i64), sqlx::Error>;
    async fn benefit_codes(&mut self) -> Result<HashSet<String>, sqlx::Error>;
    async fn find_version(
        &mut self,
        record_id: &str,
        person: &str,
        person_update: bool,
        source_version: i64,
    ) -> Result<Option<(i64, i64, String)>, sqlx::Error>;
    async fn finish(&mut self, head: HeadUpdate, accepted: i64) -> Result<(), sqlx::Error>;
    async fn find_records(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<Vec<(RecordRow, LastVersion)>, StoreError>;
    async fn find_persons(&mut self, persons: &[String]) -> Result<HashSet<String>, sqlx::Error>;
    async fn find_person_sources(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<Vec<PersonSourceRow>, sqlx::Error>;
    async fn insert_log(&mut self, rows: Vec<LogRow>) -> Result<(), sqlx::Error>;
    /// Writes the heads of facts: `new` ones (not stored before) and `changed` stored ones.
    async fn write_records(&mut self, new: &[RecordRow], changed: &[RecordRow]) -> Result<(), sqlx::Error>;
    async fn upsert_persons(&mut self, rows: &[PersonRow]) -> Result<(), sqlx::Error>;
    async fn upsert_person_sources(&mut self, rows: &[PersonSourceRow]) -> Result<(), sqlx::Error>;
}

/// The statements that are the same text on both backends.
macro_rules! shared_statements {
    () => {
        async fn lock_head(&mut self) -> Result<(i64, i64), sqlx::Error> {
            // Updating the row takes its lock (PostgreSQL) until commit: writers queue here.
            sqlx::query_as(
                "UPDATE register_head SET last_seq = last_seq WHERE id = 1 \
                 RETURNING last_seq, last_recorded_at",
            )
            .fetch_one(&mut *self)
            .await
        }

        async fn benefit_codes(&mut self) -> Result<HashSet<String>, sqlx::Error> {
            let rows: Vec<(String,)> = sqlx::query_as("SELECT code FROM benefit_types")
                .fetch_all(&mut *self)
                .await?;
            Ok(rows.into_iter().map(|(c,)| c).collect())
        }

        async fn find_version(
            &mut self,
            record_id: &str,
            person: &str,
            person_update: bool,
            source_version: i64,
        ) -> Result<Option<(i64, i64, String)>, sqlx::Error> {
            if person_update {
                // Person updates share a record id per source system: find them through the person.
                let rows: Vec<(i64, i64, String, String, i64)> = sqlx::query_as(
                    "SELECT seq, version, content_hash, record_id, source_version FROM register_log \
                     WHERE person = $1 AND fact_type = 'PERSON'",
                )
                .bind(person)
                .fetch_all(&mut *self)
                .await?;
                Ok(rows
                    .into_iter()
                    .find(|r| r.3 == record_id && r.4 == source_version)
                    .map(|r| (r.0, r.1, r.2)))
            } else {
                sqlx::query_as(
                    "SELECT seq, version, content_hash FROM register_log \
                     WHERE record_id = $1 AND source_version = $2",
                )
                .bind(record_id)
                .bind(source_version)
                .fetch_optional(&mut *self)
                .await
            }
        }

        async fn finish(&mut self, head: HeadUpdate, accepted: i64) -> Result<(), sqlx::Error> {
            sqlx::query(
                "UPDATE register_head SET last_seq = $1, last_recorded_at = $2, \
                        person_count = person_count + $3, fact_count = fact_count + $4, \
                        fact_version_count = fact_version_count + $5 \
                 WHERE id = 1",
            )
            .bind(head.last_seq)
            .bind(head.last_recorded_at)
            .bind(head.new_persons)
            .bind(head.new_facts)
            .bind(head.new_versions)
            .execute(&mut *self)
            .await?;
            if accepted > 0 {
                sqlx::query(
                    "INSERT INTO register_batches (last_seq, recorded_at, accepted) VALUES ($1, $2, $3)",
                )
                .bind(head.last_seq)
                .bind(head.last_recorded_at)
                .bind(accepted)
                .execute(&mut *self)
                .await?;
            }
            Ok(())
        }
    };
}

type FoundRecord = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    bool,
    String,
    String,
    String,
    Option<String>,
    String,
);

fn found_record(r: FoundRecord) -> Result<(RecordRow, LastVersion), StoreError> {
    let (
        record_id,
        source_system,
        source_id,
        person,
        latest_version,
        latest_seq,
        latest_source_version,
        retracted,
        fact_type,
        benefit_type,
        valid_from,
        valid_to,
        body,
    ) = r;
    let valid = if valid_from.is_empty() {
        None
    } else {
        Some(DateRange {
            from: parse_date(&valid_from).ok_or(StoreError::Corrupt("register_log.valid_from"))?,
            to: opt_date(valid_to.as_deref(), "register_log.valid_to")?,
        })
    };
    Ok((
        RecordRow {
            record_id,
            source_system,
            source_id,
            person,
            latest_version,
            latest_seq,
            latest_source_version,
            retracted,
        },
        LastVersion {
            fact_type: FactType::parse(&fact_type).ok_or(StoreError::Corrupt("register_log.fact_type"))?,
            benefit_type,
            valid,
            body,
        },
    ))
}

/// The SQLite upsert of fact heads (for [`RegisterConn::write_records`]).
async fn upsert_records_sqlite(conn: &mut SqliteConnection, rows: &[RecordRow]) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(SQLITE_ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO register_records (record_id, source_system, source_id, person, latest_version, \
                 latest_seq, latest_source_version, retracted) VALUES {} \
             ON CONFLICT (record_id) DO UPDATE SET latest_version = excluded.latest_version, \
                 latest_seq = excluded.latest_seq, latest_source_version = excluded.latest_source_version, \
                 retracted = excluded.retracted",
            super::values_list(chunk.len(), 8, false)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(&r.record_id)
                .bind(&r.source_system)
                .bind(&r.source_id)
                .bind(&r.person)
                .bind(r.latest_version)
                .bind(r.latest_seq)
                .bind(r.latest_source_version)
                .bind(r.retracted);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

impl RegisterConn for SqliteConnection {
    shared_statements!();

    async fn find_records(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<Vec<(RecordRow, LastVersion)>, StoreError> {
        let mut out = Vec::new();
        for chunk in keys.chunks(SQLITE_ROWS_PER_STATEMENT) {
            let sql = format!(
                "WITH k (ss, sid) AS (VALUES {}) \
                 SELECT r.record_id, r.source_system, r.source_id, r.person, r.latest_version, r.latest_seq, \
                        r.latest_source_version, r.retracted, l.fact_type, l.benefit_type, l.valid_from, \
                        l.valid_to, l.body \
                 FROM k JOIN register_records r ON r.source_system = k.ss AND r.source_id = k.sid \
                 JOIN register_log l ON l.seq = r.latest_seq",
                super::values_list(chunk.len(), 2, false)
            );
            let mut q = sqlx::query_as::<_, FoundRecord>(sqlx::AssertSqlSafe(sql));
            for (ss, sid) in chunk {
                q = q.bind(ss).bind(sid);
            }
            for r in q.fetch_all(&mut *self).await? {
                out.push(found_record(r)?);
            }
        }
        Ok(out)
    }

    async fn find_persons(&mut self, persons: &[String]) -> Result<HashSet<String>, sqlx::Error> {
        let mut out = HashSet::new();
        for chunk in persons.chunks(SQLITE_ROWS_PER_STATEMENT) {
            let sql = format!(
                "WITH k (p) AS (VALUES {}) SELECT r.person FROM k JOIN register_persons r ON r.person = k.p",
                super::values_list(chunk.len(), 1, false)
            );
            let mut q = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql));
            for p in chunk {
                q = q.bind(p);
            }
            out.extend(q.fetch_all(&mut *self).await?.into_iter().map(|(p,)| p));
        }
        Ok(out)
    }

    async fn find_person_sources(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<Vec<PersonSourceRow>, sqlx::Error> {
        let mut out = Vec::new();
        for chunk in keys.chunks(SQLITE_ROWS_PER_STATEMENT) {
            let sql = format!(
                "WITH k (p, ss) AS (VALUES {}) \
                 SELECT s.person, s.source_system, s.latest_version, s.latest_seq, s.latest_source_version \
                 FROM k JOIN register_person_sources s ON s.person = k.p AND s.source_system = k.ss",
                super::values_list(chunk.len(), 2, false)
            );
            let mut q = sqlx::query_as::<_, (String, String, i64, i64, i64)>(sqlx::AssertSqlSafe(sql));
            for (p, ss) in chunk {
                q = q.bind(p).bind(ss);
            }
            out.extend(q.fetch_all(&mut *self).await?.into_iter().map(
                |(person, source_system, latest_version, latest_seq, latest_source_version)| {
                    PersonSourceRow {
                        person,
                        source_system,
                        latest_version,
                        latest_seq,
                        latest_source_version,
                    }
                },
            ));
        }
        Ok(out)
    }

    async fn insert_log(&mut self, rows: Vec<LogRow>) -> Result<(), sqlx::Error> {
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<LogRow> = rows.by_ref().take(SQLITE_ROWS_PER_STATEMENT).collect();
            let sql = format!(
                "INSERT INTO register_log (seq, recorded_at, person, record_id, version, kind, retroactive, \
                     benefit_type, fact_type, valid_from, valid_to, body, source_system, source_id, \
                     source_version, content_hash) VALUES {}",
                super::values_list(chunk.len(), 16, false)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            // The values move into the statement: no copies of the bodies.
            for r in chunk {
                q = q
                    .bind(r.seq)
                    .bind(r.recorded_at)
                    .bind(r.person)
                    .bind(r.record_id)
                    .bind(r.version)
                    .bind(r.kind)
                    .bind(r.retroactive)
                    .bind(r.benefit_type)
                    .bind(r.fact_type)
                    .bind(r.valid_from)
                    .bind(r.valid_to)
                    .bind(r.body)
                    .bind(r.source_system)
                    .bind(r.source_id)
                    .bind(r.source_version)
                    .bind(r.content_hash);
            }
            q.execute(&mut *self).await?;
        }
        Ok(())
    }

    async fn write_records(&mut self, new: &[RecordRow], changed: &[RecordRow]) -> Result<(), sqlx::Error> {
        // One upsert serves both in SQLite (a plain insert is no cheaper there).
        for rows in [new, changed] {
            if !rows.is_empty() {
                upsert_records_sqlite(self, rows).await?;
            }
        }
        Ok(())
    }

    async fn upsert_persons(&mut self, rows: &[PersonRow]) -> Result<(), sqlx::Error> {
        for chunk in rows.chunks(SQLITE_ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO register_persons (person, name, protected_identity, date_of_death, created_seq, \
                     latest_seq) VALUES {} \
                 ON CONFLICT (person) DO UPDATE SET name = excluded.name, \
                     protected_identity = excluded.protected_identity, date_of_death = excluded.date_of_death, \
                     latest_seq = excluded.latest_seq",
                super::values_list(chunk.len(), 6, false)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind(&r.person)
                    .bind(&r.data.name)
                    .bind(r.data.protected_identity)
                    .bind(r.data.date_of_death.map(format_date))
                    .bind(r.created_seq)
                    .bind(r.latest_seq);
            }
            q.execute(&mut *self).await?;
        }
        Ok(())
    }

    async fn upsert_person_sources(&mut self, rows: &[PersonSourceRow]) -> Result<(), sqlx::Error> {
        for chunk in rows.chunks(SQLITE_ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO register_person_sources (person, source_system, latest_version, latest_seq, \
                     latest_source_version) VALUES {} \
                 ON CONFLICT (person, source_system) DO UPDATE SET latest_version = excluded.latest_version, \
                     latest_seq = excluded.latest_seq, latest_source_version = excluded.latest_source_version",
                super::values_list(chunk.len(), 5, false)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind(&r.person)
                    .bind(&r.source_system)
                    .bind(r.latest_version)
                    .bind(r.latest_seq)
                    .bind(r.latest_source_version);
            }
            q.execute(&mut *self).await?;
        }
        Ok(())
    }
}

/// The PostgreSQL upsert of changed fact heads (for [`RegisterConn::write_records`]).
async fn upsert_records_pg(conn: &mut PgConnection, rows: &[RecordRow]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO register_records (record_id, source_system, source_id, person, latest_version, \
             latest_seq, latest_source_version, retracted) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], \
             $7::bigint[], $8::boolean[]) \
         ON CONFLICT (record_id) DO UPDATE SET latest_version = excluded.latest_version, \
             latest_seq = excluded.latest_seq, latest_source_version = excluded.latest_source_version, \
             retracted = excluded.retracted",
    )
    .bind(rows.iter().map(|r| r.record_id.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.source_system.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.source_id.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.person.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.latest_version).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.latest_seq).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.latest_source_version).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.retracted).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl RegisterConn for PgConnection {
    shared_statements!();

    async fn find_records(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<Vec<(RecordRow, LastVersion)>, StoreError> {
        let (ss, sid): (Vec<&str>, Vec<&str>) = keys.iter().map(|(a, b)| (a.as_str(), b.as_str())).unzip();
        let rows: Vec<FoundRecord> = sqlx::query_as(
            "SELECT r.record_id, r.source_system, r.source_id, r.person, r.latest_version, r.latest_seq, \
                    r.latest_source_version, r.retracted, l.fact_type, l.benefit_type, l.valid_from, \
                    l.valid_to, l.body \
             FROM UNNEST($1::text[], $2::text[]) AS k (ss, sid) \
             JOIN register_records r ON r.source_system = k.ss AND r.source_id = k.sid \
             JOIN register_log l ON l.seq = r.latest_seq",
        )
        .bind(ss)
        .bind(sid)
        .fetch_all(&mut *self)
        .await?;
        rows.into_iter().map(found_record).collect()
    }

    async fn find_persons(&mut self, persons: &[String]) -> Result<HashSet<String>, sqlx::Error> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT person FROM register_persons WHERE person = ANY($1::text[])")
                .bind(persons)
                .fetch_all(&mut *self)
                .await?;
        Ok(rows.into_iter().map(|(p,)| p).collect())
    }

    async fn find_person_sources(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<Vec<PersonSourceRow>, sqlx::Error> {
        let (p, ss): (Vec<&str>, Vec<&str>) = keys.iter().map(|(a, b)| (a.as_str(), b.as_str())).unzip();
        let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT s.person, s.source_system, s.latest_version, s.latest_seq, s.latest_source_version \
             FROM UNNEST($1::text[], $2::text[]) AS k (p, ss) \
             JOIN register_person_sources s ON s.person = k.p AND s.source_system = k.ss",
        )
        .bind(p)
        .bind(ss)
        .fetch_all(&mut *self)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(person, source_system, latest_version, latest_seq, latest_source_version)| {
                    PersonSourceRow {
                        person,
                        source_system,
                        latest_version,
                        latest_seq,
                        latest_source_version,
                    }
                },
            )
            .collect())
    }

    async fn insert_log(&mut self, rows: Vec<LogRow>) -> Result<(), sqlx::Error> {
        // COPY is PostgreSQL's fastest bulk path (about twice an UNNEST insert here); the data is
        // the text format, every value escaped, so nothing in it is read as SQL.
        let mut data = String::with_capacity(rows.len() * 400);
        for r in &rows {
            copy_row(
                &mut data,
                &[
                    Some(&r.seq.to_string()),
                    Some(&r.recorded_at.to_string()),
                    Some(&r.person),
                    Some(&r.record_id),
                    Some(&r.version.to_string()),
                    Some(r.kind),
                    Some(if r.retroactive { "t" } else { "f" }),
                    Some(&r.benefit_type),
                    Some(r.fact_type),
                    Some(&r.valid_from),
                    r.valid_to.as_deref(),
                    Some(&r.body),
                    Some(&r.source_system),
                    Some(&r.source_id),
                    Some(&r.source_version.to_string()),
                    Some(&r.content_hash),
                ],
            );
        }
        let mut copy = self
            .copy_in_raw(
                "COPY register_log (seq, recorded_at, person, record_id, version, kind, retroactive, \
                     benefit_type, fact_type, valid_from, valid_to, body, source_system, source_id, \
                     source_version, content_hash) FROM STDIN (FORMAT text)",
            )
            .await?;
        if let Err(e) = copy.send(data.into_bytes()).await {
            let _ = copy.abort("ingest failed while sending rows").await;
            return Err(e);
        }
        copy.finish().await?;
        Ok(())
    }

    async fn write_records(&mut self, new: &[RecordRow], changed: &[RecordRow]) -> Result<(), sqlx::Error> {
        if !new.is_empty() {
            // New heads cannot conflict (they were looked up under the head lock): COPY them.
            let mut data = String::with_capacity(new.len() * 100);
            for r in new {
                copy_row(
                    &mut data,
                    &[
                        Some(&r.record_id),
                        Some(&r.source_system),
                        Some(&r.source_id),
                        Some(&r.person),
                        Some(&r.latest_version.to_string()),
                        Some(&r.latest_seq.to_string()),
                        Some(&r.latest_source_version.to_string()),
                        Some(if r.retracted { "t" } else { "f" }),
                    ],
                );
            }
            let mut copy = self
                .copy_in_raw(
                    "COPY register_records (record_id, source_system, source_id, person, latest_version, \
                         latest_seq, latest_source_version, retracted) FROM STDIN (FORMAT text)",
                )
                .await?;
            if let Err(e) = copy.send(data.into_bytes()).await {
                let _ = copy.abort("ingest failed while sending rows").await;
                return Err(e);
            }
            copy.finish().await?;
        }
        if !changed.is_empty() {
            upsert_records_pg(self, changed).await?;
        }
        Ok(())
    }

    async fn upsert_persons(&mut self, rows: &[PersonRow]) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO register_persons (person, name, protected_identity, date_of_death, created_seq, \
                 latest_seq) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::boolean[], $4::text[], $5::bigint[], $6::bigint[]) \
             ON CONFLICT (person) DO UPDATE SET name = excluded.name, \
                 protected_identity = excluded.protected_identity, date_of_death = excluded.date_of_death, \
                 latest_seq = excluded.latest_seq",
        )
        .bind(rows.iter().map(|r| r.person.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.data.name.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.data.protected_identity).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.data.date_of_death.map(format_date))
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.created_seq).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.latest_seq).collect::<Vec<_>>())
        .execute(&mut *self)
        .await?;
        Ok(())
    }

    async fn upsert_person_sources(&mut self, rows: &[PersonSourceRow]) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO register_person_sources (person, source_system, latest_version, latest_seq, \
                 latest_source_version) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) \
             ON CONFLICT (person, source_system) DO UPDATE SET latest_version = excluded.latest_version, \
                 latest_seq = excluded.latest_seq, latest_source_version = excluded.latest_source_version",
        )
        .bind(rows.iter().map(|r| r.person.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.source_system.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.latest_version).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.latest_seq).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.latest_source_version).collect::<Vec<_>>())
        .execute(&mut *self)
        .await?;
        Ok(())
    }
}

/// Appends one row of PostgreSQL's COPY text format: tab-separated, `\N` for NULL, backslash,
/// tab, newline and carriage return escaped.
fn copy_row(out: &mut String, values: &[Option<&str>]) {
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        match value {
            None => out.push_str("\\N"),
            Some(v) => {
                for c in v.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\t' => out.push_str("\\t"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
            }
        }
    }
    out.push('\n');
}

/// The state of one benefit fact while a batch is planned.
struct RecordState {
    row: RecordRow,
    last: LastVersion,
    /// Whether the head is stored already (else it is new in this batch).
    stored: bool,
    /// Whether the batch changed it (and so it must be written).
    dirty: bool,
}

/// The state of one person while a batch is planned.
struct PersonState {
    /// `None` for a person already stored whose data the batch did not change.
    write: Option<PersonRow>,
}

/// Plans and writes one batch inside the caller's transaction; the caller commits.
async fn run_ingest<C: RegisterConn>(
    conn: &mut C,
    facts: &[NewFact],
    now: Micros,
) -> Result<Vec<IngestResult>, StoreError> {
    let t0 = std::time::Instant::now();
    let (last_seq, last_recorded_at) = conn.lock_head().await?;
    // Recording times never go backwards along the log, even if the clock does.
    let recorded_at = now.max(last_recorded_at);
    let codes = conn.benefit_codes().await?;

    let mut record_keys: Vec<(String, String)> = Vec::new();
    let mut source_keys: Vec<(String, String)> = Vec::new();
    let mut person_keys: Vec<String> = Vec::new();
    {
        let mut seen_records = HashSet::new();
        let mut seen_sources = HashSet::new();
        let mut seen_persons = HashSet::new();
        for f in facts {
            let person = f.person().as_storage();
            if seen_persons.insert(person) {
                person_keys.push(person.to_string());
            }
            if f.is_person_update() {
                if seen_sources.insert((person, f.source_system())) {
                    source_keys.push((person.to_string(), f.source_system().to_string()));
                }
            } else if seen_records.insert((f.source_system(), f.source_id())) {
                record_keys.push((f.source_system().to_string(), f.source_id().to_string()));
            }
        }
    }
    let mut records: HashMap<(String, String), RecordState> = HashMap::new();
    if !record_keys.is_empty() {
        for (row, last) in conn.find_records(&record_keys).await? {
            records.insert(
                (row.source_system.clone(), row.source_id.clone()),
                RecordState {
                    row,
                    last,
                    stored: true,
                    dirty: false,
                },
            );
        }
    }
    let mut sources: HashMap<(String, String), (PersonSourceRow, bool)> = HashMap::new();
    if !source_keys.is_empty() {
        for row in conn.find_person_sources(&source_keys).await? {
            sources.insert((row.person.clone(), row.source_system.clone()), (row, false));
        }
    }
    let mut persons: HashMap<String, PersonState> = conn
        .find_persons(&person_keys)
        .await?
        .into_iter()
        .map(|p| (p, PersonState { write: None }))
        .collect();

    let t_lookup = t0.elapsed();
    let mut seq = last_seq;
    let mut log: Vec<LogRow> = Vec::new();
    let mut results = Vec::with_capacity(facts.len());
    let mut new_persons = 0i64;
    let mut new_facts = 0i64;
    let mut new_versions = 0i64;

    for fact in facts {
        let person = fact.person().as_storage().to_string();
        let source_version = i64::try_from(fact.source_version()).unwrap_or(i64::MAX);
        let hash = fact.content_hash().to_string();

        if !fact.benefit_type().is_empty() && !codes.contains(fact.benefit_type()) {
            results.push(IngestResult::Rejected(FactError::new(
                RejectReason::UnknownBenefitType,
                "benefit_type",
                "unknown benefit type; use a code from PartyService.ListBenefitTypes",
            )));
            continue;
        }

        if let Some(FactBody::Person(data)) = fact.body() {
            let record_id = format!("person:{}", fact.source_system());
            let key = (person.clone(), fact.source_system().to_string());
            let existing = sources.get(&key).map(|(row, _)| row.clone());
            if let Some(existing) = &existing {
                if source_version <= existing.latest_source_version {
                    let found = match in_batch(&log, &record_id, &person, source_version) {
                        Some(v) => Some(v),
                        None => {
                            conn.find_version(&record_id, &person, true, source_version)
                                .await?
                        }
                    };
                    results.push(repeated_version(
                        found,
                        &hash,
                        &record_id,
                        true,
                        existing.latest_source_version,
                    )?);
                    continue;
                }
            }
            seq += 1;
            let (version, kind) = match &existing {
                Some(e) => (e.latest_version + 1, RecordKind::Correction),
                None => (1, RecordKind::New),
            };
            log.push(LogRow {
                seq,
                recorded_at,
                person: person.clone(),
                record_id: record_id.clone(),
                version,
                kind: kind.as_str(),
                retroactive: fact.retroactive(),
                benefit_type: String::new(),
                fact_type: FactType::Person.as_str(),
                valid_from: String::new(),
                valid_to: None,
                body: fact.body_json().to_string(),
                source_system: fact.source_system().to_string(),
                source_id: String::new(),
                source_version,
                content_hash: hash.clone(),
            });
            sources.insert(
                key,
                (
                    PersonSourceRow {
                        person: person.clone(),
                        source_system: fact.source_system().to_string(),
                        latest_version: version,
                        latest_seq: seq,
                        latest_source_version: source_version,
                    },
                    true,
                ),
            );
            match persons.get_mut(&person) {
                Some(state) => {
                    let created_seq = state.write.as_ref().map_or(0, |w| w.created_seq);
                    state.write = Some(PersonRow {
                        person: person.clone(),
                        data: data.clone(),
                        created_seq,
                        latest_seq: seq,
                    });
                }
                None => {
                    new_persons += 1;
                    persons.insert(
                        person.clone(),
                        PersonState {
                            write: Some(PersonRow {
                                person: person.clone(),
                                data: data.clone(),
                                created_seq: seq,
                                latest_seq: seq,
                            }),
                        },
                    );
                }
            }
            results.push(IngestResult::Accepted(IngestedVersion {
                seq: to_u64(seq, "register_head.last_seq")?,
                record_id,
                version: u32::try_from(version).unwrap_or(u32::MAX),
                person_update: true,
            }));
            continue;
        }

        // A benefit fact or person event.
        let key = (fact.source_system().to_string(), fact.source_id().to_string());
        let planned = match records.get(&key) {
            None => {
                if fact.kind() != RecordKind::New {
                    results.push(IngestResult::Rejected(FactError::new(
                        RejectReason::RecordNotFound,
                        "source_id",
                        "the register holds no fact with this source_system and source_id; send its \
                         first version as NEW",
                    )));
                    continue;
                }
                let Some(body) = fact.body() else {
                    // NewFact guarantees a body for everything but retractions.
                    return Err(StoreError::Corrupt("ingest: NEW fact without body"));
                };
                Planned {
                    // Opaque and stable: named after the sequence of its first version.
                    record_id: format!("rec_{:016x}", seq + 1),
                    version: 1,
                    kind: RecordKind::New,
                    fact_type: body.fact_type(),
                    benefit_type: fact.benefit_type().to_string(),
                    valid: fact.valid().or_else(|| body.derived_valid()),
                    body: fact.body_json().to_string(),
                    new_record: true,
                }
            }
            Some(state) => {
                if state.row.person != person {
                    results.push(IngestResult::Rejected(FactError::new(
                        RejectReason::InvalidArgument,
                        "person_id",
                        "this source_id belongs to a fact about another person; a correction cannot move \
                         a fact to another person: retract it and send a new fact",
                    )));
                    continue;
                }
                if source_version <= state.row.latest_source_version {
                    let found = match in_batch(&log, &state.row.record_id, &person, source_version) {
                        Some(v) => Some(v),
                        None => {
                            conn.find_version(&state.row.record_id, &person, false, source_version)
                                .await?
                        }
                    };
                    results.push(repeated_version(
                        found,
                        &hash,
                        &state.row.record_id,
                        false,
                        state.row.latest_source_version,
                    )?);
                    continue;
                }
                match plan_new_version(fact, state) {
                    Ok(p) => p,
                    Err(e) => {
                        results.push(IngestResult::Rejected(e));
                        continue;
                    }
                }
            }
        };

        seq += 1;
        new_versions += 1;
        if planned.new_record {
            new_facts += 1;
        }
        log.push(LogRow {
            seq,
            recorded_at,
            person: person.clone(),
            record_id: planned.record_id.clone(),
            version: planned.version,
            kind: planned.kind.as_str(),
            retroactive: fact.retroactive(),
            benefit_type: planned.benefit_type.clone(),
            fact_type: planned.fact_type.as_str(),
            valid_from: planned.valid.map(|v| format_date(v.from)).unwrap_or_default(),
            valid_to: planned.valid.and_then(|v| v.to).map(format_date),
            body: planned.body.clone(),
            source_system: key.0.clone(),
            source_id: key.1.clone(),
            source_version,
            content_hash: hash,
        });
        let stored = records.get(&key).is_some_and(|s| s.stored);
        records.insert(
            key.clone(),
            RecordState {
                row: RecordRow {
                    record_id: planned.record_id.clone(),
                    source_system: key.0,
                    source_id: key.1,
                    person: person.clone(),
                    latest_version: planned.version,
                    latest_seq: seq,
                    latest_source_version: source_version,
                    retracted: planned.kind == RecordKind::Retraction,
                },
                last: LastVersion {
                    fact_type: planned.fact_type,
                    benefit_type: planned.benefit_type,
                    valid: planned.valid,
                    body: planned.body,
                },
                stored,
                dirty: true,
            },
        );
        if !persons.contains_key(&person) {
            new_persons += 1;
            persons.insert(
                person.clone(),
                PersonState {
                    write: Some(PersonRow {
                        person: person.clone(),
                        data: PersonData::default(),
                        created_seq: seq,
                        latest_seq: 0,
                    }),
                },
            );
        }
        results.push(IngestResult::Accepted(IngestedVersion {
            seq: to_u64(seq, "register_head.last_seq")?,
            record_id: planned.record_id,
            version: u32::try_from(planned.version).unwrap_or(u32::MAX),
            person_update: false,
        }));
    }

    let t_plan = t0.elapsed();
    let mut t_log = t_plan;
    if !log.is_empty() {
        let accepted = i64::try_from(log.len()).unwrap_or(i64::MAX);
        conn.insert_log(log).await?;
        t_log = t0.elapsed();
        let (changed, new): (Vec<RecordState>, Vec<RecordState>) =
            records.into_values().filter(|s| s.dirty).partition(|s| s.stored);
        let new: Vec<RecordRow> = new.into_iter().map(|s| s.row).collect();
        let changed: Vec<RecordRow> = changed.into_iter().map(|s| s.row).collect();
        conn.write_records(&new, &changed).await?;
        let person_rows: Vec<PersonRow> = persons.into_values().filter_map(|p| p.write).collect();
        if !person_rows.is_empty() {
            conn.upsert_persons(&person_rows).await?;
        }
        let source_rows: Vec<PersonSourceRow> = sources
            .into_values()
            .filter(|(_, dirty)| *dirty)
            .map(|(row, _)| row)
            .collect();
        if !source_rows.is_empty() {
            conn.upsert_person_sources(&source_rows).await?;
        }
        conn.finish(
            HeadUpdate {
                last_seq: seq,
                last_recorded_at: recorded_at,
                new_persons,
                new_facts,
                new_versions,
            },
            accepted,
        )
        .await?;
    }
    tracing::debug!(
        facts = facts.len(),
        lookup_us = t_lookup.as_micros() as u64,
        plan_us = (t_plan - t_lookup).as_micros() as u64,
        log_us = (t_log - t_plan).as_micros() as u64,
        rest_us = (t0.elapsed().saturating_sub(t_log)).as_micros() as u64,
        "ingest batch planned and written"
    );
    Ok(results)
}

/// A version accepted earlier in this batch (not in the database yet) that a later fact re-sends:
/// its sequence, version and content hash. Rare, so a scan of the batch's rows does.
fn in_batch(
    log: &[LogRow],
    record_id: &str,
    person: &str,
    source_version: i64,
) -> Option<(i64, i64, String)> {
    log.iter()
        .rev()
        .find(|r| r.record_id == record_id && r.person == person && r.source_version == source_version)
        .map(|r| (r.seq, r.version, r.content_hash.clone()))
}

/// A new version of a benefit fact, ready to be written.
struct Planned {
    record_id: String,
    version: i64,
    kind: RecordKind,
    fact_type: FactType,
    benefit_type: String,
    valid: Option<DateRange>,
    body: String,
    new_record: bool,
}

/// A later version of a known fact: a NEW or CORRECTION becomes a CORRECTION; a RETRACTION keeps
/// the last content unless it brings its own. The fact type, the benefit type and the person stay.
fn plan_new_version(fact: &NewFact, state: &RecordState) -> Result<Planned, FactError> {
    let retraction = fact.kind() == RecordKind::Retraction;
    if retraction && state.row.retracted {
        return Err(FactError::new(
            RejectReason::InvalidArgument,
            "kind",
            "the fact is already retracted; send a CORRECTION to restore it",
        ));
    }
    let (fact_type, body) = match fact.body() {
        Some(body) => (body.fact_type(), fact.body_json().to_string()),
        None => (state.last.fact_type, state.last.body.clone()),
    };
    if fact_type != state.last.fact_type {
        return Err(FactError::new(
            RejectReason::InvalidArgument,
            fact_type.field_name(),
            format!(
                "this fact is a {} and a later version cannot change that; retract it and send a new fact",
                state.last.fact_type.field_name()
            ),
        ));
    }
    let benefit_type = if retraction && fact.benefit_type().is_empty() {
        state.last.benefit_type.clone()
    } else {
        fact.benefit_type().to_string()
    };
    if benefit_type != state.last.benefit_type {
        return Err(FactError::new(
            RejectReason::InvalidArgument,
            "benefit_type",
            "a later version cannot change the benefit type; retract the fact and send a new one",
        ));
    }
    let valid = match (fact.valid(), fact.body()) {
        (Some(v), _) => Some(v),
        (None, Some(body)) => body.derived_valid(),
        (None, None) => state.last.valid,
    };
    Ok(Planned {
        record_id: state.row.record_id.clone(),
        version: state.row.latest_version + 1,
        kind: if retraction {
            RecordKind::Retraction
        } else {
            RecordKind::Correction
        },
        fact_type,
        benefit_type,
        valid,
        body,
        new_record: false,
    })
}

/// The answer to a source version at or below the latest accepted one.
fn repeated_version(
    found: Option<(i64, i64, String)>,
    hash: &str,
    record_id: &str,
    person_update: bool,
    latest_source_version: i64,
) -> Result<IngestResult, StoreError> {
    Ok(match found {
        Some((seq, version, stored)) if stored == hash => IngestResult::Unchanged(IngestedVersion {
            seq: to_u64(seq, "register_log.seq")?,
            record_id: record_id.to_string(),
            version: u32::try_from(version).map_err(|_| StoreError::Corrupt("register_log.version"))?,
            person_update,
        }),
        Some(_) => IngestResult::Rejected(FactError::new(
            RejectReason::SourceVersionConflict,
            "source_version",
            "this source_version was accepted before with different content; give a changed fact a \
             higher source_version",
        )),
        None => IngestResult::Rejected(FactError::new(
            RejectReason::SourceVersionOutOfOrder,
            "source_version",
            format!(
                "source_version must be higher than the latest accepted version ({latest_source_version}) \
                 of this fact"
            ),
        )),
    })
}

/// What the register holds about one person as of the sequence `rows` were read up to: the
/// person's own data (the latest person update; the default, no name, when there is none) and the
/// latest version of each benefit fact whose benefit type is one of `benefit_codes` (person events
/// that concern no single benefit are always included) and whose valid period overlaps
/// `overlapping`, retracted facts left out; ordered by benefit type, valid from, record id.
/// `rows` are every log row of the person up to that sequence (as records), in any order.
fn person_snapshot(
    rows: Vec<StoredRecord>,
    benefit_codes: &[String],
    overlapping: DateRange,
) -> Result<(PersonData, Vec<StoredRecord>), StoreError> {
    // The latest version of a fact is its row with the highest sequence. Person updates are the
    // person's own data, not records.
    let mut keep = vec![false; rows.len()];
    let mut person_row: Option<usize> = None;
    {
        let mut latest: HashMap<&str, usize> = HashMap::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let newest = if row.fact_type == FactType::Person {
                person_row.get_or_insert(i)
            } else {
                latest.entry(row.record_id.as_str()).or_insert(i)
            };
            if rows[*newest].seq < row.seq {
                *newest = i;
            }
        }
        for i in latest.into_values() {
            let row = &rows[i];
            let retracted = row.kind == RecordKind::Retraction;
            let covered = row.benefit_type.is_empty() || benefit_codes.contains(&row.benefit_type);
            let in_period = row.valid.is_some_and(|v| v.overlaps(&overlapping));
            keep[i] = !retracted && covered && in_period;
        }
    }
    let mut data = PersonData::default();
    let mut out = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        if Some(i) == person_row {
            match row.body {
                FactBody::Person(d) => data = d,
                _ => return Err(StoreError::Corrupt("register_log.body")),
            }
        } else if keep[i] {
            out.push(row);
        }
    }
    out.sort_by(|a, b| {
        (
            a.benefit_type.as_str(),
            a.valid.map(|v| v.from),
            a.record_id.as_str(),
        )
            .cmp(&(
                b.benefit_type.as_str(),
                b.valid.map(|v| v.from),
                b.record_id.as_str(),
            ))
    });
    Ok((data, out))
}

/// The first and last sequence accepted in one ingest transaction: the range whose facts are fanned
/// out to subscriptions (see `store::delivery::FAN_OUT_SQL`) before the transaction commits.
fn accepted_range(results: &[IngestResult]) -> Option<(i64, i64)> {
    let seqs = results.iter().filter_map(|r| match r {
        IngestResult::Accepted(v) => Some(to_i64(v.seq)),
        _ => None,
    });
    seqs.fold(None, |range, seq| match range {
        None => Some((seq, seq)),
        Some((lo, hi)) => Some((lo.min(seq), hi.max(seq))),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_rows_escape_what_copy_reads_specially() {
        let mut out = String::new();
        super::copy_row(
            &mut out,
            &[Some("a\tb"), None, Some("{\"x\":\"\\n\"}"), Some("c\r\nd")],
        );
        assert_eq!(out, "a\\tb\t\\N\t{\"x\":\"\\\\n\"}\tc\\r\\nd\n");
    }
}
