//! Files to and from an order: the population upload (64 KiB chunks, a progress bar, the bad
//! lines of a refused file), the extract (a spinner while it is produced) and the download (every
//! file of the manifest, resumed from what is already on disk, then checked against its SHA-256).

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic_types::StatusExt as _;

use super::{AdminClient, Api, view};
use crate::commands::failure::with_request_id;
use crate::commands::output::{print_message, progress_bar};
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;

/// The upload's chunk size (the proto leaves it to the client; 64 KiB keeps each message far
/// below the server's message limit).
const UPLOAD_CHUNK_BYTES: usize = 64 * 1024;

/// A progress bar over `total` bytes on stderr, hidden with `--json` (and by indicatif when
/// stderr is not a terminal).
fn byte_bar(total: u64, json: bool) -> ProgressBar {
    progress_bar(
        total,
        "{elapsed_precise} [{wide_bar}] {binary_bytes}/{binary_total_bytes}  {binary_bytes_per_sec}  {msg}",
        json,
    )
}

fn spinner(message: String, json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(message);
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}

/// Reads up to one chunk, filling it unless the file ends.
async fn read_chunk(file: &mut tokio::fs::File) -> std::io::Result<Vec<u8>> {
    let mut data = vec![0u8; UPLOAD_CHUNK_BYTES];
    let mut filled = 0;
    while filled < data.len() {
        let n = file.read(&mut data[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    data.truncate(filled);
    Ok(data)
}

/// `upload ORDER FILE`: streams the population file. The server takes it whole or not at all; a
/// refused file's bad lines are printed by number with their reason (the server never echoes an
/// identity number, and neither does this).
pub(super) async fn upload(
    mut api: Api,
    order_id: &str,
    file: &Path,
    key: &str,
    json: bool,
) -> anyhow::Result<()> {
    let unreadable = |e: std::io::Error| anyhow::anyhow!("cannot read '{}': {e}", file.display());
    let mut reader = tokio::fs::File::open(file).await.map_err(unreadable)?;
    let size = reader.metadata().await.map_err(unreadable)?.len();
    let side = api.side();
    let bar = byte_bar(size, json);
    bar.set_message("sending");

    // A read error must not end the request stream (the server would take a truncated file as
    // whole): the sender is kept and the call is dropped instead, which cancels it.
    let (tx, rx) = mpsc::channel::<pb::UploadPopulationRequest>(4);
    let (failed_tx, mut failed_rx) = oneshot::channel::<std::io::Error>();
    let sender = {
        let bar = bar.clone();
        let (order_id, key) = (order_id.to_string(), key.to_string());
        tokio::spawn(async move {
            let mut first = true;
            loop {
                let data = match read_chunk(&mut reader).await {
                    Ok(data) => data,
                    Err(e) => {
                        let _ = failed_tx.send(e);
                        std::future::pending::<()>().await;
                        return;
                    }
                };
                // The first chunk names the order and the key, also for an empty file.
                if data.is_empty() && !first {
                    return;
                }
                let len = data.len() as u64;
                let chunk = pb::UploadPopulationRequest {
                    order_id: if first { order_id.clone() } else { String::new() },
                    data,
                    idempotency_key: if first { key.clone() } else { String::new() },
                };
                if tx.send(chunk).await.is_err() {
                    return; // the call ended: its answer says why
                }
                bar.inc(len);
                first = false;
                if len < UPLOAD_CHUNK_BYTES as u64 {
                    return;
                }
            }
        })
    };
    let call = api.upload_population(ReceiverStream::new(rx));
    tokio::pin!(call);
    let answer = tokio::select! {
        answer = &mut call => answer,
        Ok(e) = &mut failed_rx => {
            sender.abort();
            bar.abandon();
            return Err(unreadable(e).context("the upload was cancelled; nothing was stored"));
        }
    };
    sender.abort();
    bar.finish_and_clear();
    let response = match answer {
        Ok(response) => response.into_inner(),
        Err(status) => {
            print_bad_lines(&status, json)?;
            return Err(status.into());
        }
    };
    print_message(json, &response, |response| {
        let columns = if response.extra_columns.is_empty() {
            String::new()
        } else {
            format!(" (further columns: {})", response.extra_columns.join(", "))
        };
        println!("population file received: {} persons{columns}", response.persons);
        if let Some(order) = &response.order {
            println!();
            view::print_order(order);
            if let Some(next) = view::next_step(order, side) {
                println!();
                println!("next: {next}");
            }
        }
        Ok(())
    })
}

/// The bad lines of a refused population file (POPULATION_FILE_INVALID), as `line N: reason` on
/// stderr, or one `{"line": N, "reason": …}` object a line on stdout with `--json`.
fn print_bad_lines(status: &Status, json: bool) -> anyhow::Result<()> {
    let Some(info) = status.get_details_error_info() else {
        return Ok(());
    };
    if info.reason != "POPULATION_FILE_INVALID" {
        return Ok(());
    }
    let violations = status
        .get_details_bad_request()
        .map(|b| b.field_violations)
        .unwrap_or_default();
    if !json {
        let all = info.metadata.get("bad_lines").cloned();
        let counted = match &all {
            Some(all) if all.parse::<usize>().ok() != Some(violations.len()) => {
                format!("{all} bad lines, the first {} shown", violations.len())
            }
            _ => format!("{} bad lines", violations.len()),
        };
        eprintln!("the population file was refused and nothing was stored ({counted}):");
    }
    for v in &violations {
        let line = v.field.strip_prefix("line ").unwrap_or(&v.field);
        if json {
            let number = line
                .parse::<u64>()
                .map_or_else(|_| serde_json::Value::from(line), Into::into);
            println!(
                "{}",
                serde_json::json!({ "line": number, "reason": v.description })
            );
        } else {
            eprintln!("  line {line}: {}", v.description);
        }
    }
    Ok(())
}

/// `admin orders extract ORDER [--sequence N]`: a spinner while the extract is produced, then its
/// manifest.
pub(super) async fn extract(
    client: &mut AdminClient,
    order_id: &str,
    sequence: u64,
    key: &str,
    json: bool,
) -> anyhow::Result<()> {
    let at = if sequence == 0 {
        "the register's head".to_string()
    } else {
        format!("register sequence {sequence}")
    };
    let spinner = spinner(format!("producing the extract of {order_id} at {at}"), json);
    let answer = client
        .produce_extract(admin_pb::ProduceExtractRequest {
            order_id: order_id.to_string(),
            idempotency_key: key.to_string(),
            register_sequence: sequence,
        })
        .await;
    spinner.finish_and_clear();
    let manifest = answer?.into_inner();
    print_message(json, &manifest, |manifest| {
        view::print_manifest(manifest);
        println!();
        println!(
            "next: check the files (lefi admin orders download {order_id} --dir DIR), then: lefi admin \
             orders deliver {order_id}"
        );
        Ok(())
    })
}

/// One file of a download: where it went and how it compared.
struct Fetched {
    name: String,
    path: PathBuf,
    size: u64,
    resumed_from: u64,
    sha256: String,
    matches: bool,
}

/// `download ORDER [--dir D]`: every file of the manifest into `dir`. A file already there is
/// resumed from its size (or only checked when complete); then every file's SHA-256 is compared
/// with the manifest's. Fails, naming the files, if any differs.
pub(super) async fn download(mut api: Api, order_id: &str, dir: &Path, json: bool) -> anyhow::Result<()> {
    let manifest = api.get_manifest(order_id).await?;
    if !manifest.files_available {
        anyhow::bail!(
            "the files of {order_id} were deleted after the retention period; only the manifest \
             remains (see the manifest command)"
        );
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create '{}': {e}", dir.display()))?;
    let mut targets = Vec::new();
    let mut present = 0u64;
    for f in &manifest.files {
        let path = file_path(dir, &f.name)?;
        let on_disk = tokio::fs::metadata(&path).await.map(|m| m.len()).unwrap_or(0);
        // A file longer than the manifest says is not a partial download of it: start over.
        let from = if on_disk > f.size_bytes { 0 } else { on_disk };
        present += from;
        targets.push((f, path, from));
    }
    let total: u64 = manifest.files.iter().map(|f| f.size_bytes).sum();
    let bar = byte_bar(total, json);
    bar.set_position(present);
    let mut fetched = Vec::new();
    for (f, path, from) in targets {
        bar.set_message(f.name.clone());
        if from < f.size_bytes || f.size_bytes == 0 {
            fetch(&mut api, order_id, f, &path, from, &bar).await?;
        }
        let sha256 = file_sha256(&path).await?;
        fetched.push(Fetched {
            name: f.name.clone(),
            matches: sha256 == f.sha256,
            sha256,
            size: f.size_bytes,
            resumed_from: from,
            path,
        });
    }
    bar.finish_and_clear();
    for f in &fetched {
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "file": f.name,
                    "path": f.path.display().to_string(),
                    "sizeBytes": f.size,
                    "resumedFrom": f.resumed_from,
                    "sha256": f.sha256,
                    "verified": f.matches,
                })
            );
            continue;
        }
        let how = match f.resumed_from {
            0 => String::new(),
            n if n == f.size => " (already complete)".to_string(),
            n => format!(" (resumed from byte {n})"),
        };
        let check = if f.matches {
            "SHA-256 matches the manifest".to_string()
        } else {
            format!("SHA-256 MISMATCH: {}", f.sha256)
        };
        println!("{:<16} {:>12} bytes  {check}{how}", f.name, f.size);
    }
    let bad: Vec<&Fetched> = fetched.iter().filter(|f| !f.matches).collect();
    if let Some(first) = bad.first() {
        let names: Vec<String> = bad.iter().map(|f| f.path.display().to_string()).collect();
        anyhow::bail!(
            "{} of the downloaded files do not match the manifest's SHA-256 ({}): they are damaged \
             or were changed on disk; delete them and run the download again (e.g. rm '{}')",
            bad.len(),
            names.join(", "),
            first.path.display()
        );
    }
    if !json {
        println!(
            "all {} files of {order_id} are in {} and match the manifest",
            fetched.len(),
            dir.display()
        );
    }
    Ok(())
}

