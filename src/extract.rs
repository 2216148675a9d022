//! Producing a statistics extract: the population read in batches, each batch's register records
//! as of one sequence turned into rows ([`crate::domain::statistics::extract`]) and written to
//! local files while their SHA-256 is computed — each table (episodes, panels, the data
//! dictionary) as CSV and as Parquet ([`parquet_file`]); the store then takes the files in, with
//! the order's EXTRACT step, in one transaction.
//!
//! Memory stays bounded by the batch: the population's serial numbers, one batch of records and
//! one Parquet row group per table are held, never the whole extract. The same order at the same
//! sequence gives the same bytes (rows are ordered by serial number, then benefit, case, dates;
//! the Parquet files carry no time).

mod parquet_file;

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::Date;

use crate::domain::Personnummer;
use crate::domain::clock::{Micros, format_date};
use crate::domain::register::versions::StoredRecord;
use crate::domain::statistics::coverage::{self, Coverage, YearMonth};
use crate::domain::statistics::extract::{
    EPISODE_VARIABLES, Kind, PANEL_VARIABLES, PERIOD_BENEFITS, Value, Variable, episode_values, has_periods,
    order_range, panel_values, person_rows,
};
use crate::store::register::Snapshot;
use crate::store::statistics::{ExtractFile, FileFacts, Order};
use crate::store::{Store, StoreError};
use parquet_file::ParquetFile;

/// Persons read from the register per query.
pub const BATCH: usize = 1_000;

/// The media type of the CSV files.
pub const CSV_MEDIA_TYPE: &str = "text/csv";

/// The manifest: what an extract holds (metadata only; it outlives the files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub order_id: String,
    pub register_sequence: u64,
    pub period_from: String,
    pub period_to: String,
    pub benefit_types: Vec<String>,
    pub population: u64,
    pub persons_with_data: u64,
    pub files: Vec<FileFacts>,
    pub produced_at: Micros,
    /// Per benefit: "periods" (episodes from quality-assured compensation periods) or
    /// "payments only".
    pub benefit_sources: Vec<(String, String)>,
    /// The coverage used: per benefit, each ordered month's coverage by the coverage rule on the
    /// day the extract was produced ([`coverage_used`]). Absent from manifests stored before it
    /// was recorded.
    #[serde(default)]
    pub coverage: Vec<CoverageUsed>,
}

/// One benefit's coverage over the ordered period when the extract was produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoverageUsed {
    pub benefit: String,
    /// The lowest of the months' coverage (0 to 1).
    pub lowest: f64,
    /// Every month of the period, oldest first.
    pub months: Vec<MonthUsed>,
}

/// One ordered month's coverage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthUsed {
    /// YYYY-MM.
    pub month: String,
    /// The expected share of its compensation days recorded (0 to 1).
    pub coverage: f64,
}

/// A benefit's coverage on `today`, from the register's payments: the completion curve and its
/// recent months (what SubmitOrder checks a period against).
pub async fn benefit_coverage(store: &Store, benefit: &str, today: Date) -> Result<Coverage, StoreError> {
    let payments = store.benefit_payments(benefit).await?;
    let days = coverage::recorded_days_from_payments(&payments);
    Ok(coverage::coverage(
        &days,
        YearMonth::of(today),
        coverage::MATURE_AFTER_MONTHS,
    ))
}

/// The coverage an extract of `benefits` over `period` uses on `today`: for each benefit, every
/// month of the period with its coverage by the rule ([`coverage::period_coverage`]), and the
/// lowest of them.
pub async fn coverage_used(
    store: &Store,
    benefits: &[String],
    period: (Date, Date),
    today: Date,
) -> Result<Vec<CoverageUsed>, StoreError> {
    let mut out = Vec::with_capacity(benefits.len());
    for benefit in benefits {
        let curve = benefit_coverage(store, benefit, today).await?;
        let months = coverage::period_coverage(&curve, YearMonth::of(period.0), YearMonth::of(period.1));
        out.push(CoverageUsed {
            benefit: benefit.clone(),
            lowest: months.iter().map(|m| m.coverage).fold(1.0, f64::min),
            months: months
                .iter()
                .map(|m| MonthUsed {
                    month: m.month.to_string(),
                    coverage: m.coverage,
                })
                .collect(),
        });
    }
    Ok(out)
}

/// Why an extract could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the extract's files: {0}")]
    File(#[from] std::io::Error),
    #[error("cannot write the extract's CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("cannot write the extract's Parquet: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),
    /// The task reading a batch of the register failed (it panicked or was cancelled).
    #[error("reading the register for the extract stopped: {0}")]
    Read(#[from] tokio::task::JoinError),
    /// A row's value does not fit its column's type (a bug in the producer, never input data).
    #[error("the extract's column {0} was given a value of another type")]
    Column(&'static str),
}

/// A writer that counts and hashes what passes through it.
struct Hashed<W: Write> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl Hashed<std::io::BufWriter<std::fs::File>> {
    /// A new file at `path`, buffered, counted and hashed as it is written.
    fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            inner: std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create(path)?),
            hash: Sha256::new(),
            bytes: 0,
        })
    }
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// One CSV file being written.
struct CsvFile {
    name: String,
    path: std::path::PathBuf,
    writer: csv::Writer<Hashed<std::io::BufWriter<std::fs::File>>>,
    rows: u64,
    /// Where each field's text is formatted (reused: no allocation per field).
    field: String,
}

