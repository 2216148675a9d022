//! Ingest: a batch of facts planned and stored in one transaction.
//!
//! The rules (what the next version of a fact is, what a re-sent version means) are the pure
//! functions of [`crate::domain::register::versions`]; this file looks up what they need, runs them
//! in order over the batch, and writes the result. Bulk statements differ per backend
//! ([`super::sqlite`], [`super::postgres`]); everything else is one text for both.

use std::collections::{HashMap, HashSet};

use super::log_writer::{LOG_CHUNK, LogWriter, insert_log};
use super::person_state::{BatchStates, PersonState, build_person_states, write_person_states};
use super::{LogView, postgres, sqlite};
use crate::domain::catalogue::BenefitType;
use crate::domain::clock::{Micros, format_date};
use crate::domain::register::versions::{
    EarlierVersion, FactHead, IngestResult, IngestedVersion, PlannedVersion, StoredRecord, plan_version,
    repeated_version,
};
use crate::domain::register::{FactBody, FactError, FactType, NewFact, PersonData, RecordKind, RejectReason};
use crate::store::tx::{Conn, on_conn};
use crate::store::{Store, StoreError, non_empty, to_i64, to_u64};

/// What an ingest transaction committed.
#[derive(Debug, Default)]
pub struct Ingested {
    /// Each fact's answer, in the order given.
    pub results: Vec<IngestResult>,
    /// The parties whose delivery histories grew (each once).
    pub parties: Vec<String>,
}

/// One row of `register_log` to insert.
#[derive(Debug, Clone)]
pub(super) struct LogRow {
    pub seq: i64,
    pub recorded_at: i64,
    pub person: String,
    pub record_id: String,
    pub version: i64,
    pub kind: &'static str,
    pub retroactive: bool,
    pub benefit_type: String,
    pub fact_type: &'static str,
    /// The kind of a decision or person event ([`FactBody::topic`]), empty otherwise.
    pub topic: &'static str,
    pub valid_from: String,
    pub valid_to: Option<String>,
    pub body: String,
    pub source_system: String,
    pub source_id: String,
    pub source_version: i64,
    pub content_hash: String,
    /// The version's stored encoding (`grpc::wire`); `None` for person updates.
    pub wire: Option<Vec<u8>>,
}

impl LogRow {
    /// The row as a read of the log sees it ([`LOG_COLUMNS`](super::LOG_COLUMNS)).
    pub(super) fn view(&self) -> LogView<'_> {
        LogView {
            seq: self.seq,
            recorded_at: self.recorded_at,
            person: &self.person,
            record_id: &self.record_id,
            version: self.version,
            kind: self.kind,
            retroactive: self.retroactive,
            benefit_type: &self.benefit_type,
            fact_type: self.fact_type,
            valid_from: &self.valid_from,
            valid_to: self.valid_to.as_deref(),
            body: &self.body,
            source_system: &self.source_system,
            source_id: &self.source_id,
            source_version: self.source_version,
            wire: self.wire.as_deref(),
        }
    }
}

/// The head of one benefit fact (`register_records`).
#[derive(Debug, Clone)]
pub(super) struct RecordRow {
    pub record_id: String,
    pub source_system: String,
    pub source_id: String,
    pub person: String,
    pub latest_version: i64,
    pub latest_seq: i64,
    pub latest_source_version: i64,
    pub retracted: bool,
}

/// One person to write to `register_persons`: a new person, or one whose data changed.
#[derive(Debug, Clone)]
pub(super) struct PersonRow {
    pub person: String,
    pub data: PersonData,
    pub created_seq: i64,
    pub latest_seq: i64,
}

/// The latest person-data version from one source system (`register_person_sources`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct PersonSourceRow {
    pub person: String,
    pub source_system: String,
    pub latest_version: i64,
    pub latest_seq: i64,
    pub latest_source_version: i64,
}

