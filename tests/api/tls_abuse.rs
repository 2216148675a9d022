//! TLS under abuse: a client that opens connections and never finishes their handshakes must not
//! hold up anyone else's (`lefi::tls::incoming`).
//!
//! The flood comes from 127.0.0.2 and the legitimate client from 127.0.0.1: Linux routes all of
//! 127.0.0.0/8 to the loopback interface, so a socket bound to 127.0.0.2 reaches the server's
//! 127.0.0.1 listener as another source address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lefi::grpc::pb::lefi::v1 as pb;
use lefi::tls::{HANDSHAKE_TIMEOUT, MAX_HANDSHAKES_PER_SOURCE};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp};

backend_tests!(
    stalled_handshakes_from_one_address_do_not_delay_another,
    over_the_source_limit_closed_at_once_stalled_closed_at_the_timeout,
);

/// The flood's source address.
const FLOOD_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The start of a TLS record that announces a 512-byte handshake message (a ClientHello), and
/// nothing after it: the server reads it and waits for the rest, which never comes.
const PARTIAL_CLIENT_HELLO: [u8; 5] = [0x16, 0x03, 0x01, 0x02, 0x00];

/// The server used to take a global limit of 256 handshakes with a 10 s timeout inside its accept
/// loop: once 256 had stalled it stopped accepting, the kernel's accept queue filled, and a new
/// client waited about 10 s (`open_stalled` fails on that server: it cannot even open the flood).
/// Now a client from another address must get through (TCP, TLS, HTTP/2 and a call) within this
/// bound, measured while the flood is open.
const PROMPT: Duration = Duration::from_secs(2);

async fn stalled_handshakes_from_one_address_do_not_delay_another(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let flood = flood_size(1_000);
    let (stalled, _closed) = open_stalled(FLOOD_SOURCE, app.party_addr, flood).await;

    let started = Instant::now();
    let me = tokio::time::timeout(PROMPT, async {
        pb::party_service_client::PartyServiceClient::new(app.party_channel(&app.certs.insurer).await)
            .who_am_i(pb::WhoAmIRequest {})
            .await
    })
    .await
    .unwrap_or_else(|_| {
        panic!("behind {flood} stalled handshakes from {FLOOD_SOURCE}, a client from 127.0.0.1 did not connect and call within {PROMPT:?}")
    })
    .unwrap()
    .into_inner();
    assert_eq!(me.party_id, app.insurer_id);
    eprintln!(
        "handshake and WhoAmI from 127.0.0.1 behind {flood} stalled handshakes from {FLOOD_SOURCE}: {:?}",
        started.elapsed()
    );
    drop(stalled);
    app.stop().await;
}

async fn over_the_source_limit_closed_at_once_stalled_closed_at_the_timeout(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let flood = flood_size(200);
    let over_limit = flood - MAX_HANDSHAKES_PER_SOURCE;
    let flood_start = Instant::now();
    let (stalled, mut closed) = open_stalled(FLOOD_SOURCE, app.party_addr, flood).await;

    // Every handshake started after `flood_start`, so none can time out before this deadline: a
    // connection closed before it was refused on admission.
    let no_timeout_before = flood_start + HANDSHAKE_TIMEOUT;
    for refused in 0..over_limit {
        tokio::time::timeout_at(no_timeout_before.into(), closed.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {refused} of the {over_limit} connections over the per-source limit of \
                     {MAX_HANDSHAKES_PER_SOURCE} were closed at once"
                )
            })
            .unwrap();
    }

    // The 32 admitted ones stall until their handshake times out, then are closed.
    for timed_out in 0..MAX_HANDSHAKES_PER_SOURCE {
        let at = tokio::time::timeout_at(
            (no_timeout_before + Duration::from_secs(10)).into(),
            closed.recv(),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "only {timed_out} of {MAX_HANDSHAKES_PER_SOURCE} stalled handshakes were closed \
                     within 10 s after the {HANDSHAKE_TIMEOUT:?} timeout"
            )
        })
        .unwrap();
        assert!(
            at >= no_timeout_before,
            "more than {over_limit} connections were closed before any handshake could time out: \
             the server admitted fewer than {MAX_HANDSHAKES_PER_SOURCE} from one source"
        );
    }
    drop(stalled);

    // Their places are free again: a real handshake from the flood's address gets through.
    tokio::time::timeout(PROMPT, handshake_from(FLOOD_SOURCE, &app))
        .await
        .unwrap_or_else(|_| panic!("a handshake from {FLOOD_SOURCE} after the flood took over {PROMPT:?}"));
    app.stop().await;
}

