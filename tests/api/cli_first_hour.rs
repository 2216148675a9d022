//! The command line as a new integrator meets it (issue 14, items 19–24): the common mistakes named
//! with what to do, `--json` errors included, logs without colour codes in files and all JSON with
//! `--log-format json`, configuration problems all at once by origin with exit code 64,
//! `client stream --follow` across a server restart, and `serve --dev` with a separate operator CA
//! that fails first on busy ports.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use lefi::app::App;
use lefi::grpc::pb::lefi::v1 as pb;
use lefi::store::Store;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::backend_tests;
use crate::dev_server::{DevServer, LEFI};
use crate::helpers::{Backend, TestApp};
use crate::register::{P1, accepted, ingest, payment};

backend_tests!(follow_resumes_across_a_restart_on_the_same_address_without_loss_or_repeat);

/// The test's certificates as files, the way an integrator holds them.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn write(app: &TestApp) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let put = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        put("ca.pem", app.certs.ca.cert_pem());
        for (stem, issued) in [
            ("insurer", &app.certs.insurer),
            ("operator", &app.certs.operator),
            ("ingest", &app.certs.ingest),
            ("foreign", &app.certs.foreign),
        ] {
            put(&format!("{stem}.pem"), &issued.cert_pem);
            put(&format!("{stem}.key"), &issued.key_pem);
        }
        Files { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// `lefi client|admin|ingest --addr ADDR --cert STEM.pem --key KEY --ca ca.pem ARGS…` in the
/// files' directory.
async fn lefi(files: &Files, tool: &str, addr: &str, cert: &str, key: &str, args: &[&str]) -> Output {
    Command::new(LEFI)
        .arg(tool)
        .args([
            "--addr",
            addr,
            "--cert",
            &files.path(cert),
            "--key",
            &files.path(key),
        ])
        .args(["--ca", &files.path("ca.pem")])
        .args(args)
        .current_dir(files.dir.path())
        .env_clear()
        .output()
        .await
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The one JSON error line of a failed `--json` command.
fn json_error(out: &Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    let text = stderr(out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one line of JSON on stderr: {text}");
    let value: serde_json::Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {text}"));
    value["error"].clone()
}

async fn sqlite_app() -> (TestApp, Files) {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let files = Files::write(&app);
    (app, files)
}

fn party(app: &TestApp) -> String {
    format!("https://localhost:{}", app.party_addr.port())
}

// 19. The common mistakes, each named with what to do.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_named() {
    let (app, files) = sqlite_app().await;
    let out = lefi(
        &files,
        "client",
        &party(&app),
        "foreign.pem",
        "foreign.key",
        &["whoami"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains(
            "the server refused the client certificate: it was not issued by a CA this listener trusts"
        ),
        "{text}"
    );
    assert!(
        text.contains("hint: use the certificate and key the agency issued you"),
        "{text}"
    );

    let out = lefi(
        &files,
        "client",
        &party(&app),
        "foreign.pem",
        "foreign.key",
        &["whoami", "--json"],
    )
    .await;
    let error = json_error(&out);
    assert_eq!(error["code"], "UNAUTHENTICATED");
    assert_eq!(error["reason"], "CLIENT_CERTIFICATE_REFUSED");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_certificate_or_a_certificate_as_key_is_named() {
    let (app, files) = sqlite_app().await;
    let out = lefi(
        &files,
        "client",
        &party(&app),
        "insurer.pem",
        "operator.key",
        &["whoami"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains("does not belong to the client certificate"),
        "{text}"
    );
    assert!(text.contains("operator.key"), "{text}");
    assert!(!text.contains("invalid server address"), "{text}");

    let out = lefi(
        &files,
        "client",
        &party(&app),
        "insurer.pem",
        "insurer.pem",
        &["whoami"],
    )
    .await;
    let text = stderr(&out);
    assert!(text.contains("holds a certificate, not a private key"), "{text}");
    assert!(text.contains("check that they are not swapped"), "{text}");

    let out = lefi(
        &files,
        "client",
        &party(&app),
        "insurer.pem",
        "operator.key",
        &["whoami", "--json"],
    )
    .await;
    assert_eq!(json_error(&out)["reason"], "KEY_DOES_NOT_MATCH_CERTIFICATE");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_named_and_host_port_is_accepted() {
    let (app, files) = sqlite_app().await;
    let port = app.party_addr.port();
    let out = lefi(
        &files,
        "client",
        &format!("http://localhost:{port}"),
        "insurer.pem",
        "insurer.key",
        &["whoami"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains("plain-HTTP address, but lefi serves gRPC over TLS only"),
        "{text}"
    );
    assert!(
        text.contains(&format!("use https://localhost:{port} or just localhost:{port}")),
        "{text}"
    );

    // grpcurl style: host:port, no scheme.
    let out = lefi(
        &files,
        "client",
        &format!("localhost:{port}"),
        "insurer.pem",
        "insurer.key",
        &["whoami"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("556677-8899"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_said_once_with_a_hint() {
    let (app, files) = sqlite_app().await;
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = lefi(
        &files,
        "client",
        &format!("localhost:{port}"),
        "insurer.pem",
        "insurer.key",
        &["whoami"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(text.contains("connection refused"), "{text}");
    assert_eq!(
        text.to_lowercase().matches("refused").count(),
        1,
        "said once: {text}"
    );
    assert!(text.contains("is the server running"), "{text}");

    // --follow keeps trying, and with --json says so in JSON.
    let mut follower = Command::new(LEFI)
        .args(["client", "--addr", &format!("localhost:{port}")])
        .args([
            "--cert",
            &files.path("insurer.pem"),
            "--key",
            &files.path("insurer.key"),
        ])
        .args(["--ca", &files.path("ca.pem"), "stream", "--follow", "--json"])
        .current_dir(files.dir.path())
        .env_clear()
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut log = BufReader::new(follower.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), log.next_line())
        .await
        .expect("--follow said nothing")
        .unwrap()
        .unwrap();
    let record: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(
        record["message"].as_str().unwrap().contains("reconnecting"),
        "{record}"
    );
    assert!(
        record["cause"].as_str().unwrap().contains("CONNECTION_REFUSED"),
        "{record}"
    );
    follower.kill().await.unwrap();
    app.stop().await;
}

// 20. --json: one convention, errors included, with the request id.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_outputs_and_errors_are_json_lines_with_the_request_id() {
    let (app, files) = sqlite_app().await;
    let out = lefi(
        &files,
        "client",
        &party(&app),
        "insurer.pem",
        "insurer.key",
        &["health", "--json"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let health: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(health, serde_json::json!({"status": "SERVING"}));

    // A refusal by the server: code, reason, domain, message and the request id to quote.
    let refused = ["cancel", "sub_does_not_exist"];
    let out = lefi(
        &files,
        "client",
        &party(&app),
        "insurer.pem",
        "insurer.key",
        &refused,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(text.contains("request id: "), "{text}");
    let mut json_args = refused.to_vec();
    json_args.push("--json");
    let out = lefi(
        &files,
        "client",
        &party(&app),
        "insurer.pem",
        "insurer.key",
        &json_args,
    )
    .await;
    let error = json_error(&out);
    assert!(
        error["code"]
            .as_str()
            .is_some_and(|c| c.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
    );
    assert_eq!(error["domain"], "lefi");
    assert!(error["reason"].as_str().is_some_and(|r| !r.is_empty()), "{error}");
    assert!(
        error["requestId"].as_str().is_some_and(|id| !id.is_empty()),
        "{error}"
    );
    assert!(error.get("request_id").is_none(), "{error}");

    // ingest --json: camelCase like everything else.
    std::fs::write(
        files.dir.path().join("feed.ndjson"),
        format!(
            "{{\"sourceSystem\":\"MIDAS\",\"sourceVersion\":1,\"personId\":\"{P1}\",\"kind\":\"NEW\",\"person\":{{\"name\":\"Tolvan Tolvansson\"}}}}\nnot json\n"
        ),
    )
    .unwrap();
    let admin = format!("localhost:{}", app.admin_addr.port());
    let out = lefi(
        &files,
        "ingest",
        &admin,
        "ingest.pem",
        "ingest.key",
        &["feed.ndjson", "--json"],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a malformed line makes the exit code 1"
    );
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(summary["accepted"], 1);
    assert_eq!(summary["malformed"], 1);
    assert!(summary["factsPerSecond"].is_number(), "{summary}");
    assert!(summary["rejectedFile"].is_string(), "{summary}");
    let keys: Vec<&String> = summary.as_object().unwrap().keys().collect();
    assert!(keys.iter().all(|k| !k.contains('_')), "{keys:?}");
    app.stop().await;
}

// 22. Configuration: every problem at once, by origin, exit 64; clap's usage errors too.

async fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(LEFI)
        .arg("serve")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_configuration_problem_at_once_named_by_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lefi.toml"),
        "database_url = \"sqlite://x.db\"\nmax_db_connections = \"eight\"\ncolour = \"blue\"\n\
         heartbeat_interval = \"soon\"\n",
    )
    .unwrap();
    let out = serve(
        dir.path(),
        &["--config", "lefi.toml", "--max-consent-days", "forever"],
        &[("LEFI_ADMIN_LISTEN", "nowhere")],
    )
    .await;
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let text = stderr(&out);
    for expected in [
        "lefi.toml:2 max_db_connections: expected an integer, found string",
        "lefi.toml:3 colour: unknown key",
        "lefi.toml:4 heartbeat_interval 'soon' is not a duration",
        "LEFI_ADMIN_LISTEN 'nowhere' is not an address",
        "--max-consent-days 'forever' is not a whole number",
        "--tls-cert is required without --dev",
    ] {
        assert!(text.contains(expected), "{expected:?} not in: {text}");
    }

    // A syntax error names its line; the flags are still checked.
    std::fs::write(
        dir.path().join("broken.toml"),
        "listen = \"127.0.0.1:1\"\nadmin_listen = \n",
    )
    .unwrap();
    let out = serve(dir.path(), &["--config", "broken.toml", "--listen", "here"], &[]).await;
    assert_eq!(out.status.code(), Some(64));
    let text = stderr(&out);
    assert!(text.contains("broken.toml:2: not valid TOML"), "{text}");
    assert!(text.contains("--listen 'here' is not an address"), "{text}");
    assert!(!dir.path().join("x.db").exists());
}

#[tokio::test]
async fn usage_errors_exit_64_and_help_and_version_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["serve", "--no-such-flag"][..],
        &["client", "--as"],
        &["frobnicate"],
    ] {
        let out = Command::new(LEFI)
            .args(args)
            .current_dir(dir.path())
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
    }
    for args in [&["--help"][..], &["--version"], &["serve", "--help"]] {
        let out = Command::new(LEFI)
            .args(args)
            .current_dir(dir.path())
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    }
}

// 21. Logs: no colour codes in a file; all JSON with --log-format json.

/// `lefi serve --dev` on free ports in `dir`, stdout piped, stderr as given.
fn spawn_dev(dir: &Path, log_format: &str, stderr: Stdio) -> Child {
    Command::new(LEFI)
        .args(["--log-format", log_format, "serve", "--dev"])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The server's stdout, read line by line. It stays open until the test ends: a server whose
/// stdout is closed exits (141) at its next line.
type Stdout = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// Reads stdout lines until `done` says the summary is complete; returns them and the rest.
async fn summary_lines(child: &mut Child, done: impl Fn(&str) -> bool) -> (Vec<String>, Stdout) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("serve --dev printed no summary")
            .unwrap()
            .unwrap_or_else(|| panic!("stdout closed after {seen:#?}"));
        let last = done(&line);
        seen.push(line);
        if last {
            return (seen, lines);
        }
    }
}

/// SIGTERM, then wait (at most 30 s) for a clean exit.
async fn terminate(mut child: Child) {
    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the server did not stop after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("lefi.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = spawn_dev(dir.path(), "pretty", Stdio::from(file));
    let (_, _stdout) = summary_lines(&mut child, |l| l.starts_with("Stop with Ctrl-C")).await;
    terminate(child).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("lefi is serving"), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI codes in a log file: {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_json_logs_the_dev_summary_is_json_too() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("lefi.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = spawn_dev(dir.path(), "json", Stdio::from(file));
    let (lines, _stdout) = summary_lines(&mut child, |_| true).await;
    let summary: serde_json::Value =
        serde_json::from_str(&lines[0]).unwrap_or_else(|e| panic!("{e}: {lines:?}"));
    assert_eq!(summary["mode"], "development");
    assert!(
        summary["partyApi"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:")
    );
    assert!(
        summary["certificates"]["ingest"][1]
            .as_str()
            .unwrap()
            .ends_with("ingest.key")
    );
    terminate(child).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("lefi is serving"), "{text}");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}

// 24. serve --dev: a separate operator CA, ingest.pem listed, busy ports fail first.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_parties_cannot_reach_the_admin_listener_and_busy_ports_fail_first() {
    let server = tokio::task::spawn_blocking(DevServer::start).await.unwrap();
    let certs = server.path().join("certs-dev");
    for file in ["operator-ca.pem", "operator-ca.key", "ingest.pem", "ingest.key"] {
        assert!(certs.join(file).is_file(), "{file} missing");
    }
    let run = |args: Vec<String>| {
        let dir = server.path().to_path_buf();
        async move {
            Command::new(LEFI)
                .args(args)
                .current_dir(dir)
                .env_clear()
                .output()
                .await
                .unwrap()
        }
    };
    let admin = server.admin_addr.clone();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut all = vec!["admin".to_string(), "--addr".to_string(), admin.clone()];
        all.extend(extra.iter().map(|s| s.to_string()));
        all
    };
    let out = run(args(&["health"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(args(&["--cert", "certs-dev/insurer.pem", "health"])).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a party certificate passed the admin handshake"
    );
    assert!(
        stderr(&out).contains("refused the client certificate"),
        "{}",
        stderr(&out)
    );

    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-dev/README.md")).unwrap();
    for file in ["operator-ca.pem", "ingest.pem", "ingest.key"] {
        assert!(readme.contains(file), "certs-dev/README.md does not list {file}");
    }

    // A second serve --dev on the same ports, from an empty directory.
    let port = |addr: &str| addr.rsplit(':').next().unwrap().to_string();
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(LEFI)
        .args(["serve", "--dev"])
        .args(["--listen", &format!("127.0.0.1:{}", port(&server.party_addr))])
        .args([
            "--admin-listen",
            &format!("127.0.0.1:{}", port(&server.admin_addr)),
        ])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .current_dir(empty.path())
        .env_clear()
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is already in use"), "{}", stderr(&out));
    assert!(
        !empty.path().join("certs-dev").exists(),
        "certificates were generated"
    );
    assert!(!empty.path().join("lefi.db").exists(), "a database was created");
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(status.success());
}

// 23. stream --follow: reconnect with backoff, resume from the cursor file.

/// A `lefi client stream --follow` and the events it printed.
struct Follower {
    child: Child,
    lines: Stdout,
    events: Vec<serde_json::Value>,
}

impl Follower {
    fn start(files: &Files, addr: &str) -> Follower {
        let mut child = Command::new(LEFI)
            .args(["client", "--addr", addr])
            .args([
                "--cert",
                &files.path("insurer.pem"),
                "--key",
                &files.path("insurer.key"),
            ])
            .args(["--ca", &files.path("ca.pem")])
            .args([
                "stream",
                "--follow",
                "--cursor-file",
                "follow.cursor",
                "--heartbeat",
                "1s",
            ])
            .current_dir(files.dir.path())
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(files.dir.path().join("follow.log")).unwrap(),
            ))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Follower {
            child,
            lines,
            events: Vec::new(),
        }
    }

    /// Reads events until one has `kind` (e.g. "change"), `n` times counted from now.
    async fn until(&mut self, kind: &str, n: usize) {
        let mut found = 0;
        while found < n {
            let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {kind} within 30 s; seen {:#?}", self.events))
                .unwrap()
                .expect("the follower exited");
            let event: serde_json::Value = serde_json::from_str(&line).unwrap();
            if event.get(kind).is_some() {
                found += 1;
            }
            self.events.push(event);
        }
    }
}

/// The (event kind, event number) of every event about a subscription, in order.
fn numbered(events: &[serde_json::Value]) -> Vec<(String, u64)> {
    events
        .iter()
        .filter_map(|e| {
            let (kind, body) = e.as_object()?.iter().find(|(k, _)| k.as_str() != "cursor")?;
            let number = body.get("eventNumber")?.as_str()?.parse().ok()?;
            Some((kind.clone(), number))
        })
        .collect()
}

async fn follow_resumes_across_a_restart_on_the_same_address_without_loss_or_repeat(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let files = Files::write(&app);
    accepted(&ingest(&app, vec![payment(P1, "PAY1", 1, pb::RecordKind::New, 100_000)]).await);
    pb::subscription_service_client::SubscriptionServiceClient::new(
        app.party_channel(&app.certs.insurer).await,
    )
    .create_subscriptions(pb::CreateSubscriptionsRequest {
        items: vec![pb::NewSubscription {
            client_reference: "follow-1".to_string(),
            person_id: P1.to_string(),
            benefit_type_codes: vec!["SJP".to_string()],
            from_date: "2024-01-01".to_string(),
            legal_basis: "INS_COORDINATION".to_string(),
            ..Default::default()
        }],
    })
    .await
    .unwrap();
    let mut follower = Follower::start(&files, &party(&app));
    follower.until("snapshotEnd", 1).await;
    accepted(&ingest(&app, vec![payment(P1, "PAY2", 1, pb::RecordKind::New, 100_001)]).await);
    follower.until("change", 1).await;

    // The server goes away: its streams end with UNAVAILABLE / SERVER_SHUTTING_DOWN.
    app.begin_shutdown();
    // A new server on the same database and the same addresses. The old one releases its ports
    // as it stops accepting; the test cannot join its task (TestApp keeps it), so it retries the
    // bind briefly.
    let store = Store::connect(&app.db_url, 4).await.unwrap();
    let settings = lefi::config::Settings {
        party_addr: app.party_addr,
        admin_addr: app.admin_addr,
        ..app.settings.clone()
    };
    let mut attempts = 0;
    let restarted = loop {
        match App::build_with_store(settings.clone(), store.clone(), app.clock.clone()).await {
            Ok(restarted) => break restarted,
            Err(e) => {
                attempts += 1;
                assert!(attempts < 200, "the old server kept its ports: {e:#}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(restarted.run_until(stop.clone()));

    // Committed while the follower waits to reconnect, then while it is connected again.
    accepted(&ingest(&app, vec![payment(P1, "PAY3", 1, pb::RecordKind::New, 100_002)]).await);
    follower.until("change", 1).await;
    accepted(&ingest(&app, vec![payment(P1, "PAY4", 1, pb::RecordKind::New, 100_003)]).await);
    follower.until("change", 1).await;
    follower.child.kill().await.unwrap();

    let numbers = numbered(&follower.events);
    let changes: Vec<u64> = numbers
        .iter()
        .filter(|(kind, _)| kind == "change")
        .map(|(_, n)| *n)
        .collect();
    let snapshot = numbers
        .iter()
        .find(|(kind, _)| kind == "snapshotBegin")
        .map(|(_, n)| *n)
        .unwrap();
    let expected: Vec<u64> = (snapshot + 1..=snapshot + 3).collect();
    assert_eq!(changes, expected, "every change once, in order: {numbers:?}");
    // The follower prints an event, then persists its cursor; it was killed after printing the
    // last one, perhaps before persisting it.
    let cursors: Vec<&str> = follower
        .events
        .iter()
        .rev()
        .take(2)
        .filter_map(|e| e["cursor"].as_str())
        .collect();
    let saved = std::fs::read_to_string(files.dir.path().join("follow.cursor")).unwrap();
    assert!(
        cursors.contains(&saved.as_str()),
        "the cursor file holds one of the last two events' cursors: {saved} not in {cursors:?}"
    );
    let log = std::fs::read_to_string(files.dir.path().join("follow.log")).unwrap();
    assert!(log.contains("reconnecting"), "{log}");
    assert!(log.contains("SERVER_SHUTTING_DOWN"), "{log}");

    stop.cancel();
    task.await.unwrap().unwrap();
    store.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_stops_when_retrying_cannot_help() {
    let (app, files) = sqlite_app().await;
    let mut follower = Follower::start(&files, &party(&app));
    follower.until("heartbeat", 1).await;
    app.revoke_certificate(&app.insurer_id, &app.certs.insurer).await;
    let status = tokio::time::timeout(Duration::from_secs(30), follower.child.wait())
        .await
        .expect("--follow kept retrying a revoked certificate")
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(files.dir.path().join("follow.log")).unwrap();
    assert!(log.contains("CERTIFICATE_REVOKED"), "{log}");
    assert!(log.contains("request id: "), "{log}");
    assert!(!log.contains("reconnecting"), "{log}");
    app.stop().await;
}
