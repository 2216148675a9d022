//! Each person's current state in one row (`register_person_state`, migration 0019): the person's
//! own data and the latest version of each of their benefit facts that is not retracted, each with
//! its stored encoding, so that a delivery snapshot reads and decodes one value per person instead
//! of a row of sixteen columns per record.
//!
//! Ingest keeps a person's row in the transaction that appends their versions ([`PersonState::apply`]
//! on the row it read with the person). A person without a row (a register from before the table,
//! or a row deleted by hand) is built from their versions in the log ([`build_person_states`]): by
//! the ingest that next touches them, and for the whole register by the migration step
//! ([`Store::fill_person_states`]). Nothing else appends to the log: an older lefi refuses to start
//! on a database a newer one migrated (`StoreError::NewerSchema`), and the upgrade from 0.1.0 stops
//! every replica before migrating (migration 0021), so PostgreSQL no longer needs 0019's trigger
//! that deleted a row an older replica passed by (migration 0022).
//!
//! The layout is lefi's own and versioned by its first byte ([`FORMAT`]); a row of another format
//! is read as no row (the person is read from the log) and built again by the next
//! start. Integers little-endian; text and bytes as a `u32` length and the bytes:
//!
//! ```text
//! u8 FORMAT
//! u8 has_person_data  [text name, u8 protected_identity, u8 has_death [i32 death, Julian day]]
//! u32 records, each:  u64 seq, i64 recorded_at, text record_id, text kind, text fact_type,
//!                     text benefit_type ("" for none), u8 has_valid [i32 from, u8 has_to [i32 to]],
//!                     text topic, bytes encoding
//! ```

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use time::Date;

use super::ingest::LogRow;
use super::{CurrentByPerson, DELIVERED, LogView, encoded_version, log_rows};
use super::{postgres, sqlite};
use crate::domain::Personnummer;
use crate::domain::register::versions::{
    DeliveredVersion, EncodedVersion, Version as _, current_versions, snapshot_order,
};
use crate::domain::register::{DateRange, FactType, PersonData, RecordKind};
use crate::store::tx::{Conn, on_conn};
use crate::store::{Store, StoreError, non_empty, stored_person, to_i64, to_u64};

/// A person's `register_person_state` row to write: person, sequence, state.
pub(super) type StateRow<'a> = (&'a str, i64, Vec<u8>);

/// The layout's version. Raise it when the layout changes: rows of another version are then
/// ignored and built again.
const FORMAT: u8 = 1;

/// Persons built per transaction by [`Store::fill_person_states`].
const FILL_BATCH: i64 = 1_000;

/// A person's current state as `register_person_state` holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PersonState {
    /// The latest log row this state includes.
    pub seq: u64,
    /// The latest person update's data; `None` when the person has none.
    pub data: Option<PersonData>,
    /// The latest version of each benefit fact that is not retracted, in snapshot order.
    pub records: Vec<EncodedVersion>,
}

impl PersonState {
    /// The state after `row`, a version newer than every one it includes.
    pub fn apply(&mut self, row: &LogRow) -> Result<(), StoreError> {
        self.seq = self.seq.max(to_u64(row.seq, "register_log.seq")?);
        if row.fact_type == FactType::Person.as_str() {
            let data = super::person_body(&row.body)?;
            self.data = Some(data);
            return Ok(());
        }
        self.records.retain(|r| r.record_id != row.record_id);
        if row.kind == RecordKind::Retraction.as_str() {
            return Ok(());
        }
        // The row as a delivery reads it from the log (the topic in the body's place).
        let view = LogView {
            body: row.topic,
            ..row.view()
        };
        let Some(version) = encoded_version(&view)? else {
            return Err(StoreError::Corrupt("register_log.wire"));
        };
        let at = self
            .records
            .partition_point(|r| snapshot_order(r) < snapshot_order(&version));
        self.records.insert(at, version);
        Ok(())
    }

    /// The state from a person's versions in the log as a delivery reads them (in any order,
    /// superseded ones included), as of the latest of them; `None` when a current benefit version
    /// has no stored encoding (such a person is read from the log).
    fn from_log(rows: Vec<DeliveredVersion>) -> Option<Self> {
        let seq = rows.iter().map(|r| r.seq()).max()?;
        let has_person_data = rows.iter().any(|r| r.is_person_update());
        let (data, current) = current_versions(rows);
        let mut records = Vec::with_capacity(current.len());
        for version in current {
            match version {
                DeliveredVersion::Encoded(e) => records.push(e),
                DeliveredVersion::Parsed(_) => return None,
            }
        }
        records.sort_by(|a, b| snapshot_order(a).cmp(&snapshot_order(b)));
        Some(Self {
            seq,
            data: has_person_data.then_some(data),
            records,
        })
    }