impl CsvFile {
    fn create(dir: &Path, name: &str, header: &[&str]) -> Result<Self, ExtractError> {
        let path = dir.join(name);
        let hashed = Hashed::create(&path)?;
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(hashed);
        writer.write_record(header)?;
        Ok(Self {
            name: name.to_string(),
            path,
            writer,
            rows: 0,
            field: String::new(),
        })
    }

    /// One row of typed values, each written as its text.
    fn values(&mut self, values: &[Value<'_>]) -> Result<(), ExtractError> {
        for value in values {
            self.field.clear();
            // Writing into a String cannot fail.
            let _ = write!(self.field, "{value}");
            self.writer.write_field(self.field.as_bytes())?;
        }
        self.writer.write_record(None::<&[u8]>)?;
        self.rows += 1;
        Ok(())
    }

    fn finish(self) -> Result<ExtractFile, ExtractError> {
        let mut hashed = self.writer.into_inner().map_err(|e| e.into_error())?;
        hashed.flush()?;
        Ok(ExtractFile {
            facts: FileFacts {
                name: self.name,
                media_type: CSV_MEDIA_TYPE.to_string(),
                size_bytes: hashed.bytes,
                rows: self.rows,
                sha256: hex::encode(hashed.hash.finalize()),
            },
            path: self.path,
        })
    }
}

/// One table of the extract, written as `TABLE.csv` and `TABLE.parquet` side by side.
struct Table {
    csv: CsvFile,
    parquet: ParquetFile,
}

impl Table {
    fn create(dir: &Path, table: &str, variables: &'static [Variable]) -> Result<Self, ExtractError> {
        let header: Vec<&str> = variables.iter().map(|v| v.name).collect();
        Ok(Self {
            csv: CsvFile::create(dir, &format!("{table}.csv"), &header)?,
            parquet: ParquetFile::create(dir, &format!("{table}.parquet"), table, variables)?,
        })
    }

