//! PostgreSQL's bulk statements for ingest: one array per column read with `UNNEST`, and `COPY`
//! for rows that cannot conflict.

use std::collections::HashSet;

use sqlx::PgConnection;

use crate::domain::clock::format_date;

use super::ingest::{FoundRecord, LogRow, PersonRow, PersonSourceRow, RecordRow};

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

pub(super) async fn find_persons(
    conn: &mut PgConnection,
    persons: &[String],
) -> Result<HashSet<String>, sqlx::Error> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT person FROM register_persons WHERE person = ANY($1::text[])")
            .bind(persons)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().map(|(p,)| p).collect())
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
    // COPY is PostgreSQL's fastest bulk path (about twice an UNNEST insert here); the data is
    // the text format, every value escaped, so nothing in it is read as SQL.
    let mut data = String::with_capacity(rows.len() * 600);
    for r in &rows {
        // bytea in COPY's text format: `\x` and the bytes in hex (the backslash escaped by copy_row).
        let wire = r.wire.as_ref().map(|bytes| format!("\\x{}", hex::encode(bytes)));
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
                Some(r.topic),
                Some(&r.valid_from),
                r.valid_to.as_deref(),
                Some(&r.body),
                Some(&r.source_system),
                Some(&r.source_id),
                Some(&r.source_version.to_string()),
                Some(&r.content_hash),
                wire.as_deref(),
            ],
        );
    }
    let mut copy = conn
        .copy_in_raw(
            "COPY register_log (seq, recorded_at, person, record_id, version, kind, retroactive, \
                 benefit_type, fact_type, topic, valid_from, valid_to, body, source_system, source_id, \
                 source_version, content_hash, wire) FROM STDIN (FORMAT text)",
        )
        .await?;
    if let Err(e) = copy.send(data.into_bytes()).await {
        let _ = copy.abort("ingest failed while sending rows").await;
        return Err(e);
    }
    copy.finish().await?;
    Ok(())
}

pub(super) async fn write_records(
    conn: &mut PgConnection,
    new: &[RecordRow],
    changed: &[RecordRow],
) -> Result<(), sqlx::Error> {
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
        let mut copy = conn
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
/// Appends one row of PostgreSQL's COPY text format: tab-separated, `\N` for NULL, backslash,
/// tab, newline and carriage return escaped.
fn copy_row(out: &mut String, values: &[Option<&str>]) {
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        match value {
            None => out.push_str("\\N"),
            Some(v) => push_escaped(out, v),
        }
    }
    out.push('\n');
}

/// Appends `value` with COPY's special characters escaped; most values have none, and go in whole.
fn push_escaped(out: &mut String, value: &str) {
    let special = |b: u8| matches!(b, b'\\' | b'\t' | b'\n' | b'\r');
    if !value.bytes().any(special) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_rows_escape_what_copy_reads_specially() {
        let mut out = String::new();
        super::copy_row(
            &mut out,
            &[
                Some("a\tb"),
                None,
                Some("{\"x\":\"\\n\"}"),
                Some("c\r\nd"),
                Some("plain åäö"),
            ],
        );
        assert_eq!(out, "a\\tb\t\\N\t{\"x\":\"\\\\n\"}\tc\\r\\nd\tplain åäö\n");
    }
}
