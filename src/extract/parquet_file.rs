//! One table of an extract as a Parquet file, written with the `parquet` crate's low-level writer
//! (no arrow): the schema comes from the data dictionary ([`Variable`]), rows are buffered by
//! column and written as a row group every [`ROW_GROUP_ROWS`] rows, so memory stays bounded by one
//! row group whatever the extract's size.
//!
//! The types follow the dictionary: text and codes as UTF-8 strings (`BYTE_ARRAY` / `STRING`),
//! integers as `INT64`, dates as `INT32` / `DATE`, months as `YYYY-MM` strings (as in the CSV),
//! and decimals (quarter days) as `INT64` / `DECIMAL(18, 2)`, so `12.75` in the CSV is 1275
//! hundredths here. Optional variables are `OPTIONAL` columns (null where the CSV is empty); all
//! others are `REQUIRED`.
//!
//! The bytes depend on the rows alone: the writer's name (`created_by`) is fixed, and no time or
//! key-value metadata is written, so the same extract at the same sequence is byte-identical.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{Compression, LogicalType, Repetition, Type as PhysicalType};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use sha2::Digest;

use super::{ExtractError, Hashed};
use crate::domain::statistics::extract::{Kind, Value, Variable};
use crate::store::statistics::{ExtractFile, FileFacts};

/// Rows per row group: the most a table holds in memory (about 40 bytes a row in the buffers,
/// plus the encoded pages of one row group; a few MiB).
pub const ROW_GROUP_ROWS: usize = 65_536;

/// The media type of Parquet files (IANA).
pub const MEDIA_TYPE: &str = "application/vnd.apache.parquet";

/// What the files say wrote them: fixed, so that the bytes do not change with the crate's version.
const CREATED_BY: &str = "lefi statistics extract";

/// Hundredths in a quarter day (DECIMAL scale 2).
const HUNDREDTHS_PER_QUARTER: i64 = 25;

/// The values of one column buffered for the next row group.
enum Values {
    /// Strings laid end to end, with where each ends (one allocation for the whole row group).
    Text {
        bytes: Vec<u8>,
        ends: Vec<usize>,
    },
    Int64(Vec<i64>),
    Int32(Vec<i32>),
}

/// One column being buffered: its values and, for an optional column, its definition levels
/// (1 = a value, 0 = null).
struct Column {
    variable: &'static Variable,
    values: Values,
    defined: Option<Vec<i16>>,
}

impl Column {
    fn new(variable: &'static Variable) -> Self {
        let values = match variable.kind {
            Kind::Text | Kind::Code | Kind::Month => Values::Text {
                bytes: Vec::new(),
                ends: Vec::new(),
            },
            Kind::Integer | Kind::Decimal => Values::Int64(Vec::new()),
            Kind::Date => Values::Int32(Vec::new()),
        };
        Self {
            variable,
            values,
            defined: variable.optional.then(Vec::new),
        }
    }

    /// Adds one value; a value that does not fit the column is an error (a bug in the producer).
    fn push(&mut self, value: &Value<'_>) -> Result<(), ExtractError> {
        if !value.fits(self.variable) {
            return Err(ExtractError::Column(self.variable.name));
        }
        if let Some(defined) = &mut self.defined {
            defined.push(i16::from(*value != Value::Empty));
        }
        match (&mut self.values, value) {
            (_, Value::Empty) => {}
            (Values::Text { bytes, ends }, Value::Text(s)) => {
                bytes.extend_from_slice(s.as_bytes());
                ends.push(bytes.len());
            }
            (Values::Text { bytes, ends }, Value::Month(m)) => {
                write!(bytes, "{:04}-{:02}", m.year, m.month)?;
                ends.push(bytes.len());
            }
            (Values::Int64(v), Value::Integer(n)) => v.push(*n),
            (Values::Int64(v), Value::QuarterDays(q)) => v.push(q.saturating_mul(HUNDREDTHS_PER_QUARTER)),
            (Values::Int32(v), Value::Date(d)) => v.push(epoch_days(*d)),
            _ => return Err(ExtractError::Column(self.variable.name)),
        }
        Ok(())
    }

    /// Writes the buffered values as this column's chunk of a row group, and empties the buffer.
    fn write(&mut self, writer: &mut ColumnWriter<'_>) -> Result<(), ExtractError> {
        let defined = self.defined.as_deref();
        match (&mut self.values, writer) {
            (Values::Text { bytes, ends }, ColumnWriter::ByteArrayColumnWriter(w)) => {
                let all = Bytes::from(std::mem::take(bytes));
                let mut start = 0;
                let values: Vec<ByteArray> = ends
                    .iter()
                    .map(|&end| {
                        let value = ByteArray::from(all.slice(start..end));
                        start = end;
                        value
                    })
                    .collect();
                w.write_batch(&values, defined, None)?;
                ends.clear();
            }
            (Values::Int64(v), ColumnWriter::Int64ColumnWriter(w)) => {
                w.write_batch(v, defined, None)?;
                v.clear();
            }
            (Values::Int32(v), ColumnWriter::Int32ColumnWriter(w)) => {
                w.write_batch(v, defined, None)?;
                v.clear();
            }
            _ => return Err(ExtractError::Column(self.variable.name)),
        }
        if let Some(defined) = &mut self.defined {
            defined.clear();
        }
        Ok(())
    }
}

