//! `lefi serve --dev` as a child process in its own directory, the way a person starts it; used by
//! the CLI tests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const LEFI: &str = env!("CARGO_BIN_EXE_lefi");

/// A running `lefi serve --dev` (both listeners on free ports), killed when dropped.
pub struct DevServer {
    child: Child,
    /// `https://localhost:PORT` of the party API.
    pub party_addr: String,
    /// `https://localhost:PORT` of the admin API.
    pub admin_addr: String,
    /// The demo person the summary suggests subscribing to.
    pub demo_person: Option<String>,
    dir: tempfile::TempDir,
}

impl DevServer {
    /// Starts the server in a fresh temporary directory and waits for its start-up summary.
    pub fn start() -> DevServer {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(LEFI)
            .args([
                "serve",
                "--dev",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let port_of = |l: &str| {
            l.split("https://127.0.0.1:")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string)
        };
        let (mut party, mut admin, mut demo_person) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("serve --dev printed no summary");
            if line.contains("party API") {
                party = port_of(&line);
            }
            if line.contains("admin API") {
                admin = port_of(&line);
            }
            if let Some(rest) = line.split(" --person ").nth(1) {
                demo_person = rest.split_whitespace().next().map(str::to_string);
            }
            if line.starts_with("Stop with Ctrl-C") {
                break;
            }
        }
        DevServer {
            child,
            party_addr: format!("https://localhost:{}", party.expect("party port")),
            admin_addr: format!("https://localhost:{}", admin.expect("admin port")),
            demo_person,
            dir,
        }
    }

    /// The server's working directory (certs-dev/, lefi.db).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `lefi ARGS` in the server's directory.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(LEFI)
            .args(args)
            .current_dir(self.path())
            .output()
            .unwrap()
    }

    /// Sends SIGTERM and waits (at most 30 s) for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
