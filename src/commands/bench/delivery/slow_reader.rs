//! The server's memory under a slow reader: `lefi serve` in a child process, so that the memory
//! measured is the server's alone.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::snapshot::{SnapshotCount, fresh_stream};
use crate::client::ClientPem;
use crate::commands::bench::measure::status_kib;
use crate::config::TlsMaterial;

/// Starts `lefi serve` on the benchmark's database in a child process, reads a fresh stream
/// at `rate` records per second until `limit` records or the end of the start snapshots, and
/// reports (records read, the server process's peak resident memory in KiB, its resident memory
/// when the read ended).
pub(super) async fn slow_reader(
    database_url: &str,
    tls: &TlsMaterial,
    pem: &ClientPem,
    subscriptions: usize,
    limit: u64,
    rate: u64,
) -> anyhow::Result<(u64, u64, u64)> {
    let dir = tempfile::tempdir()?;
    let file = |name: &str, bytes: &[u8]| -> anyhow::Result<std::path::PathBuf> {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes)?;
        Ok(path)
    };
    let cert = file("server.pem", &tls.server_cert_pem)?;
    let key = file("server.key", &tls.server_key_pem)?;
    let ca = file("ca.pem", &tls.party_ca_pem)?;
    let free_port =
        || -> anyhow::Result<u16> { Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()) };
    let (port, admin_port) = (free_port()?, free_port()?);
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["--log", "warn", "serve", "--database-url", database_url])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{admin_port}"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--client-ca")
        .arg(&ca)
        .arg("--operator-ca")
        .arg(&ca)
        .kill_on_drop(true)
        .spawn()
        .context("starting `lefi serve` for the slow-reader run")?;
    let pid = child.id().context("the server process has no id")?;
    let status_of = |field: &str| status_kib(&pid.to_string(), field);
    let addr = format!("https://localhost:{port}");
    let mut channel = None;
    for _ in 0..100 {
        if let Ok(c) = crate::client::connect(&addr, pem, None).await {
            channel = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let channel = channel.context("the server process did not start listening within 10 s")?;
    let mut stream = fresh_stream(channel, 100).await?;
    let started = Instant::now();
    let mut count = SnapshotCount::default();
    while count.records < limit && count.snapshots < subscriptions {
        count.next(&mut stream, "the slow read").await?;
        let due = started + Duration::from_secs_f64(count.records as f64 / rate.max(1) as f64);
        tokio::time::sleep_until(due.into()).await;
    }
    let peak = status_of("VmHWM:").unwrap_or(0);
    let end = status_of("VmRSS:").unwrap_or(0);
    drop(stream);
    child.start_kill()?;
    let _ = child.wait().await;
    Ok((count.records, peak, end))
}