/// A person the register knows, with their `register_person_state` row when they have one.
#[derive(sqlx::FromRow)]
pub(super) struct KnownPerson {
    person: String,
    seq: Option<i64>,
    state: Option<Vec<u8>>,
}

/// A stored fact head (`register_records`) with what its latest version held (`register_log`), as
/// both backends' lookups return it.
#[derive(sqlx::FromRow)]
pub(super) struct FoundRecord {
    record_id: String,
    source_system: String,
    source_id: String,
    person: String,
    latest_version: i64,
    latest_seq: i64,
    latest_source_version: i64,
    retracted: bool,
    fact_type: String,
    benefit_type: String,
    valid_from: String,
    valid_to: Option<String>,
    body: String,
}

/// The state of one benefit fact while a batch is planned.
struct RecordState {
    head: FactHead,
    source: (String, String),
    latest_seq: i64,
    /// Whether the head is stored already (else it is new in this batch).
    stored: bool,
    /// Whether the batch changed it (and so it must be written).
    dirty: bool,
}

impl RecordState {
    fn found(r: FoundRecord) -> Result<Self, StoreError> {
        Ok(Self {
            head: FactHead {
                record_id: r.record_id,
                person: crate::store::stored_person(&r.person, "register_records.person")?,
                latest_version: u32::try_from(r.latest_version)
                    .map_err(|_| StoreError::Corrupt("register_records.latest_version"))?,
                latest_source_version: to_u64(
                    r.latest_source_version,
                    "register_records.latest_source_version",
                )?,
                retracted: r.retracted,
                fact_type: FactType::parse(&r.fact_type)
                    .ok_or(StoreError::Corrupt("register_log.fact_type"))?,
                benefit_type: r.benefit_type,
                valid: super::stored_valid(&r.valid_from, r.valid_to.as_deref())?,
                body_json: r.body,
            },
            source: (r.source_system, r.source_id),
            latest_seq: r.latest_seq,
            stored: true,
            dirty: false,
        })
    }

    fn row(self) -> RecordRow {
        RecordRow {
            record_id: self.head.record_id,
            source_system: self.source.0,
            source_id: self.source.1,
            person: self.head.person.as_storage().to_string(),
            latest_version: i64::from(self.head.latest_version),
            latest_seq: self.latest_seq,
            latest_source_version: to_i64(self.head.latest_source_version),
            retracted: self.head.retracted,
        }
    }
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

impl Store {
    /// Stores a batch of facts in one transaction and says, per fact and in order, what became of
    /// it. A rejected fact never blocks the others; on a storage error nothing is stored. The
    /// accepted facts are fanned out to the subscriptions they concern in the same transaction.
    ///
    /// Semantics (see `lefi.admin.v1.RegisterAdminService.Ingest`): a fact is identified by
    /// (source system, source id) — person updates by (source system, person); re-sending an
    /// accepted version with the same content is `Unchanged`, with other content
    /// `SOURCE_VERSION_CONFLICT`; a version below the latest that was never accepted is
    /// `SOURCE_VERSION_OUT_OF_ORDER`; a NEW for a known fact is stored as a CORRECTION; a
    /// CORRECTION or RETRACTION of an unknown fact is `RECORD_NOT_FOUND`. A benefit fact for a
    /// person the register does not know creates the person without a name.
    pub async fn ingest(&self, facts: Vec<NewFact>, now: Micros) -> Result<Vec<IngestResult>, StoreError> {
        Ok(self.ingest_and_fan_out(facts, now).await?.results)
    }