/// Days since 1970-01-01 (Parquet's DATE).
fn epoch_days(day: time::Date) -> i32 {
    /// The Julian day number of 1970-01-01.
    const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;
    day.to_julian_day() - UNIX_EPOCH_JULIAN_DAY
}

/// The Parquet schema of a table whose columns are `variables`.
fn schema(table: &str, variables: &'static [Variable]) -> Result<Type, ExtractError> {
    let mut fields = Vec::with_capacity(variables.len());
    for v in variables {
        let (physical, logical) = match v.kind {
            Kind::Text | Kind::Code | Kind::Month => (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
            Kind::Integer => (PhysicalType::INT64, None),
            Kind::Date => (PhysicalType::INT32, Some(LogicalType::Date)),
            Kind::Decimal => (PhysicalType::INT64, Some(LogicalType::decimal(2, 18))),
        };
        let mut field = Type::primitive_type_builder(v.name, physical)
            .with_repetition(if v.optional {
                Repetition::OPTIONAL
            } else {
                Repetition::REQUIRED
            })
            .with_logical_type(logical);
        if v.kind == Kind::Decimal {
            field = field.with_precision(18).with_scale(2);
        }
        fields.push(Arc::new(field.build()?));
    }
    Ok(Type::group_type_builder(table).with_fields(fields).build()?)
}

/// The Parquet type of `variable`'s column, as the data dictionary names it.
pub(super) fn parquet_type(variable: &Variable) -> &'static str {
    match variable.kind {
        Kind::Text | Kind::Code | Kind::Month => "BYTE_ARRAY (STRING)",
        Kind::Integer => "INT64",
        Kind::Date => "INT32 (DATE)",
        Kind::Decimal => "INT64 (DECIMAL(18,2))",
    }
}

/// How every extract's Parquet files are written.
fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_created_by(CREATED_BY.to_string())
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::SNAPPY)
        // Chunk-level min/max only: page indexes add little to files that are read whole.
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

/// One Parquet file being written.
pub(super) struct ParquetFile {
    name: String,
    path: PathBuf,
    writer: SerializedFileWriter<Hashed<std::io::BufWriter<std::fs::File>>>,
    columns: Vec<Column>,
    buffered: usize,
    rows: u64,
}

impl ParquetFile {
    /// Creates `dir/name` for a table whose columns are `variables`.
    pub(super) fn create(
        dir: &Path,
        name: &str,
        table: &str,
        variables: &'static [Variable],
    ) -> Result<Self, ExtractError> {
        let path = dir.join(name);
        let hashed = Hashed::create(&path)?;
        let writer = SerializedFileWriter::new(
            hashed,
            Arc::new(schema(table, variables)?),
            Arc::new(properties()),
        )?;
        Ok(Self {
            name: name.to_string(),
            path,
            writer,
            columns: variables.iter().map(Column::new).collect(),
            buffered: 0,
            rows: 0,
        })
    }

