//! `lefi serve`.

use std::process::ExitCode;

use crate::app::App;
use crate::cli::ServeArgs;
use crate::config::{DevPaths, redact_url};
use crate::domain::clock::Clock;
use crate::store::Store;

use super::EXIT_USAGE;

pub async fn run(args: ServeArgs) -> ExitCode {
    let dev = args.dev.then(|| DevPaths {
        certs_dir: args.certs_dir.clone(),
    });
    if let Some(dev) = &dev {
        match crate::dev::certs::ensure_dev_dir(&dev.certs_dir, false) {
            Ok(crate::dev::certs::DevDirOutcome::Created) => {
                tracing::info!(dir = %dev.certs_dir.display(), "generated development certificates");
            }
            Ok(crate::dev::certs::DevDirOutcome::AlreadyPresent) => {}
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let settings = match crate::config::resolve(&args, dev.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("see `lefi serve --help`; for a local trial run `lefi serve --dev`");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match serve(settings, dev).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: crate::config::Settings, dev: Option<DevPaths>) -> anyhow::Result<()> {
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
    let party = app.party_addr()?;
    let admin = app.admin_addr()?;
    tracing::info!(%party, %admin, database = %db_url, "lefi is serving");
    let sample = match &dev {
        Some(_) => app
            .store()
            .demo_person(crate::dev::register::DEMO_SOURCE_SYSTEM, "SJP")
            .await
            .ok()
            .flatten(),
        None => None,
    };
    if let (Some(dev), Some((demo, register))) = (&dev, &demo) {
        let certs = dev.certs_dir.display();
        println!();
        println!(
            "lefi {} — development mode (never use these certificates in production)",
            env!("CARGO_PKG_VERSION")
        );
        println!("  party API   https://{party}   mTLS, party certificates signed by {certs}/ca.pem");
        println!("  admin API   https://{admin}   mTLS, operator certificate {certs}/operator.pem");
        println!("  database    {db_url}");
        println!("  certs       {certs}/  (ca, server, operator, insurer, municipality; .pem + .key)");
        for p in &demo.parties {
            println!("  demo party  {p}");
        }
        if register.facts_loaded > 0 {
            println!(
                "  register    loaded {} synthetic persons ({} facts; test-range identity numbers)",
                register.persons_loaded, register.facts_loaded
            );
        }
        println!("  ingest      lefi ingest FILE.ndjson   (operator certificate {certs}/ingest.pem)");
        println!();
        println!("Try it from another terminal:");
        println!("  cargo run --release -- client whoami");
        if let Some(person) = &sample {
            // A synthetic demo person (test-range number), shown so the demo can be followed.
            let person = person.to_display_unmasked();
            println!(
                "  cargo run --release -- client subscribe --reference demo-1 --person {person} --benefits SJP --from 2020-01-01 --basis INS_COORDINATION"
            );
            println!("  cargo run --release -- client stream --cursor-file demo.cursor");
        }
        println!(
            "  grpcurl -cacert {certs}/ca.pem -cert {certs}/insurer.pem -key {certs}/insurer.key localhost:{} lefi.v1.PartyService/WhoAmI",
            party.port()
        );
        println!("Stop with Ctrl-C.");
        println!();
    }
    app.run_until(crate::shutdown::on_signal()).await
}
