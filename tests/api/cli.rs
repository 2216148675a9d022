//! The `lefi` binary as a person uses it: `serve --dev` from an empty directory, the reference
//! client against it, configuration errors, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::dev_server::{DevServer, LEFI};

#[test]
fn serve_dev_from_an_empty_directory_then_client_and_sigterm() {
    let server = DevServer::start();
    for file in [
        "ca.pem",
        "server.pem",
        "server.key",
        "operator.pem",
        "insurer.key",
        "municipality.pem",
    ] {
        assert!(
            server.path().join("certs-dev").join(file).is_file(),
            "{file} missing"
        );
    }
    assert!(server.path().join("lefi.db").is_file());

    let run = |args: &[&str]| {
        let out = server.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let whoami = run(&["client", "--addr", &server.party_addr, "whoami"]);
    assert!(whoami.contains("556677-8899"), "{whoami}");
    let whoami = run(&[
        "client",
        "--addr",
        &server.party_addr,
        "--as",
        "municipality",
        "whoami",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(whoami.trim()).unwrap();
    assert_eq!(json["orgNumber"], "222000-0000");
    assert_eq!(json["kind"], "MUNICIPAL_AUTHORITY");
    let operator = run(&["admin", "--addr", &server.admin_addr, "whoami"]);
    assert!(operator.contains("OPERATOR"), "{operator}");
    // The demo statistics authority orders; the demo statistics unit has two statisticians (the
    // confidentiality review is never the quote's author's).
    let whoami = run(&[
        "client",
        "--addr",
        &server.party_addr,
        "--as",
        "statistics",
        "whoami",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(whoami.trim()).unwrap();
    assert_eq!(json["orgNumber"], "202200-1230");
    assert_eq!(json["kind"], "STATE_AUTHORITY");
    let orders = run(&[
        "orders",
        "--addr",
        &server.party_addr,
        "--cert",
        "certs-dev/statistics.pem",
        "--key",
        "certs-dev/statistics.key",
        "list",
        "--json",
    ]);
    assert!(!orders.contains("PERMISSION_DENIED"), "{orders}");
    for stem in ["statistician", "reviewer"] {
        let cert = format!("certs-dev/{stem}.pem");
        let key = format!("certs-dev/{stem}.key");
        let who = run(&[
            "admin",
            "--addr",
            &server.admin_addr,
            "--cert",
            &cert,
            "--key",
            &key,
            "whoami",
        ]);
        assert!(who.contains("STATISTICIAN"), "{stem}: {who}");
    }
    assert_eq!(
        run(&["client", "--addr", &server.party_addr, "health"]).trim(),
        "SERVING"
    );

    let status = server.terminate();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

/// The README tour's last step (issue 14, 17): the file `synth --sick-leave-for` writes, ingested
/// while a stream follows the demo subscription, shows up on that stream as changes.
#[test]
fn the_tour_feeds_a_change_the_demo_stream_shows() {
    let server = DevServer::start();
    let person = server
        .demo_person
        .clone()
        .expect("serve --dev suggests a demo person");
    let run = |args: &[&str]| {
        let out = server.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&[
        "client",
        "--addr",
        &server.party_addr,
        "subscribe",
        "--reference",
        "demo-1",
        "--person",
        &person,
        "--benefits",
        "SJP",
        "--from",
        "2020-01-01",
        "--basis",
        "INS_COORDINATION",
    ]);

    let mut stream = Command::new(LEFI)
        .args([
            "client",
            "--addr",
            &server.party_addr,
            "stream",
            "--cursor-file",
            "demo.cursor",
            "--heartbeat",
            "1s",
        ])
        .current_dir(server.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = stream.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let event = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if tx.send(event).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the stream went quiet")
    };
    while next().get("snapshotEnd").is_none() {}

    // The tour's feed: 50 persons here instead of 1,000, the same option.
    let file = server.path().join("synth.ndjson");
    let out = server.run(&[
        "synth",
        "--persons",
        "50",
        "--seed",
        "7",
        "--sick-leave-for",
        &person,
        "--out",
        "synth.ndjson",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(file.is_file());
    run(&["ingest", "--addr", &server.admin_addr, "synth.ndjson"]);

    let change = loop {
        let event = next();
        if let Some(change) = event.get("change") {
            break change.clone();
        }
        assert!(event.get("heartbeat").is_some(), "{event}");
    };
    assert!(
        change["records"].as_array().is_some_and(|r| !r.is_empty()),
        "{change}"
    );
    let _ = stream.kill();
    let _ = stream.wait();

    // A number that could be a real person's is refused: synthetic facts only for the test range.
    let out = server.run(&["synth", "--persons", "1", "--sick-leave-for", "19900704-2386"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("test range"));
    server.terminate();
}

/// `lefi client pull` prints what the stream would (the demo subscription's snapshot), keeps its
/// cursor in the file, and prints nothing more once caught up.
#[test]
fn pull_prints_the_events_and_resumes_from_its_cursor_file() {
    let server = DevServer::start();
    let person = server.demo_person.clone().expect("a demo person");
    let run = |args: &[&str]| {
        let out = server.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&[
        "client",
        "--addr",
        &server.party_addr,
        "subscribe",
        "--reference",
        "pull-1",
        "--person",
        &person,
        "--benefits",
        "SJP",
        "--from",
        "2020-01-01",
        "--basis",
        "INS_COORDINATION",
    ]);
    let pull = [
        "client",
        "--addr",
        &server.party_addr,
        "pull",
        "--cursor-file",
        "pull.cursor",
        "--max-events",
        "2",
    ];
    let first: Vec<serde_json::Value> = run(&pull)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        first.first().is_some_and(|e| e.get("snapshotBegin").is_some()),
        "{first:?}"
    );
    assert!(
        first.last().is_some_and(|e| e.get("snapshotEnd").is_some()),
        "{first:?}"
    );
    assert!(first.iter().all(|e| e.get("heartbeat").is_none()));
    let cursor = std::fs::read_to_string(server.path().join("pull.cursor")).unwrap();
    assert_eq!(cursor, first.last().unwrap()["cursor"].as_str().unwrap());
    // Caught up: nothing more, and the file holds a bookmark to resume from.
    assert_eq!(run(&pull), "");
    assert!(
        !std::fs::read_to_string(server.path().join("pull.cursor"))
            .unwrap()
            .is_empty()
    );
    server.terminate();
}

#[test]
fn serve_without_dev_names_every_missing_setting() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(LEFI)
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for flag in [
        "--database-url",
        "--tls-cert",
        "--tls-key",
        "--client-ca",
        "--operator-ca",
    ] {
        assert!(stderr.contains(flag), "{flag} not named in: {stderr}");
    }
    // Nothing was generated or created.
    assert!(!dir.path().join("certs-dev").exists());
    assert!(!dir.path().join("lefi.db").exists());
}

#[test]
fn unreadable_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(LEFI)
        .args([
            "serve",
            "--database-url",
            "sqlite://x.db",
            "--tls-cert",
            "/nonexistent/server.pem",
            "--tls-key",
            "/nonexistent/server.key",
            "--client-ca",
            "/nonexistent/ca.pem",
            "--operator-ca",
            "/nonexistent/op.pem",
            "--heartbeat-interval",
            "soon",
        ])
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/server.pem"), "{stderr}");
    assert!(stderr.contains("/nonexistent/op.pem"), "{stderr}");
    assert!(stderr.contains("--heartbeat-interval 'soon'"), "{stderr}");
}

#[test]
fn config_file_is_read_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lefi.toml"),
        "database_url = \"sqlite://from-file.db\"\ntls_cert = \"/from/file.pem\"\nunknown_key = 1\n",
    )
    .unwrap();
    let out = Command::new(LEFI)
        .args(["serve", "--config", "lefi.toml"])
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown_key") || stderr.contains("unknown field"),
        "{stderr}"
    );
}

#[test]
fn help_explains_itself() {
    let out = Command::new(LEFI).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "migrate", "dev-certs", "client", "admin", "operator"] {
        assert!(help.contains(word), "--help lacks {word}");
    }
    let out = Command::new(LEFI).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("LEFI_DATABASE_URL") && help.contains("--dev"),
        "{help}"
    );
}
