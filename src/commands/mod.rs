//! What each `lefi` subcommand does. `main.rs` parses and dispatches; the work is here.

mod admin;
mod bench;
mod chaos;
mod client;
mod failure;
mod ingest;
mod operations;
mod orders;
mod output;
mod sandbox;
mod serve;
mod statistics;
mod stream;

use std::process::ExitCode;

use crate::cli::{Cli, Command, DevCertsArgs, DevCertsCommand, OperatorCommand};
use crate::domain::clock::Clock;
use crate::domain::onboarding::NewOperator;
use crate::store::Store;

/// Exit code for a usage or configuration error (sysexits EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// Runs a parsed command line to completion.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => return serve::run(args, cli.log_format).await,
        Command::Migrate(db) => migrate(&db.database_url).await,
        Command::Bench { command } => bench::run(command).await,
        Command::DevCerts(args) => dev_certs(args),
        Command::Operator { command } => operator(command).await,
        Command::Client(args) => return client::run_client(args).await,
        Command::Admin(args) => return admin::run(args).await,
        Command::Orders(args) => return statistics::run_orders(args).await,
        Command::Ingest(args) => return ingest::run_ingest(args).await,
        Command::Synth(args) => ingest::synth(args),
        Command::Chaos(args) => chaos::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(url: &str) -> anyhow::Result<()> {
    let store = Store::connect(url, 2).await?;
    println!(
        "migrations applied to {} ({:?})",
        crate::config::redact_url(url),
        store.kind()
    );
    store.close().await;
    Ok(())
}

fn dev_certs(args: DevCertsArgs) -> anyhow::Result<()> {
    match args.command {
        None => {
            let outcome = crate::dev::certs::ensure_dev_dir(&args.out, args.force)?;
            match outcome {
                crate::dev::certs::DevDirOutcome::Created => println!(
                    "wrote the development CAs (ca: parties and the server; operator-ca: operators) and \
                     certificates to {}: {}",
                    args.out.display(),
                    crate::dev::certs::dev_files().join(" ")
                ),
                crate::dev::certs::DevDirOutcome::Completed(written) => println!(
                    "completed {} (the other files were kept): {}",
                    args.out.display(),
                    written.join(" ")
                ),
                crate::dev::certs::DevDirOutcome::AlreadyPresent => println!(
                    "{} already holds every development certificate; use --force to regenerate them",
                    args.out.display()
                ),
            }
            println!("these are for development only: never use them in production");
            Ok(())
        }
        Some(DevCertsCommand::IssueParty {
            dir,
            org_number,
            name,
            stem,
        }) => {
            let org = crate::domain::OrgNumber::parse(&org_number)
                .map_err(|e| anyhow::anyhow!("--org-number: {e}"))?;
            let stem = stem.unwrap_or_else(|| org.as_str().to_string());
            let (cert, key) = crate::dev::certs::issue_party_files(&dir, &org.to_string(), &name, &stem)?;
            println!("issued a client certificate for {name} ({org}):");
            println!("  certificate  {}", cert.display());
            println!("  private key  {}", key.display());
            println!(
                "register it for the party with: lefi admin connect --party-id <ID> --cert-file {}",
                cert.display()
            );
            Ok(())
        }
    }
}

async fn operator(command: OperatorCommand) -> anyhow::Result<()> {
    match command {
        OperatorCommand::Add {
            database,
            cert,
            name,
            role,
        } => {
            let pem = std::fs::read(&cert)
                .map_err(|e| anyhow::anyhow!("cannot read --cert '{}': {e}", cert.display()))?;
            let (facts, _) = crate::identity::certificate_facts(&pem)?;
            let store = Store::connect(&database.database_url, 2).await?;
            store
                .upsert_operator(
                    &NewOperator {
                        fingerprint: &facts.fingerprint,
                        name: &name,
                        role,
                    },
                    Clock::system().now_micros(),
                )
                .await?;
            println!(
                "registered operator {name} ({role}) with certificate {}",
                facts.fingerprint
            );
            store.close().await;
            Ok(())
        }
        OperatorCommand::Revoke {
            database,
            fingerprint,
        } => {
            let fingerprint = fingerprint.replace(':', "").to_ascii_lowercase();
            let store = Store::connect(&database.database_url, 2).await?;
            let revoked = store
                .revoke_operator(&fingerprint, Clock::system().now_micros())
                .await?;
            store.close().await;
            if !revoked {
                anyhow::bail!(
                    "no operator has the certificate {fingerprint}\n  hint: `lefi operator list` shows the registered ones"
                );
            }
            println!("revoked the operator certificate {fingerprint}: its next admin call is refused");
            Ok(())
        }
        OperatorCommand::List(db) => {
            let store = Store::connect(&db.database_url, 2).await?;
            println!(
                "{:<30} {:<9} {:<8} FINGERPRINT (SHA-256)",
                "NAME", "ROLE", "STATUS"
            );
            for op in store.operators().await? {
                let status = if op.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!("{:<30} {:<9} {:<8} {}", op.name, op.role, status, op.fingerprint);
            }
            store.close().await;
            Ok(())
        }
    }
}
