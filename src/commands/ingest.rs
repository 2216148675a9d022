//! `lefi ingest FILE.ndjson` (feeds the register through the admin API) and `lefi synth`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indicatif::ProgressBar;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::client::against;
use super::failure::with_request_id;
use super::output::progress_bar;
use crate::cli::{IngestArgs, SynthArgs};
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;

/// Requests read ahead of the server's answers.
const SEND_AHEAD: usize = 8_192;

/// One line sent and not yet answered.
struct Pending {
    line: u64,
    text: String,
}

/// A line that was refused, locally (malformed) or by the server.
struct Refused {
    line: u64,
    reason: String,
    field: String,
    message: String,
    text: String,
}

/// What a run of `lefi ingest` did.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    accepted: u64,
    unchanged: u64,
    rejected: u64,
    malformed: u64,
}

/// `lefi ingest`.
pub async fn run_ingest(args: IngestArgs) -> ExitCode {
    let json = args.connect.json;
    let work = |channel| ingest_file(channel, &args.file, json);
    match against(&args.connect, "https://localhost:50052", "ingest", work).await {
        Ok(tally) if tally.rejected + tally.malformed > 0 => ExitCode::FAILURE,
        Ok(_) => ExitCode::SUCCESS,
        Err((_, failure)) => {
            failure.print(json);
            ExitCode::FAILURE
        }
    }
}

/// `FILE.ndjson` → `FILE.rejected.ndjson`, next to it.
fn rejected_path(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ingest".to_string());
    file.with_file_name(format!("{stem}.rejected.ndjson"))
}

fn count_lines(file: &Path) -> anyhow::Result<u64> {
    let reader = BufReader::new(
        File::open(file).map_err(|e| anyhow::anyhow!("cannot read '{}': {e}", file.display()))?,
    );
    let mut n = 0;
    for chunk in reader.split(b'\n') {
        chunk?;
        n += 1;
    }
    Ok(n)
}

async fn ingest_file(channel: Channel, file: &Path, json: bool) -> anyhow::Result<Tally> {
    let total = count_lines(file)?;
    let progress = progress_bar(
        total,
        "{elapsed_precise} [{wide_bar}] {human_pos}/{human_len} lines  {per_sec}  eta {eta}",
        json,
    );

    let pending: Arc<Mutex<VecDeque<Pending>>> = Arc::new(Mutex::new(VecDeque::new()));
    let malformed: Arc<Mutex<Vec<Refused>>> = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel::<admin_pb::IngestRequest>(SEND_AHEAD);
    let reader = {
        let file = file.to_path_buf();
        let pending = pending.clone();
        let malformed = malformed.clone();
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || read_lines(&file, &tx, &pending, &malformed, &progress))
    };

    let started = Instant::now();
    let mut client = admin_pb::register_admin_service_client::RegisterAdminServiceClient::new(channel)
        .max_decoding_message_size(16 * 1024 * 1024);
    let response = client.ingest(ReceiverStream::new(rx)).await?;
    let headers = response.metadata().clone();
    let mut responses = response.into_inner();
    let rejected_file = rejected_path(file);
    let mut rejected_out: Option<BufWriter<File>> = None;
    let mut tally = Tally::default();
    let mut write_refused = |r: &Refused| -> anyhow::Result<()> {
        if rejected_out.is_none() {
            let f = File::create(&rejected_file)
                .map_err(|e| anyhow::anyhow!("cannot write '{}': {e}", rejected_file.display()))?;
            rejected_out = Some(BufWriter::new(f));
        }
        if let Some(out) = rejected_out.as_mut() {
            let line = serde_json::json!({
                "line": r.line,
                "reason": r.reason,
                "field": r.field,
                "message": r.message,
                "input": r.text,
            });
            writeln!(out, "{line}")?;
        }
        Ok(())
    };

    let stream_result: anyhow::Result<()> = async {
        while let Some(response) = responses
            .message()
            .await
            .map_err(|status| with_request_id(status, &headers))?
        {
            let Some(sent) = pending.lock().ok().and_then(|mut p| p.pop_front()) else {
                anyhow::bail!("the server answered a fact that was never sent");
            };
            progress.inc(1);
            match admin_pb::IngestOutcome::try_from(response.outcome) {
                Ok(admin_pb::IngestOutcome::Accepted) => tally.accepted += 1,
                Ok(admin_pb::IngestOutcome::Unchanged) => tally.unchanged += 1,
                _ => {
                    tally.rejected += 1;
                    write_refused(&Refused {
                        line: sent.line,
                        reason: pb::ErrorReason::try_from(response.reason)
                            .unwrap_or_default()
                            .as_str_name()
                            .to_string(),
                        field: response.field,
                        message: response.message,
                        text: sent.text,
                    })?;
                }
            }
            let local: Vec<Refused> = malformed
                .lock()
                .map(|mut m| std::mem::take(&mut *m))
                .unwrap_or_default();
            for r in &local {
                tally.malformed += 1;
                write_refused(r)?;
            }
        }
        Ok(())
    }
    .await;
    let read_result = reader
        .await
        .map_err(|e| anyhow::anyhow!("the file reader failed: {e}"))?;
    for r in malformed
        .lock()
        .map(|mut m| std::mem::take(&mut *m))
        .unwrap_or_default()
    {
        tally.malformed += 1;
        write_refused(&r)?;
    }
    if let Some(mut out) = rejected_out.take() {
        out.flush()?;
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64().max(1e-6);
    let answered = tally.accepted + tally.unchanged + tally.rejected;
    let unanswered = pending.lock().map(|p| p.len()).unwrap_or(0);
    read_result?;
    if json {
        // The convention of every --json output: camelCase keys, empty fields left out.
        let mut summary = serde_json::json!({
            "file": file.display().to_string(),
            "accepted": tally.accepted,
            "unchanged": tally.unchanged,
            "rejected": tally.rejected,
            "malformed": tally.malformed,
            "unanswered": unanswered,
            "seconds": elapsed,
            "factsPerSecond": answered as f64 / elapsed,
        });
        if tally.rejected + tally.malformed > 0 {
            summary["rejectedFile"] = rejected_file.display().to_string().into();
        }
        println!("{summary}");
    } else {
        println!(
            "{}: {} accepted, {} unchanged, {} rejected, {} malformed lines in {:.1} s ({:.0} facts/s)",
            file.display(),
            tally.accepted,
            tally.unchanged,
            tally.rejected,
            tally.malformed,
            elapsed,
            answered as f64 / elapsed
        );
        if tally.rejected + tally.malformed > 0 {
            println!(
                "rejected lines, with line number and reason: {}",
                rejected_file.display()
            );
        }
    }
    if let Err(e) = stream_result {
        if unanswered > 0 {
            eprintln!(
                "{unanswered} facts got no answer and may not be stored; run the same file again \
                 (ingest is idempotent)"
            );
        }
        return Err(e);
    }
    Ok(tally)
}

