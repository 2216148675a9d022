//! The demo operator and the two demo parties that `serve --dev` registers, with the certificates it
//! wrote into `certs-dev/`.
//!
//! The demo organisations are synthetic; nothing here runs without `--dev`.

use std::path::Path;

use anyhow::Context as _;
use time::macros::date;

use crate::dev::certs::{
    DEMO_INSURER, DEMO_MUNICIPALITY, DEMO_OPERATOR, DEMO_STATISTICIANS, DEMO_STATISTICS_AUTHORITY,
};
use crate::domain::clock::Clock;
use crate::domain::onboarding::NewOperator;
use crate::domain::{OperatorRole, OrgNumber, PartyKind};
use crate::identity::certificate_facts;
use crate::store::Store;
use crate::store::parties::{Actor, NewApplication, NewCertificate, NewConnectedParty};

/// What the demo set-up found or created, for the start-up summary.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    pub parties: Vec<String>,
}

/// Registers the demo operator (role `operator`), the demo statistics unit (two statisticians)
/// and the demo parties with the certificates in `certs_dir`.
/// Idempotent: a second start finds them registered.
pub async fn seed(store: &Store, certs_dir: &Path, clock: &Clock) -> anyhow::Result<DemoSummary> {
    let now = clock.now_micros();
    let read = |name: &str| {
        let path = certs_dir.join(name);
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    };
    let (operator, _) = certificate_facts(&read("operator.pem")?).context("certs-dev/operator.pem")?;
    store
        .upsert_operator(
            &NewOperator {
                fingerprint: &operator.fingerprint,
                name: DEMO_OPERATOR,
                role: OperatorRole::Operator,
            },
            now,
        )
        .await?;
    for (stem, name) in DEMO_STATISTICIANS {
        let file = format!("{stem}.pem");
        let (cert, _) = certificate_facts(&read(&file)?).with_context(|| format!("certs-dev/{file}"))?;
        store
            .upsert_operator(
                &NewOperator {
                    fingerprint: &cert.fingerprint,
                    name,
                    role: OperatorRole::Statistician,
                },
                now,
            )
            .await?;
    }

    let mut parties = Vec::new();
    for (file, (org, name), kind, bases) in [
        (
            "insurer.pem",
            DEMO_INSURER,
            PartyKind::Insurer,
            vec!["INS_COORDINATION", "INS_RISK_ASSESSMENT", "INS_CLAIMS"],
        ),
        (
            "municipality.pem",
            DEMO_MUNICIPALITY,
            PartyKind::MunicipalAuthority,
            vec!["AUTH_DUTY_1980_995", "AUTH_SOCIAL_SERVICES"],
        ),
        (
            "statistics.pem",
            DEMO_STATISTICS_AUTHORITY,
            PartyKind::StateAuthority,
            vec!["STAT_INDIVIDUAL_DATA"],
        ),
    ] {
        let org_number = OrgNumber::parse(org).context("demo organisation number")?;
        let (cert, _) = certificate_facts(&read(file)?).with_context(|| format!("certs-dev/{file}"))?;
        let benefit_codes = store.benefit_codes().await?;
        let application = NewApplication {
            org_number: org_number.clone(),
            name: name.to_string(),
            kind,
            contact_name: "Demo Kontakt".to_string(),
            contact_email: "demo@example.invalid".to_string(),
            basis_codes: bases.iter().map(|b| (*b).to_string()).collect(),
            benefit_codes,
        };
        let party = NewConnectedParty::granting_application(
            application,
            format!("DEMO-{}", org_number.as_str()),
            date!(2024 - 01 - 01),
            vec![cert],
        );
        store
            .onboard_connected(&Actor::system("lefi --dev"), &party, now)
            .await
            .with_context(|| format!("registering the demo party {name}"))?;
        parties.push(format!("{name} ({org_number}, {kind})"));
    }
    Ok(DemoSummary { parties })
}

/// A connected insurer for a benchmark or a robustness run, with the basis INS_COORDINATION for
/// `benefits` and an avtal from 2024 under `agreement_id`, holding `certificate`; `run` names the
/// run in its contact details.
pub fn run_insurer(
    run: &str,
    org: &str,
    name: &str,
    agreement_id: String,
    benefits: &[String],
    certificate: NewCertificate,
) -> anyhow::Result<NewConnectedParty> {
    let application = NewApplication {
        org_number: OrgNumber::parse(org).map_err(|e| anyhow::anyhow!("{e}"))?,
        name: name.to_string(),
        kind: PartyKind::Insurer,
        contact_name: run.to_string(),
        contact_email: format!("{}@example.invalid", run.to_lowercase()),
        basis_codes: vec!["INS_COORDINATION".to_string()],
        benefit_codes: benefits.to_vec(),
    };
    Ok(NewConnectedParty::granting_application(
        application,
        agreement_id,
        date!(2024 - 01 - 01),
        vec![certificate],
    ))
}
