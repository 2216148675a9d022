//! The register scenarios: facts committed through the register feed, as a source system would
//! (retroactive payment, correction and retraction, sickness case closed, life certificate missing
//! or received, death registered).

use anyhow::bail;
use time::Duration;

use super::records::{Current, SOURCE_SYSTEM, View, month};
use super::{Played, Sandbox};
use crate::domain::clock::format_date;
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;

impl Sandbox<'_> {
    pub(super) async fn retroactive_payment(&self) -> anyhow::Result<Played> {
        let view = self.view().await?;
        let choice = self.case_of(&view, false)?;
        let covered = month(self.today, 6)?;
        let mut facts = self.case_facts(&choice);
        let gross = 1_234_500;
        facts.push(self.new_fact(
            self.benefit(),
            self.payment(&choice.case.case_id, covered, gross),
            true,
        ));
        let answers = self.ingest(facts).await?;
        let mut played = Played::default();
        self.case_note(&choice, &mut played);
        let record = answers.last().map(|a| a.record_id.clone()).unwrap_or_default();
        played.committed.push(format!(
            "a payment ({}) of 12 345 kr on case {} covering {} .. {}, paid today, retroactive (record {record})",
            self.benefit(),
            choice.case.case_id,
            format_date(covered.0),
            format_date(covered.1)
        ));
        played.expect.push(format!(
            "a Change with one BenefitRecord: kind NEW, retroactive = true, a Payment (gross_ore {gross}), \
             valid {} .. {} (six months back), recorded_at now",
            format_date(covered.0),
            format_date(covered.1)
        ));
        played.check.push(
            "the payment is applied to the past period in `valid`, not to the current month; a monthly run \
             that only looks at this month's payments misses it"
                .to_string(),
        );
        Ok(played)
    }

    pub(super) async fn correction_and_retraction(&self) -> anyhow::Result<Played> {
        let mut played = Played::default();
        let mut view = self.view().await?;
        let payments = |view: &View| -> Vec<Current> {
            view.current
                .iter()
                .filter(|c| {
                    c.record.benefit_type == self.benefit()
                        && matches!(c.record.fact, Some(pb::benefit_record::Fact::Payment(_)))
                })
                .cloned()
                .collect()
        };
        if payments(&view).len() < 2 {
            // Too few to correct one and retract another: two payments first.
            let choice = self.case_of(&view, false)?;
            let mut facts = self.case_facts(&choice);
            for back in [2, 1] {
                facts.push(self.new_fact(
                    self.benefit(),
                    self.payment(&choice.case.case_id, month(self.today, back)?, 1_000_000),
                    false,
                ));
            }
            self.ingest(facts).await?;
            self.case_note(&choice, &mut played);
            played
                .committed
                .push("two payments (10 000 kr each), since the person had fewer than two".to_string());
            played
                .expect
                .push("first Changes with the two NEW payments (kind NEW)".to_string());
            view = self.view().await?;
        }
        let payments = payments(&view);
        let (Some(corrected), Some(retracted)) = (payments.last(), payments.iter().rev().nth(1)) else {
            bail!("the register holds fewer than two payments of the person after adding them");
        };
        let Some(pb::benefit_record::Fact::Payment(paid)) = &corrected.record.fact else {
            bail!("the payment to correct holds no payment");
        };
        let mut paid = paid.clone();
        paid.gross_ore += 10_000;
        match paid.lines.first_mut() {
            Some(line) => line.amount_ore += 10_000,
            None => paid.lines.push(pb::AmountLine {
                amount_type: "GRUND".to_string(),
                amount_ore: paid.gross_ore,
            }),
        }
        paid.preliminary = false;
        let gross = paid.gross_ore;
        let facts = vec![
            self.next_version(
                corrected,
                pb::RecordKind::Correction,
                Some(admin_pb::fact::Body::Payment(paid)),
            ),
            self.next_version(retracted, pb::RecordKind::Retraction, None),
        ];
        self.ingest(facts).await?;
        played.committed.push(format!(
            "a CORRECTION of payment record {} (version {} → {}): gross +100 kr, now {gross} öre",
            corrected.record.record_id,
            corrected.record.version,
            corrected.record.version + 1
        ));
        played.committed.push(format!(
            "a RETRACTION of payment record {} (version {} → {})",
            retracted.record.record_id,
            retracted.record.version,
            retracted.record.version + 1
        ));
        played.expect.push(format!(
            "a Change with record {}: kind CORRECTION, version {}, the Payment with gross_ore {gross}",
            corrected.record.record_id,
            corrected.record.version + 1
        ));
        played.expect.push(format!(
            "a Change with record {}: kind RETRACTION, version {} (it carries the retracted content, for reference)",
            retracted.record.record_id,
            retracted.record.version + 1
        ));
        played.check.push(
            "the correction replaces the whole payment you hold under that record_id; the retraction removes \
             its record_id (a retracted payment was never paid: do not keep it)"
                .to_string(),
        );
        Ok(played)
    }

    pub(super) async fn sickness_case_closed(&self) -> anyhow::Result<Played> {
        let mut played = Played::default();
        let view = self.view().await?;
        let choice = self.case_of(&view, true)?;
        if choice.current.is_none() {
            // No open case to close: open one first (its own commit), then close it.
            self.ingest(self.case_facts(&choice)).await?;
            self.case_note(&choice, &mut played);
        }
        let view = self.view().await?;
        let Some(current) = view
            .current
            .iter()
            .find(|c| matches!(&c.record.fact, Some(pb::benefit_record::Fact::Case(case)) if case.case_id == choice.case.case_id))
        else {
            bail!("the case to close is not in the register");
        };
        let mut closed = choice.case.clone();
        closed.closed = format_date(self.today);
        closed.status = pb::BenefitCaseStatus::Closed as i32;
        let facts = vec![
            self.next_version(
                current,
                pb::RecordKind::Correction,
                Some(admin_pb::fact::Body::Case(closed)),
            ),
            self.new_fact(
                self.benefit(),
                admin_pb::fact::Body::PersonEvent(pb::PersonEvent {
                    kind: pb::PersonEventKind::SicknessCaseClosed as i32,
                    event_date: format_date(self.today),
                }),
                false,
            ),
        ];
        self.ingest(facts).await?;
        played.committed.push(format!(
            "a CORRECTION of case {} (record {}): status CLOSED, closed {}",
            choice.case.case_id,
            current.record.record_id,
            format_date(self.today)
        ));
        played.committed.push(format!(
            "a PersonEvent SICKNESS_CASE_CLOSED ({}, event_date {})",
            self.benefit(),
            format_date(self.today)
        ));
        played.expect.push(format!(
            "a Change with record {}: kind CORRECTION, a BenefitCase with status CLOSED and closed = {}",
            current.record.record_id,
            format_date(self.today)
        ));
        played.expect.push(
            "a Change with a NEW PersonEvent record, kind SICKNESS_CASE_CLOSED (the two may come in one Change)"
                .to_string(),
        );
        played.check.push(
            "your client closes the sickness case on its side (avslutat sjukfall): coordination of your payouts \
             stops; the subscription itself stays ACTIVE"
                .to_string(),
        );
        Ok(played)
    }

    pub(super) async fn life_certificate(&self, received: bool) -> anyhow::Result<Played> {
        let mut played = Played::default();
        let view = self.view().await?;
        let choice = self.case_of(&view, false)?;
        let (event, decision) = if received {
            (
                pb::PersonEventKind::LifeCertificateReceived,
                pb::DecisionKind::Unblocked,
            )
        } else {
            (
                pb::PersonEventKind::LifeCertificateMissing,
                pb::DecisionKind::Blocked,
            )
        };
        let mut facts = self.case_facts(&choice);
        facts.push(self.new_fact(
            "",
            admin_pb::fact::Body::PersonEvent(pb::PersonEvent {
                kind: event as i32,
                event_date: format_date(self.today),
            }),
            false,
        ));
        facts.push(self.new_fact(
            self.benefit(),
            admin_pb::fact::Body::Decision(pb::Decision {
                case_id: choice.case.case_id.clone(),
                kind: decision as i32,
                effective_from: format_date(self.today),
                decided_on: format_date(self.today),
            }),
            false,
        ));
        self.ingest(facts).await?;
        self.case_note(&choice, &mut played);
        let (event, decision) = (event.as_str_name(), decision.as_str_name());
        played.committed.push(format!(
            "a PersonEvent {event} (no benefit type: it concerns every subscription on the person), event_date {}",
            format_date(self.today)
        ));
        played.committed.push(format!(
            "a Decision {decision} on the {} case {}, effective and decided {}",
            self.benefit(),
            choice.case.case_id,
            format_date(self.today)
        ));
        played.expect.push(format!(
            "a Change with a NEW PersonEvent record, kind {event}, benefit_type empty"
        ));
        played.expect.push(format!(
            "a Change with a NEW Decision record, kind {decision}, valid from {} (the two may come in one Change)",
            format_date(self.today)
        ));
        if received {
            played.check.push(
                "your client lifts the block it recorded for life-certificate-missing: payments resume (the \
                 UNBLOCKED decision is the ground; the event says why)"
                    .to_string(),
            );
        } else {
            played.check.push(
                "your client records that the benefit is blocked from today (no payments to coordinate); play \
                 life-certificate-received to lift it"
                    .to_string(),
            );
        }
        Ok(played)
    }

    pub(super) async fn death_registered(&self) -> anyhow::Result<Played> {
        let view = self.view().await?;
        let died = self.today - Duration::days(1);
        let (name, protected) = view
            .person
            .as_ref()
            .map(|p| (p.name.clone(), p.protected_identity))
            .unwrap_or_default();
        let (source_system, version) = match &view.person_source {
            Some((system, version)) => (system.clone(), version + 1),
            None => (SOURCE_SYSTEM.to_string(), 1),
        };
        let update = admin_pb::Fact {
            source_system,
            source_id: String::new(),
            source_version: version,
            person_id: self.person_id(),
            benefit_type: String::new(),
            kind: pb::RecordKind::Correction as i32,
            valid: None,
            retroactive: false,
            body: Some(admin_pb::fact::Body::Person(admin_pb::PersonUpdate {
                name,
                protected_identity: protected,
                date_of_death: format_date(died),
            })),
        };
        let event = self.new_fact(
            "",
            admin_pb::fact::Body::PersonEvent(pb::PersonEvent {
                kind: pb::PersonEventKind::DeathRegistered as i32,
                event_date: format_date(died),
            }),
            false,
        );
        self.ingest(vec![update, event]).await?;
        let mut played = Played::default();
        played.committed.push(format!(
            "a person update: date of death {} (name and protected identity unchanged)",
            format_date(died)
        ));
        played.committed.push(format!(
            "a PersonEvent DEATH_REGISTERED, event_date {} (no benefit type: every subscription on the person)",
            format_date(died)
        ));
        played.expect.push(format!(
            "a Change whose person.date_of_death is {} (with no records when only the person changed)",
            format_date(died)
        ));
        played.expect.push(
            "a Change with a NEW PersonEvent record, kind DEATH_REGISTERED (the two may come in one Change)"
                .to_string(),
        );
        played.check.push(
            "your client records the death from `person.date_of_death` of any Change or snapshot, not only from \
             the event; the subscription stays ACTIVE (later corrections and payments for the time before the \
             death still come)"
                .to_string(),
        );
        Ok(played)
    }
}