    /// Adds one row (its values in the table's column order); writes a row group when
    /// [`ROW_GROUP_ROWS`] are buffered.
    pub(super) fn row(&mut self, values: &[Value<'_>]) -> Result<(), ExtractError> {
        if values.len() != self.columns.len() {
            return Err(ExtractError::Column("(row length)"));
        }
        // Checked whole before any column takes a value, so that the columns stay aligned.
        if let Some((column, _)) = self
            .columns
            .iter()
            .zip(values)
            .find(|(column, value)| !value.fits(column.variable))
        {
            return Err(ExtractError::Column(column.variable.name));
        }
        for (column, value) in self.columns.iter_mut().zip(values) {
            column.push(value)?;
        }
        self.buffered += 1;
        self.rows += 1;
        if self.buffered == ROW_GROUP_ROWS {
            self.write_row_group()?;
        }
        Ok(())
    }

    fn write_row_group(&mut self) -> Result<(), ExtractError> {
        let mut group = self.writer.next_row_group()?;
        for column in &mut self.columns {
            let Some(mut writer) = group.next_column()? else {
                return Err(ExtractError::Column(column.variable.name));
            };
            column.write(writer.untyped())?;
            writer.close()?;
        }
        group.close()?;
        self.buffered = 0;
        Ok(())
    }

    /// Writes the last row group and the footer; returns the file with its size, rows and SHA-256.
    pub(super) fn finish(mut self) -> Result<ExtractFile, ExtractError> {
        if self.buffered > 0 {
            self.write_row_group()?;
        }
        let mut hashed = self.writer.into_inner()?;
        hashed.flush()?;
        Ok(ExtractFile {
            facts: FileFacts {
                name: self.name,
                media_type: MEDIA_TYPE.to_string(),
                size_bytes: hashed.bytes,
                rows: self.rows,
                sha256: hex::encode(hashed.hash.finalize()),
            },
            path: self.path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::statistics::extract::{EPISODE_VARIABLES, PANEL_VARIABLES};
    use time::macros::date;

    #[test]
    fn dates_count_days_from_the_unix_epoch() {
        assert_eq!(epoch_days(date!(1970 - 01 - 01)), 0);
        assert_eq!(epoch_days(date!(1969 - 12 - 31)), -1);
        assert_eq!(epoch_days(date!(2024 - 01 - 09)), 19_731);
    }

    #[test]
    fn the_schemas_follow_the_dictionary() {
        let episodes = schema("episodes", EPISODE_VARIABLES).unwrap();
        let mut text = String::new();
        parquet::schema::printer::print_schema(&mut text_writer(&mut text), &episodes);
        for line in [
            "REQUIRED BYTE_ARRAY serial (STRING);",
            "REQUIRED INT64 case_no;",
            "REQUIRED INT32 period_from (DATE);",
            "REQUIRED INT64 net_days (DECIMAL(18,2));",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        let panels = schema("panels", PANEL_VARIABLES).unwrap();
        let mut text = String::new();
        parquet::schema::printer::print_schema(&mut text_writer(&mut text), &panels);
        assert!(text.contains("OPTIONAL INT64 gross_days;"), "{text}");
        assert!(text.contains("REQUIRED BYTE_ARRAY month (STRING);"), "{text}");
    }

    fn text_writer(out: &mut String) -> impl std::io::Write + '_ {
        struct W<'a>(&'a mut String);
        impl std::io::Write for W<'_> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.push_str(&String::from_utf8_lossy(buf));
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        W(out)
    }

    #[test]
    fn a_value_that_does_not_fit_its_column_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = ParquetFile::create(dir.path(), "e.parquet", "episodes", EPISODE_VARIABLES).unwrap();
        assert!(file.row(&[Value::Integer(1)]).is_err(), "too short");
        let mut row = [Value::Text("1"); 9];
        row[2] = Value::Text("not a number");
        assert!(matches!(file.row(&row), Err(ExtractError::Column(_))));
    }

    /// Writes `rows` panel rows (every third without days) to `dir/panels.parquet`.
    fn panels(dir: &Path, rows: usize) -> ExtractFile {
        let mut file = ParquetFile::create(dir, "panels.parquet", "panels", PANEL_VARIABLES).unwrap();
        for i in 0..rows {
            let serial = i.to_string();
            let days = (i % 3 != 0).then_some(i as i64 % 31);
            file.row(&[
                Value::Text(&serial),
                Value::Month(crate::domain::statistics::coverage::YearMonth::new(
                    2024,
                    1 + (i % 12) as u8,
                )),
                Value::Text("SJP"),
                days.map_or(Value::Empty, Value::Integer),
                days.map_or(Value::Empty, |d| Value::QuarterDays(d * 3)),
                Value::Integer(i as i64 * 100),
                Value::Integer(0),
            ])
            .unwrap();
        }
        file.finish().unwrap()
    }

    #[test]
    fn row_groups_are_bounded_and_the_bytes_repeat() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let rows = 2 * ROW_GROUP_ROWS + 17;
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = panels(a.path(), rows);
        let second = panels(b.path(), rows);
        assert_eq!(first.facts.sha256, second.facts.sha256);
        assert_eq!(first.facts.rows, rows as u64);
        let bytes = std::fs::read(&first.path).unwrap();
        assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), first.facts.sha256);
        assert_eq!(bytes.len() as u64, first.facts.size_bytes);
        let reader = SerializedFileReader::new(Bytes::from(bytes)).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.num_row_groups(), 3);
        assert!(
            meta.row_groups()
                .iter()
                .all(|g| g.num_rows() as usize <= ROW_GROUP_ROWS)
        );
        assert_eq!(meta.file_metadata().num_rows(), rows as i64);
        assert_eq!(meta.file_metadata().created_by(), Some(CREATED_BY));
        let last = reader.get_row_iter(None).unwrap().last().unwrap().unwrap();
        let serial = last.get_column_iter().next().unwrap().1.to_string();
        assert_eq!(serial, format!("\"{}\"", rows - 1));
    }
}
