//! PostgreSQL's bulk statements for ingest: one array per column read with `UNNEST`, and `COPY`
//! for rows that cannot conflict.

use sqlx::PgConnection;

use crate::domain::clock::format_date;

use super::ingest::{FoundRecord, KnownPerson, LogRow, PersonRow, PersonSourceRow, RecordRow};

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

/// Sends `data` to a `COPY … FROM STDIN (FORMAT binary)` statement, aborting the COPY if sending
/// fails.
async fn copy_in(conn: &mut PgConnection, statement: &str, data: BinaryCopy) -> Result<(), sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    if let Err(e) = copy.send(data.finish()).await {
        let _ = copy.abort("ingest failed while sending rows").await;
        return Err(e);
    }
    copy.finish().await?;
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
/// Rows in PostgreSQL's binary COPY format: a header, then per row its number of fields and each
/// field as a big-endian 32-bit length (-1 for NULL) and its bytes in the column type's binary form
/// (`bigint` 8 bytes big-endian, `boolean` one byte, `text` its UTF-8, `bytea` itself), then a
/// trailer. The columns' types must be exactly these: PostgreSQL rejects the COPY otherwise.
struct BinaryCopy {
    buf: Vec<u8>,
}

impl BinaryCopy {
    /// The signature, no flags, no header extension.
    const HEADER: &'static [u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

    fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(Self::HEADER.len() + bytes + 2);
        buf.extend_from_slice(Self::HEADER);
        Self { buf }
    }

    /// Starts a row of `fields` fields.
    fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    fn field(&mut self, bytes: &[u8]) {
        // A field over 2 GiB cannot reach here (a request is at most a few MiB); were it to, the
        // length would be wrong and PostgreSQL would reject the COPY, storing nothing.
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn int8(&mut self, value: i64) {
        self.field(&value.to_be_bytes());
    }

    fn bool(&mut self, value: bool) {
        self.field(&[u8::from(value)]);
    }

    fn text(&mut self, value: &str) {
        self.field(value.as_bytes());
    }

    fn optional_text(&mut self, value: Option<&str>) {
        match value {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    fn optional_bytes(&mut self, value: Option<&[u8]>) {
        match value {
            Some(v) => self.field(v),
            None => self.null(),
        }
    }

    /// The data with its trailer.
    fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::BinaryCopy;

    #[test]
    fn binary_copy_rows_are_lengths_and_bytes_between_header_and_trailer() {
        let mut data = BinaryCopy::with_capacity(0);
        data.row(5);
        data.int8(258);
        data.text("a\tö");
        data.optional_text(None);
        data.bool(true);
        data.optional_bytes(Some(&[0, 255]));
        let bytes = data.finish();
        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend([0, 0, 0, 0, 0, 0, 0, 0]); // flags, header extension length
        expected.extend([0, 5]); // fields
        expected.extend([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2]); // 258 as bigint
        expected.extend([0, 0, 0, 4, b'a', b'\t', 0xc3, 0xb6]); // text: its UTF-8, unescaped
        expected.extend([0xff, 0xff, 0xff, 0xff]); // NULL
        expected.extend([0, 0, 0, 1, 1]); // true
        expected.extend([0, 0, 0, 2, 0, 255]); // bytea: its bytes
        expected.extend([0xff, 0xff]); // trailer
        assert_eq!(bytes, expected);
    }
}
