//! `lefi serve`.
//!
//! The order matters: the configuration is checked first (every problem at once, exit 64), then
//! whether both ports are free, and only then does `--dev` generate or load anything, the database
//! open and the listeners bind. A second `serve --dev` on busy ports therefore fails before it
//! touches `certs-dev/` or `lefi.db`.
//!
//! The `--dev` summary (where it listens, the certificates, the commands to try) goes to stdout:
//! text, or with `--log-format json` one JSON object, so that with JSON logs (on stderr) nothing
//! the process writes is plain text.

use std::net::SocketAddr;
use std::process::ExitCode;

use crate::app::App;
use crate::cli::{LogFormat, ServeArgs};
use crate::config::{DevPaths, redact_url};
use crate::dev::certs::DevDirOutcome;
use crate::domain::clock::Clock;
use crate::store::Store;

use super::EXIT_USAGE;

pub async fn run(args: ServeArgs, log_format: LogFormat) -> ExitCode {
    let dev = args.dev.then(|| DevPaths {
        certs_dir: args.certs_dir.clone(),
    });
    let usage = |e: crate::config::ConfigError| {
        eprintln!("error: {e}");
        eprintln!("see `lefi serve --help`; for a local trial run `lefi serve --dev`");
        ExitCode::from(EXIT_USAGE)
    };
    let plan = match crate::config::plan(&args, dev.as_ref()) {
        Ok(plan) => plan,
        Err(e) => return usage(e),
    };
    let mut ports = vec![(plan.party_addr, "--listen"), (plan.admin_addr, "--admin-listen")];
    ports.extend(plan.metrics_addr.map(|addr| (addr, "--metrics-listen")));
    if let Err(e) = check_ports(&ports) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(dev) = &dev {
        match crate::dev::certs::ensure_dev_dir(&dev.certs_dir, false) {
            Ok(DevDirOutcome::Created) => {
                tracing::info!(dir = %dev.certs_dir.display(), "generated development certificates");
            }
            Ok(DevDirOutcome::Completed(written)) => {
                tracing::info!(
                    dir = %dev.certs_dir.display(),
                    written = %written.join(" "),
                    "completed the development certificates (the other files were kept)"
                );
            }
            Ok(DevDirOutcome::AlreadyPresent) => {}
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let settings = match plan.load() {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    match serve(settings, dev, log_format).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Checks that every address can be listened on (port 0 always can), the way `App::build` will
/// bind it (`SO_REUSEADDR`, as tokio's `TcpListener::bind` sets, so a port left in TIME_WAIT by a
/// stopped server passes). The sockets close again at once.
fn check_ports(addrs: &[(SocketAddr, &str)]) -> Result<(), String> {
    for (addr, flag) in addrs {
        if addr.port() == 0 {
            continue;
        }
        let listen = || -> std::io::Result<()> {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.bind(*addr)?;
            socket.listen(1).map(drop)
        };
        match listen() {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(format!(
                    "{addr} ({flag}) is already in use: is another `lefi serve` running? Stop it, or \
                     choose free ports with --listen and --admin-listen (nothing was generated or \
                     loaded)"
                ));
            }
            Err(e) => return Err(format!("cannot listen on {addr} ({flag}): {e}")),
        }
    }
    Ok(())
}

async fn serve(
    settings: crate::config::Settings,
    dev: Option<DevPaths>,
    log_format: LogFormat,
) -> anyhow::Result<()> {
    // Listen for SIGINT/SIGTERM from the start, well before the summary says "Stop with Ctrl-C".
    let shutdown = crate::shutdown::on_signal();
    let clock = Clock::system();
    let db_url = redact_url(&settings.database.url);
    let store = Store::connect(&settings.database.url, settings.database.max_connections).await?;
    let demo = match &dev {
        Some(dev) => {
            let demo = crate::dev::parties::seed(&store, &dev.certs_dir, &clock).await?;
            let register = crate::dev::register::seed(&store, &dev.certs_dir, &clock).await?;
            Some((demo, register))
        }
        None => None,
    };
    let app = App::build_with_store(settings, store, clock).await?;
    let app = if dev.is_some() { app.in_dev_mode() } else { app };
    let party = app.party_addr()?;
    let admin = app.admin_addr()?;
    let metrics = app.metrics_addr();
    let metrics_url = metrics.map(|addr| format!("http://{addr}/metrics"));
    tracing::info!(%party, %admin, metrics = metrics_url.as_deref().unwrap_or("off"), database = %db_url, "lefi is serving");
    if let (Some(dev), Some((demo, register))) = (&dev, &demo) {
        let sample = app
            .store()
            .demo_person(crate::dev::register::DEMO_SOURCE_SYSTEM, "SJP")
            .await
            .ok()
            .flatten()
            // A synthetic demo person (test-range number), shown so the demo can be followed.
            .map(|person| person.to_display_unmasked());
        let summary = DevSummary {
            party,
            admin,
            metrics: metrics_url.clone(),
            db_url: &db_url,
            certs: dev.certs_dir.display().to_string(),
            parties: &demo.parties,
            register: *register,
            person: sample,
        };
        match log_format {
            LogFormat::Pretty => summary.print_text(),
            LogFormat::Json => println!("{}", summary.to_json()),
        }
    }
    app.run_until(shutdown).await
}

/// What `serve --dev` tells the person who started it.
struct DevSummary<'a> {
    party: SocketAddr,
    admin: SocketAddr,
    /// `http://ADDR/metrics`, when the metrics listener is on.
    metrics: Option<String>,
    db_url: &'a str,
    certs: String,
    parties: &'a [String],
    register: crate::dev::register::DemoRegisterSummary,
    person: Option<String>,
}

impl DevSummary<'_> {
    /// The commands to try from another terminal.
    fn commands(&self) -> Vec<String> {
        let mut commands = vec!["cargo run --release -- client whoami".to_string()];
        if let Some(person) = &self.person {
            commands.push(format!(
                "cargo run --release -- client subscribe --reference demo-1 --person {person} --benefits SJP --from 2020-01-01 --basis INS_COORDINATION"
            ));
            commands
                .push("cargo run --release -- client stream --cursor-file demo.cursor --follow".to_string());
            // Feeds the register so the stream above shows a change: a new sick-pay case for the
            // demo person among 1,000 other synthetic persons.
            commands.push(format!(
                "cargo run --release -- synth --persons 1000 --seed 7 --sick-leave-for {person} --out synth.ndjson"
            ));
            commands.push("cargo run --release -- ingest synth.ndjson".to_string());
        }
        let certs = &self.certs;
        commands.push(format!(
            "grpcurl -cacert {certs}/ca.pem -cert {certs}/insurer.pem -key {certs}/insurer.key localhost:{} lefi.v1.PartyService/WhoAmI",
            self.party.port()
        ));
        commands
    }

    fn print_text(&self) {
        let certs = &self.certs;
        let (party, admin) = (self.party, self.admin);
        println!();
        println!(
            "lefi {} — development mode (never use these certificates in production)",
            env!("CARGO_PKG_VERSION")
        );
        println!("  party API   https://{party}   mTLS, party certificates signed by {certs}/ca.pem");
        println!(
            "  admin API   https://{admin}   mTLS, operator certificates signed by {certs}/operator-ca.pem"
        );
        if let Some(metrics) = &self.metrics {
            println!("  metrics     {metrics}   Prometheus, plain HTTP (--metrics-listen)");
        }
        println!("  database    {}", self.db_url);
        println!(
            "  certs       {certs}/  (ca, operator-ca, server, operator, ingest, statistician, reviewer, insurer, municipality, statistics; .pem + .key)"
        );
        for p in self.parties {
            println!("  demo party  {p}");
        }
        if self.register.facts_loaded > 0 {
            println!(
                "  register    loaded {} synthetic persons ({} facts; test-range identity numbers)",
                self.register.persons_loaded, self.register.facts_loaded
            );
        }
        println!(
            "  operator    lefi admin …              ({certs}/operator.pem + operator.key, role operator)"
        );
        println!("  ingest      lefi ingest FILE.ndjson   ({certs}/ingest.pem + ingest.key, role ingest)");
        println!(
            "  statistics  lefi orders … --cert {certs}/statistics.pem --key {certs}/statistics.key (the orderer);"
        );
        println!(
            "              lefi admin orders … --cert {certs}/statistician.pem --key {certs}/statistician.key"
        );
        println!(
            "              (the review: --cert {certs}/reviewer.pem --key {certs}/reviewer.key, role statistician)"
        );
        println!();
        println!("Try it from another terminal:");
        for command in self.commands() {
            println!("  {command}");
        }
        println!("Stop with Ctrl-C.");
        println!();
    }

    /// The same as one JSON object (camelCase, like every JSON output of lefi).
    fn to_json(&self) -> serde_json::Value {
        let certs = &self.certs;
        let file = |name: &str| format!("{certs}/{name}");
        let mut summary = serde_json::json!({
            "lefi": env!("CARGO_PKG_VERSION"),
            "mode": "development",
            "warning": "never use these certificates in production",
            "partyApi": format!("https://{}", self.party),
            "adminApi": format!("https://{}", self.admin),
            "metrics": self.metrics,
            "database": self.db_url,
            "certsDir": certs,
            "partyCa": file("ca.pem"),
            "operatorCa": file("operator-ca.pem"),
            "certificates": {
                "server": [file("server.pem"), file("server.key")],
                "operator": [file("operator.pem"), file("operator.key")],
                "ingest": [file("ingest.pem"), file("ingest.key")],
                "insurer": [file("insurer.pem"), file("insurer.key")],
                "municipality": [file("municipality.pem"), file("municipality.key")],
                "statisticsAuthority": [file("statistics.pem"), file("statistics.key")],
                "statistician": [file("statistician.pem"), file("statistician.key")],
                "reviewer": [file("reviewer.pem"), file("reviewer.key")],
            },
            "demoParties": self.parties,
            "try": self.commands(),
        });
        if self.register.facts_loaded > 0 {
            summary["register"] = serde_json::json!({
                "personsLoaded": self.register.persons_loaded,
                "factsLoaded": self.register.facts_loaded,
            });
        }
        if let Some(person) = &self.person {
            summary["demoPerson"] = person.clone().into();
        }
        summary
    }
}
