//! SQLite's bulk statements for ingest: generated multi-row `VALUES` lists (anonymous `?`
//! placeholders only, every value bound) within SQLite's parameter limit.

use sqlx::SqliteConnection;

use crate::domain::clock::format_date;

use super::ingest::{FoundRecord, KnownPerson, LogRow, PersonRow, PersonSourceRow, RecordRow};
use super::person_state::StateRow;
use crate::store::tx::Dialect;

/// Rows per generated statement (16 columns × 500 rows stays far below SQLite's limit of 32,766
/// parameters).
const ROWS_PER_STATEMENT: usize = 500;

/// The SQLite upsert of fact heads (for [`write_records`]).
async fn upsert_records(conn: &mut SqliteConnection, rows: &[RecordRow]) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO register_records (record_id, source_system, source_id, person, latest_version, \
                 latest_seq, latest_source_version, retracted) VALUES {} \
             ON CONFLICT (record_id) DO UPDATE SET latest_version = excluded.latest_version, \
                 latest_seq = excluded.latest_seq, latest_source_version = excluded.latest_source_version, \
                 retracted = excluded.retracted",
            Dialect::Sqlite.values_list(chunk.len(), 8)
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

pub(super) async fn find_records(
    conn: &mut SqliteConnection,
    keys: &[(String, String)],
) -> Result<Vec<FoundRecord>, sqlx::Error> {
    let mut out = Vec::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH k (ss, sid) AS (VALUES {}) \
             SELECT r.record_id, r.source_system, r.source_id, r.person, r.latest_version, r.latest_seq, \
                    r.latest_source_version, r.retracted, l.fact_type, l.benefit_type, l.valid_from, \
                    l.valid_to, l.body \
             FROM k JOIN register_records r ON r.source_system = k.ss AND r.source_id = k.sid \
             JOIN register_log l ON l.seq = r.latest_seq",
            Dialect::Sqlite.values_list(chunk.len(), 2)
        );
        let mut q = sqlx::query_as::<_, FoundRecord>(sqlx::AssertSqlSafe(sql));
        for (ss, sid) in chunk {
            q = q.bind(ss).bind(sid);
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.push(r);
        }
    }
    Ok(out)
}

/// The known persons of `persons`, each with their `register_person_state` row (sequence and
/// state) when they have one.
pub(super) async fn find_persons(
    conn: &mut SqliteConnection,
    persons: &[String],
) -> Result<Vec<KnownPerson>, sqlx::Error> {
    let mut out = Vec::with_capacity(persons.len());
    for chunk in persons.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH k (p) AS (VALUES {}) SELECT r.person, s.seq, s.state FROM k \
             JOIN register_persons r ON r.person = k.p \
             LEFT JOIN register_person_state s ON s.person = r.person",
            Dialect::Sqlite.values_list(chunk.len(), 1)
        );
        let mut q = sqlx::query_as::<_, KnownPerson>(sqlx::AssertSqlSafe(sql));
        for p in chunk {
            q = q.bind(p);
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

pub(super) async fn find_person_sources(
    conn: &mut SqliteConnection,
    keys: &[(String, String)],
) -> Result<Vec<PersonSourceRow>, sqlx::Error> {
    let mut out = Vec::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH k (p, ss) AS (VALUES {}) \
             SELECT s.person, s.source_system, s.latest_version, s.latest_seq, s.latest_source_version \
             FROM k JOIN register_person_sources s ON s.person = k.p AND s.source_system = k.ss",
            Dialect::Sqlite.values_list(chunk.len(), 2)
        );
        let mut q = sqlx::query_as::<_, PersonSourceRow>(sqlx::AssertSqlSafe(sql));
        for (p, ss) in chunk {
            q = q.bind(p).bind(ss);
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

pub(super) async fn insert_log(conn: &mut SqliteConnection, rows: Vec<LogRow>) -> Result<(), sqlx::Error> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<LogRow> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        let sql = format!(
            "INSERT INTO register_log (seq, recorded_at, person, record_id, version, kind, retroactive, \
                 benefit_type, fact_type, topic, valid_from, valid_to, body, source_system, source_id, \
                 source_version, content_hash, wire) VALUES {}",
            Dialect::Sqlite.values_list(chunk.len(), 18)
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
                .bind(r.topic)
                .bind(r.valid_from)
                .bind(r.valid_to)
                .bind(r.body)
                .bind(r.source_system)
                .bind(r.source_id)
                .bind(r.source_version)
                .bind(r.content_hash)
                .bind(r.wire);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

pub(super) async fn write_records(
    conn: &mut SqliteConnection,
    new: &[RecordRow],
    changed: &[RecordRow],
) -> Result<(), sqlx::Error> {
    // One upsert serves both in SQLite (a plain insert is no cheaper there).
    for rows in [new, changed] {
        if !rows.is_empty() {
            upsert_records(conn, rows).await?;
        }
    }
    Ok(())
}

pub(super) async fn upsert_persons(
    conn: &mut SqliteConnection,
    rows: &[PersonRow],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO register_persons (person, name, protected_identity, date_of_death, created_seq, \
                 latest_seq) VALUES {} \
             ON CONFLICT (person) DO UPDATE SET name = excluded.name, \
                 protected_identity = excluded.protected_identity, date_of_death = excluded.date_of_death, \
                 latest_seq = excluded.latest_seq",
            Dialect::Sqlite.values_list(chunk.len(), 6)
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
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

pub(super) async fn upsert_person_sources(
    conn: &mut SqliteConnection,
    rows: &[PersonSourceRow],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO register_person_sources (person, source_system, latest_version, latest_seq, \
                 latest_source_version) VALUES {} \
             ON CONFLICT (person, source_system) DO UPDATE SET latest_version = excluded.latest_version, \
                 latest_seq = excluded.latest_seq, latest_source_version = excluded.latest_source_version",
            Dialect::Sqlite.values_list(chunk.len(), 5)
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
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Inserts or replaces persons' `register_person_state` rows.
pub(super) async fn upsert_person_states(
    conn: &mut SqliteConnection,
    rows: &[StateRow<'_>],
) -> Result<(), sqlx::Error> {
    // Three values a row: well inside SQLite's parameter limit.
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO register_person_state (person, seq, state) VALUES {} \
             ON CONFLICT (person) DO UPDATE SET seq = excluded.seq, state = excluded.state",
            Dialect::Sqlite.values_list(chunk.len(), 3)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (person, seq, state) in chunk {
            q = q.bind(*person).bind(*seq).bind(state.as_slice());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}
