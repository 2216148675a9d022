//! What the scenarios share: reading what the register holds on the person (`view`, the case a
//! scenario's facts belong to) and building facts (new ones of the sandbox's own source system, the
//! next version of one the register holds, a payment) and sending them to the register feed.
//! Also the date and id helpers the scenarios use.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use time::{Date, Duration, Month};

use super::{Played, Sandbox};
use crate::cli::ConnectArgs;
use crate::commands::client::target;
use crate::domain::clock::format_date;
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;

/// The source system of the facts the sandbox commits (apart from the demo register's).
pub(super) const SOURCE_SYSTEM: &str = "SANDBOX";

/// The latest version of one fact the register holds, and where it came from.
#[derive(Debug, Clone)]
pub(super) struct Current {
    pub(super) record: pb::BenefitRecordFields,
    pub(super) source_system: String,
    pub(super) source_id: String,
    pub(super) source_version: u64,
}

/// A case the scenario's facts belong to: one the register holds, or one the scenario creates.
pub(super) struct CaseChoice {
    pub(super) case: pb::BenefitCase,
    /// The register's version of it; `None` when the scenario creates it.
    pub(super) current: Option<Current>,
}

/// What the register holds on the person, as the operator sees it (`ShowPerson`).
pub(super) struct View {
    pub(super) person: Option<pb::Person>,
    /// The latest version of every fact not retracted, in register order.
    pub(super) current: Vec<Current>,
    /// The latest version of the person's own data: its source system and version.
    pub(super) person_source: Option<(String, u64)>,
}