    fn row(&mut self, values: &[Value<'_>]) -> Result<(), ExtractError> {
        self.csv.values(values)?;
        self.parquet.row(values)
    }

    fn finish(self) -> Result<(ExtractFile, ExtractFile), ExtractError> {
        Ok((self.csv.finish()?, self.parquet.finish()?))
    }
}

/// A batch of the register being read by a task of its own; aborted if dropped before it ends.
struct Reading(tokio::task::JoinHandle<Result<Vec<Snapshot<StoredRecord>>, StoreError>>);

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The columns of the data dictionary itself (every one text).
const DICTIONARY_VARIABLES: &[Variable] = &[
    dictionary_column(
        "table",
        "The table: episodes, panels, or benefits (what each benefit delivers)",
    ),
    dictionary_column(
        "variable",
        "The variable's name (the column), or the benefit type code",
    ),
    dictionary_column(
        "type",
        "text, code, integer, date, YYYY-MM or decimal; for a benefit: its source",
    ),
    dictionary_column("parquet_type", "The column's type in the Parquet file"),
    dictionary_column("meaning", "What the variable holds"),
    dictionary_column("source", "Where it comes from"),
];

const fn dictionary_column(name: &'static str, meaning: &'static str) -> Variable {
    Variable {
        table: "dictionary",
        name,
        kind: Kind::Text,
        optional: false,
        meaning,
        source: "lefi",
    }
}

/// Produces the extract of `order` as of register sequence `sequence` into files under `dir`;
/// the manifest records `coverage` (from [`coverage_used`]) as the coverage used.
/// `progress(done, total)` is called after each batch of persons.
pub async fn produce(
    store: &Store,
    order: &Order,
    sequence: u64,
    dir: &Path,
    (produced_at, coverage): (Micros, Vec<CoverageUsed>),
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<(Vec<ExtractFile>, Manifest), ExtractError> {
    let population = store.order_population(&order.order_id).await?;
    let benefits = order.order.benefit_types.clone();
    let period = (order.order.period_from, order.order.period_to);
    let mut episodes = Table::create(dir, "episodes", EPISODE_VARIABLES)?;
    let mut panels = Table::create(dir, "panels", PANEL_VARIABLES)?;
    let total = population.len() as u64;
    let mut with_data = 0u64;
    let mut done = 0u64;
    // The next batch is read while this one is turned into rows and written, so that the database
    // (or SQLite's worker thread) and this task work at the same time; at most two batches are
    // held. A read still in flight when this returns (an error, or the caller gone) is aborted.
    let read = |batch: &'_ [(String, String)]| -> Result<Reading, ExtractError> {
        let persons = batch
            .iter()
            .map(|(_, stored)| crate::store::stored_person(stored, "statistics_population.person"))
            .collect::<Result<Vec<Personnummer>, StoreError>>()?;
        let store = store.clone();
        let benefits = benefits.clone();
        Ok(Reading(tokio::spawn(async move {
            store
                .released_snapshots(&persons, &benefits, order_range(period), sequence)
                .await
        })))
    };
    let mut batches = population.chunks(BATCH);
    let mut current = batches.next().map(|b| read(b).map(|r| (b, r))).transpose()?;
    while let Some((batch, mut reading)) = current.take() {
        let snapshots = (&mut reading.0).await??;
        current = batches.next().map(|b| read(b).map(|r| (b, r))).transpose()?;
        for ((serial, _), (_, records)) in batch.iter().zip(snapshots) {
            let rows = person_rows(&records, &benefits, period);
            if !rows.episodes.is_empty() || !rows.panels.is_empty() {
                with_data += 1;
            }
            for e in &rows.episodes {
                episodes.row(&episode_values(serial, e))?;
            }
            for p in &rows.panels {
                panels.row(&panel_values(serial, p))?;
            }
        }
        done += batch.len() as u64;
        progress(done, total);
    }
    let dictionary = dictionary(dir, &benefits)?;
    let (episodes_csv, episodes_parquet) = episodes.finish()?;
    let (panels_csv, panels_parquet) = panels.finish()?;
    let files = vec![
        episodes_csv,
        panels_csv,
        dictionary.0,
        episodes_parquet,
        panels_parquet,
        dictionary.1,
    ];
    let manifest = Manifest {
        order_id: order.order_id.clone(),
        register_sequence: sequence,
        period_from: format_date(period.0),
        period_to: format_date(period.1),
        benefit_sources: benefits
            .iter()
            .map(|b| (b.clone(), benefit_source(b).to_string()))
            .collect(),
        benefit_types: benefits,
        population: total,
        persons_with_data: with_data,
        files: files.iter().map(|f| f.facts.clone()).collect(),
        produced_at,
        coverage,
    };
    Ok((files, manifest))
}

/// The data dictionary (`dictionary.csv`, `dictionary.parquet`): every variable of the tables,
/// then what each of the order's benefits delivers.
fn dictionary(dir: &Path, benefits: &[String]) -> Result<(ExtractFile, ExtractFile), ExtractError> {
    let mut dictionary = Table::create(dir, "dictionary", DICTIONARY_VARIABLES)?;
    for v in EPISODE_VARIABLES.iter().chain(PANEL_VARIABLES) {
        dictionary.row(&[
            Value::Text(v.table),
            Value::Text(v.name),
            Value::Text(v.kind.as_str()),
            Value::Text(parquet_file::parquet_type(v)),
            Value::Text(v.meaning),
            Value::Text(v.source),
        ])?;
    }
    for benefit in benefits {
        let meaning = if has_periods(benefit) {
            "Episodes and panel days from quality-assured compensation periods; panel amounts from payments"
                .to_string()
        } else {
            format!(
                "No quality-assured compensation periods: payments only (no episodes; panel days empty). Benefits with periods: {}",
                PERIOD_BENEFITS.join(", ")
            )
        };
        dictionary.row(&[
            Value::Text("benefits"),
            Value::Text(benefit),
            Value::Text(benefit_source(benefit)),
            Value::Text(""),
            Value::Text(&meaning),
            Value::Text("register"),
        ])?;
    }
    dictionary.finish()
}

/// Deletes the files of statistics orders past their retention (and the population of orders
/// never delivered), at start and then whenever the day changes on the server's clock, until
/// `shutdown`. Each deletion is a step of the order's history by the server; a round that fails
/// (the database is away) is retried a second later.
pub async fn delete_expired_on_schedule(
    state: crate::state::AppState,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let clock = state.clock.clone();
    let what = "deleting statistics extracts past their retention";
    crate::state::on_each_new_day(clock, shutdown, what, |today| {
        let state = state.clone();
        async move {
            let now = state.clock.now_micros();
            let side = crate::domain::statistics::order::Side::Server;
            let deleted = state.store.purge_expired_orders(today, side, "lefi", now).await?;
            if !deleted.is_empty() {
                let ids: Vec<&str> = deleted.iter().map(|o| o.order_id.as_str()).collect();
                tracing::info!(orders = ?ids, "deleted statistics extracts past their retention");
            }
            Ok::<(), crate::store::StoreError>(())
        }
    })
    .await
}

/// How a benefit's data is delivered.
pub fn benefit_source(benefit: &str) -> &'static str {
    if has_periods(benefit) {
        "periods"
    } else {
        "payments only"
    }
}
