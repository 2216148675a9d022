//! The register from the command line: `lefi synth` is deterministic, and against `serve --dev`
//! (which loads a demo register and issues certs-dev/ingest.pem) `lefi ingest` feeds a file with
//! a progress bar and a summary, writes rejected lines next to it, and `lefi admin register` and
//! `lefi client query` show the result.

use std::path::Path;
use std::process::{Command, Output};

use crate::dev_server::{DevServer, LEFI};

#[test]
fn synth_is_deterministic_and_uses_test_numbers_only() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a.ndjson", "b.ndjson"] {
        let out = Command::new(LEFI)
            .args(["synth", "--persons", "40", "--seed", "3", "--out", name])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let a = std::fs::read_to_string(dir.path().join("a.ndjson")).unwrap();
    assert_eq!(a, std::fs::read_to_string(dir.path().join("b.ndjson")).unwrap());
    assert!(a.lines().count() > 100);
    for line in a.lines() {
        let fact: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = fact["personId"].as_str().unwrap();
        let birth_number: u32 = id[9..12].parse().unwrap();
        assert!((980..=999).contains(&birth_number), "{birth_number}");
        assert_eq!(fact["sourceSystem"], "SYNTH");
    }
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(LEFI).args(args).current_dir(dir).output().unwrap()
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn ingest_a_file_then_inspect_and_query_it() {
    let server = DevServer::start();
    let d = server.path();
    assert!(d.join("certs-dev/ingest.pem").is_file());

    // The demo register is there.
    let stats: serde_json::Value = serde_json::from_str(&stdout_of(&run(
        d,
        &[
            "admin",
            "--addr",
            &server.admin_addr,
            "register",
            "stats",
            "--json",
        ],
    )))
    .unwrap();
    assert_eq!(stats["personCount"], "200");
    let demo_head: u64 = stats["latestSequence"].as_str().unwrap().parse().unwrap();
    assert!(demo_head > 1_000);

    // A synthetic file, with a malformed line and a refused fact added.
    stdout_of(&run(
        d,
        &["synth", "--persons", "30", "--seed", "11", "--out", "feed.ndjson"],
    ));
    let mut feed = std::fs::read_to_string(d.join("feed.ndjson")).unwrap();
    let facts = feed.lines().count();
    feed.push_str("this is not json\n");
    feed.push_str(
        r#"{"sourceSystem":"SYNTH","sourceId":"bad-1","sourceVersion":1,"personId":"19541011-3606","benefitType":"SJP","kind":"NEW","personEvent":{"kind":"SICKNESS_CASE_CLOSED","eventDate":"2024-01-01"}}"#,
    );
    feed.push('\n');
    std::fs::write(d.join("feed.ndjson"), &feed).unwrap();

    let out = run(d, &["ingest", "feed.ndjson", "--addr", &server.admin_addr]);
    assert_eq!(out.status.code(), Some(1), "rejections make the exit code 1");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains(&format!("{facts} accepted, 0 unchanged, 1 rejected, 1 malformed")),
        "{summary}"
    );
    let rejected = std::fs::read_to_string(d.join("feed.rejected.ndjson")).unwrap();
    let rejected: Vec<serde_json::Value> = rejected
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejected.len(), 2);
    let by_line = |n: usize| rejected.iter().find(|r| r["line"] == n).unwrap();
    assert_eq!(by_line(facts + 1)["reason"], "MALFORMED");
    assert_eq!(by_line(facts + 2)["reason"], "PERSON_ID_INVALID");
    assert_eq!(by_line(facts + 2)["field"], "person_id");

    // Again: everything already stored is unchanged (idempotent).
    let out = run(
        d,
        &["ingest", "feed.ndjson", "--addr", &server.admin_addr, "--json"],
    );
    let again: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(again["accepted"], 0);
    assert_eq!(again["unchanged"], facts);

    // The operator's view of a person from the file, now and as of the demo's head.
    let first: serde_json::Value = serde_json::from_str(feed.lines().next().unwrap()).unwrap();
    let person = first["personId"].as_str().unwrap();
    let shown = stdout_of(&run(
        d,
        &[
            "admin",
            "--addr",
            &server.admin_addr,
            "register",
            "show",
            "--person",
            person,
        ],
    ));
    assert!(shown.contains("person data versions"), "{shown}");
    let before = run(
        d,
        &[
            "admin",
            "--addr",
            &server.admin_addr,
            "register",
            "show",
            "--person",
            person,
            "--as-of",
            &demo_head.to_string(),
        ],
    );
    // Unless the demo register happened to hold the same number, the person did not exist then.
    if !before.status.success() {
        assert!(String::from_utf8_lossy(&before.stderr).contains("PERSON_NOT_FOUND"));
    }

    // The demo insurer queries a person of the file.
    let answer = stdout_of(&run(
        d,
        &[
            "client",
            "--addr",
            &server.party_addr,
            "query",
            "--person",
            person,
            "--benefits",
            "SJP,FP,SA,AP",
            "--from",
            "2000-01-01",
            "--basis",
            "INS_COORDINATION",
            "--json",
        ],
    ));
    let header: serde_json::Value = serde_json::from_str(answer.lines().next().unwrap()).unwrap();
    assert!(header["header"]["asOfSequence"].as_str().is_some(), "{answer}");
    let status = server.terminate();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}