impl Sandbox<'_> {
    pub(super) fn benefit(&self) -> &str {
        self.args.benefit.trim()
    }

    pub(super) fn person_id(&self) -> String {
        self.person.as_storage().to_string()
    }

    /// Reads what the register holds on the person (an operator view, logged as such).
    pub(super) async fn view(&self) -> anyhow::Result<View> {
        let answer =
            admin_pb::register_admin_service_client::RegisterAdminServiceClient::new(self.admin.clone())
                .show_person(admin_pb::ShowPersonRequest {
                    person_id: self.person_id(),
                    as_of_sequence: 0,
                })
                .await;
        let shown = match answer {
            Ok(shown) => shown.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => {
                return Ok(View {
                    person: None,
                    current: Vec::new(),
                    person_source: None,
                });
            }
            Err(status) => return Err(status.into()),
        };
        let mut latest: BTreeMap<(String, String), Current> = BTreeMap::new();
        for fact in shown.facts {
            let Some(record) = fact.record else { continue };
            let current = Current {
                record: record.into_fields(),
                source_system: fact.source_system,
                source_id: fact.source_id,
                source_version: fact.source_version,
            };
            let key = (current.source_system.clone(), current.source_id.clone());
            match latest.get(&key) {
                Some(held) if held.record.register_sequence >= current.record.register_sequence => {}
                _ => {
                    latest.insert(key, current);
                }
            }
        }
        let mut current: Vec<Current> = latest
            .into_values()
            .filter(|c| c.record.kind != pb::RecordKind::Retraction as i32)
            .collect();
        current.sort_by_key(|c| c.record.register_sequence);
        let person_source = shown
            .person_versions
            .iter()
            .max_by_key(|v| v.register_sequence)
            .map(|v| (v.source_system.clone(), v.source_version));
        Ok(View {
            person: shown.person,
            current,
            person_source,
        })
    }

    /// The case of the scenario's benefit: the latest open top-level one, else the latest one
    /// (`open_only`: none), else a new sandbox case opened two months ago.
    pub(super) fn case_of(&self, view: &View, open_only: bool) -> anyhow::Result<CaseChoice> {
        let cases = view.current.iter().filter_map(|c| match &c.record.fact {
            Some(pb::benefit_record::Fact::Case(case)) if c.record.benefit_type == self.benefit() => {
                Some((c, case))
            }
            _ => None,
        });
        let is_open = |case: &pb::BenefitCase| case.status == pb::BenefitCaseStatus::Open as i32;
        let chosen = cases
            .clone()
            .rfind(|(_, case)| is_open(case) && case.parent_case_id.is_empty())
            .or_else(|| cases.clone().rfind(|(_, case)| is_open(case)))
            .or_else(|| {
                if open_only {
                    None
                } else {
                    cases.clone().next_back()
                }
            });
        if let Some((current, case)) = chosen {
            return Ok(CaseChoice {
                case: case.clone(),
                current: Some(current.clone()),
            });
        }
        Ok(CaseChoice {
            case: pb::BenefitCase {
                case_id: format!("SANDBOX-{}", short_id()),
                parent_case_id: String::new(),
                opened: format_date(self.today - Duration::days(60)),
                closed: String::new(),
                status: pb::BenefitCaseStatus::Open as i32,
            },
            current: None,
        })
    }

    /// A new fact of the sandbox's own source system.
    pub(super) fn new_fact(
        &self,
        benefit: &str,
        body: admin_pb::fact::Body,
        retroactive: bool,
    ) -> admin_pb::Fact {
        admin_pb::Fact {
            source_system: SOURCE_SYSTEM.to_string(),
            source_id: format!("sandbox-{}", uuid::Uuid::now_v7()),
            source_version: 1,
            person_id: self.person_id(),
            benefit_type: benefit.to_string(),
            kind: pb::RecordKind::New as i32,
            valid: None,
            retroactive,
            body: Some(body),
        }
    }

    /// The next version of a fact the register holds.
    pub(super) fn next_version(
        &self,
        of: &Current,
        kind: pb::RecordKind,
        body: Option<admin_pb::fact::Body>,
    ) -> admin_pb::Fact {
        admin_pb::Fact {
            source_system: of.source_system.clone(),
            source_id: of.source_id.clone(),
            source_version: of.source_version + 1,
            person_id: self.person_id(),
            benefit_type: of.record.benefit_type.clone(),
            kind: kind as i32,
            valid: None,
            retroactive: false,
            body,
        }
    }

    /// The facts that create the chosen case, when the scenario creates it.
    pub(super) fn case_facts(&self, choice: &CaseChoice) -> Vec<admin_pb::Fact> {
        match choice.current {
            Some(_) => Vec::new(),
            None => vec![self.new_fact(
                self.benefit(),
                admin_pb::fact::Body::Case(choice.case.clone()),
                false,
            )],
        }
    }

    /// A payment on `case_id` covering `covered`, paid today.
    pub(super) fn payment(
        &self,
        case_id: &str,
        covered: (Date, Date),
        gross_ore: i64,
    ) -> admin_pb::fact::Body {
        let payer = if matches!(self.benefit(), "AP" | "GP" | "IP") {
            "PM"
        } else {
            "FK"
        };
        admin_pb::fact::Body::Payment(pb::Payment {
            case_id: case_id.to_string(),
            payment_date: format_date(self.today),
            covered: Some(pb::DateRange {
                from: format_date(covered.0),
                to: format_date(covered.1),
            }),
            gross_ore,
            tax_ore: gross_ore * 30 / 100,
            preliminary: false,
            lines: vec![pb::AmountLine {
                amount_type: "GRUND".to_string(),
                amount_ore: gross_ore,
            }],
            payer: payer.to_string(),
        })
    }

    /// Sends facts to the register feed (as the `ingest` operator) and returns the answers; a
    /// rejected fact fails the scenario.
    pub(super) async fn ingest(
        &self,
        facts: Vec<admin_pb::Fact>,
    ) -> anyhow::Result<Vec<admin_pb::IngestResponse>> {
        let sent = facts.len();
        let ingest = ConnectArgs {
            cert: Some(self.args.ingest_cert.clone()),
            key: None,
            ..self.connect.clone()
        };
        let channel = target(&ingest, "https://localhost:50052", "ingest")?
            .connect()
            .await
            .context("connecting to the register feed with --ingest-cert")?;
        let requests = tokio_stream::iter(
            facts
                .into_iter()
                .map(|fact| admin_pb::IngestRequest { fact: Some(fact) }),
        );
        let mut answers = admin_pb::register_admin_service_client::RegisterAdminServiceClient::new(channel)
            .ingest(requests)
            .await?
            .into_inner();
        let mut out = Vec::with_capacity(sent);
        while let Some(answer) = answers.message().await? {
            if answer.outcome == admin_pb::IngestOutcome::Rejected as i32 {
                let reason = pb::ErrorReason::try_from(answer.reason)
                    .unwrap_or_default()
                    .as_str_name();
                bail!(
                    "the register rejected the scenario's fact {} ({reason}, field '{}'): {}",
                    answer.index,
                    answer.field,
                    answer.message
                );
            }
            out.push(answer);
        }
        if out.len() != sent {
            bail!(
                "the register answered {} of the scenario's {sent} facts",
                out.len()
            );
        }
        Ok(out)
    }

    /// "The case is new" note, when the scenario created the case.
    pub(super) fn case_note(&self, choice: &CaseChoice, played: &mut Played) {
        if choice.current.is_none() {
            played.committed.push(format!(
                "a new {} case {} (OPEN): the person had none to use",
                self.benefit(),
                choice.case.case_id
            ));
            played.expect.push(format!(
                "first a Change with the NEW case {} (BenefitCase, OPEN)",
                choice.case.case_id
            ));
        }
    }
}

/// The first and last day of the month `back` months before `day`'s.
pub(super) fn month(day: Date, back: i32) -> anyhow::Result<(Date, Date)> {
    let first = |index: i32| -> anyhow::Result<Date> {
        let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1)?)?;
        Ok(Date::from_calendar_date(index.div_euclid(12), month, 1)?)
    };
    let index = day.year() * 12 + i32::from(u8::from(day.month())) - 1 - back;
    let start = first(index)?;
    let end = first(index + 1)? - Duration::days(1);
    Ok((start, end))
}

/// A short random id for a case the sandbox creates.
fn short_id() -> String {
    uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .take(8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_back_cross_years() {
        let day = Date::from_calendar_date(2025, Month::March, 15).unwrap();
        let (from, to) = month(day, 6).unwrap();
        assert_eq!(format_date(from), "2024-09-01");
        assert_eq!(format_date(to), "2024-09-30");
        let (from, to) = month(day, 0).unwrap();
        assert_eq!(
            (format_date(from), format_date(to)),
            ("2025-03-01".into(), "2025-03-31".into())
        );
        let (from, to) = month(Date::from_calendar_date(2024, Month::February, 1).unwrap(), 0).unwrap();
        assert_eq!(
            (format_date(from), format_date(to)),
            ("2024-02-01".into(), "2024-02-29".into())
        );
    }
}
