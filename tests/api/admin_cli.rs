//! The operator CLI as a person uses it: `serve --dev`, then onboarding a new party end to end with
//! `lefi admin …` and `lefi dev-certs issue-party`, until the party calls the party API.

use crate::dev_server::DevServer;

/// The admin CLI against a dev server.
trait AdminCli {
    fn admin(&self, args: &[&str]) -> String;
    fn admin_json(&self, args: &[&str]) -> serde_json::Value;
}

impl AdminCli for DevServer {
    /// Runs `lefi admin ARGS` against this server; must succeed; returns stdout.
    fn admin(&self, args: &[&str]) -> String {
        let mut all = vec!["admin", "--addr", &self.admin_addr];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn admin_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.admin(&all);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

#[test]
fn operator_onboards_and_terminates_a_party_with_the_cli() {
    let server = DevServer::start();
    let org = "556000-0019";
    let name = "Exempel Försäkring AB";

    let applied = server.admin_json(&[
        "apply",
        "--org-number",
        org,
        "--name",
        name,
        "--kind",
        "insurer",
        "--contact-name",
        "Anna Andersson",
        "--contact-email",
        "anna@exempel.se",
        "--basis",
        "INS_COORDINATION",
        "--benefit",
        "SJP,FP",
    ]);
    assert_eq!(applied["state"], "APPLIED");
    let id = applied["partyId"].as_str().unwrap().to_string();

    let sent = server.admin(&[
        "send-agreement",
        "--party-id",
        &id,
        "--agreement-id",
        "FK-2025-0001",
        "--basis",
        "INS_COORDINATION",
        "--benefit",
        "SJP",
        "--benefit",
        "FP",
        "--valid-from",
        "2025-01-01",
        "--notice-days",
        "90",
    ]);
    assert!(sent.contains("AGREEMENT_SENT"), "{sent}");
    assert!(sent.contains("next: lefi admin sign"), "{sent}");
    let one = server.admin(&[
        "sign",
        "--party-id",
        &id,
        "--signer",
        "party",
        "--signed-by",
        "Anna Andersson",
    ]);
    assert!(
        one.contains("--signer agency"),
        "the next step names the other side: {one}"
    );
    let signed = server.admin_json(&[
        "sign",
        "--party-id",
        &id,
        "--signer",
        "agency",
        "--signed-by",
        "Bo Berg",
    ]);
    assert_eq!(signed["state"], "SIGNED");

    // A step in the wrong state explains itself and changes nothing.
    let mut args = vec!["admin", "--addr", &server.admin_addr];
    args.extend(["sign", "--party-id", &id, "--signer", "party", "--signed-by", "A"]);
    let refused = server.run(&args);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("ILLEGAL_STATE_TRANSITION"), "{stderr}");
    assert!(stderr.contains("current_state=SIGNED"), "{stderr}");

    // The party's certificate from the development CA, registered: the party is connected.
    let issued = server.run(&["dev-certs", "issue-party", "--org-number", org, "--name", name]);
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let connected = server.admin(&[
        "connect",
        "--party-id",
        &id,
        "--cert-file",
        "certs-dev/5560000019.pem",
    ]);
    assert!(connected.contains("CONNECTED"), "{connected}");
    let whoami = server.run(&[
        "client",
        "--addr",
        &server.party_addr,
        "--cert",
        "certs-dev/5560000019.pem",
        "whoami",
        "--json",
    ]);
    assert!(
        whoami.status.success(),
        "{}",
        String::from_utf8_lossy(&whoami.stderr)
    );
    let me: serde_json::Value = serde_json::from_slice(&whoami.stdout).unwrap();
    assert_eq!(me["partyId"], id.as_str());
    assert_eq!(me["state"], "CONNECTED");

    let shown = server.admin(&["show", org]);
    assert!(shown.contains(&id) && shown.contains("FK-2025-0001"), "{shown}");
    let listed = server.admin(&["list", "--kind", "insurer"]);
    assert!(
        listed.contains(name) && listed.contains("(2 parties)"),
        "{listed}"
    );

    // Termination within the notice period needs an override; the error says so.
    let mut args = vec!["admin", "--addr", &server.admin_addr];
    args.extend([
        "terminate",
        "--party-id",
        &id,
        "--org-number",
        org,
        "--name",
        name,
        "--effective-date",
        "2000-01-01",
    ]);
    let refused = server.run(&args);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("NOTICE_PERIOD_NOT_MET"), "{stderr}");
    assert!(stderr.contains("earliest_effective_date="), "{stderr}");
    let terminated = server.admin_json(&[
        "terminate",
        "--party-id",
        &id,
        "--org-number",
        org,
        "--name",
        name,
        "--effective-date",
        "2000-01-01",
        "--override-reason",
        "agreed in writing",
    ]);
    assert_eq!(terminated["state"], "TERMINATED");

