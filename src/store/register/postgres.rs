//! PostgreSQL's bulk statements for ingest: one array per column read with `UNNEST`, and `COPY`
//! for rows that cannot conflict.

use sqlx::PgConnection;

use crate::domain::clock::format_date;
use crate::store::copy::{BinaryCopy, copy_in};

use super::ingest::{FoundRecord, KnownPerson, LogRow, PersonRow, PersonSourceRow, RecordRow};
use super::person_state::StateRow;

/// The PostgreSQL upsert of changed fact heads (for [`write_records`]).
async fn upsert_records(conn: &mut PgConnection, rows: &[RecordRow]) -> Result<(), sqlx::Error> {
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

pub(super) async fn find_records(
    conn: &mut PgConnection,
    keys: &[(String, String)],
) -> Result<Vec<FoundRecord>, sqlx::Error> {
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
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows)
}

/// The known persons of `persons`, each with their `register_person_state` row (sequence and
/// state) when they have one.
pub(super) async fn find_persons(
    conn: &mut PgConnection,
    persons: &[String],
) -> Result<Vec<KnownPerson>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.person, s.seq, s.state FROM register_persons p \
         LEFT JOIN register_person_state s ON s.person = p.person \
         WHERE p.person = ANY($1::text[])",
    )
    .bind(persons)
    .fetch_all(&mut *conn)
    .await
}

pub(super) async fn find_person_sources(
    conn: &mut PgConnection,
    keys: &[(String, String)],
) -> Result<Vec<PersonSourceRow>, sqlx::Error> {
    let (p, ss): (Vec<&str>, Vec<&str>) = keys.iter().map(|(a, b)| (a.as_str(), b.as_str())).unzip();
    let rows: Vec<PersonSourceRow> = sqlx::query_as(
        "SELECT s.person, s.source_system, s.latest_version, s.latest_seq, s.latest_source_version \
         FROM UNNEST($1::text[], $2::text[]) AS k (p, ss) \
         JOIN register_person_sources s ON s.person = k.p AND s.source_system = k.ss",
    )
    .bind(p)
    .bind(ss)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows)
}

pub(super) async fn insert_log(conn: &mut PgConnection, rows: Vec<LogRow>) -> Result<(), sqlx::Error> {
    // COPY is PostgreSQL's fastest bulk path (about twice an UNNEST insert here), in its binary
    // format: every value goes as its length and its bytes, so nothing in it is parsed or read as
    // SQL, and the stored encoding travels as it is.
    let mut data = BinaryCopy::with_capacity(rows.len() * 900);
    for r in &rows {
        data.row(18);
        data.int8(r.seq);
        data.int8(r.recorded_at);
        data.text(&r.person);
        data.text(&r.record_id);
        data.int8(r.version);
        data.text(r.kind);
        data.bool(r.retroactive);
        data.text(&r.benefit_type);
        data.text(r.fact_type);
        data.text(r.topic);
        data.text(&r.valid_from);
        data.optional_text(r.valid_to.as_deref());
        data.text(&r.body);
        data.text(&r.source_system);
        data.text(&r.source_id);
        data.int8(r.source_version);
        data.text(&r.content_hash);
        data.optional_bytes(r.wire.as_deref());
    }
    copy_in(
        conn,
        "COPY register_log (seq, recorded_at, person, record_id, version, kind, retroactive, \
             benefit_type, fact_type, topic, valid_from, valid_to, body, source_system, source_id, \
             source_version, content_hash, wire) FROM STDIN (FORMAT binary)",
        data,
    )
    .await
}

pub(super) async fn write_records(
    conn: &mut PgConnection,
    new: &[RecordRow],
    changed: &[RecordRow],
) -> Result<(), sqlx::Error> {
    if !new.is_empty() {
        // New heads cannot conflict (they were looked up under the head lock): COPY them.
        let mut data = BinaryCopy::with_capacity(new.len() * 150);
        for r in new {
            data.row(8);
            data.text(&r.record_id);
            data.text(&r.source_system);
            data.text(&r.source_id);
            data.text(&r.person);
            data.int8(r.latest_version);
            data.int8(r.latest_seq);
            data.int8(r.latest_source_version);
            data.bool(r.retracted);
        }
        copy_in(
            conn,
            "COPY register_records (record_id, source_system, source_id, person, latest_version, \
                 latest_seq, latest_source_version, retracted) FROM STDIN (FORMAT binary)",
            data,
        )
        .await?;
    }
    if !changed.is_empty() {
        upsert_records(conn, changed).await?;
    }
    Ok(())
}

pub(super) async fn upsert_persons(conn: &mut PgConnection, rows: &[PersonRow]) -> Result<(), sqlx::Error> {
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
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn upsert_person_sources(
    conn: &mut PgConnection,
    rows: &[PersonSourceRow],
) -> Result<(), sqlx::Error> {
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
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Inserts or replaces persons' `register_person_state` rows.
pub(super) async fn upsert_person_states(
    conn: &mut PgConnection,
    rows: &[StateRow<'_>],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO register_person_state (person, seq, state) \
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[]) \
         ON CONFLICT (person) DO UPDATE SET seq = excluded.seq, state = excluded.state",
    )
    .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.2.as_slice()).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
