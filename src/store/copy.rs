//! PostgreSQL's binary `COPY`, its fastest bulk path (about twice an `UNNEST` insert here): every
//! value goes as its length and its bytes, so nothing in it is parsed or read as SQL. Used for the
//! register log, new fact heads and the disclosure log.

use sqlx::PgConnection;

/// Sends `data` to a `COPY … FROM STDIN (FORMAT binary)` statement, aborting the COPY if sending
/// fails.
pub(crate) async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    data: BinaryCopy,
) -> Result<(), sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    if let Err(e) = copy.send(data.finish()).await {
        let _ = copy.abort("lefi failed while sending the rows").await;
        return Err(e);
    }
    copy.finish().await?;
    Ok(())
}

/// Rows in PostgreSQL's binary COPY format: a header, then per row its number of fields and each
/// field as a big-endian 32-bit length (-1 for NULL) and its bytes in the column type's binary form
/// (`bigint` 8 bytes big-endian, `boolean` one byte, `text` its UTF-8, `bytea` itself), then a
/// trailer. The columns' types must be exactly these: PostgreSQL rejects the COPY otherwise.
pub(crate) struct BinaryCopy {
    buf: Vec<u8>,
}

impl BinaryCopy {
    /// The signature, no flags, no header extension.
    const HEADER: &'static [u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

    pub(crate) fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(Self::HEADER.len() + bytes + 2);
        buf.extend_from_slice(Self::HEADER);
        Self { buf }
    }

    /// Starts a row of `fields` fields.
    pub(crate) fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    fn field(&mut self, bytes: &[u8]) {
        // A field over 2 GiB cannot reach here (a request is at most a few MiB); were it to, the
        // length would be wrong and PostgreSQL would reject the COPY, storing nothing.
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    pub(crate) fn int8(&mut self, value: i64) {
        self.field(&value.to_be_bytes());
    }

    pub(crate) fn bool(&mut self, value: bool) {
        self.field(&[u8::from(value)]);
    }

    pub(crate) fn text(&mut self, value: &str) {
        self.field(value.as_bytes());
    }

    pub(crate) fn optional_text(&mut self, value: Option<&str>) {
        match value {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    pub(crate) fn optional_bytes(&mut self, value: Option<&[u8]>) {
        match value {
            Some(v) => self.field(v),
            None => self.null(),
        }
    }

    /// The data with its trailer.
    pub(crate) fn finish(mut self) -> Vec<u8> {
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