    /// [`Store::ingest`], also saying which parties' delivery histories the batch grew (whose
    /// streams to wake).
    pub async fn ingest_and_fan_out(&self, facts: Vec<NewFact>, now: Micros) -> Result<Ingested, StoreError> {
        if facts.is_empty() {
            return Ok(Ingested::default());
        }
        let benefit_types = self.benefit_types().await?;
        let started = std::time::Instant::now();
        let conn = self.write().await?;
        let begun = started.elapsed();
        let (mut conn, results) = run_ingest(conn, &facts, &benefit_types, now).await?;
        let written = started.elapsed();
        let parties = match accepted_range(&results) {
            Some((first, last)) => crate::store::delivery::fan_out(&mut conn, first, last).await?,
            None => Vec::new(),
        };
        let fanned_out = started.elapsed();
        conn.commit().await?;
        tracing::debug!(
            facts = facts.len(),
            begin_us = begun.as_micros() as u64,
            fan_out_us = (fanned_out - written).as_micros() as u64,
            commit_us = (started.elapsed() - fanned_out).as_micros() as u64,
            "ingest batch committed"
        );
        Ok(Ingested { results, parties })
    }
}

/// Plans and writes one batch inside the caller's transaction, which it gives back for the caller
/// to commit (on an error it is dropped, and so rolled back).
///
/// The log rows are appended [`LOG_CHUNK`] at a time by a task of their own while the next ones
/// are planned (see [`LogWriter`]): the database inserts one chunk while lefi plans and encodes
/// the next, on the other core.
async fn run_ingest(
    mut conn: Conn,
    facts: &[NewFact],
    benefit_types: &[BenefitType],
    now: Micros,
) -> Result<(Conn, Vec<IngestResult>), StoreError> {
    let t0 = std::time::Instant::now();
    let (last_seq, last_recorded_at) = lock_head(&mut conn).await?;
    // Recording times never go backwards along the log, even if the clock does.
    let recorded_at = now.max(last_recorded_at);

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
        let found = on_conn!(&mut conn,
            sqlite: |c| sqlite::find_records(c, &record_keys).await?,
            postgres: |c| postgres::find_records(c, &record_keys).await?,
        );
        for row in found {
            let state = RecordState::found(row)?;
            records.insert(state.source.clone(), state);
        }
    }
    let mut sources: HashMap<(String, String), (PersonSourceRow, bool)> = HashMap::new();
    if !source_keys.is_empty() {
        let found = on_conn!(&mut conn,
            sqlite: |c| sqlite::find_person_sources(c, &source_keys).await?,
            postgres: |c| postgres::find_person_sources(c, &source_keys).await?,
        );
        for row in found {
            sources.insert((row.person.clone(), row.source_system.clone()), (row, false));
        }
    }
    let known_persons = on_conn!(&mut conn,
        sqlite: |c| sqlite::find_persons(c, &person_keys).await?,
        postgres: |c| postgres::find_persons(c, &person_keys).await?,
    );
    // `None` for a person already stored whose data the batch did not change.
    let mut persons: HashMap<String, Option<PersonRow>> = HashMap::with_capacity(known_persons.len());
    // Each known person's current state; `None` where it must be built from the log.
    let mut states: HashMap<String, Option<PersonState>> = HashMap::with_capacity(known_persons.len());
    for known in known_persons {
        let state = match (known.seq, known.state) {
            (Some(seq), Some(state)) => PersonState::decode(seq, bytes::Bytes::from(state))?,
            _ => None,
        };
        persons.insert(known.person.clone(), None);
        states.insert(known.person, state);
    }

    let t_lookup = t0.elapsed();
    let mut seq = last_seq;
    let mut states = BatchStates::new(states);
    let mut writer = LogWriter::Idle(conn);
    // The planned log rows not yet handed to the writer.
    let mut log: Vec<LogRow> = Vec::new();
    let mut results = Vec::with_capacity(facts.len());
    let mut new_persons = 0i64;
    let mut new_facts = 0i64;
    let mut new_versions = 0i64;