    /// The person's data (the default, no name, when there is none) and records, as a delivery
    /// sends them.
    pub fn into_current(self) -> (PersonData, Vec<DeliveredVersion>) {
        (
            self.data.unwrap_or_default(),
            self.records.into_iter().map(DeliveredVersion::Encoded).collect(),
        )
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Writer(Vec::with_capacity(
            64 + self.records.iter().map(|r| 96 + r.encoded.len()).sum::<usize>(),
        ));
        out.u8(FORMAT);
        match &self.data {
            Some(d) => {
                out.u8(1);
                out.text(&d.name);
                out.u8(u8::from(d.protected_identity));
                out.optional_date(d.date_of_death);
            }
            None => out.u8(0),
        }
        out.len(self.records.len());
        for r in &self.records {
            out.0.extend_from_slice(&r.seq.to_le_bytes());
            out.0.extend_from_slice(&r.recorded_at.to_le_bytes());
            out.text(&r.record_id);
            out.text(r.kind.as_str());
            out.text(r.fact_type.as_str());
            out.text(r.benefit_type.as_deref().unwrap_or(""));
            match r.valid {
                Some(v) => {
                    out.u8(1);
                    out.date(v.from);
                    out.optional_date(v.to);
                }
                None => out.u8(0),
            }
            out.text(&r.topic);
            out.bytes(&r.encoded);
        }
        out.0
    }

    /// The state `seq` and `state` hold; `None` for a row of another layout version. The records'
    /// encodings share `state`'s memory.
    pub fn decode(seq: i64, state: Bytes) -> Result<Option<Self>, StoreError> {
        let mut r = Reader { buf: &state, at: 0 };
        if r.u8()? != FORMAT {
            return Ok(None);
        }
        let data = match r.u8()? {
            0 => None,
            _ => Some(PersonData {
                name: r.text()?.to_string(),
                protected_identity: r.u8()? != 0,
                date_of_death: r.optional_date()?,
            }),
        };
        let count = r.u32()? as usize;
        // Each record takes at least 40 bytes: a count beyond that is a damaged row.
        if count > state.len() / 40 {
            return Err(CORRUPT);
        }
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            let seq = r.u64()?;
            let recorded_at = r.u64()? as i64;
            let record_id = r.text()?.to_string();
            let kind = RecordKind::parse(r.text()?).ok_or(CORRUPT)?;
            let fact_type = FactType::parse(r.text()?).ok_or(CORRUPT)?;
            let benefit_type = non_empty(r.text()?.to_string());
            let valid = match r.u8()? {
                0 => None,
                _ => Some(DateRange {
                    from: r.date()?,
                    to: r.optional_date()?,
                }),
            };
            let topic = r.text()?.to_string();
            let (from, to) = r.span()?;
            records.push(EncodedVersion {
                seq,
                recorded_at,
                record_id,
                kind,
                benefit_type,
                valid,
                fact_type,
                topic,
                encoded: state.slice(from..to),
            });
        }
        Ok(Some(Self {
            seq: to_u64(seq, "register_person_state.seq")?,
            data,
            records,
        }))
    }
}

const CORRUPT: StoreError = StoreError::Corrupt("register_person_state.state");

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn len(&mut self, n: usize) {
        // A state is at most a few MiB (a person's facts), far below 4 GiB.
        self.0
            .extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.0.extend_from_slice(v);
    }
    fn text(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    fn date(&mut self, d: Date) {
        self.0.extend_from_slice(&d.to_julian_day().to_le_bytes());
    }
    fn optional_date(&mut self, d: Option<Date>) {
        match d {
            Some(d) => {
                self.u8(1);
                self.date(d);
            }
            None => self.u8(0),
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(CORRUPT)?;
        let taken = &self.buf[self.at..end];
        self.at = end;
        Ok(taken)
    }
    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| CORRUPT)?))
    }
    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| CORRUPT)?))
    }
    /// Where the next length-prefixed bytes lie in the buffer.
    fn span(&mut self) -> Result<(usize, usize), StoreError> {
        let n = self.u32()? as usize;
        let from = self.at;
        self.take(n)?;
        Ok((from, self.at))
    }
    fn text(&mut self) -> Result<&'a str, StoreError> {
        let (from, to) = self.span()?;
        std::str::from_utf8(&self.buf[from..to]).map_err(|_| CORRUPT)
    }
    fn date(&mut self) -> Result<Date, StoreError> {
        let day = i32::from_le_bytes(self.take(4)?.try_into().map_err(|_| CORRUPT)?);
        Date::from_julian_day(day).map_err(|_| CORRUPT)
    }
    fn optional_date(&mut self) -> Result<Option<Date>, StoreError> {
        match self.u8()? {
            0 => Ok(None),
            _ => Ok(Some(self.date()?)),
        }
    }
}

