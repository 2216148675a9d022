//! The server's memory under a slow reader and with idle streams: `lefi serve` in a child
//! process, so that the memory measured is the server's alone.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::snapshot::{SnapshotCount, fresh_stream};
use crate::client::ClientPem;
use crate::commands::bench::measure::status_kib;
use crate::config::TlsMaterial;

/// `lefi serve` on the benchmark's database in a child process of its own, so that what is
/// measured of it is the server's alone.
struct ServeChild {
    child: tokio::process::Child,
    pid: u32,
    channel: tonic::transport::Channel,
    addr: String,
    /// Holds the certificate files while the server runs.
    _dir: tempfile::TempDir,
}

impl ServeChild {
    /// Starts it with `extra` arguments to `lefi serve`; `what` names the run in errors.
    async fn start(
        database_url: &str,
        tls: &TlsMaterial,
        pem: &ClientPem,
        (what, extra): (&str, &[String]),
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let file = |name: &str, bytes: &[u8]| -> anyhow::Result<std::path::PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes)?;
            Ok(path)
        };
        let cert = file("server.pem", &tls.server_cert_pem)?;
        let key = file("server.key", &tls.server_key_pem)?;
        let ca = file("ca.pem", &tls.party_ca_pem)?;
        let free_port = || -> anyhow::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
        };
        let (port, admin_port) = (free_port()?, free_port()?);
        let child = tokio::process::Command::new(std::env::current_exe()?)
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
            .args(extra)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting `lefi serve` for the {what} run"))?;
        let pid = child.id().context("the server process has no id")?;
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
        Ok(Self {
            child,
            pid,
            channel,
            addr,
            _dir: dir,
        })
    }

    /// A field of the server process's `/proc/PID/status`, in KiB.
    fn status_kib(&self, field: &str) -> Option<u64> {
        status_kib(&self.pid.to_string(), field)
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        let _ = self.child.wait().await;
        Ok(())
    }
}

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
    let server = ServeChild::start(database_url, tls, pem, ("slow-reader", &[])).await?;
    let mut stream = fresh_stream(server.channel.clone(), 100).await?;
    let started = Instant::now();
    let mut count = SnapshotCount::default();
    while count.records < limit && count.snapshots < subscriptions {
        count.next(&mut stream, "the slow read").await?;
        let due = started + Duration::from_secs_f64(count.records as f64 / rate.max(1) as f64);
        tokio::time::sleep_until(due.into()).await;
    }
    let peak = server.status_kib("VmHWM:").unwrap_or(0);
    let end = server.status_kib("VmRSS:").unwrap_or(0);
    drop(stream);
    server.stop().await?;
    Ok((count.records, peak, end))
}

/// Starts `lefi serve` on the benchmark's database in a child process, opens `count` streams of
/// the party of `pem` (which has no subscriptions) that only hear heartbeats, 100 to an HTTP/2
/// connection, and reports the server process's resident memory per stream in KiB: its growth
/// from before the first stream to two seconds after the last.
pub(super) async fn idle_streams(
    database_url: &str,
    tls: &TlsMaterial,
    pem: &ClientPem,
    count: usize,
) -> anyhow::Result<f64> {
    // One party opens them all: its stream limit and request rate are raised to let it.
    let limits = [
        "--party-max-streams".to_string(),
        (count + 1).to_string(),
        "--party-rate-limit".to_string(),
        "100000".to_string(),
        "--party-rate-burst".to_string(),
        (count + 100).to_string(),
    ];
    let server = ServeChild::start(database_url, tls, pem, ("idle-stream", &limits)).await?;
    let mut channels = vec![server.channel.clone()];
    for _ in 1..(count / 100).max(1) {
        channels.push(crate::client::connect(&server.addr, pem, None).await?);
    }
    // The connections are open and the server has settled: the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = server.status_kib("VmRSS:").unwrap_or(0);
    let mut idle = Vec::with_capacity(count);
    for i in 0..count {
        let channel = channels[i % channels.len()].clone();
        let mut stream =
            crate::grpc::pb::lefi::v1::delivery_service_client::DeliveryServiceClient::new(channel)
                .stream(crate::grpc::pb::lefi::v1::StreamRequest {
                    cursor: String::new(),
                    max_batch_records: 0,
                    heartbeat_interval: Some(prost_types::Duration {
                        seconds: 15,
                        nanos: 0,
                    }),
                })
                .await?
                .into_inner();
        stream.message().await?;
        idle.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.status_kib("VmRSS:").unwrap_or(0);
    drop(idle);
    server.stop().await?;
    Ok(after.saturating_sub(before) as f64 / count.max(1) as f64)
}