    for fact in facts {
        if log.len() >= LOG_CHUNK {
            writer = writer.append(std::mem::take(&mut log)).await?;
        }
        let person = fact.person().as_storage().to_string();
        let source_version = to_i64(fact.source_version());
        let hash = fact.content_hash().to_string();

        if !fact.benefit_type().is_empty() && !benefit_types.iter().any(|b| b.code == fact.benefit_type()) {
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
            if let Some(existing) = existing
                .as_ref()
                .filter(|e| source_version <= e.latest_source_version)
            {
                let found;
                (writer, found) =
                    earlier_version(writer, &log, &record_id, &person, true, source_version).await?;
                let latest = to_u64(
                    existing.latest_source_version,
                    "register_person_sources.latest_source_version",
                )?;
                results.push(repeated_version(found.as_ref(), &hash, &record_id, true, latest));
                continue;
            }
            seq += 1;
            let (version, kind) = match &existing {
                Some(e) => (e.latest_version + 1, RecordKind::Correction),
                None => (1, RecordKind::New),
            };
            let row = LogRow {
                seq,
                recorded_at,
                person: person.clone(),
                record_id: record_id.clone(),
                version,
                kind: kind.as_str(),
                retroactive: fact.retroactive(),
                benefit_type: String::new(),
                fact_type: FactType::Person.as_str(),
                topic: "",
                valid_from: String::new(),
                valid_to: None,
                body: fact.body_json().to_string(),
                source_system: fact.source_system().to_string(),
                source_id: String::new(),
                source_version,
                content_hash: hash.clone(),
                wire: None,
            };
            states.apply(&row)?;
            log.push(row);
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
            let created_seq = match persons.get(&person) {
                // Stored before: the upsert keeps its creation sequence.
                Some(write) => write.as_ref().map_or(0, |w| w.created_seq),
                None => {
                    new_persons += 1;
                    seq
                }
            };
            persons.insert(
                person.clone(),
                Some(PersonRow {
                    person,
                    data: data.clone(),
                    created_seq,
                    latest_seq: seq,
                }),
            );
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
        let state = records.get(&key);
        if let Some(state) = state.filter(|s| {
            &s.head.person == fact.person() && fact.source_version() <= s.head.latest_source_version
        }) {
            let record_id = state.head.record_id.clone();
            let latest = state.head.latest_source_version;
            let found;
            (writer, found) =
                earlier_version(writer, &log, &record_id, &person, false, source_version).await?;
            results.push(repeated_version(found.as_ref(), &hash, &record_id, false, latest));
            continue;
        }
        let planned = match plan_version(
            fact,
            state.map(|s| &s.head),
            to_u64(seq + 1, "register_head.last_seq")?,
        ) {
            Ok(planned) => planned,
            Err(e) => {
                results.push(IngestResult::Rejected(e));
                continue;
            }
        };
        seq += 1;
        new_versions += 1;
        if planned.new_record {
            new_facts += 1;
        }
        let wire = encoded_version(fact, &planned)?;
        // A retraction without content keeps the topic of the version it retracts.
        let topic = match fact.body() {
            Some(body) => body.topic(),
            None => FactBody::from_json(planned.fact_type, &planned.body_json)
                .map_err(|_| StoreError::Corrupt("register_log.body"))?
                .topic(),
        };
        let row = LogRow {
            seq,
            recorded_at,
            person: person.clone(),
            record_id: planned.record_id.clone(),
            version: i64::from(planned.version),
            kind: planned.kind.as_str(),
            retroactive: fact.retroactive(),
            benefit_type: planned.benefit_type.clone(),
            fact_type: planned.fact_type.as_str(),
            topic,
            valid_from: planned.valid.map(|v| format_date(v.from)).unwrap_or_default(),
            valid_to: planned.valid.and_then(|v| v.to).map(format_date),
            body: planned.body_json.clone(),
            source_system: key.0.clone(),
            source_id: key.1.clone(),
            source_version,
            content_hash: hash,
            wire: Some(wire),
        };
        states.apply(&row)?;
        log.push(row);
        let stored = state.is_some_and(|s| s.stored);
        results.push(IngestResult::Accepted(IngestedVersion {
            seq: to_u64(seq, "register_head.last_seq")?,
            record_id: planned.record_id.clone(),
            version: planned.version,
            person_update: false,
        }));
        records.insert(
            key.clone(),
            RecordState {
                head: FactHead {
                    record_id: planned.record_id,
                    person: fact.person().clone(),
                    latest_version: planned.version,
                    latest_source_version: fact.source_version(),
                    retracted: planned.kind == RecordKind::Retraction,
                    fact_type: planned.fact_type,
                    benefit_type: planned.benefit_type,
                    valid: planned.valid,
                    body_json: planned.body_json,
                },
                source: key,
                latest_seq: seq,
                stored,
                dirty: true,
            },
        );
        if !persons.contains_key(&person) {
            new_persons += 1;
            persons.insert(
                person.clone(),
                Some(PersonRow {
                    person,
                    data: PersonData::default(),
                    created_seq: seq,
                    latest_seq: 0,
                }),
            );
        }
    }

    // The last chunk (a small batch's only one) on this task: nothing is left to plan beside it.
    let mut conn = writer.into_conn().await?;
    if !log.is_empty() {
        insert_log(&mut conn, log).await?;
    }
    let t_plan = t0.elapsed();
    let mut t_log = t_plan;
    let accepted = seq - last_seq;
    if accepted > 0 {
        // The persons' current states with this batch's versions applied; those to build from the
        // log are built now that their rows are in it.
        let (updated, rebuild) = states.finish();
        write_person_states(&mut conn, &updated).await?;
        if !rebuild.is_empty() {
            build_person_states(&mut conn, &rebuild).await?;
        }
        t_log = t0.elapsed();
        let (changed, new): (Vec<RecordState>, Vec<RecordState>) =
            records.into_values().filter(|s| s.dirty).partition(|s| s.stored);
        let new: Vec<RecordRow> = new.into_iter().map(RecordState::row).collect();
        let changed: Vec<RecordRow> = changed.into_iter().map(RecordState::row).collect();
        on_conn!(&mut conn,
            sqlite: |c| sqlite::write_records(c, &new, &changed).await?,
            postgres: |c| postgres::write_records(c, &new, &changed).await?,
        );
        let person_rows: Vec<PersonRow> = persons.into_values().flatten().collect();
        if !person_rows.is_empty() {
            on_conn!(&mut conn,
                sqlite: |c| sqlite::upsert_persons(c, &person_rows).await?,
                postgres: |c| postgres::upsert_persons(c, &person_rows).await?,
            );
        }
        let source_rows: Vec<PersonSourceRow> = sources
            .into_values()
            .filter(|(_, dirty)| *dirty)
            .map(|(row, _)| row)
            .collect();
        if !source_rows.is_empty() {
            on_conn!(&mut conn,
                sqlite: |c| sqlite::upsert_person_sources(c, &source_rows).await?,
                postgres: |c| postgres::upsert_person_sources(c, &source_rows).await?,
            );
        }
        finish_head(
            &mut conn,
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
        plan_and_log_us = (t_plan - t_lookup).as_micros() as u64,
        states_us = (t_log - t_plan).as_micros() as u64,
        rest_us = (t0.elapsed().saturating_sub(t_log)).as_micros() as u64,
        "ingest batch planned and written"
    );
    Ok((conn, results))
}

/// Takes the register head's row lock (PostgreSQL queues writers here until commit) and reads the
/// last sequence and its recording time.
pub(super) async fn lock_head(conn: &mut Conn) -> Result<(i64, i64), StoreError> {
    Ok(on_conn!(conn, |c| {
        sqlx::query_as(
            "UPDATE register_head SET last_seq = last_seq WHERE id = 1 RETURNING last_seq, last_recorded_at",
        )
        .fetch_one(c)
        .await?
    }))
}

/// The version stored earlier under `source_version`: from this batch's rows not yet handed to the
/// writer (rare, so a scan does), else from the log, once the rows handed to it are in (the
/// writer comes back with the answer).
async fn earlier_version(
    writer: LogWriter,
    pending: &[LogRow],
    record_id: &str,
    person: &str,
    person_update: bool,
    source_version: i64,
) -> Result<(LogWriter, Option<EarlierVersion>), StoreError> {
    let in_pending = pending
        .iter()
        .rev()
        .find(|r| r.record_id == record_id && r.person == person && r.source_version == source_version);
    if let Some(r) = in_pending {
        let found = earlier(r.seq, r.version, r.content_hash.clone())?;
        return Ok((writer, Some(found)));
    }
    let mut conn = writer.into_conn().await?;
    let found: Option<(i64, i64, String)> = if person_update {
        // Person updates share a record id per source system: find them through the person.
        let rows: Vec<(i64, i64, String, String, i64)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT seq, version, content_hash, record_id, source_version FROM register_log \
                 WHERE person = $1 AND fact_type = 'PERSON'",
            )
            .bind(person)
            .fetch_all(c)
            .await?
        });
        rows.into_iter()
            .find(|r| r.3 == record_id && r.4 == source_version)
            .map(|r| (r.0, r.1, r.2))
    } else {
        on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT seq, version, content_hash FROM register_log WHERE record_id = $1 AND source_version = $2",
            )
            .bind(record_id)
            .bind(source_version)
            .fetch_optional(c)
            .await?
        })
    };
    let found = found
        .map(|(seq, version, content_hash)| earlier(seq, version, content_hash))
        .transpose()?;
    Ok((LogWriter::Idle(conn), found))
}