impl Store {
    /// The current states of `persons` from `register_person_state`, keyed by person, for the
    /// persons whose row answers as of `as_of` (its latest version is at or below it: versions only
    /// follow it, and a row is deleted when a version it lacks is appended); and the persons it
    /// does not answer for (no row, a newer row, a row of another layout), to be read otherwise.
    pub(super) async fn person_states<'a>(
        &self,
        persons: &[&'a str],
        as_of: u64,
        wanted: &HashMap<&'a str, &'a Personnummer>,
    ) -> Result<(CurrentByPerson<'a>, Vec<&'a str>), StoreError> {
        let mut conn = self.read().await?;
        let sql = format!(
            "SELECT person, seq, state FROM register_person_state WHERE person IN ({})",
            conn.dialect().in_list(persons.len()),
        );
        let mut found: CurrentByPerson<'a> = HashMap::with_capacity(persons.len());
        on_conn!(&mut conn, |c| {
            use futures::TryStreamExt as _;
            let query = persons
                .iter()
                .fold(sqlx::query(sqlx::AssertSqlSafe(sql.as_str())), |q, person| {
                    q.bind(*person)
                });
            let mut fetched = query.fetch(c);
            while let Some(raw) = fetched.try_next().await? {
                let (person, seq, state): (&str, i64, Vec<u8>) = sqlx::FromRow::from_row(&raw)?;
                let Some((key, _)) = wanted.get_key_value(person) else {
                    return Err(StoreError::Corrupt("register_person_state.person"));
                };
                if to_u64(seq, "register_person_state.seq")? > as_of {
                    continue;
                }
                if let Some(state) = PersonState::decode(seq, bytes::Bytes::from(state))? {
                    found.insert(*key, state.into_current());
                }
            }
        });
        let missing = persons
            .iter()
            .filter(|p| !found.contains_key(*p))
            .copied()
            .collect();
        Ok((found, missing))
    }

    /// Builds the missing rows of `register_person_state` for every person in the register, in
    /// transactions of 1,000 persons that each hold the register's head lock (so no ingest runs
    /// between reading a person's versions and writing their row). Run by [`Store::migrate`];
    /// returns how many rows it wrote.
    pub async fn fill_person_states(&self) -> Result<u64, StoreError> {
        let (mut after, mut written) = (String::new(), 0u64);
        loop {
            let mut conn = self.write().await?;
            super::ingest::lock_head(&mut conn).await?;
            let persons: Vec<String> = on_conn!(&mut conn, |c| {
                sqlx::query_scalar(
                    "SELECT p.person FROM register_persons p WHERE p.person > $1 AND NOT EXISTS \
                         (SELECT 1 FROM register_person_state s WHERE s.person = p.person) \
                     ORDER BY p.person LIMIT $2",
                )
                .bind(&after)
                .bind(FILL_BATCH)
                .fetch_all(c)
                .await?
            });
            let Some(last) = persons.last() else {
                break;
            };
            after = last.clone();
            written += build_person_states(&mut conn, &persons).await?;
            conn.commit().await?;
        }
        Ok(written)
    }
}

/// Builds and writes the `register_person_state` rows of `persons` from their versions in the log,
/// inside the caller's transaction, which must hold the register's head lock. A person with a
/// benefit version without a stored encoding gets no row. Returns how many rows it wrote.
pub(super) async fn build_person_states(conn: &mut Conn, persons: &[String]) -> Result<u64, StoreError> {
    let mut states: Vec<(String, PersonState)> = Vec::with_capacity(persons.len());
    for chunk in persons.chunks(500) {
        let parsed = chunk
            .iter()
            .map(|p| stored_person(p, "register_persons.person"))
            .collect::<Result<Vec<Personnummer>, _>>()?;
        let wanted: HashMap<&str, &Personnummer> = chunk.iter().map(String::as_str).zip(&parsed).collect();
        let keys: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let rows = log_rows(conn, &keys, u64::MAX, DELIVERED, &wanted).await?;
        for (person, rows) in rows {
            if let Some(state) = PersonState::from_log(rows) {
                states.push((person.to_string(), state));
            }
        }
    }
    write_person_states(conn, &states).await?;
    Ok(states.len() as u64)
}