/// Opens `count` connections from `source` to `server` that stall mid-handshake. Returns the
/// connections' write halves (dropping them closes the connections) and a channel that receives,
/// for each connection, the moment the server closed it.
///
/// All of them must be connected before any handshake could time out: the kernel completes a
/// connection only while the listener's accept queue (128) has room, so this holds only if the
/// server keeps accepting during the flood instead of waiting for stalled handshakes to end.
async fn open_stalled(
    source: IpAddr,
    server: SocketAddr,
    count: usize,
) -> (
    Vec<tokio::net::tcp::OwnedWriteHalf>,
    mpsc::UnboundedReceiver<Instant>,
) {
    let (closed_tx, closed_rx) = mpsc::unbounded_channel();
    let mut writers = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    for opened in 0..count {
        let stream = tokio::time::timeout_at(deadline, connect_from(source, server))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {opened} of {count} connections from {source} were accepted within \
                     {HANDSHAKE_TIMEOUT:?}: the server stopped accepting while handshakes stalled"
                )
            });
        let (mut read, mut write) = stream.into_split();
        // A refused connection may already be closed: then the write fails, which is fine.
        let _ = write.write_all(&PARTIAL_CLIENT_HELLO).await;
        writers.push(write);
        let closed_tx = closed_tx.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            // The server sends nothing to a stalled handshake: the first read ends with the close
            // (EOF, or a reset when it closed without reading what was sent).
            let _ = read.read(&mut buf).await;
            let _ = closed_tx.send(Instant::now());
        });
    }
    (writers, closed_rx)
}

async fn connect_from(source: IpAddr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap_or_else(|e| {
        panic!("cannot bind to {source}: {e} (the test needs Linux, where 127.0.0.0/8 is all loopback)")
    });
    socket.connect(server).await.unwrap()
}

/// A complete mTLS handshake as the insurer from `source`, proven accepted by the server: with
/// TLS 1.3 the client finishes before the server has judged its certificate, so it also sends the
/// HTTP/2 preface and waits for the server's first bytes (its SETTINGS frame).
async fn handshake_from(source: IpAddr, app: &TestApp) {
    let ca = CertificateDer::from_pem_slice(app.certs.ca.cert_pem().as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let chain = lefi::tls::parse_certs("insurer", app.certs.insurer.cert_pem.as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(app.certs.insurer.key_pem.as_bytes()).unwrap();
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = connect_from(source, app.party_addr).await;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    // The client connection preface: the magic, then an empty SETTINGS frame.
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 0x04, 0, 0, 0, 0, 0]);
    tls.write_all(&preface).await.unwrap();
    let mut first = [0u8; 9];
    tls.read_exact(&mut first).await.unwrap();
    assert_eq!(first[3], 0x04, "the server's first HTTP/2 frame is its SETTINGS");
}

/// `wanted` connections, or fewer if the process may not open enough files: each stalled
/// connection holds one descriptor here (the server closes its side of all but 32), and the other
/// tests of the binary run alongside, so the flood gets half of what the limit leaves after 400.
/// At the common limit of 1,024 that is 312 connections (and the test says so), still more than
/// the 256 stalled handshakes that used to block the old accept loop.
fn flood_size(wanted: usize) -> usize {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        });
    match limit {
        Some(limit) if (limit.saturating_sub(400) / 2) < wanted => {
            let size = (limit.saturating_sub(400) / 2).max(MAX_HANDSHAKES_PER_SOURCE + 1);
            eprintln!("open-file limit {limit}: flooding with {size} connections instead of {wanted}");
            size
        }
        _ => wanted,
    }
}