/// Where a file of the manifest goes: its name in `dir`, refused if it would leave `dir`.
fn file_path(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let plain = Path::new(name)
        .file_name()
        .is_some_and(|n| n == std::ffi::OsStr::new(name));
    if !plain || name.starts_with('.') {
        anyhow::bail!("the manifest names a file '{name}' that is not a plain file name; not writing it");
    }
    Ok(dir.join(name))
}

/// Downloads `f` into `path` from byte `from` (appending to what is there).
async fn fetch(
    api: &mut Api,
    order_id: &str,
    f: &pb::ExtractFile,
    path: &Path,
    from: u64,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let cannot_write = |e: std::io::Error| anyhow::anyhow!("cannot write '{}': {e}", path.display());
    let mut out = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(from == 0)
        .open(path)
        .await
        .map_err(cannot_write)?;
    if from > 0 {
        out.set_len(from).await.map_err(cannot_write)?;
        tokio::io::AsyncSeekExt::seek(&mut out, std::io::SeekFrom::Start(from))
            .await
            .map_err(cannot_write)?;
    }
    let response = api
        .download_extract(pb::DownloadExtractRequest {
            order_id: order_id.to_string(),
            file_name: f.name.clone(),
            offset: from,
        })
        .await?;
    let headers = response.metadata().clone();
    let mut chunks = response.into_inner();
    let mut at = from;
    while let Some(chunk) = chunks
        .message()
        .await
        .map_err(|status| with_request_id(status, &headers))?
    {
        if chunk.offset != at {
            anyhow::bail!(
                "the server sent {} from byte {} where byte {at} was expected; run the download again",
                f.name,
                chunk.offset
            );
        }
        out.write_all(&chunk.data).await.map_err(cannot_write)?;
        at += chunk.data.len() as u64;
        bar.inc(chunk.data.len() as u64);
    }
    out.flush().await.map_err(cannot_write)?;
    out.sync_all().await.map_err(cannot_write)?;
    Ok(())
}

async fn file_sha256(path: &Path) -> anyhow::Result<String> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read '{}': {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buffer)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read '{}': {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_file_names_are_written() {
        let dir = Path::new("out");
        assert_eq!(file_path(dir, "episodes.csv").unwrap(), dir.join("episodes.csv"));
        for bad in ["../x.csv", "a/b.csv", "/etc/passwd", "..", ".hidden", ""] {
            assert!(file_path(dir, bad).is_err(), "{bad}");
        }
    }
}