/// The current states of the persons a batch appends to, each kept up to date as the batch's rows
/// are planned: from the state read with the person, or an empty one for a person new in this
/// batch; and the persons whose state must be built from the log instead (known, but without a
/// state), once the batch's rows are in it.
pub(super) struct BatchStates {
    /// The known persons' states as read, until the batch first appends to them.
    known: HashMap<String, Option<PersonState>>,
    updated: HashMap<String, PersonState>,
    rebuild: HashSet<String>,
}

impl BatchStates {
    pub(super) fn new(known: HashMap<String, Option<PersonState>>) -> Self {
        Self {
            known,
            updated: HashMap::new(),
            rebuild: HashSet::new(),
        }
    }

    /// Applies a row the batch appends (rows in sequence order).
    pub(super) fn apply(&mut self, row: &LogRow) -> Result<(), StoreError> {
        if let Some(state) = self.updated.get_mut(&row.person) {
            return state.apply(row);
        }
        match self.known.remove(&row.person) {
            Some(None) => {
                self.rebuild.insert(row.person.clone());
            }
            // Already listed for building (its first row removed it from `known`).
            None if self.rebuild.contains(&row.person) => {}
            found => {
                let mut state = found.flatten().unwrap_or_default();
                state.apply(row)?;
                self.updated.insert(row.person.clone(), state);
            }
        }
        Ok(())
    }

    /// The states to write, and the persons to build from the log.
    pub(super) fn finish(self) -> (Vec<(String, PersonState)>, Vec<String>) {
        (
            self.updated.into_iter().collect(),
            self.rebuild.into_iter().collect(),
        )
    }
}

/// Writes (inserts or replaces) persons' `register_person_state` rows.
pub(super) async fn write_person_states(
    conn: &mut Conn,
    states: &[(String, PersonState)],
) -> Result<(), StoreError> {
    if states.is_empty() {
        return Ok(());
    }
    let encoded: Vec<StateRow<'_>> = states
        .iter()
        .map(|(person, state)| (person.as_str(), to_i64(state.seq), state.encode()))
        .collect();
    on_conn!(conn,
        sqlite: |c| sqlite::upsert_person_states(c, &encoded).await?,
        postgres: |c| postgres::upsert_person_states(c, &encoded).await?,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(seq: u64, record_id: &str, benefit: &str, from: Date) -> EncodedVersion {
        EncodedVersion {
            seq,
            recorded_at: 1_700_000_000_000_000 + seq as i64,
            record_id: record_id.to_string(),
            kind: RecordKind::New,
            benefit_type: non_empty(benefit.to_string()),
            valid: Some(DateRange {
                from,
                to: (seq % 2 == 0).then(|| from.next_day().unwrap()),
            }),
            fact_type: FactType::Decision,
            topic: "GRANTED".to_string(),
            encoded: Bytes::from(vec![seq as u8; seq as usize]),
        }
    }

    #[test]
    fn a_state_reads_back_as_it_was_written() {
        let day = time::macros::date!(2026 - 03 - 01);
        let state = PersonState {
            seq: 9,
            data: Some(PersonData {
                name: "Åsa Öberg".to_string(),
                protected_identity: true,
                date_of_death: Some(day),
            }),
            records: vec![
                version(3, "r1", "SJP", day),
                version(4, "r2", "", day),
                version(9, "r3", "TFP", day),
            ],
        };
        let bytes = Bytes::from(state.encode());
        assert_eq!(PersonState::decode(9, bytes.clone()).unwrap(), Some(state));
        let empty = PersonState::default();
        assert_eq!(
            PersonState::decode(0, Bytes::from(empty.encode())).unwrap(),
            Some(empty)
        );
        // Another layout version is no state; a cut row is damaged, never a panic.
        let mut other = bytes.to_vec();
        other[0] = FORMAT + 1;
        assert_eq!(PersonState::decode(9, Bytes::from(other)).unwrap(), None);
        for cut in 1..bytes.len() {
            assert!(
                PersonState::decode(9, bytes.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
    }
}