    let history = server.admin(&["history", &id]);
    for action in [
        "APPLY",
        "SEND_AGREEMENT",
        "RECORD_SIGNATURE",
        "ADD_CERTIFICATE",
        "SCHEDULE_TERMINATION",
    ] {
        assert!(history.contains(action), "{action} missing: {history}");
    }
    assert!(history.contains("CONNECTED → TERMINATED"), "{history}");
}

/// The operations commands as an operator uses them on a running server: each party's delivery,
/// its limits, the CRLs, the agency's suspension, and revoking an operator's certificate.
#[test]
fn operations_from_the_cli() {
    let server = DevServer::start();
    let consumers: Vec<serde_json::Value> = server
        .admin(&["consumers", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!consumers.is_empty(), "the demo parties are connected");
    let party = consumers[0]["partyId"].as_str().unwrap().to_string();
    assert!(consumers[0]["limits"]["maxStreams"].as_u64().unwrap() >= 1);
    let text = server.admin(&["consumers", "--party-id", &party]);
    assert!(text.contains("limits") && text.contains("full refresh"), "{text}");

    let set = server.admin_json(&[
        "limits",
        "--party-id",
        &party,
        "--max-streams",
        "3",
        "--rate",
        "20",
        "--reason",
        "agreed with the party",
    ]);
    assert_eq!(set["limits"]["maxStreams"], 3);
    assert_eq!(set["limits"]["requestsPerSecond"], 20);
    let shown = server.admin(&["show", &party]);
    assert!(
        shown.contains("3 streams, 20 requests/s, burst default"),
        "{shown}"
    );

    let crls = server.admin(&["crls"]);
    assert!(crls.contains("no CRL in force"), "{crls}");

    let suspended = server.admin(&[
        "subscriptions",
        "suspend",
        "--party-id",
        &party,
        "--all",
        "--reason",
        "review 2026/17",
    ]);
    assert!(suspended.contains("subscriptions suspended"), "{suspended}");
    let history = server.admin(&["history", &party]);
    assert!(
        history.contains("SET_LIMITS") && history.contains("SUSPEND_SUBSCRIPTIONS"),
        "{history}"
    );
    // A scope is required.
    let out = server.run(&[
        "admin",
        "--addr",
        &server.admin_addr,
        "subscriptions",
        "end",
        "--party-id",
        &party,
        "--reason",
        "r",
    ]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");

    // The demo operator's certificate is revoked: its next call is refused.
    let operators = server.run(&["operator", "list", "--database-url", "sqlite://lefi.db"]);
    let listing = String::from_utf8_lossy(&operators.stdout).to_string();
    let fingerprint = listing
        .lines()
        .find(|l| l.contains(" operator ") && l.contains("active"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_else(|| panic!("{listing}"))
        .to_string();
    let revoked = server.run(&[
        "operator",
        "revoke",
        "--database-url",
        "sqlite://lefi.db",
        "--fingerprint",
        &fingerprint,
    ]);
    assert!(revoked.status.success(), "{revoked:?}");
    let refused = server.run(&["admin", "--addr", &server.admin_addr, "whoami"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("CERTIFICATE_REVOKED"),
        "{refused:?}"
    );
    let unknown = server.run(&[
        "operator",
        "revoke",
        "--database-url",
        "sqlite://lefi.db",
        "--fingerprint",
        "00",
    ]);
    assert!(!unknown.status.success());
}
