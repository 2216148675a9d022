//! What `serve --dev` adds for the register: the operator with the `ingest` role whose certificate
//! is `certs-dev/ingest.pem` (issued by the development operator CA with the rest of
//! `certs-dev/`, used by `lefi ingest`) and, when the register is empty, a small synthetic
//! register so the demo shows data.
//!
//! Nothing here runs without `--dev`. The synthetic identity numbers come from the test range
//! (birth numbers 980–999, see [`crate::dev::synth`]).

use std::path::Path;

use anyhow::Context as _;

use crate::dev::certs::DEMO_INGEST_OPERATOR;
use crate::dev::synth::Synth;
use crate::domain::OperatorRole;
use crate::domain::clock::Clock;
use crate::domain::onboarding::NewOperator;
use crate::domain::register::versions::IngestResult;
use crate::identity::certificate_facts;
use crate::store::Store;

/// How many synthetic persons `serve --dev` loads into an empty register.
pub const DEMO_PERSONS: usize = 200;
/// The seed of the demo register (the same demo every time, up to today's date).
pub const DEMO_SEED: u64 = 20_240_101;
/// The source system of the demo register (apart from `SYNTH`, so a `lefi synth` file can be
/// loaded beside it).
pub const DEMO_SOURCE_SYSTEM: &str = "SYNTH-DEMO";

/// What [`seed`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoRegisterSummary {
    /// Facts loaded now (0 when the register already held data).
    pub facts_loaded: usize,
    /// Persons loaded now.
    pub persons_loaded: usize,
}

/// Registers the demo ingest operator, then loads [`DEMO_PERSONS`] synthetic persons
/// (history up to today) if the register is empty. Idempotent.
pub async fn seed(store: &Store, certs_dir: &Path, clock: &Clock) -> anyhow::Result<DemoRegisterSummary> {
    let cert_path = certs_dir.join("ingest.pem");
    let pem = std::fs::read(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
    let (cert, _) = certificate_facts(&pem).context("certs-dev/ingest.pem")?;
    store
        .upsert_operator(
            &NewOperator {
                fingerprint: &cert.fingerprint,
                name: DEMO_INGEST_OPERATOR,
                role: OperatorRole::Ingest,
            },
            clock.now_micros(),
        )
        .await?;

    if store.head_seq().await? > 0 {
        return Ok(DemoRegisterSummary {
            facts_loaded: 0,
            persons_loaded: 0,
        });
    }
    let today = clock.today();
    let mut synth = Synth::with_source(DEMO_SEED, today, DEMO_SOURCE_SYSTEM, "D");
    let mut facts = Vec::new();
    for _ in 0..DEMO_PERSONS {
        for fact in synth.next_person()? {
            // Synthetic facts are valid by construction; one that is not is left out.
            if let Ok(fact) = crate::grpc::convert::new_fact(fact, today) {
                facts.push(fact);
            }
        }
    }
    let mut loaded = 0;
    for batch in chunks(facts, crate::grpc::admin_api::register::INGEST_BATCH) {
        let results = store.ingest(batch, clock.now_micros()).await?;
        loaded += results
            .iter()
            .filter(|r| matches!(r, IngestResult::Accepted(_)))
            .count();
    }
    tracing::info!(
        persons = DEMO_PERSONS,
        facts = loaded,
        "loaded a synthetic demo register"
    );
    Ok(DemoRegisterSummary {
        facts_loaded: loaded,
        persons_loaded: DEMO_PERSONS,
    })
}

fn chunks<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut current = Vec::with_capacity(size);
    for item in items {
        current.push(item);
        if current.len() == size {
            out.push(std::mem::replace(&mut current, Vec::with_capacity(size)));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}