/// An earlier version as stored.
fn earlier(seq: i64, version: i64, content_hash: String) -> Result<EarlierVersion, StoreError> {
    Ok(EarlierVersion {
        seq: to_u64(seq, "register_log.seq")?,
        version: u32::try_from(version).map_err(|_| StoreError::Corrupt("register_log.version"))?,
        content_hash,
    })
}

/// Moves the head past the batch and records the batch (`accepted` versions, person updates
/// included) for the statistics.
async fn finish_head(conn: &mut Conn, head: HeadUpdate, accepted: i64) -> Result<(), StoreError> {
    on_conn!(conn, |c| {
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
        .execute(&mut *c)
        .await?;
        sqlx::query("INSERT INTO register_batches (last_seq, recorded_at, accepted) VALUES ($1, $2, $3)")
            .bind(head.last_seq)
            .bind(head.last_recorded_at)
            .bind(accepted)
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

/// The first and last sequence accepted in one ingest transaction: the range whose facts are fanned
/// out to subscriptions before the transaction commits.
fn accepted_range(results: &[IngestResult]) -> Option<(u64, u64)> {
    let seqs = results.iter().filter_map(|r| match r {
        IngestResult::Accepted(v) => Some(v.seq),
        _ => None,
    });
    seqs.fold(None, |range, seq| match range {
        None => Some((seq, seq)),
        Some((lo, hi)) => Some((lo.min(seq), hi.max(seq))),
    })
}

/// The stored encoding of a planned benefit version (see `grpc::wire`): the record as a delivery
/// sends it, without the sequence and instant its commit gives it.
fn encoded_version(fact: &NewFact, planned: &PlannedVersion) -> Result<Vec<u8>, StoreError> {
    let body = match fact.body() {
        Some(body) => body.clone(),
        // A retraction without content keeps the content of the version it retracts.
        None => FactBody::from_json(planned.fact_type, &planned.body_json)
            .map_err(|_| StoreError::Corrupt("register_log.body"))?,
    };
    Ok(crate::grpc::wire::stored_form(StoredRecord {
        seq: 0,
        recorded_at: 0,
        person: fact.person().clone(),
        record_id: planned.record_id.clone(),
        version: planned.version,
        kind: planned.kind,
        retroactive: fact.retroactive(),
        benefit_type: non_empty(planned.benefit_type.clone()),
        fact_type: planned.fact_type,
        valid: planned.valid,
        body,
        source_system: String::new(),
        source_id: None,
        source_version: 0,
    }))
}