/// Reads and parses the file line by line on a blocking thread, sending each fact and recording it
/// as pending; malformed lines are set aside. Blank lines are skipped.
fn read_lines(
    file: &Path,
    tx: &mpsc::Sender<admin_pb::IngestRequest>,
    pending: &Mutex<VecDeque<Pending>>,
    malformed: &Mutex<Vec<Refused>>,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    let reader = BufReader::new(
        File::open(file).map_err(|e| anyhow::anyhow!("cannot read '{}': {e}", file.display()))?,
    );
    for (i, bytes) in reader.split(b'\n').enumerate() {
        let bytes = bytes.map_err(|e| anyhow::anyhow!("reading '{}': {e}", file.display()))?;
        let line = i as u64 + 1;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            progress.inc(1);
            continue;
        }
        match crate::ndjson::parse_fact_bytes(&bytes) {
            Ok(fact) => {
                if let Ok(mut p) = pending.lock() {
                    p.push_back(Pending {
                        line,
                        text: String::from_utf8_lossy(&bytes).trim_end().to_string(),
                    });
                }
                if tx
                    .blocking_send(admin_pb::IngestRequest { fact: Some(fact) })
                    .is_err()
                {
                    // The stream has ended (the server answered with an error); stop reading.
                    if let Ok(mut p) = pending.lock() {
                        p.pop_back();
                    }
                    return Ok(());
                }
            }
            Err(e) => {
                progress.inc(1);
                if let Ok(mut m) = malformed.lock() {
                    m.push(Refused {
                        line,
                        reason: "MALFORMED".to_string(),
                        field: String::new(),
                        message: e.to_string(),
                        text: String::from_utf8_lossy(&bytes).trim_end().to_string(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// `lefi synth`.
pub fn synth(args: SynthArgs) -> anyhow::Result<()> {
    let until = crate::domain::clock::parse_date(&args.until)
        .ok_or_else(|| anyhow::anyhow!("--until '{}' is not a date YYYY-MM-DD", args.until))?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => {
            Box::new(BufWriter::new(File::create(path).map_err(|e| {
                anyhow::anyhow!("cannot write '{}': {e}", path.display())
            })?))
        }
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let mut generator = crate::dev::synth::Synth::new(args.seed, until);
    let tour = match &args.sick_leave_for {
        Some(given) => {
            let person = crate::domain::Personnummer::parse(given, until).map_err(|e| {
                anyhow::anyhow!("--sick-leave-for is not a valid identity number ({e}); give the demo person serve --dev printed")
            })?;
            let facts = generator.sick_leave_for(&person).ok_or_else(|| {
                anyhow::anyhow!(
                    "--sick-leave-for takes only identity numbers from the test range (birth numbers 980-999, \
                     like the demo person serve --dev printed): synthetic facts are never made for a real person"
                )
            })?;
            Some(facts)
        }
        None => None,
    };
    let mut facts = 0u64;
    for _ in 0..args.persons {
        for fact in generator.next_person()? {
            let line = crate::ndjson::fact_to_line(&fact)?;
            writeln!(out, "{line}")?;
            facts += 1;
        }
    }
    let tour_facts = tour.as_ref().map_or(0, Vec::len);
    for fact in tour.into_iter().flatten() {
        writeln!(out, "{}", crate::ndjson::fact_to_line(&fact)?)?;
        facts += 1;
    }
    out.flush()?;
    let target = args
        .out
        .as_ref()
        .map_or_else(|| "standard output".to_string(), |p| p.display().to_string());
    eprintln!(
        "wrote {facts} synthetic facts for {} persons (seed {}, until {}) to {target}",
        args.persons, args.seed, args.until
    );
    if tour_facts > 0 {
        eprintln!("  including a new sick-pay case of {tour_facts} facts for the --sick-leave-for person");
    }
    Ok(())
}
