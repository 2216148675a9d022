//! The `lefi` binary as a person uses it: `serve --dev` from an empty directory, the reference
//! client against it, configuration errors, and SIGTERM.

use std::process::Command;

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
    assert_eq!(
        run(&["client", "--addr", &server.party_addr, "health"]).trim(),
        "SERVING"
    );

    let status = server.terminate();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
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
