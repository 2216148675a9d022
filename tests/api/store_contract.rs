//! The store's contract, room by room, on both backends: every public `Store` operation, the
//! refusals it promises and the order it guarantees. The tests call the server's own store handle
//! (`app.store`) with the server's clock; the other files reach the same code through the API.
//!
//! One module per room of `src/store/`: [`parties`], [`catalogue`], [`register`], [`delivery`],
//! [`consents`] (consents and case references), [`disclosure_log`]; then the handle itself
//! ([`handle`]: migrating, housekeeping, closing, wake-ups), [`errors`] (how a database that cannot
//! be used is reported) and [`migrations`] (what migration 0008 does to rows stored before it).
//! Fixtures every room uses come first.

use lefi::domain::Personnummer;
use lefi::domain::register::versions::IngestResult;
use lefi::domain::register::{
    CompensationPeriod, Extent, FactBody, FactParts, NewFact, PersonData, RecordKind,
};
use time::Date;
use time::macros::date;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp};

/// Three persons (synthetic, test-range numbers), in their twelve-digit storage form.
const P1: &str = "199007042386";
const P2: &str = "199501132386";
const P3: &str = "201701012393";

const COORDINATION: &str = "INS_COORDINATION";
const RISK_ASSESSMENT: &str = "INS_RISK_ASSESSMENT";

const JANUARY: (Date, Date) = (date!(2024 - 01 - 01), date!(2024 - 01 - 31));
const FEBRUARY: (Date, Date) = (date!(2024 - 02 - 01), date!(2024 - 02 - 29));

fn pnr(storage: &str) -> Personnummer {
    Personnummer::from_storage(storage).unwrap()
}

fn codes(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A fact from the source system MIDAS about `person`: fact `source_id` at `version`.
fn parts(person: &str, source_id: &str, version: u64, benefit: &str, body: Option<FactBody>) -> FactParts {
    FactParts {
        source_system: "MIDAS".to_string(),
        source_id: source_id.to_string(),
        source_version: version,
        person: pnr(person),
        benefit_type: benefit.to_string(),
        kind: RecordKind::New,
        valid: None,
        retroactive: false,
        body,
    }
}

/// A compensation period of `benefit` over `days`, before validation.
fn period_parts(
    person: &str,
    source_id: &str,
    version: u64,
    benefit: &str,
    (from, to): (Date, Date),
) -> FactParts {
    let body = FactBody::Period(CompensationPeriod {
        case_id: "FALL-1".to_string(),
        from,
        to,
        extent: Extent::Full,
        daily_amount_ore: 90_000,
    });
    parts(person, source_id, version, benefit, Some(body))
}

/// A compensation period of `benefit` over `days`.
fn period(person: &str, source_id: &str, version: u64, benefit: &str, days: (Date, Date)) -> NewFact {
    NewFact::new(period_parts(person, source_id, version, benefit, days)).unwrap()
}

/// The retraction of fact `source_id`.
fn retraction(person: &str, source_id: &str, version: u64, benefit: &str) -> NewFact {
    NewFact::new(FactParts {
        kind: RecordKind::Retraction,
        ..parts(person, source_id, version, benefit, None)
    })
    .unwrap()
}

/// The person's own data from the population register.
fn person_update(person: &str, version: u64, name: &str) -> NewFact {
    let body = FactBody::Person(PersonData {
        name: name.to_string(),
        ..PersonData::default()
    });
    NewFact::new(FactParts {
        source_system: "FOLKBOKF".to_string(),
        ..parts(person, "", version, "", Some(body))
    })
    .unwrap()
}

/// Ingests `facts` as recorded at `now` and returns each one's sequence; all must be accepted.
async fn accept_at(app: &TestApp, facts: Vec<NewFact>, now: i64) -> Vec<u64> {
    let results = app.store.ingest(facts, now).await.unwrap();
    results
        .into_iter()
        .map(|r| match r {
            IngestResult::Accepted(v) => v.seq,
            other => panic!("a fact was not accepted: {other:?}"),
        })
        .collect()
}

/// [`accept_at`] now.
async fn accept(app: &TestApp, facts: Vec<NewFact>) -> Vec<u64> {
    accept_at(app, facts, app.clock.now_micros()).await
}

/// PostgreSQL only: opens a transaction on the database at `url` that takes the register head's
/// row lock, as every writer of the register and the delivery history does first; writers queue
/// behind it until [`release`].
async fn hold_register_head(url: &str) -> sqlx::PgConnection {
    let mut holder = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; SELECT last_seq FROM register_head WHERE id = 1 FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();
    holder
}

async fn release(mut holder: sqlx::PgConnection) {
    sqlx::raw_sql("ROLLBACK").execute(&mut holder).await.unwrap();
}

/// PostgreSQL only: waits until `count` connections to the database at `url` wait for a lock in a
/// statement that begins with `statement` (any statement: ""), and returns their process ids.
async fn lock_waiters(url: &str, statement: &str, count: usize) -> Vec<i32> {
    let mut watcher = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    let waiting = async {
        loop {
            let pids: Vec<i32> = sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE $1 || '%'",
            )
            .bind(statement)
            .fetch_all(&mut watcher)
            .await
            .unwrap();
            if pids.len() >= count {
                break pids;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), waiting)
        .await
        .unwrap_or_else(|_| panic!("fewer than {count} waiting in {statement:?} after 30 s"))
}

/// An empty database of the test's own, no table in it: for SQLite a file in a temporary
/// directory; for PostgreSQL a schema in the fresh database of a [`TestApp`] (dropped with it),
/// made the first of the search path of every connection opened with [`EmptyDatabase::url`].
struct EmptyDatabase {
    url: String,
    app: Option<TestApp>,
    _dir: tempfile::TempDir,
}

impl EmptyDatabase {
    /// `None` when the backend is PostgreSQL and none is configured.
    async fn create(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let (url, app) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("empty.db").display()),
                None,
            ),
            Backend::Postgres => {
                let app = TestApp::spawn(backend).await?;
                app.execute_sql("CREATE SCHEMA empty").await;
                let separator = if app.db_url.contains('?') { '&' } else { '?' };
                let url = format!("{}{separator}options=-c%20search_path%3Dempty", app.db_url);
                (url, Some(app))
            }
        };
        Some(Self { url, app, _dir: dir })
    }

    async fn remove(self) {
        if let Some(app) = self.app {
            app.stop().await;
        }
    }
}

/// Parties: every lifecycle step with its refusals, idempotency, the reads, termination settling,
/// certificates and operators.
mod parties {
    use lefi::dev::certs::Issued;
    use lefi::domain::clock::business_day_start;
    use lefi::domain::lifecycle::{PartyAction, Signer, TerminationNotice};
    use lefi::domain::party::AgreementType;
    use lefi::domain::{OperatorRole, OrgNumber, PartyKind, PartyState};
    use lefi::identity::certificate_facts;
    use lefi::store::parties::{
        Actor, AdminError, AuditRecord, Idempotency, NewAgreement, NewApplication, NewCertificate,
        NewConnectedParty, NewSignature, Operator, PartyChange, PartyFilter, PartyRecord,
    };
    use time::macros::date;

    use super::{Backend, COORDINATION, RISK_ASSESSMENT, TestApp, backend_tests, codes};
    use crate::helpers::{connected_party, onboard};

    backend_tests!(
        every_change_moves_the_party_on_and_is_audited_in_order,
        each_change_refuses_a_step_its_state_does_not_allow,
        a_change_to_an_unknown_party_is_party_not_found,
        a_replayed_change_answers_with_the_stored_bytes_and_acts_once,
        a_key_is_bound_to_its_request_and_a_refused_change_leaves_it_free,
        onboarding_a_connected_party_again_adds_nothing,
        records_are_found_by_id_and_by_org_number_preferring_the_live_party,
        listing_pages_by_name_and_filters_by_kind_and_state,
        history_pages_oldest_first_and_is_none_for_an_unknown_party,
        a_termination_whose_day_has_come_is_settled_once,
        certificates_and_operators_are_found_by_fingerprint,
        the_agreement_holds_what_was_granted,
    );

    /// The organisation the tests onboard step by step (the spawned app has two connected ones).
    const ORG: &str = "556000-0019";
    const NAME: &str = "Exempel Försäkring AB";
    const MISSING: &str = "pty_missing";

    fn actor() -> Actor {
        Actor {
            name: "Kontraktstest".to_string(),
            fingerprint: "ab".repeat(32),
        }
    }

    /// Makes `change` now under idempotency key `key` for a request hashed `hash`. The answer stored
    /// with the key is the party's id and stored state ([`answer`] reads it back).
    async fn change_keyed(
        app: &TestApp,
        key: &str,
        hash: &str,
        change: PartyChange<'_>,
    ) -> Result<Vec<u8>, AdminError> {
        let respond = |p: &PartyRecord| format!("{} {}", p.party_id, p.stored_state).into_bytes();
        let idem = Idempotency {
            key,
            request_hash: hash,
            respond: &respond,
        };
        app.store
            .change_party(&actor(), &idem, change, app.clock.now_micros())
            .await
    }

    /// [`change_keyed`] under a fresh key.
    async fn change(app: &TestApp, change: PartyChange<'_>) -> Result<Vec<u8>, AdminError> {
        let key = uuid::Uuid::now_v7().to_string();
        change_keyed(app, &key, &key, change).await
    }

    /// The party id and state a change answered with.
    fn answer(bytes: &[u8]) -> (String, PartyState) {
        let text = std::str::from_utf8(bytes).unwrap();
        let (id, state) = text.split_once(' ').unwrap();
        (id.to_string(), PartyState::parse(state).unwrap())
    }

    fn assert_illegal(result: Result<Vec<u8>, AdminError>, current: PartyState) {
        match result {
            Err(AdminError::IllegalTransition(t)) => assert_eq!(t.current, current, "{t}"),
            other => panic!("expected an illegal transition from {current}, got {other:?}"),
        }
    }

    fn application(org: &str, name: &str, kind: PartyKind, bases: &[&str]) -> NewApplication {
        NewApplication {
            org_number: OrgNumber::parse(org).unwrap(),
            name: name.to_string(),
            kind,
            contact_name: "Anna Andersson".to_string(),
            contact_email: "anna@example.invalid".to_string(),
            basis_codes: codes(bases),
            benefit_codes: codes(&["SJP"]),
        }
    }

    /// An avtal granting coordination and sickness benefit, with a 90-day notice period.
    fn agreement(agreement_id: &str) -> NewAgreement {
        NewAgreement {
            agreement_id: agreement_id.to_string(),
            basis_codes: codes(&[COORDINATION]),
            benefit_codes: codes(&["SJP"]),
            valid_from: date!(2025 - 01 - 01),
            notice_period_days: 90,
        }
    }

    fn signature(signer: Signer) -> NewSignature {
        NewSignature {
            signer,
            signed_by: "Anna Andersson".to_string(),
            signed_on: date!(2025 - 01 - 02),
        }
    }

    /// A new certificate for the example organisation, issued by the test CA.
    fn certificate(app: &TestApp) -> NewCertificate {
        certificate_facts(issue(app).cert_pem.as_bytes()).unwrap().0
    }

    fn issue(app: &TestApp) -> Issued {
        app.certs.ca.issue_client(NAME, Some(ORG)).unwrap()
    }

    fn fingerprint(who: &Issued) -> String {
        certificate_facts(who.cert_pem.as_bytes()).unwrap().0.fingerprint
    }

    /// The example organisation's notice, received today, taking effect in `days` days.
    fn termination(app: &TestApp, days: i64) -> TerminationNotice {
        let today = app.clock.today();
        TerminationNotice {
            org_number: OrgNumber::parse(ORG).unwrap(),
            organisation_name: NAME.to_string(),
            effective_date: today + time::Duration::days(days),
            received_on: today,
            override_reason: None,
        }
    }

    /// Registers the example organisation's application; returns its party id.
    async fn apply(app: &TestApp) -> String {
        let application = application(ORG, NAME, PartyKind::Insurer, &[COORDINATION]);
        answer(&change(app, PartyChange::Apply(&application)).await.unwrap()).0
    }

    async fn record(app: &TestApp, party_id: &str) -> PartyRecord {
        app.store.party_record(party_id).await.unwrap().unwrap()
    }

    async fn history(app: &TestApp, party_id: &str) -> Vec<AuditRecord> {
        app.store.party_history(party_id, 0, 1000).await.unwrap().unwrap()
    }

    fn actions(entries: &[AuditRecord]) -> Vec<PartyAction> {
        entries.iter().map(|e| e.action).collect()
    }

    fn names(records: &[PartyRecord]) -> Vec<&str> {
        records.iter().map(|r| r.application.name.as_str()).collect()
    }

    async fn every_change_moves_the_party_on_and_is_audited_in_order(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let party_id = apply(&app).await;
        let party_id = party_id.as_str();
        let (agreement, cert, notice) = (agreement("AVT-1"), certificate(&app), termination(&app, 100));
        let (by_party, by_agency) = (signature(Signer::Party), signature(Signer::Agency));
        let steps = [
            (
                PartyChange::SendAgreement {
                    party_id,
                    agreement: &agreement,
                },
                PartyState::AgreementSent,
            ),
            (
                PartyChange::RecordSignature {
                    party_id,
                    signature: &by_party,
                },
                PartyState::AgreementSent,
            ),
            (
                PartyChange::RecordSignature {
                    party_id,
                    signature: &by_agency,
                },
                PartyState::Signed,
            ),
            (
                PartyChange::AddCertificate {
                    party_id,
                    certificate: &cert,
                },
                PartyState::Connected,
            ),
            (
                PartyChange::RevokeCertificate {
                    party_id,
                    fingerprint: &cert.fingerprint,
                    reason: "lost",
                },
                PartyState::Connected,
            ),
            (
                PartyChange::ScheduleTermination {
                    party_id,
                    notice: &notice,
                },
                PartyState::TerminationScheduled,
            ),
            (
                PartyChange::WithdrawTermination {
                    party_id,
                    reason: "changed their mind",
                },
                PartyState::Connected,
            ),
        ];
        for (step, expected) in steps {
            let answered = answer(&change(&app, step).await.unwrap());
            assert_eq!(answered, (party_id.to_string(), expected), "{step:?}");
            assert_eq!(record(&app, party_id).await.stored_state, expected, "{step:?}");
        }

        let stored = record(&app, party_id).await;
        assert_eq!(stored.agreement.unwrap().agreement_id, "AVT-1");
        let signers: Vec<Signer> = stored.signatures.iter().map(|s| s.signer).collect();
        assert_eq!(signers, [Signer::Party, Signer::Agency]);
        assert_eq!(stored.certificates.len(), 1);
        assert!(stored.certificates[0].revoked_at.is_some());
        assert_eq!(stored.certificates[0].revocation_reason.as_deref(), Some("lost"));
        assert_eq!(stored.termination, None, "the withdrawn termination is gone");

        use PartyState::*;
        let entries = history(&app, party_id).await;
        let moves: Vec<_> = entries
            .iter()
            .map(|e| (e.action, e.before_state, e.after_state))
            .collect();
        assert_eq!(
            moves,
            [
                (PartyAction::Apply, None, Applied),
                (PartyAction::SendAgreement, Some(Applied), AgreementSent),
                (PartyAction::RecordSignature, Some(AgreementSent), AgreementSent),
                (PartyAction::RecordSignature, Some(AgreementSent), Signed),
                (PartyAction::AddCertificate, Some(Signed), Connected),
                (PartyAction::RevokeCertificate, Some(Connected), Connected),
                (
                    PartyAction::ScheduleTermination,
                    Some(Connected),
                    TerminationScheduled
                ),
                (
                    PartyAction::WithdrawTermination,
                    Some(TerminationScheduled),
                    Connected
                ),
            ]
        );
        assert!(
            entries
                .windows(2)
                .all(|w| w[0].entry_id < w[1].entry_id && w[0].at <= w[1].at)
        );
        for e in &entries {
            assert_eq!(
                (e.party_id.as_str(), e.operator.as_ref()),
                (party_id, Some(&actor()))
            );
            assert!(e.idempotency_key.is_some());
        }
        app.stop().await;
    }

    async fn each_change_refuses_a_step_its_state_does_not_allow(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let party_id = apply(&app).await;
        let party_id = party_id.as_str();
        let (by_party, cert, notice) = (
            signature(Signer::Party),
            certificate(&app),
            termination(&app, 100),
        );
        let sign = PartyChange::RecordSignature {
            party_id,
            signature: &by_party,
        };
        let schedule = PartyChange::ScheduleTermination {
            party_id,
            notice: &notice,
        };
        // An application can neither be signed, connected nor have a termination withdrawn.
        for step in [
            sign,
            PartyChange::AddCertificate {
                party_id,
                certificate: &cert,
            },
            PartyChange::WithdrawTermination {
                party_id,
                reason: "-",
            },
        ] {
            assert_illegal(change(&app, step).await, PartyState::Applied);
        }
        let first = agreement("AVT-1");
        change(
            &app,
            PartyChange::SendAgreement {
                party_id,
                agreement: &first,
            },
        )
        .await
        .unwrap();
        let second = agreement("AVT-2");
        let send_again = PartyChange::SendAgreement {
            party_id,
            agreement: &second,
        };
        assert_illegal(change(&app, send_again).await, PartyState::AgreementSent);
        change(&app, sign).await.unwrap();
        assert_illegal(change(&app, sign).await, PartyState::AgreementSent);
        let unknown_certificate = PartyChange::RevokeCertificate {
            party_id,
            fingerprint: &"00".repeat(32),
            reason: "-",
        };
        assert!(matches!(
            change(&app, unknown_certificate).await,
            Err(AdminError::CertificateNotFound)
        ));
        change(&app, schedule).await.unwrap();
        assert_illegal(change(&app, schedule).await, PartyState::TerminationScheduled);
        // A party whose termination is pending is still live: its number cannot apply again.
        let again = application(ORG, NAME, PartyKind::Insurer, &[COORDINATION]);
        match change(&app, PartyChange::Apply(&again)).await {
            Err(AdminError::PartyAlreadyExists { party_id: Some(live) }) => assert_eq!(live, party_id),
            other => panic!("expected PartyAlreadyExists, got {other:?}"),
        }

        // Nothing refused was recorded.
        assert_eq!(
            actions(&history(&app, party_id).await),
            [
                PartyAction::Apply,
                PartyAction::SendAgreement,
                PartyAction::RecordSignature,
                PartyAction::ScheduleTermination,
            ]
        );
        assert_eq!(
            record(&app, party_id).await.agreement.unwrap().agreement_id,
            "AVT-1"
        );
        app.stop().await;
    }

    async fn a_change_to_an_unknown_party_is_party_not_found(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let party_id = MISSING;
        let (agreement, by_party, cert, notice) = (
            agreement("AVT-1"),
            signature(Signer::Party),
            certificate(&app),
            termination(&app, 100),
        );
        for step in [
            PartyChange::SendAgreement {
                party_id,
                agreement: &agreement,
            },
            PartyChange::RecordSignature {
                party_id,
                signature: &by_party,
            },
            PartyChange::AddCertificate {
                party_id,
                certificate: &cert,
            },
            PartyChange::RevokeCertificate {
                party_id,
                fingerprint: &cert.fingerprint,
                reason: "-",
            },
            PartyChange::ScheduleTermination {
                party_id,
                notice: &notice,
            },
            PartyChange::WithdrawTermination {
                party_id,
                reason: "-",
            },
        ] {
            let result = change(&app, step).await;
            assert!(
                matches!(result, Err(AdminError::PartyNotFound)),
                "{step:?}: {result:?}"
            );
        }
        assert!(app.store.party_record(MISSING).await.unwrap().is_none());
        app.stop().await;
    }

    async fn a_replayed_change_answers_with_the_stored_bytes_and_acts_once(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let application = application(ORG, NAME, PartyKind::Insurer, &[COORDINATION]);
        let apply = PartyChange::Apply(&application);
        let applied = change_keyed(&app, "apply-1", "h-apply", apply).await.unwrap();
        // A second application for the number would be refused; the replay is answered instead.
        assert_eq!(
            change_keyed(&app, "apply-1", "h-apply", apply).await.unwrap(),
            applied
        );
        let (party_id, _) = answer(&applied);

        let agreement = agreement("AVT-1");
        let send = PartyChange::SendAgreement {
            party_id: &party_id,
            agreement: &agreement,
        };
        let sent = change_keyed(&app, "send-1", "h-send", send).await.unwrap();
        assert_eq!(answer(&sent), (party_id.clone(), PartyState::AgreementSent));
        for signer in [Signer::Party, Signer::Agency] {
            let signature = signature(signer);
            let sign = PartyChange::RecordSignature {
                party_id: &party_id,
                signature: &signature,
            };
            change(&app, sign).await.unwrap();
        }
        let entries = history(&app, &party_id).await;

        // The party has moved on (SIGNED, where sending is illegal): the key still answers as then.
        assert_eq!(change_keyed(&app, "send-1", "h-send", send).await.unwrap(), sent);
        assert_eq!(
            history(&app, &party_id).await,
            entries,
            "a replay records nothing"
        );
        assert_eq!(record(&app, &party_id).await.stored_state, PartyState::Signed);
        app.stop().await;
    }

    async fn a_key_is_bound_to_its_request_and_a_refused_change_leaves_it_free(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let party_id = apply(&app).await;
        let party_id = party_id.as_str();
        let agreement = agreement("AVT-1");
        let send = PartyChange::SendAgreement {
            party_id,
            agreement: &agreement,
        };
        change_keyed(&app, "key-1", "hash-1", send).await.unwrap();
        let by_party = signature(Signer::Party);
        let sign = PartyChange::RecordSignature {
            party_id,
            signature: &by_party,
        };
        for (hash, step) in [("hash-2", send), ("hash-3", sign)] {
            let result = change_keyed(&app, "key-1", hash, step).await;
            assert!(
                matches!(result, Err(AdminError::IdempotencyKeyReused)),
                "{result:?}"
            );
        }

        // A refused change rolls its key claim back: the corrected request under the same key is
        // judged afresh.
        let withdraw = PartyChange::WithdrawTermination {
            party_id,
            reason: "-",
        };
        assert_illegal(
            change_keyed(&app, "key-2", "hash-a", withdraw).await,
            PartyState::AgreementSent,
        );
        let signed = change_keyed(&app, "key-2", "hash-b", sign).await.unwrap();
        assert_eq!(answer(&signed).1, PartyState::AgreementSent);
        assert_eq!(
            actions(&history(&app, party_id).await),
            [
                PartyAction::Apply,
                PartyAction::SendAgreement,
                PartyAction::RecordSignature
            ]
        );
        app.stop().await;
    }

    async fn onboarding_a_connected_party_again_adds_nothing(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let party = connected_party(&issue(&app), ORG, NAME, PartyKind::Insurer, &[COORDINATION]);
        let party_id = onboard(&app.store, &party, app.clock.now_micros()).await;
        let (stored, entries) = (record(&app, &party_id).await, history(&app, &party_id).await);
        assert_eq!(stored.stored_state, PartyState::Connected);
        assert_eq!(
            actions(&entries),
            [
                PartyAction::Apply,
                PartyAction::SendAgreement,
                PartyAction::RecordSignature,
                PartyAction::RecordSignature,
                PartyAction::AddCertificate,
            ]
        );

        app.clock.advance(time::Duration::minutes(5));
        let again = onboard(&app.store, &party, app.clock.now_micros()).await;
        assert_eq!(again, party_id);
        assert_eq!(record(&app, &party_id).await, stored);
        assert_eq!(history(&app, &party_id).await, entries);

        // A certificate it does not have yet is all that is added.
        let with_another = NewConnectedParty {
            certificates: vec![party.certificates[0].clone(), certificate(&app)],
            ..party.clone()
        };
        assert_eq!(
            onboard(&app.store, &with_another, app.clock.now_micros()).await,
            party_id
        );
        let after = history(&app, &party_id).await;
        assert_eq!(after[..entries.len()], entries[..]);
        assert_eq!(actions(&after[entries.len()..]), [PartyAction::AddCertificate]);
        assert_eq!(record(&app, &party_id).await.certificates.len(), 2);
        app.stop().await;
    }

    async fn records_are_found_by_id_and_by_org_number_preferring_the_live_party(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let insurer = record(&app, &app.insurer_id).await;
        assert_eq!(
            (
                insurer.application.org_number.as_str(),
                insurer.application.name.as_str(),
                insurer.application.kind
            ),
            ("5566778899", "Testförsäkring AB", PartyKind::Insurer)
        );
        assert_eq!(insurer.stored_state, PartyState::Connected);
        assert_eq!(
            insurer.application.basis_codes,
            codes(&[COORDINATION, RISK_ASSESSMENT])
        );
        assert_eq!(insurer.signatures.len(), 2);
        assert_eq!(insurer.certificates.len(), 1);

        let org = OrgNumber::parse("556677-8899").unwrap();
        let by_org = || app.store.party_record_by_org_number(&org);
        let live = || app.store.live_party_id_by_org_number(&org);
        assert_eq!(by_org().await.unwrap(), Some(insurer.clone()));
        assert_eq!(live().await.unwrap(), Some(app.insurer_id.clone()));

        app.schedule_termination(&app.insurer_id, app.clock.today()).await;
        let terminated = by_org().await.unwrap().unwrap();
        assert_eq!(
            (terminated.party_id.as_str(), terminated.stored_state),
            (app.insurer_id.as_str(), PartyState::Terminated)
        );
        assert_eq!(live().await.unwrap(), None);

        // The number is free again; the new party is found before the terminated one.
        let cert = app
            .certs
            .ca
            .issue_client("Testförsäkring AB", Some("556677-8899"))
            .unwrap();
        let mut successor = connected_party(
            &cert,
            "556677-8899",
            "Testförsäkring AB",
            PartyKind::Insurer,
            &[COORDINATION],
        );
        successor.agreement.agreement_id = "T2-556677-8899".to_string();
        let successor_id = onboard(&app.store, &successor, app.clock.now_micros()).await;
        assert_ne!(successor_id, app.insurer_id);
        // The terminated party is now the one changed last; the live one is still preferred.
        app.clock.advance(time::Duration::seconds(1));
        app.revoke_certificate(&app.insurer_id, &app.certs.insurer).await;
        let (old, new) = (
            record(&app, &app.insurer_id).await,
            record(&app, &successor_id).await,
        );
        assert!(old.updated_at > new.updated_at);
        assert_eq!(by_org().await.unwrap().unwrap().party_id, successor_id);
        assert_eq!(live().await.unwrap(), Some(successor_id));

        let nobody = OrgNumber::parse(ORG).unwrap();
        assert_eq!(app.store.party_record_by_org_number(&nobody).await.unwrap(), None);
        assert_eq!(
            app.store.live_party_id_by_org_number(&nobody).await.unwrap(),
            None
        );
        app.stop().await;
    }

    async fn listing_pages_by_name_and_filters_by_kind_and_state(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        // Two applications join the two connected parties the app starts with.
        apply(&app).await;
        let authority = application(
            "202000-0010",
            "Exempelmyndigheten",
            PartyKind::StateAuthority,
            &["AUTH_DUTY_1980_995"],
        );
        change(&app, PartyChange::Apply(&authority)).await.unwrap();
        let list = async |filter: &PartyFilter, after: Option<&PartyRecord>, limit| {
            let after = after.map(|r| (r.application.name.as_str(), r.party_id.as_str()));
            app.store.list_party_records(filter, after, limit).await.unwrap()
        };

        let all = PartyFilter::default();
        let first = list(&all, None, 3).await;
        assert_eq!(names(&first), [NAME, "Exempelmyndigheten", "Testförsäkring AB"]);
        let second = list(&all, first.last(), 3).await;
        assert_eq!(names(&second), ["Testkommun"]);
        assert!(list(&all, second.last(), 3).await.is_empty());

        use PartyKind::*;
        use PartyState::*;
        let filters = [
            (vec![Insurer], vec![], vec![NAME, "Testförsäkring AB"]),
            (vec![], vec![Applied], vec![NAME, "Exempelmyndigheten"]),
            (
                vec![StateAuthority, MunicipalAuthority],
                vec![],
                vec!["Exempelmyndigheten", "Testkommun"],
            ),
            (vec![Insurer], vec![Connected], vec!["Testförsäkring AB"]),
            (vec![], vec![Terminated], vec![]),
        ];
        for (kinds, states, expected) in filters {
            let filter = PartyFilter { kinds, states };
            assert_eq!(names(&list(&filter, None, 10).await), expected, "{filter:?}");
        }
        app.stop().await;
    }

    async fn history_pages_oldest_first_and_is_none_for_an_unknown_party(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let entries = history(&app, &app.insurer_id).await;
        let states: Vec<_> = entries.iter().map(|e| e.after_state).collect();
        assert_eq!(
            states,
            [
                PartyState::Applied,
                PartyState::AgreementSent,
                PartyState::AgreementSent,
                PartyState::Signed,
                PartyState::Connected,
            ]
        );
        assert!(entries.iter().all(|e| e.party_id == app.insurer_id));
        let page = app
            .store
            .party_history(&app.insurer_id, entries[1].entry_id, 2)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(page, entries[2..4]);
        let past_the_end = app
            .store
            .party_history(&app.insurer_id, entries[4].entry_id, 10)
            .await
            .unwrap();
        assert_eq!(past_the_end, Some(Vec::new()));
        assert_eq!(app.store.party_history(MISSING, 0, 10).await.unwrap(), None);
        app.stop().await;
    }

    async fn a_termination_whose_day_has_come_is_settled_once(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let municipality = app.municipality_id.clone();
        let effective = app.clock.today() + time::Duration::days(2);
        app.schedule_termination(&municipality, effective).await;
        app.store
            .settle_terminations(app.clock.now_micros())
            .await
            .unwrap();
        let scheduled = history(&app, &municipality).await;
        assert_eq!(
            record(&app, &municipality).await.stored_state,
            PartyState::TerminationScheduled
        );

        app.clock.advance(time::Duration::days(3));
        for _ in 0..2 {
            app.store
                .settle_terminations(app.clock.now_micros())
                .await
                .unwrap();
        }
        assert_eq!(
            record(&app, &municipality).await.stored_state,
            PartyState::Terminated
        );
        let settled = history(&app, &municipality).await;
        assert_eq!(settled.len(), scheduled.len() + 1, "settled once");
        let took_effect = settled.last().unwrap();
        assert_eq!(
            (
                took_effect.action,
                took_effect.before_state,
                took_effect.after_state
            ),
            (
                PartyAction::TerminationTookEffect,
                Some(PartyState::TerminationScheduled),
                PartyState::Terminated
            )
        );
        assert_eq!(took_effect.operator, None, "the server records it itself");
        assert_eq!(took_effect.at, business_day_start(effective));
        let certified = app
            .store
            .party_by_certificate(&fingerprint(&app.certs.municipality))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(certified.standing.state, PartyState::Terminated);
        assert_eq!(
            record(&app, &app.insurer_id).await.stored_state,
            PartyState::Connected
        );
        app.stop().await;
    }

    async fn certificates_and_operators_are_found_by_fingerprint(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let insurer_fingerprint = fingerprint(&app.certs.insurer);
        let certified = app
            .store
            .party_by_certificate(&insurer_fingerprint)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                certified.party_id.as_str(),
                certified.org_number.as_str(),
                certified.kind,
                certified.standing.state
            ),
            (
                app.insurer_id.as_str(),
                "5566778899",
                PartyKind::Insurer,
                PartyState::Connected
            )
        );
        assert_eq!(
            (
                certified.standing.termination_effective,
                certified.certificate_revoked_at
            ),
            (None, None)
        );
        assert!(certified.certificate_not_before < certified.certificate_not_after);
        for nobody in [&app.certs.operator, &app.certs.stranger] {
            assert_eq!(
                app.store
                    .party_by_certificate(&fingerprint(nobody))
                    .await
                    .unwrap(),
                None
            );
        }
        app.revoke_certificate(&app.insurer_id, &app.certs.insurer).await;
        let revoked = app
            .store
            .party_by_certificate(&insurer_fingerprint)
            .await
            .unwrap()
            .unwrap();
        assert!(revoked.certificate_revoked_at.is_some());

        let operator = Operator {
            fingerprint: fingerprint(&app.certs.operator),
            name: "Test Operatör".to_string(),
            role: OperatorRole::Operator,
            revoked_at: None,
        };
        let by_fingerprint = async |fp: String| app.store.operator_by_fingerprint(&fp).await.unwrap();
        assert_eq!(
            by_fingerprint(operator.fingerprint.clone()).await,
            Some(operator.clone())
        );
        assert_eq!(by_fingerprint(insurer_fingerprint).await, None);
        let roster = async || {
            let operators = app.store.operators().await.unwrap();
            operators
                .into_iter()
                .map(|o| (o.name, o.role))
                .collect::<Vec<_>>()
        };
        let registered = vec![
            ("Test Inläsning".to_string(), OperatorRole::Ingest),
            ("Test Operatör".to_string(), OperatorRole::Operator),
            ("Test Revisor".to_string(), OperatorRole::Auditor),
        ];
        assert_eq!(roster().await, registered);

        // Registering a fingerprint adds an operator; registering it again renames it in place.
        let newcomer = fingerprint(&app.certs.stranger);
        let now = app.clock.now_micros();
        for (name, role) in [
            ("Ny Granskare", OperatorRole::Auditor),
            ("Bytt Namn", OperatorRole::Ingest),
        ] {
            app.store
                .upsert_operator(
                    &lefi::domain::onboarding::NewOperator {
                        fingerprint: &newcomer,
                        name,
                        role,
                    },
                    now,
                )
                .await
                .unwrap();
            let mut expected = vec![(name.to_string(), role)];
            expected.extend(registered.iter().cloned());
            assert_eq!(roster().await, expected);
        }
        assert_eq!(
            by_fingerprint(newcomer).await.map(|o| o.role),
            Some(OperatorRole::Ingest)
        );
        app.stop().await;
    }

    async fn the_agreement_holds_what_was_granted(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let insurer = app
            .store
            .agreement_for_party(&app.insurer_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(insurer.agreement_id, "T-556677-8899");
        assert_eq!(insurer.agreement_type, AgreementType::Avtal);
        assert_eq!(
            (insurer.valid_from, insurer.notice_period_days),
            (date!(2024 - 01 - 01), 90)
        );
        assert_eq!(insurer.basis_codes, codes(&[COORDINATION, RISK_ASSESSMENT]));
        assert_eq!(insurer.benefit_codes, codes(&["FP", "SJP"]));
        assert!(insurer.fully_signed());
        // What it grants is read once per agreement, and remembered.
        let again = app.store.agreement_for_party(&app.insurer_id).await.unwrap();
        assert_eq!(again.as_ref(), Some(&insurer));
        let municipality = app
            .store
            .agreement_for_party(&app.municipality_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(municipality.agreement_type, AgreementType::Overenskommelse);
        assert_eq!(municipality.basis_codes, codes(&["AUTH_SOCIAL_SERVICES"]));

        let party_id = apply(&app).await;
        assert_eq!(app.store.agreement_for_party(&party_id).await.unwrap(), None);
        let sent = agreement("AVT-1");
        change(
            &app,
            PartyChange::SendAgreement {
                party_id: &party_id,
                agreement: &sent,
            },
        )
        .await
        .unwrap();
        let unsigned = app.store.agreement_for_party(&party_id).await.unwrap().unwrap();
        assert!(!unsigned.fully_signed());
        assert_eq!(
            (unsigned.basis_codes, unsigned.benefit_codes),
            (sent.basis_codes, sent.benefit_codes)
        );
        assert_eq!(app.store.agreement_for_party(MISSING).await.unwrap(), None);
        app.stop().await;
    }
}

/// The catalogues: the legal bases and benefit types the migrations seed.
mod catalogue {
    use lefi::domain::PartyKind;
    use time::macros::date;

    use super::{Backend, TestApp, backend_tests};

    backend_tests!(the_seeded_catalogues_are_listed_by_code);

    async fn the_seeded_catalogues_are_listed_by_code(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let bases = app.store.legal_bases().await.unwrap();
        let listed: Vec<&str> = bases.iter().map(|b| b.code.as_str()).collect();
        assert_eq!(
            listed,
            [
                "AUTH_CHILD_CARE_ALLOWANCE",
                "AUTH_DUTY_1980_995",
                "AUTH_SOCIAL_SERVICES",
                "INS_CLAIMS",
                "INS_COORDINATION",
                "INS_PENSION_FORECAST",
                "INS_RISK_ASSESSMENT",
                "STAT_INDIVIDUAL_DATA",
            ]
        );
        let basis = |code: &str| bases.iter().find(|b| b.code == code).unwrap();
        let abolished = basis("AUTH_CHILD_CARE_ALLOWANCE");
        assert_eq!(abolished.valid_to, Some(date!(2015 - 12 - 31)));
        assert!(!abolished.in_force_on(app.clock.today()));
        assert!(abolished.in_force_on(date!(2012 - 06 - 01)));
        assert_eq!(abolished.party_kinds, [PartyKind::MunicipalAuthority]);
        let risk = basis("INS_RISK_ASSESSMENT");
        assert_eq!(
            (risk.requires_consent, risk.requires_open_case, risk.valid_to),
            (true, false, None)
        );
        assert_eq!(risk.party_kinds, [PartyKind::Insurer]);
        let duty = basis("AUTH_DUTY_1980_995");
        assert_eq!(
            duty.party_kinds,
            [PartyKind::MunicipalAuthority, PartyKind::StateAuthority]
        );
        assert!(basis("AUTH_SOCIAL_SERVICES").requires_open_case);

        let benefits = app.store.benefit_types().await.unwrap();
        let listed: Vec<&str> = benefits.iter().map(|b| b.code.as_str()).collect();
        let mut sorted = listed.clone();
        sorted.sort_unstable();
        assert_eq!(listed, sorted);
        assert_eq!(listed.len(), 18);
        let sickness = benefits.iter().find(|b| b.code == "SJP").unwrap();
        assert_eq!((sickness.agency.as_str(), sickness.valid_to), ("FK", None));
        assert!(sickness.name_sv.starts_with("Sjukpenning"));
        let pension = benefits.iter().find(|b| b.code == "AP").unwrap();
        assert_eq!(pension.agency, "PM");
        // Every basis covers every benefit type; the agreement narrows what a party receives.
        assert!(bases.iter().all(|b| b.benefit_codes.len() == benefits.len()));
        app.stop().await;
    }
}

/// The register: ingest and its answers, sequences, the bitemporal reads, and the reads that need
/// a permit.
mod register {
    use lefi::domain::Personnummer;
    use lefi::domain::register::versions::{
        DeliveredVersion, IngestResult, IngestedVersion, StoredPerson, Version,
    };
    use lefi::domain::register::{DateRange, FactParts, NewFact, PersonData, RecordKind, RejectReason};
    use lefi::policy::{Ask, Facts, PartyFacts, Permit, decide};
    use lefi::store::register::{RegisterStats, SnapshotAsk};
    use time::macros::date;

    use super::{
        Backend, COORDINATION, FEBRUARY, JANUARY, P1, P2, P3, TestApp, accept, accept_at, backend_tests,
        codes, period, period_parts, person_update, pnr, retraction,
    };

    backend_tests!(
        ingest_answers_each_fact_in_order_and_a_rejection_blocks_nothing,
        concurrent_batches_take_contiguous_sequences_in_commit_order,
        a_person_is_unknown_before_the_first_fact_and_read_as_of_a_sequence,
        the_log_pages_in_commit_order_and_recording_times_never_go_back,
        stats_count_what_was_stored_and_when,
        demo_person_is_the_first_with_the_benefit_from_the_source,
        permit_reads_return_exactly_what_the_permit_covers,
        records_at_keeps_only_rows_the_permit_of_their_sequence_covers,
        versions_stored_without_an_encoding_are_sent_alike_and_encoded_by_migrate,
        snapshots_from_the_current_state_equal_those_from_the_log,
        person_states_answer_at_the_head_and_are_built_again_where_missing,
        a_large_batch_answers_and_stores_as_small_batches_do,
    );

    const MINUTE: i64 = 60_000_000;

    fn accepted(result: &IngestResult) -> &IngestedVersion {
        match result {
            IngestResult::Accepted(v) => v,
            other => panic!("expected Accepted, got {other:?}"),
        }
    }

    fn unchanged(result: &IngestResult) -> &IngestedVersion {
        match result {
            IngestResult::Unchanged(v) => v,
            other => panic!("expected Unchanged, got {other:?}"),
        }
    }

    fn rejected(result: &IngestResult) -> RejectReason {
        match result {
            IngestResult::Rejected(e) => e.reason,
            other => panic!("expected Rejected, got {other:?}"),
        }
    }

    fn seqs<R: Version>(records: &[R]) -> Vec<u64> {
        records.iter().map(Version::seq).collect()
    }

    /// A xorshift64 generator from a fixed seed (so a failure repeats): `next(n)` is below `n`.
    fn xorshift(mut state: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        }
    }

    /// From 2024 on, open-ended.
    const SINCE_2024: DateRange = DateRange {
        from: date!(2024 - 01 - 01),
        to: None,
    };

    /// A permit for `party_id` to read `person`'s `benefits` (all it may, when empty) under
    /// `basis`, decided by the policy from what the store holds, as the services decide it.
    async fn permit(
        app: &TestApp,
        party_id: &str,
        basis: &str,
        person: &Personnummer,
        benefits: &[&str],
    ) -> Permit {
        let party = app.store.party_record(party_id).await.unwrap().unwrap();
        let agreement = app.store.agreement_for_party(party_id).await.unwrap();
        let bases = app.store.legal_bases().await.unwrap();
        let facts = Facts {
            party: PartyFacts {
                party_id,
                kind: party.application.kind,
                state: party.stored_state,
                termination_effective: party.termination.map(|t| t.effective_date),
            },
            agreement: agreement.as_ref(),
            basis: bases.iter().find(|b| b.code == basis),
            consent: None,
            case: None,
        };
        let benefit_codes = codes(benefits);
        let ask = Ask {
            basis_code: basis,
            person,
            benefit_codes: &benefit_codes,
            case_reference: None,
            consent_id: None,
            today: app.clock.today(),
        };
        decide(&facts, &ask).unwrap()
    }

    /// The insurer's permit for `person`'s `benefits` under coordination (no consent or case needed).
    async fn insurer_permit(app: &TestApp, person: &str, benefits: &[&str]) -> Permit {
        permit(app, &app.insurer_id, COORDINATION, &pnr(person), benefits).await
    }

    async fn ingest_answers_each_fact_in_order_and_a_rejection_blocks_nothing(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let ingest = async |facts| app.store.ingest(facts, app.clock.now_micros()).await.unwrap();
        let h = app.store.head_seq().await.unwrap();
        assert!(ingest(Vec::new()).await.is_empty());
        assert_eq!(
            app.store.head_seq().await.unwrap(),
            h,
            "an empty batch takes no sequence"
        );

        let first = ingest(vec![
            period(P1, "a", 1, "SJP", JANUARY),
            person_update(P1, 1, "Anna"),
            period(P1, "x", 1, "XX", JANUARY),
            period(P2, "b", 1, "FP", JANUARY),
        ])
        .await;
        assert_eq!(first.len(), 4);
        let a = accepted(&first[0]).clone();
        assert_eq!((a.seq, a.version, a.person_update), (h + 1, 1, false));
        assert_eq!(
            accepted(&first[1]),
            &IngestedVersion {
                seq: h + 2,
                record_id: "person:FOLKBOKF".to_string(),
                version: 1,
                person_update: true,
            }
        );
        assert_eq!(rejected(&first[2]), RejectReason::UnknownBenefitType);
        assert_eq!(
            accepted(&first[3]).seq,
            h + 3,
            "the rejected fact took no sequence"
        );
        assert_eq!(app.store.head_seq().await.unwrap(), h + 3);

        let second = ingest(vec![
            period(P1, "a", 1, "SJP", JANUARY),
            period(P1, "a", 1, "SJP", FEBRUARY),
            period(P1, "a", 2, "SJP", FEBRUARY),
            retraction(P1, "never-sent", 1, "SJP"),
            person_update(P1, 1, "Anna"),
            period(P2, "b", 3, "FP", FEBRUARY),
            period(P2, "b", 2, "FP", FEBRUARY),
        ])
        .await;
        assert_eq!(unchanged(&second[0]), &a);
        assert_eq!(rejected(&second[1]), RejectReason::SourceVersionConflict);
        let corrected = accepted(&second[2]);
        assert_eq!(
            (corrected.seq, corrected.record_id.as_str(), corrected.version),
            (h + 4, a.record_id.as_str(), 2)
        );
        assert_eq!(rejected(&second[3]), RejectReason::RecordNotFound);
        assert_eq!(unchanged(&second[4]).seq, h + 2);
        assert_eq!(accepted(&second[5]).seq, h + 5);
        assert_eq!(rejected(&second[6]), RejectReason::SourceVersionOutOfOrder);

        // A NEW for a known fact is stored as its correction.
        let log = app.store.log_after(h + 3, 10).await.unwrap();
        let stored: Vec<_> = log.iter().map(|r| (r.seq, r.version, r.kind)).collect();
        assert_eq!(
            stored,
            [
                (h + 4, 2, RecordKind::Correction),
                (h + 5, 2, RecordKind::Correction)
            ]
        );
        app.stop().await;
    }

    async fn concurrent_batches_take_contiguous_sequences_in_commit_order(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let h = app.store.head_seq().await.unwrap();
        let writers: Vec<_> = (0..4)
            .map(|batch| {
                let facts: Vec<NewFact> = (0..5)
                    .map(|i| period(P1, &format!("c{batch}-{i}"), 1, "SJP", JANUARY))
                    .collect();
                let (store, now) = (app.store.clone(), app.clock.now_micros());
                tokio::spawn(async move { store.ingest(facts, now).await.unwrap() })
            })
            .collect();
        let mut batches = Vec::new();
        for writer in writers {
            let results = writer.await.unwrap();
            batches.push(results.iter().map(|r| accepted(r).seq).collect::<Vec<_>>());
        }
        // Each batch is one transaction: its facts stand at consecutive sequences, in item order.
        for seqs in &batches {
            assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        }
        batches.sort();
        let all = batches.concat();
        assert_eq!(all, (h + 1..=h + 20).collect::<Vec<_>>(), "no gaps, no repeats");
        let log = app.store.log_after(h, 100).await.unwrap();
        assert_eq!(seqs(&log), all);
        assert!(log.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at));
        app.stop().await;
    }

    async fn a_person_is_unknown_before_the_first_fact_and_read_as_of_a_sequence(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let p3 = pnr(P3);
        let person = async |as_of| app.store.person(&p3, as_of).await.unwrap();
        assert_eq!(person(None).await, None);

        let [s1] = accept(&app, vec![period(P3, "p", 1, "SJP", JANUARY)]).await[..] else {
            unreachable!()
        };
        let stored = |data, latest_seq| StoredPerson {
            person: p3.clone(),
            data,
            created_seq: s1,
            latest_seq,
        };
        assert_eq!(person(None).await, Some(stored(PersonData::default(), 0)));
        assert_eq!(person(Some(s1 - 1)).await, None, "unknown before its first fact");

        accept(&app, vec![period(P2, "q", 1, "SJP", JANUARY)]).await;
        let [s2] = accept(&app, vec![person_update(P3, 1, "Anna")]).await[..] else {
            unreachable!()
        };
        let [s3] = accept(&app, vec![person_update(P3, 2, "Anna Berg")]).await[..] else {
            unreachable!()
        };
        let named = |name: &str| PersonData {
            name: name.to_string(),
            ..PersonData::default()
        };
        assert_eq!(person(None).await, Some(stored(named("Anna Berg"), s3)));
        assert_eq!(person(Some(s1)).await, Some(stored(PersonData::default(), 0)));
        assert_eq!(person(Some(s2)).await, Some(stored(named("Anna"), s2)));
        assert_eq!(person(Some(s3)).await, Some(stored(named("Anna Berg"), s3)));

        let history = async |as_of| seqs(&app.store.person_history(&p3, as_of).await.unwrap());
        assert_eq!(
            history(None).await,
            [s1, s2, s3],
            "the other person's fact is not in it"
        );
        assert_eq!(history(Some(s2)).await, [s1, s2]);
        assert!(app.store.person_history(&pnr(P1), None).await.unwrap().is_empty());
        app.stop().await;
    }

    async fn the_log_pages_in_commit_order_and_recording_times_never_go_back(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let h = app.store.head_seq().await.unwrap();
        let t = app.clock.now_micros();
        let facts = |from: usize, to: usize| {
            (from..to)
                .map(|i| period(P1, &format!("f{i}"), 1, "SJP", JANUARY))
                .collect()
        };
        accept_at(&app, facts(0, 3), t).await;
        // The clock went back an hour: the log's recording times do not.
        accept_at(&app, facts(3, 5), t - 60 * MINUTE).await;

        let mut pages = Vec::new();
        let mut after = h;
        loop {
            let page = app.store.log_after(after, 2).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            pages.push(seqs(&page));
        }
        assert_eq!(pages, [vec![h + 1, h + 2], vec![h + 3, h + 4], vec![h + 5]]);
        let log = app.store.log_after(h, 10).await.unwrap();
        let sources: Vec<_> = log.iter().map(|r| r.source_id.clone().unwrap()).collect();
        assert_eq!(sources, ["f0", "f1", "f2", "f3", "f4"]);
        assert!(log.iter().all(|r| r.recorded_at == t && r.person == pnr(P1)));
        app.stop().await;
    }

    async fn stats_count_what_was_stored_and_when(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let now = app.clock.now_micros();
        let h = app.store.head_seq().await.unwrap();
        assert_eq!(app.store.stats(now).await.unwrap(), RegisterStats::default());
        let results = app
            .store
            .ingest(
                vec![
                    period(P1, "a", 1, "SJP", JANUARY),
                    period(P1, "a", 2, "SJP", FEBRUARY),
                    period(P2, "b", 1, "FP", JANUARY),
                    period(P2, "x", 1, "XX", JANUARY),
                    person_update(P1, 1, "Anna"),
                ],
                now,
            )
            .await
            .unwrap();
        assert_eq!(rejected(&results[3]), RejectReason::UnknownBenefitType);
        let stats = |at| app.store.stats(at);
        let expected = RegisterStats {
            person_count: 2,
            fact_count: 2,
            fact_version_count: 3,
            latest_seq: h + 4,
            latest_recorded_at: Some(now),
            accepted_last_minute: 4,
            accepted_last_hour: 4,
        };
        assert_eq!(stats(now).await.unwrap(), expected);
        assert_eq!(
            stats(now + 2 * MINUTE).await.unwrap(),
            RegisterStats {
                accepted_last_minute: 0,
                ..expected
            }
        );
        assert_eq!(
            stats(now + 120 * MINUTE).await.unwrap(),
            RegisterStats {
                accepted_last_minute: 0,
                accepted_last_hour: 0,
                ..expected
            }
        );
        app.stop().await;
    }

    async fn demo_person_is_the_first_with_the_benefit_from_the_source(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let elsewhere = NewFact::new(FactParts {
            source_system: "OTHER".to_string(),
            ..period_parts(P3, "o", 1, "FP", JANUARY)
        })
        .unwrap();
        accept(
            &app,
            vec![
                period(P2, "d1", 1, "SJP", JANUARY),
                period(P1, "d2", 1, "SJP", JANUARY),
                elsewhere,
            ],
        )
        .await;
        let demo = async |source, benefit| app.store.demo_person(source, benefit).await.unwrap();
        assert_eq!(demo("MIDAS", "SJP").await, Some(pnr(P2)));
        assert_eq!(demo("MIDAS", "FP").await, None);
        assert_eq!(demo("OTHER", "FP").await, Some(pnr(P3)));
        assert_eq!(demo("NOWHERE", "SJP").await, None);
        app.stop().await;
    }

    async fn permit_reads_return_exactly_what_the_permit_covers(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let accepted = accept(
            &app,
            vec![
                period(P1, "s", 1, "SJP", JANUARY),
                period(P1, "f", 1, "FP", FEBRUARY),
                period(
                    P1,
                    "old",
                    1,
                    "SJP",
                    (date!(2023 - 01 - 01), date!(2023 - 01 - 31)),
                ),
                person_update(P1, 1, "Anna"),
                period(P1, "r", 1, "SJP", FEBRUARY),
                retraction(P1, "r", 2, "SJP"),
                period(P2, "p2", 1, "SJP", JANUARY),
                // The correction moves fact "s" to February.
                period(P1, "s", 2, "SJP", FEBRUARY),
            ],
        )
        .await;
        let [s1, f1, old, named, _, _, p2, s2] = accepted[..] else {
            unreachable!()
        };
        let head = app.store.head_seq().await.unwrap();
        let sickness = insurer_permit(&app, P1, &["SJP"]).await;
        let parental = insurer_permit(&app, P1, &["FP"]).await;
        let everything = insurer_permit(&app, P1, &[]).await;
        let other_person = insurer_permit(&app, P2, &["SJP"]).await;
        assert_eq!(everything.benefit_codes(), codes(&["FP", "SJP"]));

        let records = async |permit, period, as_of| {
            let found = app.store.records_as_of(permit, period, as_of).await.unwrap();
            assert!(found.iter().all(|r| r.person == *permit.person()));
            seqs(&found)
        };
        // Out of the period ("old"), retracted ("r"), another benefit or person: never returned.
        assert_eq!(records(&sickness, SINCE_2024, head).await, [s2]);
        assert_eq!(
            records(&sickness, SINCE_2024, s1).await,
            [s1],
            "as of before the correction"
        );
        let january = DateRange {
            from: JANUARY.0,
            to: Some(JANUARY.1),
        };
        assert!(records(&sickness, january, head).await.is_empty());
        assert_eq!(records(&parental, SINCE_2024, head).await, [f1]);
        assert_eq!(
            records(&everything, SINCE_2024, head).await,
            [f1, s2],
            "by benefit type"
        );
        assert_eq!(records(&other_person, SINCE_2024, head).await, [p2]);

        let anna = PersonData {
            name: "Anna".to_string(),
            ..PersonData::default()
        };
        let snapshot = async |permit, as_of| {
            let (data, records) = app.store.snapshot_of(permit, SINCE_2024, as_of).await.unwrap();
            // Versions ingested by this lefi are delivered as their stored encoding.
            assert!(records.iter().all(|r| matches!(r, DeliveredVersion::Encoded(_))));
            (data, seqs(&records))
        };
        assert_eq!(snapshot(&sickness, head).await, (anna.clone(), vec![s2]));
        assert_eq!(snapshot(&sickness, old).await, (PersonData::default(), vec![s1]));

        let asks: Vec<SnapshotAsk<'_>> = [&sickness, &other_person, &sickness]
            .into_iter()
            .map(|permit| SnapshotAsk {
                permit,
                period: SINCE_2024,
            })
            .collect();
        let many: Vec<_> = app
            .store
            .snapshots_of(&asks, head)
            .await
            .unwrap()
            .into_iter()
            .map(|(data, records)| (data, seqs(&records)))
            .collect();
        assert_eq!(
            many,
            [
                (anna.clone(), vec![s2]),
                (PersonData::default(), vec![p2]),
                (anna.clone(), vec![s2]),
            ],
            "in the order asked, a person asked twice answered twice"
        );
        assert!(app.store.snapshots_of(&[], head).await.unwrap().is_empty());

        let versions = app
            .store
            .person_versions(&[&sickness, &other_person], head)
            .await
            .unwrap();
        assert_eq!(versions.len(), 1, "P2 has no person data: {:?}", versions.keys());
        assert_eq!(versions[P1], [(named, anna)]);
        let before = app.store.person_versions(&[&sickness], named - 1).await.unwrap();
        assert!(before.is_empty());
        app.stop().await;
    }

    async fn records_at_keeps_only_rows_the_permit_of_their_sequence_covers(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let accepted = accept(
            &app,
            vec![
                period(P1, "s", 1, "SJP", JANUARY),
                period(P1, "f", 1, "FP", JANUARY),
                person_update(P1, 1, "Anna"),
                period(P2, "p2", 1, "SJP", JANUARY),
            ],
        )
        .await;
        let [sickness_seq, parental_seq, person_seq, other_seq] = accepted[..] else {
            unreachable!()
        };
        let p1 = insurer_permit(&app, P1, &["SJP"]).await;
        let p2 = insurer_permit(&app, P2, &["SJP"]).await;
        let found = app
            .store
            .records_at(&[
                (sickness_seq, &p1),
                (parental_seq, &p1),
                (person_seq, &p1),
                (other_seq, &p1),
                (other_seq, &p2),
                (other_seq + 100, &p1),
            ])
            .await
            .unwrap();
        let mut at: Vec<_> = found.iter().map(|(seq, r)| (*seq, r.seq())).collect();
        at.sort_by_key(|(seq, _)| *seq);
        assert_eq!(
            at,
            [
                (sickness_seq, sickness_seq),
                (person_seq, person_seq),
                (other_seq, other_seq),
            ]
        );
        // Benefit versions come with their stored encoding; the person update whole.
        assert!(matches!(found[&sickness_seq], DeliveredVersion::Encoded(_)));
        assert!(matches!(&found[&person_seq], DeliveredVersion::Parsed(r) if r.is_person_update()));
        // A sequence whose row is about another person than its permit's is dropped.
        assert!(
            app.store
                .records_at(&[(other_seq, &p1)])
                .await
                .unwrap()
                .is_empty()
        );
        assert!(app.store.records_at(&[]).await.unwrap().is_empty());
        app.stop().await;
    }

    /// A delivery's snapshot is read from the register's current state, and from the log for a
    /// person changed after the snapshot's sequence. At every sequence of a random history of new
    /// facts, corrections, retractions and person updates, for several persons in one read (one
    /// of them asked for twice), it is the snapshot read from the log alone, to the byte.
    async fn snapshots_from_the_current_state_equal_those_from_the_log(backend: Backend) {
        use std::collections::{HashMap, HashSet};

        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let persons = [P1, P2, P3];
        let mut next = xorshift(0x2545_f491_4f6c_dd1d_u64);
        let mut versions: HashMap<(usize, u64), u64> = HashMap::new();
        let mut retracted: HashSet<(usize, u64)> = HashSet::new();
        let mut names = [0_u64; 3];
        let mut heads = vec![app.store.head_seq().await.unwrap()];
        for _ in 0..25 {
            let mut facts = Vec::new();
            for _ in 0..=next(4) {
                let p = next(3) as usize;
                let fact = next(5);
                let benefit = ["SJP", "FP"][fact as usize % 2];
                let source_id = format!("p{p}-f{fact}");
                if retracted.contains(&(p, fact)) {
                    continue;
                }
                match next(6) {
                    0 => {
                        names[p] += 1;
                        facts.push(person_update(persons[p], names[p], &format!("Namn {}", names[p])));
                    }
                    1 if versions.contains_key(&(p, fact)) => {
                        let v = versions.get_mut(&(p, fact)).unwrap();
                        *v += 1;
                        retracted.insert((p, fact));
                        facts.push(retraction(persons[p], &source_id, *v, benefit));
                    }
                    _ => {
                        let v = versions.entry((p, fact)).or_default();
                        *v += 1;
                        let days = if *v % 2 == 0 { FEBRUARY } else { JANUARY };
                        facts.push(period(persons[p], &source_id, *v, benefit, days));
                    }
                }
            }
            accept(&app, facts).await;
            heads.push(app.store.head_seq().await.unwrap());
        }
        assert!(!retracted.is_empty(), "the history retracts facts");
        let mut permits = Vec::new();
        for person in persons.iter().chain([&P1]) {
            permits.push(insurer_permit(&app, person, &["SJP", "FP"]).await);
        }
        for &as_of in &heads {
            assert_snapshots_as_in_the_log(&app, &permits, as_of).await;
        }
        app.stop().await;
    }

    /// A batch of several thousand facts (ingest appends its log rows in chunks while it plans the
    /// next ones, and finds an earlier version in a chunk already appended) answers every fact, and
    /// leaves the register, exactly as the same facts sent in batches of seven: new versions,
    /// re-sent versions (unchanged, conflicting, out of order), retractions and person updates, the
    /// same facts again and again across the batch.
    async fn a_large_batch_answers_and_stores_as_small_batches_do(backend: Backend) {
        let (Some(large), Some(small)) = (TestApp::spawn(backend).await, TestApp::spawn(backend).await)
        else {
            return;
        };
        let persons = [P1, P2, P3];
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15_u64);
        let days = |v: u64| if v % 2 == 0 { FEBRUARY } else { JANUARY };
        let mut versions = [[0_u64; 40]; 3];
        let mut retracted = [[false; 40]; 3];
        let mut names = [0_u64; 3];
        let mut facts = Vec::new();
        while facts.len() < 3_100 {
            let p = next(3) as usize;
            let f = next(40) as usize;
            // Now and then a later version of a retracted fact (which restores it).
            if retracted[p][f] && next(10) != 0 {
                continue;
            }
            let v = versions[p][f];
            let source_id = format!("p{p}-f{f}");
            let benefit = ["SJP", "FP"][f % 2];
            let fact = match next(10) {
                0 => {
                    names[p] += 1;
                    person_update(persons[p], names[p], &format!("Namn {}", names[p]))
                }
                1 if names[p] > 0 => {
                    let earlier = 1 + next(names[p]);
                    person_update(persons[p], earlier, &format!("Namn {earlier}"))
                }
                // Now and then a fact is retracted.
                2 if v > 0 && next(4) == 0 => {
                    versions[p][f] += 1;
                    retracted[p][f] = true;
                    retraction(persons[p], &source_id, v + 1, benefit)
                }
                // An earlier version again: the same content, or other content.
                3 | 4 if v > 0 => {
                    let earlier = 1 + next(v);
                    let content = if next(2) == 0 {
                        days(earlier)
                    } else {
                        days(earlier + 1)
                    };
                    period(persons[p], &source_id, earlier, benefit, content)
                }
                // A version skipped now is out of order when sent later.
                5 => {
                    versions[p][f] += 2;
                    period(persons[p], &source_id, v + 2, benefit, days(v + 2))
                }
                _ => {
                    versions[p][f] += 1;
                    period(persons[p], &source_id, v + 1, benefit, days(v + 1))
                }
            };
            facts.push(fact);
        }
        let now = large.clock.now_micros();
        let answers = large.store.ingest(facts.clone(), now).await.unwrap();
        let mut in_small = Vec::new();
        for batch in facts.chunks(7) {
            in_small.extend(small.store.ingest(batch.to_vec(), now).await.unwrap());
        }
        assert_eq!(answers.len(), facts.len());
        assert!(answers == in_small, "the same answers, fact by fact");

        // Every kind of answer, many times.
        let mut tally = std::collections::BTreeMap::new();
        for answer in &answers {
            let kind = match answer {
                IngestResult::Accepted(_) => "accepted".to_string(),
                IngestResult::Unchanged(_) => "unchanged".to_string(),
                IngestResult::Rejected(e) => format!("{:?}", e.reason),
            };
            *tally.entry(kind).or_insert(0) += 1;
        }
        for (kind, at_least) in [
            ("accepted", 1_000),
            ("unchanged", 100),
            ("SourceVersionConflict", 50),
            ("SourceVersionOutOfOrder", 10),
        ] {
            assert!(tally.get(kind).is_some_and(|n| *n >= at_least), "{tally:?}");
        }

        let head = large.store.head_seq().await.unwrap();
        assert_eq!(small.store.head_seq().await.unwrap(), head);
        for app in [&large, &small] {
            assert_eq!(
                app.query_number("SELECT COUNT(*) FROM register_person_state")
                    .await,
                3
            );
        }
        let mut permits = Vec::new();
        for person in persons {
            let in_large = insurer_permit(&large, person, &["SJP", "FP"]).await;
            let in_small = insurer_permit(&small, person, &["SJP", "FP"]).await;
            let (data, records) = large
                .store
                .snapshot_of(&in_large, SINCE_2024, head)
                .await
                .unwrap();
            let (small_data, small_records) = small
                .store
                .snapshot_of(&in_small, SINCE_2024, head)
                .await
                .unwrap();
            assert_eq!(data, small_data);
            assert_eq!(stored(records), stored(small_records));
            permits.push(in_large);
        }
        assert_snapshots_as_in_the_log(&large, &permits, head).await;
        large.stop().await;
        small.stop().await;
    }

    /// Delivered versions as a delivery sends them, encoded.
    fn stored(records: Vec<DeliveredVersion>) -> Vec<Vec<u8>> {
        use lefi::grpc::pb::lefi::v1 as pb;
        use prost::Message as _;

        records
            .into_iter()
            .map(|r| pb::BenefitRecord::from(r).encode_to_vec())
            .collect()
    }

    /// [`Store::snapshots_of`] for all `permits` at once as of `as_of` is, permit by permit, what
    /// the log alone says as of `as_of`, to the byte.
    async fn assert_snapshots_as_in_the_log(app: &TestApp, permits: &[Permit], as_of: u64) {
        let asks: Vec<SnapshotAsk<'_>> = permits
            .iter()
            .map(|permit| SnapshotAsk {
                permit,
                period: SINCE_2024,
            })
            .collect();
        let snapshots = app.store.snapshots_of(&asks, as_of).await.unwrap();
        assert_eq!(snapshots.len(), asks.len());
        for (permit, (data, records)) in permits.iter().zip(snapshots) {
            let from_log = app.store.records_as_of(permit, SINCE_2024, as_of).await.unwrap();
            let from_log = stored(from_log.into_iter().map(DeliveredVersion::Parsed).collect());
            assert_eq!(stored(records), from_log, "records as of {as_of}");
            let person = app.store.person(permit.person(), Some(as_of)).await.unwrap();
            let name = person.map(|p| p.data.name).unwrap_or_default();
            assert_eq!(data.name, name, "person data as of {as_of}");
        }
    }

    /// A snapshot at the head reads each person's state row (`register_person_state`, one per
    /// person, kept by ingest). Without the rows (a register from before them) it reads the same
    /// from the log, and `migrate` builds them again; a person's next ingest builds their missing
    /// row again.
    async fn person_states_answer_at_the_head_and_are_built_again_where_missing(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        accept(
            &app,
            vec![
                period(P1, "a", 1, "SJP", JANUARY),
                period(P1, "b", 1, "FP", FEBRUARY),
                person_update(P1, 1, "Anna"),
                period(P2, "c", 1, "SJP", JANUARY),
                period(P2, "d", 1, "SJP", FEBRUARY),
            ],
        )
        .await;
        accept(
            &app,
            vec![period(P1, "a", 2, "SJP", FEBRUARY), retraction(P2, "d", 2, "SJP")],
        )
        .await;
        let mut permits = Vec::new();
        for person in [P1, P2, P3, P1] {
            permits.push(insurer_permit(&app, person, &["SJP", "FP"]).await);
        }
        let head = app.store.head_seq().await.unwrap();
        assert_snapshots_as_in_the_log(&app, &permits, head).await;

        // The rows are what the head's snapshot reads: a damaged one is an error, never a guess.
        let damaged = match backend {
            Backend::Sqlite => "X'01'",
            Backend::Postgres => "'\\x01'::bytea",
        };
        app.execute_sql(&format!("UPDATE register_person_state SET state = {damaged}"))
            .await;
        let asks = [SnapshotAsk {
            permit: &permits[0],
            period: SINCE_2024,
        }];
        assert!(app.store.snapshots_of(&asks, head).await.is_err());

        // Without rows, the same snapshots; migrate builds the rows again (P3 has no facts, so
        // no row), and they answer alike.
        let rows = "SELECT COUNT(*) FROM register_person_state";
        app.execute_sql("DELETE FROM register_person_state").await;
        assert_snapshots_as_in_the_log(&app, &permits, head).await;
        app.store.migrate().await.unwrap();
        assert_eq!(app.query_number(rows).await, 2);
        assert_snapshots_as_in_the_log(&app, &permits, head).await;

        let p1_rows = format!(
            "SELECT COUNT(*) FROM register_person_state WHERE person = '{}'",
            pnr(P1).as_storage()
        );
        let (_, records) = app
            .store
            .snapshot_of(&permits[0], SINCE_2024, head)
            .await
            .unwrap();
        // Fact a's correction is P1's latest version.
        let latest_a = records.iter().map(|r| r.seq()).max().unwrap();
        // No other writer appends without keeping the rows (an older lefi refuses a database a
        // newer one migrated, and the upgrade past 0021 stops every replica first): a row is
        // missing only where it was never built, or was deleted by hand.
        app.execute_sql(&format!(
            "DELETE FROM register_person_state WHERE person = '{}'",
            pnr(P1).as_storage()
        ))
        .await;
        assert_snapshots_as_in_the_log(&app, &permits[..1], head).await;

        // P1's next ingest builds the row again, from the current state, and it answers as the
        // log does.
        accept(&app, vec![period(P1, "e", 1, "FP", JANUARY)]).await;
        let head = app.store.head_seq().await.unwrap();
        assert_eq!(app.query_number(&p1_rows).await, 1);
        let (_, records) = app
            .store
            .snapshot_of(&permits[0], SINCE_2024, head)
            .await
            .unwrap();
        let seqs: Vec<u64> = records.iter().map(|r| r.seq()).collect();
        assert!(seqs.contains(&head), "{seqs:?}");
        assert!(seqs.contains(&latest_a), "{seqs:?}");
        assert_snapshots_as_in_the_log(&app, &permits[..3], head).await;
        app.stop().await;
    }

    /// A register written by a lefi that kept no encodings (the column empty, the format 0) is
    /// delivered from the JSON bodies, byte for byte as from the encodings; `migrate` then encodes
    /// every benefit version, once.
    async fn versions_stored_without_an_encoding_are_sent_alike_and_encoded_by_migrate(backend: Backend) {
        use lefi::grpc::pb::lefi::v1 as pb;
        use prost::Message as _;

        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let accepted = accept(
            &app,
            vec![
                period(P1, "s", 1, "SJP", JANUARY),
                person_update(P1, 1, "Anna"),
                period(P1, "s", 2, "SJP", FEBRUARY),
                period(P1, "r", 1, "SJP", JANUARY),
                retraction(P1, "r", 2, "SJP"),
            ],
        )
        .await;
        let head = app.store.head_seq().await.unwrap();
        let permit = insurer_permit(&app, P1, &["SJP"]).await;
        let changes: Vec<(u64, &Permit)> = accepted.iter().map(|seq| (*seq, &permit)).collect();
        // What a stream sends: the snapshot's records and each change's, encoded.
        let sent = async || {
            let (data, snapshot) = app.store.snapshot_of(&permit, SINCE_2024, head).await.unwrap();
            let mut at: Vec<_> = app
                .store
                .records_at(&changes)
                .await
                .unwrap()
                .into_iter()
                .collect();
            at.sort_by_key(|(seq, _)| *seq);
            let forms: Vec<bool> = snapshot
                .iter()
                .chain(at.iter().map(|(_, v)| v))
                .filter(|v| !v.is_person_update())
                .map(|v| matches!(v, DeliveredVersion::Encoded(_)))
                .collect();
            let bytes: Vec<Vec<u8>> = snapshot
                .into_iter()
                .chain(at.into_iter().map(|(_, v)| v))
                .filter(|v| !v.is_person_update())
                .map(|v| pb::BenefitRecord::from(v).encode_to_vec())
                .collect();
            (data, forms, bytes)
        };
        let (data, forms, encoded) = sent().await;
        assert_eq!(data.name, "Anna");
        // The snapshot's one record ("s" at version 2) and the four benefit changes.
        assert_eq!(forms, [true; 5]);

        // A register written before encodings were kept, as migrations 0014 and 0019 leave it: no
        // encoding in the log, and no person's state.
        let drop_encodings = async || {
            app.execute_sql("UPDATE register_log SET wire = NULL").await;
            app.execute_sql("DELETE FROM register_person_state").await;
        };
        drop_encodings().await;
        app.execute_sql("UPDATE register_head SET wire_format = 0").await;
        let (_, forms, parsed) = sent().await;
        assert_eq!(forms, [false; 5], "read whole without an encoding");
        assert_eq!(parsed, encoded, "the same bytes either way");

        app.store.migrate().await.unwrap();
        let (_, forms, again) = sent().await;
        assert_eq!(forms, [true; 5], "encoded by migrate");
        assert_eq!(again, encoded);
        assert_eq!(app.store.encode_stored_versions().await.unwrap(), 0, "once");

        // Encodings of a newer format (a newer lefi shares the database) are not encoded back.
        drop_encodings().await;
        app.execute_sql("UPDATE register_head SET wire_format = 1000")
            .await;
        assert_eq!(
            app.store.encode_stored_versions().await.unwrap(),
            0,
            "newer: left"
        );
        let (_, forms, _) = sent().await;
        assert_eq!(forms, [false; 5]);
        app.stop().await;
    }
}

/// Delivery: subscriptions, each party's history of events, fan-out, start snapshots, pruning and
/// the cursor key.
mod delivery {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use lefi::domain::delivery::{EndReason, EventKind, Notice, StateReason, SubscriptionState};
    use lefi::store::delivery::{
        CreateOutcome, DeliveryEvent, EndSelector, NewSubscription, Refresh, Subscription, SubscriptionFilter,
    };
    use lefi::store::{BackendKind, ChangeListener, HEAD_CHECK_INTERVAL, Store, StoreError};
    use sqlx::Connection;
    use time::macros::date;

    use super::{
        Backend, COORDINATION, JANUARY, P1, P2, P3, RISK_ASSESSMENT, TestApp, accept, accept_at,
        backend_tests, codes, hold_register_head, lock_waiters, period, person_update, pnr, release,
    };

    backend_tests!(
        creating_answers_by_client_reference_at_one_sequence,
        subscriptions_are_found_per_party_paged_and_filtered,
        withdrawing_suspends_on_an_ended_consent_and_ends_otherwise,
        a_new_consent_resumes_what_an_ended_consent_suspended,
        a_full_refresh_snapshots_the_active_and_names_the_skipped,
        the_history_reads_in_seq_and_ord_order_up_to_a_bound,
        the_parties_whose_history_grew_between_two_heads_are_found,
        the_head_check_wakes_the_watched_parties_whose_history_grew,
        postgres_keeps_one_fan_out_plan_that_looks_up_subscriptions_by_person,
        start_snapshots_cover_the_subscriptions_active_at_the_head,
        pruning_keeps_each_subscriptions_latest_event_and_moves_the_horizon,
        the_cursor_key_is_made_once_and_shared,
        an_ingest_reaches_only_active_subscriptions_of_its_person_and_benefit,
        a_subscription_named_twice_in_a_refresh_still_numbers_its_events_one_by_one,
        a_resumption_racing_a_cancellation_never_revives_the_ended_subscription,
    );

    /// An order for `person`'s `benefits` under `basis` from 2024-01-01, naming no case or consent.
    fn order(reference: &str, person: &str, benefits: &[&str], basis: &str) -> NewSubscription {
        NewSubscription {
            client_reference: reference.to_string(),
            person: pnr(person),
            benefit_types: codes(benefits),
            from_date: date!(2024 - 01 - 01),
            legal_basis: basis.to_string(),
            case_reference: None,
            consent_id: None,
            start: lefi::domain::delivery::SubscriptionStart::Snapshot,
            end_date: None,
            filter: Default::default(),
        }
    }

    /// An order for `person`'s sickness benefit under risk assessment, relying on `consent_id`.
    fn consented(reference: &str, person: &str, consent_id: &str) -> NewSubscription {
        NewSubscription {
            consent_id: Some(consent_id.to_string()),
            ..order(reference, person, &["SJP"], RISK_ASSESSMENT)
        }
    }

    /// Creates `orders` for `party_id` now; every one must be new.
    async fn subscribe(app: &TestApp, party_id: &str, orders: &[NewSubscription]) -> Vec<Subscription> {
        let outcomes = app
            .store
            .create_subscriptions(party_id, orders, app.clock.now_micros())
            .await
            .unwrap();
        outcomes
            .into_iter()
            .map(|o| match o {
                CreateOutcome::Created(s) => s,
                other => panic!("expected Created, got {other:?}"),
            })
            .collect()
    }

    /// Withdraws the selected subscriptions now; returns the ids of those changed.
    async fn withdraw(app: &TestApp, selector: EndSelector<'_>, reason: EndReason) -> Vec<String> {
        let changed = app
            .store
            .withdraw_subscriptions(selector, reason, "withdrawn by the test", app.clock.now_micros())
            .await
            .unwrap();
        ids(&changed)
    }

    /// Selects `subscription` as `party_id` names it.
    fn one<'a>(party_id: &'a str, subscription: &'a Subscription) -> EndSelector<'a> {
        EndSelector::One {
            party_id,
            subscription_id: &subscription.subscription_id,
        }
    }

    /// Ends one subscription as cancelled by its party.
    async fn cancel(app: &TestApp, subscription: &Subscription) {
        let selector = one(&subscription.party_id, subscription);
        assert_eq!(withdraw(app, selector, EndReason::Cancelled).await.len(), 1);
    }

    async fn stored(app: &TestApp, subscription: &Subscription) -> Subscription {
        let found = app
            .store
            .subscription(&subscription.party_id, &subscription.subscription_id)
            .await
            .unwrap();
        found.unwrap()
    }

    async fn head(app: &TestApp) -> u64 {
        app.store.head_seq().await.unwrap()
    }

    /// A party's whole history, in order.
    async fn history(app: &TestApp, party_id: &str) -> Vec<DeliveryEvent> {
        app.store
            .delivery_page(party_id, (0, 0), u64::MAX, 100_000)
            .await
            .unwrap()
    }

    fn ids(subscriptions: &[Subscription]) -> Vec<String> {
        subscriptions.iter().map(|s| s.subscription_id.clone()).collect()
    }

    fn sorted(mut ids: Vec<String>) -> Vec<String> {
        ids.sort_unstable();
        ids
    }

    /// An event as (sequence, place at it, subscription, event number, what it is): enough to
    /// compare histories at a glance (notices by state and reason; messages are checked apart).
    type Summary = (u64, u64, String, u64, String);

    fn summary(e: &DeliveryEvent) -> Summary {
        let what = match &e.kind {
            EventKind::Snapshot(reason) => format!("SNAPSHOT {}", reason.as_str()),
            EventKind::Change => "CHANGE".to_string(),
            EventKind::Notice(n) => format!("NOTICE {} {}", n.state, n.reason.as_str()),
        };
        (
            e.seq,
            e.ord,
            e.subscription.subscription_id.clone(),
            e.event_number,
            what,
        )
    }

    fn summaries(events: &[DeliveryEvent]) -> Vec<Summary> {
        events.iter().map(summary).collect()
    }

    /// The summaries of a party's events at sequence `seq`.
    async fn at(app: &TestApp, party_id: &str, seq: u64) -> Vec<Summary> {
        let events = history(app, party_id).await;
        summaries(&events).into_iter().filter(|e| e.0 == seq).collect()
    }

    fn event(seq: u64, ord: u64, subscription: &str, number: u64, what: &str) -> Summary {
        (seq, ord, subscription.to_string(), number, what.to_string())
    }

    async fn creating_answers_by_client_reference_at_one_sequence(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let insurer = app.insurer_id.as_str();
        let h = head(&app).await;
        let now = app.clock.now_micros();
        let a = order("ref-a", P1, &["SJP"], COORDINATION);
        let b = order("ref-b", P2, &["FP", "SJP"], COORDINATION);
        let outcomes = app
            .store
            .create_subscriptions(insurer, &[a.clone(), b.clone(), a.clone()], now)
            .await
            .unwrap();
        let [
            CreateOutcome::Created(first),
            CreateOutcome::Created(second),
            CreateOutcome::Unchanged(repeated),
        ] = &outcomes[..]
        else {
            panic!("{outcomes:?}")
        };
        assert_eq!(repeated, first, "a reference repeated within the batch");
        assert_eq!(
            first,
            &Subscription {
                subscription_id: first.subscription_id.clone(),
                party_id: insurer.to_string(),
                asked: NewSubscription {
                    client_reference: "ref-a".to_string(),
                    person: pnr(P1),
                    benefit_types: codes(&["SJP"]),
                    from_date: date!(2024 - 01 - 01),
                    legal_basis: COORDINATION.to_string(),
                    case_reference: None,
                    consent_id: None,
                    start: lefi::domain::delivery::SubscriptionStart::Snapshot,
                    end_date: None,
                    filter: Default::default(),
                },
                state: SubscriptionState::Active,
                state_reason: None,
                created_at: now,
                created_seq: h + 1,
                ended_at: None,
                ended_seq: None,
            }
        );
        assert_eq!(second.created_seq, h + 1, "one sequence for the batch");
        assert_eq!(head(&app).await, h + 1);
        assert_eq!(&stored(&app, first).await, first);
        let created = "SNAPSHOT SUBSCRIPTION_CREATED";
        assert_eq!(
            summaries(&history(&app, insurer).await),
            [
                event(h + 1, 1, &first.subscription_id, 1, created),
                event(h + 1, 2, &second.subscription_id, 1, created),
            ]
        );

        let moved = NewSubscription { person: pnr(P3), ..b };
        let c = order("ref-c", P3, &["SJP"], COORDINATION);
        let outcomes = app
            .store
            .create_subscriptions(insurer, &[a.clone(), moved, c], now)
            .await
            .unwrap();
        let [
            CreateOutcome::Unchanged(again),
            CreateOutcome::Conflict,
            CreateOutcome::Created(third),
        ] = &outcomes[..]
        else {
            panic!("{outcomes:?}")
        };
        assert_eq!(again, first);
        assert_eq!(third.created_seq, h + 2);
        // A batch that creates nothing takes no sequence.
        let outcomes = app.store.create_subscriptions(insurer, &[a], now).await.unwrap();
        assert!(matches!(&outcomes[..], [CreateOutcome::Unchanged(_)]));
        assert_eq!(head(&app).await, h + 2);

        // References are the party's own; so are its subscriptions.
        let [theirs] = &subscribe(
            &app,
            &app.municipality_id,
            &[order("ref-a", P1, &["SJP"], "AUTH_SOCIAL_SERVICES")],
        )
        .await[..] else {
            unreachable!()
        };
        assert_ne!(theirs.subscription_id, first.subscription_id);
        let lookup = async |party_id: &str, id: &str| app.store.subscription(party_id, id).await.unwrap();
        assert_eq!(lookup(&app.municipality_id, &first.subscription_id).await, None);
        assert_eq!(lookup(insurer, "sub_missing").await, None);
        app.stop().await;
    }

    async fn subscriptions_are_found_per_party_paged_and_filtered(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let insurer = app.insurer_id.as_str();
        let mut made = subscribe(
            &app,
            insurer,
            &[
                order("r1", P1, &["SJP"], COORDINATION),
                consented("r2", P2, "cns_1"),
                NewSubscription {
                    case_reference: Some("K-1".to_string()),
                    ..order("r3", P1, &["SJP"], COORDINATION)
                },
            ],
        )
        .await;
        made.sort_by(|x, y| (x.created_at, &x.subscription_id).cmp(&(y.created_at, &y.subscription_id)));
        let page = async |party_id: &str, filter: &SubscriptionFilter, after: Option<&Subscription>| {
            let after = after.map(|s| (s.created_at, s.subscription_id.as_str()));
            app.store
                .subscriptions_page(party_id, filter, after, 2)
                .await
                .unwrap()
        };
        let all = SubscriptionFilter::default();
        let first = page(insurer, &all, None).await;
        assert_eq!(first, made[..2]);
        assert_eq!(page(insurer, &all, first.last()).await, made[2..]);
        assert!(page(&app.municipality_id, &all, None).await.is_empty());

        cancel(
            &app,
            &made
                .iter()
                .find(|s| s.asked.client_reference == "r1")
                .unwrap()
                .clone(),
        )
        .await;
        let text = |v: &str| Some(v.to_string());
        let filters = [
            (
                SubscriptionFilter {
                    person: Some(pnr(P1)),
                    ..all.clone()
                },
                vec!["r1", "r3"],
            ),
            (
                SubscriptionFilter {
                    legal_basis: text(RISK_ASSESSMENT),
                    ..all.clone()
                },
                vec!["r2"],
            ),
            (
                SubscriptionFilter {
                    client_reference: text("r3"),
                    ..all.clone()
                },
                vec!["r3"],
            ),
            (
                SubscriptionFilter {
                    case_reference: text("K-1"),
                    ..all.clone()
                },
                vec!["r3"],
            ),
            (
                SubscriptionFilter {
                    consent_id: text("cns_1"),
                    ..all.clone()
                },
                vec!["r2"],
            ),
            (
                SubscriptionFilter {
                    states: vec![SubscriptionState::Ended],
                    ..all.clone()
                },
                vec!["r1"],
            ),
            (
                SubscriptionFilter {
                    states: vec![SubscriptionState::Active, SubscriptionState::Suspended],
                    ..all.clone()
                },
                vec!["r2", "r3"],
            ),
        ];
        for (filter, expected) in filters {
            let found = app
                .store
                .subscriptions_page(insurer, &filter, None, 10)
                .await
                .unwrap();
            let references: BTreeSet<&str> =
                found.iter().map(|s| s.asked.client_reference.as_str()).collect();
            assert_eq!(references, expected.into_iter().collect(), "{filter:?}");
        }
        app.stop().await;
    }

    async fn withdrawing_suspends_on_an_ended_consent_and_ends_otherwise(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let insurer = app.insurer_id.as_str();
        let [by_consent, by_case, plain]: [Subscription; 3] = subscribe(
            &app,
            insurer,
            &[
                consented("c", P1, "cns_1"),
                NewSubscription {
                    case_reference: Some("K-1".to_string()),
                    ..order("k", P2, &["SJP"], COORDINATION)
                },
                order("o", P3, &["SJP"], COORDINATION),
            ],
        )
        .await
        .try_into()
        .unwrap();
        let h = head(&app).await;
        let now = app.clock.now_micros();
        let withdraw_now = async |selector, reason, message| {
            app.store
                .withdraw_subscriptions(selector, reason, message, now)
                .await
                .unwrap()
        };

        let consent_ended = StateReason::Withdrawn(EndReason::ConsentEnded);
        let suspended = withdraw_now(
            EndSelector::ByConsent { consent_id: "cns_1" },
            EndReason::ConsentEnded,
            "the consent was revoked",
        )
        .await;
        let expected = Subscription {
            state: SubscriptionState::Suspended,
            state_reason: Some(consent_ended),
            ..by_consent.clone()
        };
        assert_eq!(suspended, vec![expected.clone()], "suspended, not ended");
        assert_eq!(stored(&app, &by_consent).await, expected);
        let events = history(&app, insurer).await;
        let notice = events.last().unwrap();
        assert_eq!((notice.seq, notice.ord, notice.event_number), (h + 1, 1, 2));
        assert_eq!(
            notice.kind,
            EventKind::Notice(Notice {
                state: SubscriptionState::Suspended,
                reason: consent_ended,
                message: "the consent was revoked".to_string(),
            })
        );
        // Withdrawing again changes nothing and takes no sequence.
        let again = withdraw_now(
            EndSelector::ByConsent { consent_id: "cns_1" },
            EndReason::ConsentEnded,
            "-",
        )
        .await;
        assert!(again.is_empty());
        assert_eq!(head(&app).await, h + 1);

        let by_case_selector = EndSelector::ByCase {
            party_id: insurer,
            case_reference: "K-1",
        };
        let ended = withdraw_now(by_case_selector, EndReason::CaseClosed, "the case was closed").await;
        assert_eq!(
            ended,
            [Subscription {
                state: SubscriptionState::Ended,
                state_reason: Some(StateReason::Withdrawn(EndReason::CaseClosed)),
                ended_at: Some(now),
                ended_seq: Some(h + 2),
                ..by_case.clone()
            }]
        );
        // Another party cannot end the insurer's subscription.
        let other_party = one(app.municipality_id.as_str(), &plain);
        assert!(withdraw(&app, other_party, EndReason::Cancelled).await.is_empty());
        assert_eq!(
            withdraw(&app, one(insurer, &plain), EndReason::Cancelled).await,
            [plain.subscription_id.as_str()]
        );
        // Ending all of a party's subscriptions ends the suspended one too; the ended stay as they are.
        let all = EndSelector::AllOfParty { party_id: insurer };
        assert_eq!(
            withdraw(&app, all, EndReason::PartyTerminated).await,
            [by_consent.subscription_id.as_str()]
        );
        let terminated = stored(&app, &by_consent).await;
        assert_eq!(
            (terminated.state, terminated.ended_seq),
            (SubscriptionState::Ended, Some(h + 4))
        );
        assert!(withdraw(&app, all, EndReason::PartyTerminated).await.is_empty());
        assert_eq!(head(&app).await, h + 4);
        app.stop().await;
    }

    async fn a_new_consent_resumes_what_an_ended_consent_suspended(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let insurer = app.insurer_id.as_str();
        let [first, second, ended, elsewhere]: [Subscription; 4] = subscribe(
            &app,
            insurer,
            &[
                consented("c1", P1, "cns_1"),
                NewSubscription {
                    benefit_types: codes(&["FP"]),
                    ..consented("c2", P1, "cns_1")
                },
                consented("e", P1, "cns_9"),
                consented("p2", P2, "cns_2"),
            ],
        )
        .await
        .try_into()
        .unwrap();
        for consent_id in ["cns_1", "cns_2"] {
            withdraw(
                &app,
                EndSelector::ByConsent { consent_id },
                EndReason::ConsentEnded,
            )
            .await;
        }
        cancel(&app, &ended).await;
        let h = head(&app).await;
        let resume = async |party_id: &str, person: &str, basis: &str| {
            app.store
                .resume_with_consent(party_id, &pnr(person), basis, "cns_new", app.clock.now_micros())
                .await
                .unwrap()
        };

        let resumed = resume(insurer, P1, RISK_ASSESSMENT).await;
        let expected = sorted(ids(&[first.clone(), second.clone()]));
        assert_eq!(ids(&resumed), expected);
        for subscription in &resumed {
            assert_eq!(
                (
                    subscription.state,
                    subscription.state_reason,
                    subscription.asked.consent_id.as_deref()
                ),
                (
                    SubscriptionState::Active,
                    Some(StateReason::Resumed),
                    Some("cns_new")
                )
            );
            assert_eq!(&stored(&app, subscription).await, subscription);
        }
        assert_eq!(
            head(&app).await,
            h + 1,
            "a notice and a snapshot each, at one sequence"
        );
        let mut events = Vec::new();
        for (i, id) in (0..).zip(&expected) {
            events.push(event(h + 1, 2 * i + 1, id, 3, "NOTICE ACTIVE RESUMED"));
            events.push(event(h + 1, 2 * i + 2, id, 4, "SNAPSHOT RESUMED"));
        }
        assert_eq!(at(&app, insurer, h + 1).await, events);
        // Another person's, and an ended one, stay as they were.
        assert_eq!(stored(&app, &elsewhere).await.state, SubscriptionState::Suspended);
        assert_eq!(stored(&app, &ended).await.state, SubscriptionState::Ended);

        assert!(resume(insurer, P1, RISK_ASSESSMENT).await.is_empty());
        assert!(resume(insurer, P2, COORDINATION).await.is_empty());
        assert!(resume(&app.municipality_id, P2, RISK_ASSESSMENT).await.is_empty());
        assert_eq!(head(&app).await, h + 1, "resuming nothing takes no sequence");
        app.stop().await;
    }

    async fn a_full_refresh_snapshots_the_active_and_names_the_skipped(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let insurer = app.insurer_id.as_str();
        let [a, b, c]: [Subscription; 3] = subscribe(
            &app,
            insurer,
            &[
                order("a", P1, &["SJP"], COORDINATION),
                order("b", P2, &["SJP"], COORDINATION),
                order("c", P3, &["SJP"], COORDINATION),
            ],
        )
        .await
        .try_into()
        .unwrap();
        cancel(&app, &c).await;
        let h = head(&app).await;
        let refresh = async |only: Vec<String>| {
            app.store
                .full_refresh(insurer, &only, "copy damaged", app.clock.now_micros())
                .await
        };
        // A subscription the party does not have refuses the whole refresh; nothing changes.
        let with_unknown = vec![a.subscription_id.clone(), "sub_missing".to_string()];
        assert!(matches!(refresh(with_unknown).await, Err(StoreError::NotFound)));
        assert_eq!(head(&app).await, h);
        let named = vec![a.subscription_id.clone(), c.subscription_id.clone()];
        assert_eq!(
            refresh(named).await.unwrap(),
            Refresh {
                before: h,
                refreshed: vec![a.subscription_id.clone()],
                skipped: vec![c.subscription_id.clone()],
            }
        );
        let recorded = app.store.full_refreshes(insurer).await.unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(
            (
                recorded[0].seq,
                recorded[0].reason.as_deref(),
                recorded[0].subscription_count
            ),
            (h + 1, Some("copy damaged"), 1)
        );
        let full = "SNAPSHOT FULL_REFRESH";
        assert_eq!(
            at(&app, insurer, h + 1).await,
            [event(h + 1, 1, &a.subscription_id, 2, full)]
        );

        let every_active = sorted(ids(&[a.clone(), b.clone()]));
        assert_eq!(
            refresh(Vec::new()).await.unwrap(),
            Refresh {
                before: h + 1,
                refreshed: every_active.clone(),
                skipped: Vec::new(),
            }
        );
        let number = |id: &String| if *id == a.subscription_id { 3 } else { 2 };
        let expected: Vec<Summary> = (1..)
            .zip(&every_active)
            .map(|(ord, id)| event(h + 2, ord, id, number(id), full))
            .collect();
        assert_eq!(at(&app, insurer, h + 2).await, expected);
        app.stop().await;
    }

    async fn the_history_reads_in_seq_and_ord_order_up_to_a_bound(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let insurer = app.insurer_id.as_str();
        let made = subscribe(
            &app,
            insurer,
            &[
                order("a", P1, &["SJP"], COORDINATION),
                order("b", P1, &["SJP"], COORDINATION),
            ],
        )
        .await;
        let s1 = made[0].created_seq;
        let [s2, s3] = accept(
            &app,
            vec![
                period(P1, "x", 1, "SJP", JANUARY),
                period(P1, "y", 1, "SJP", JANUARY),
            ],
        )
        .await[..] else {
            unreachable!()
        };

        let full = history(&app, insurer).await;
        let keys: Vec<(u64, u64)> = full.iter().map(|e| (e.seq, e.ord)).collect();
        assert_eq!(keys, [(s1, 1), (s1, 2), (s2, 1), (s2, 2), (s3, 1), (s3, 2)]);
        // Changes at one sequence are ordered by subscription id; every subscription numbers its
        // own events from 1.
        let by_id = sorted(ids(&made));
        let changes: Vec<&str> = full[2..]
            .iter()
            .map(|e| e.subscription.subscription_id.as_str())
            .collect();
        assert_eq!(changes, [&by_id[0], &by_id[1], &by_id[0], &by_id[1]]);
        for id in &by_id {
            let numbers: Vec<u64> = full
                .iter()
                .filter(|e| e.subscription.subscription_id == *id)
                .map(|e| e.event_number)
                .collect();
            assert_eq!(numbers, [1, 2, 3]);
        }

        let page = async |after: (u64, u64), up_to: u64, limit: i64| {
            let events = app
                .store
                .delivery_page(insurer, after, up_to, limit)
                .await
                .unwrap();
            summaries(&events)
        };
        let everything = summaries(&full);
        let first = page((0, 0), u64::MAX, 4).await;
        assert_eq!(first, everything[..4]);
        let last = first.last().unwrap();
        assert_eq!(page((last.0, last.1), u64::MAX, 4).await, everything[4..]);
        assert_eq!(page((0, 0), s2, 100).await, everything[..4], "nothing past up_to");
        assert_eq!(page((0, 0), s1, 100).await, everything[..2]);
        assert_eq!(page((s1, 1), s1, 100).await, everything[1..2]);
        assert!(history(&app, &app.municipality_id).await.is_empty());
        app.stop().await;
    }

    /// The insurer subscribed to P1's sickness benefit, then the municipality to P2's: their ids
    /// and the two subscriptions' sequences.
    async fn two_parties_subscribed(app: &TestApp) -> (String, String, [u64; 2]) {
        let insurer = app.insurer_id.clone();
        let municipality = app.municipality_id.clone();
        let first = subscribe(app, &insurer, &[order("a", P1, &["SJP"], COORDINATION)]).await;
        let second = subscribe(app, &municipality, &[order("b", P2, &["SJP"], COORDINATION)]).await;
        let seqs = [first[0].created_seq, second[0].created_seq];
        (insurer, municipality, seqs)
    }

    /// A replica's head check asks which watched parties' histories grew since its last look.
    async fn the_parties_whose_history_grew_between_two_heads_are_found(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let (insurer, municipality, [s1, s2]) = two_parties_subscribed(&app).await;
        let [s3] = accept(&app, vec![period(P1, "x", 1, "SJP", JANUARY)]).await[..] else {
            unreachable!()
        };
        let [s4] = accept(&app, vec![period(P2, "y", 1, "SJP", JANUARY)]).await[..] else {
            unreachable!()
        };
        let [s5] = accept(&app, vec![period(P3, "z", 1, "SJP", JANUARY)]).await[..] else {
            unreachable!()
        };
        assert!(
            s1 < s2 && s2 < s3 && s3 < s4 && s4 < s5,
            "{s1} {s2} {s3} {s4} {s5}"
        );
        let grew = async |parties: &[&String], after: u64, through: u64| {
            let parties: Vec<String> = parties.iter().map(|p| p.to_string()).collect();
            app.store
                .parties_with_history_between(&parties, after, through)
                .await
                .unwrap()
        };
        let nobody = "pty_nobody".to_string();
        let watched = [&municipality, &nobody, &insurer];
        assert_eq!(
            grew(&watched, 0, s5).await,
            [municipality.as_str(), insurer.as_str()],
            "in the order asked"
        );
        assert_eq!(
            grew(&watched, s1, s2).await,
            [municipality.as_str()],
            "its snapshot"
        );
        assert_eq!(grew(&watched, s2, s3).await, [insurer.as_str()], "its change");
        assert_eq!(
            grew(&watched, s3 - 1, s3).await,
            [insurer.as_str()],
            "the bound is inclusive"
        );
        assert_eq!(grew(&watched, s3, s4).await, [municipality.as_str()]);
        assert!(grew(&watched, s4, s5).await.is_empty(), "P3 has no subscription");
        assert!(grew(&watched, s5, s5).await.is_empty());
        assert!(grew(&[&nobody], 0, s5).await.is_empty());
        assert!(grew(&[], 0, s5).await.is_empty());
        app.stop().await;
    }

    /// A change no replica announced (the store's own commits announce nothing) is found by the
    /// head check, which wakes the watched parties whose histories grew: not every party.
    async fn the_head_check_wakes_the_watched_parties_whose_history_grew(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let (insurer, municipality, _) = two_parties_subscribed(&app).await;
        let (woken, mut wake_ups) = tokio::sync::mpsc::unbounded_channel();
        let listener = Watching {
            watched: vec![insurer.clone(), municipality.clone()],
            woken,
        };
        let watching = app.store.watch_changes(Arc::new(listener)).await.unwrap();
        let Some(watching) = watching else {
            assert_eq!(backend, Backend::Sqlite, "only SQLite has no replicas to watch");
            app.stop().await;
            return;
        };
        // The check's first look (at once) takes the head it compares with.
        tokio::time::sleep(HEAD_CHECK_INTERVAL / 2).await;
        accept(&app, vec![period(P1, "x", 1, "SJP", JANUARY)]).await;
        let woke = tokio::time::timeout(HEAD_CHECK_INTERVAL * 5, wake_ups.recv()).await;
        assert_eq!(woke.expect("woken by the head check").unwrap(), [insurer]);
        watching.abort();
        app.stop().await;
    }

    /// PostgreSQL plans the fan-out once per connection (`plan_cache_mode = force_generic_plan` for
    /// it), so that plan must be good for any commit: with many subscriptions it finds the new log
    /// rows by key and their persons' subscriptions by index, never scanning every subscription.
    async fn postgres_keeps_one_fan_out_plan_that_looks_up_subscriptions_by_person(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        if backend == Backend::Sqlite {
            // SQLite's plan has a test of its own (`store::delivery::history`).
            app.stop().await;
            return;
        }
        // 20,000 persons with a subscription and a fact each, and the planner's statistics of them.
        app.execute_sql(&format!(
            "INSERT INTO subscriptions (subscription_id, party_id, client_reference, person, benefit_types, \
                 from_date, legal_basis, case_reference, consent_id, state, state_reason, created_at, created_seq) \
             SELECT 'sub_plan_' || n, '{}', 'plan-' || n, lpad(n::text, 12, '0'), 'SJP', '2024-01-01', \
                    '{COORDINATION}', '', '', 'ACTIVE', '', 0, 0 \
             FROM generate_series(1, 20000) AS n; \
             INSERT INTO register_log (seq, recorded_at, person, record_id, version, kind, retroactive, \
                 benefit_type, fact_type, valid_from, body, source_system, source_id, source_version, content_hash) \
             SELECT 1000 + n, 0, lpad(n::text, 12, '0'), 'rec_plan_' || n, 1, 'NEW', FALSE, 'SJP', 'PERIOD', \
                    '2024-01-01', '{{}}', 'plan', 'plan-' || n, 1, '' \
             FROM generate_series(1, 20000) AS n; \
             ANALYZE subscriptions; ANALYZE register_log; ANALYZE delivery_events",
            app.insurer_id
        ))
        .await;
        let mut conn = sqlx::postgres::PgConnection::connect(&app.db_url).await.unwrap();
        let statement = lefi::store::delivery::fan_out_statement(BackendKind::Postgres);
        sqlx::raw_sql("SET plan_cache_mode = force_generic_plan")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "PREPARE fan_out (bigint[]) AS {statement}"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        let plan: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE fan_out('{1, 2, 3}')")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("register_log_pkey on register_log l"), "{plan}");
        assert!(plan.contains("subscriptions_person on subscriptions s"), "{plan}");
        assert!(!plan.contains("Seq Scan on subscriptions"), "{plan}");
        conn.close().await.unwrap();
        app.stop().await;
    }

    /// A change listener watching `watched` that passes on whom it is told to wake.
    struct Watching {
        watched: Vec<String>,
        woken: tokio::sync::mpsc::UnboundedSender<Vec<String>>,
    }

    impl ChangeListener for Watching {
        fn heard(&self, payload: &str) {
            // The test's server announces its own changes (with its origin); "" would be the
            // check waking everyone.
            if payload.is_empty() {
                let _ = self.woken.send(vec!["everyone".to_string()]);
            }
        }

        fn watched_parties(&self) -> Vec<String> {
            self.watched.clone()
        }

        fn wake(&self, party_ids: &[String]) {
            let _ = self.woken.send(party_ids.to_vec());
        }
    }

    async fn start_snapshots_cover_the_subscriptions_active_at_the_head(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let insurer = app.insurer_id.as_str();
        let mut made = Vec::new();
        for (reference, person) in [("a", P1), ("b", P2)] {
            made.extend(subscribe(&app, insurer, &[order(reference, person, &["SJP"], COORDINATION)]).await);
        }
        let [a, b]: [Subscription; 2] = made.try_into().unwrap();
        cancel(&app, &a).await;
        let a_ended = head(&app).await;
        let [c]: [Subscription; 1] = subscribe(&app, insurer, &[order("c", P3, &["SJP"], COORDINATION)])
            .await
            .try_into()
            .unwrap();
        let refreshed = 1 + app
            .store
            .full_refresh(insurer, &[], "", app.clock.now_micros())
            .await
            .unwrap()
            .before;

        let start = async |party_id: &str, head: u64, after: Option<&str>, skip: u64, limit: usize| {
            let page = app
                .store
                .start_subscriptions(party_id, head, after, skip, limit)
                .await
                .unwrap();
            page.into_iter()
                .map(|(s, number)| (s.subscription_id, number))
                .collect::<Vec<_>>()
        };
        let active_at = async |head: u64| start(insurer, head, None, 0, 10).await;
        let with = |subscriptions: &[&Subscription], number: u64| {
            let mut expected: Vec<(String, u64)> = subscriptions
                .iter()
                .map(|s| (s.subscription_id.clone(), number))
                .collect();
            expected.sort_unstable();
            expected
        };
        assert!(active_at(a.created_seq - 1).await.is_empty());
        assert_eq!(active_at(a.created_seq).await, with(&[&a], 1));
        assert_eq!(active_at(b.created_seq).await, with(&[&a, &b], 1));
        assert_eq!(active_at(a_ended).await, with(&[&b], 1), "ended at that sequence");
        assert_eq!(active_at(c.created_seq).await, with(&[&b, &c], 1));
        assert_eq!(
            active_at(refreshed).await,
            with(&[&b, &c], 2),
            "numbered as of the head"
        );

        let all = active_at(b.created_seq).await;
        let at_b = b.created_seq;
        assert_eq!(start(insurer, at_b, None, 0, 1).await, all[..1]);
        assert_eq!(start(insurer, at_b, Some(&all[0].0), 0, 10).await, all[1..]);
        assert_eq!(start(insurer, at_b, None, 1, 10).await, all[1..], "skip");
        assert_eq!(
            start(insurer, at_b, Some(&all[0].0), 1, 10).await,
            all[1..],
            "after wins over skip"
        );
        assert!(
            start(&app.municipality_id, refreshed, None, 0, 10)
                .await
                .is_empty()
        );
        app.stop().await;
    }

    async fn pruning_keeps_each_subscriptions_latest_event_and_moves_the_horizon(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let insurer = app.insurer_id.as_str();
        let horizon = async |party_id: &str| app.store.delivery_horizon(party_id).await.unwrap();
        assert_eq!(horizon(insurer).await, 0);
        let t = app.clock.now_micros();
        let created = app
            .store
            .create_subscriptions(insurer, &[order("a", P1, &["SJP"], COORDINATION)], t)
            .await
            .unwrap();
        let [CreateOutcome::Created(a)] = &created[..] else {
            panic!("{created:?}")
        };
        let facts = vec![
            period(P1, "x", 1, "SJP", JANUARY),
            period(P1, "y", 1, "SJP", JANUARY),
        ];
        let [_, s3] = accept_at(&app, facts, t).await[..] else {
            unreachable!()
        };

        assert_eq!(app.store.prune_delivery_history(t + 1).await.unwrap(), 2);
        assert_eq!(horizon(insurer).await, s3);
        let id = &a.subscription_id;
        assert_eq!(
            summaries(&history(&app, insurer).await),
            [event(s3, 1, id, 3, "CHANGE")],
            "the latest event stays"
        );
        let [s4] = accept_at(&app, vec![period(P1, "z", 1, "SJP", JANUARY)], t + 10).await[..] else {
            unreachable!()
        };
        assert_eq!(
            at(&app, insurer, s4).await,
            [event(s4, 1, id, 4, "CHANGE")],
            "numbers continue after pruning"
        );
        assert_eq!(app.store.prune_delivery_history(t - 1).await.unwrap(), 0);
        assert_eq!(horizon(insurer).await, s3);
        assert_eq!(horizon(&app.municipality_id).await, 0);
        app.stop().await;
    }

    async fn the_cursor_key_is_made_once_and_shared(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let key = app.store.cursor_key().await.unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(app.store.cursor_key().await.unwrap(), key);
        let replica = Store::connect(&app.db_url, 2).await.unwrap();
        assert_eq!(
            replica.cursor_key().await.unwrap(),
            key,
            "every replica signs alike"
        );
        replica.close().await;
        app.stop().await;
    }

    async fn an_ingest_reaches_only_active_subscriptions_of_its_person_and_benefit(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let (insurer, municipality) = (app.insurer_id.as_str(), app.municipality_id.as_str());
        let made = subscribe(
            &app,
            insurer,
            &[
                order("sickness", P1, &["SJP"], COORDINATION),
                order("parental", P1, &["FP"], COORDINATION),
                order("both", P1, &["FP", "SJP"], COORDINATION),
                order("other-person", P2, &["SJP"], COORDINATION),
                order("ended", P1, &["SJP"], COORDINATION),
                consented("suspended", P1, "cns_1"),
                NewSubscription {
                    from_date: date!(2025 - 01 - 01),
                    ..order("later", P1, &["SJP"], COORDINATION)
                },
            ],
        )
        .await;
        let theirs = NewSubscription {
            case_reference: Some("K-1".to_string()),
            ..order("municipal", P1, &["SJP"], "AUTH_SOCIAL_SERVICES")
        };
        subscribe(&app, municipality, &[theirs]).await;
        cancel(
            &app,
            made.iter().find(|s| s.asked.client_reference == "ended").unwrap(),
        )
        .await;
        withdraw(
            &app,
            EndSelector::ByConsent { consent_id: "cns_1" },
            EndReason::ConsentEnded,
        )
        .await;

        let [fact, update, correction] = accept(
            &app,
            vec![
                period(P1, "f", 1, "SJP", JANUARY),
                person_update(P1, 1, "Anna"),
                // Corrections reach a subscription whatever their period: they may move a fact out.
                period(P1, "f", 2, "SJP", JANUARY),
            ],
        )
        .await[..] else {
            unreachable!()
        };
        let reached = async |party_id: &str, seq: u64| {
            let events = history(&app, party_id).await;
            let at_seq: Vec<&DeliveryEvent> = events.iter().filter(|e| e.seq == seq).collect();
            assert!(at_seq.iter().all(|e| e.kind == EventKind::Change));
            // Ordered within the sequence by subscription id, from 1.
            let order: Vec<(u64, &str)> = at_seq
                .iter()
                .map(|e| (e.ord, e.subscription.subscription_id.as_str()))
                .collect();
            let mut expected = order.clone();
            expected.sort_by_key(|(_, id)| *id);
            let expected: Vec<(u64, &str)> = (1..).zip(expected.into_iter().map(|(_, id)| id)).collect();
            assert_eq!(order, expected);
            at_seq
                .iter()
                .map(|e| e.subscription.asked.client_reference.clone())
                .collect::<BTreeSet<_>>()
        };
        let set = |references: &[&str]| references.iter().map(|r| r.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(reached(insurer, fact).await, set(&["sickness", "both"]));
        assert_eq!(
            reached(insurer, update).await,
            set(&["sickness", "parental", "both", "later"])
        );
        assert_eq!(
            reached(insurer, correction).await,
            set(&["sickness", "both", "later"])
        );
        for seq in [fact, update, correction] {
            assert_eq!(reached(municipality, seq).await, set(&["municipal"]));
        }
        // The commit names the parties whose histories grew (their streams are woken), each once.
        let ingested = app
            .store
            .ingest_and_fan_out(vec![period(P1, "g", 1, "SJP", JANUARY)], app.clock.now_micros())
            .await
            .unwrap();
        let mut both = vec![insurer.to_string(), municipality.to_string()];
        both.sort();
        assert_eq!(ingested.parties, both);
        // A fact about a person nobody follows grows no history.
        let ingested = app
            .store
            .ingest_and_fan_out(vec![period(P3, "h", 1, "SJP", JANUARY)], app.clock.now_micros())
            .await
            .unwrap();
        assert_eq!(ingested.results.len(), 1);
        assert!(ingested.parties.is_empty(), "{:?}", ingested.parties);
        app.stop().await;
    }

    async fn a_subscription_named_twice_in_a_refresh_still_numbers_its_events_one_by_one(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let insurer = app.insurer_id.as_str();
        let [a]: [Subscription; 1] = subscribe(&app, insurer, &[order("a", P1, &["SJP"], COORDINATION)])
            .await
            .try_into()
            .unwrap();
        let twice = vec![a.subscription_id.clone(), a.subscription_id.clone()];
        app.store
            .full_refresh(insurer, &twice, "", app.clock.now_micros())
            .await
            .unwrap();
        accept(&app, vec![period(P1, "x", 1, "SJP", JANUARY)]).await;
        // delivery.proto (6): a subscription's event numbers increase by exactly 1 from event to
        // event; anything else tells the client it missed something.
        let numbers: Vec<u64> = history(&app, insurer)
            .await
            .iter()
            .map(|e| e.event_number)
            .collect();
        let one_by_one: Vec<u64> = (1..).take(numbers.len()).collect();
        assert_eq!(numbers, one_by_one);
        app.stop().await;
    }

    async fn a_resumption_racing_a_cancellation_never_revives_the_ended_subscription(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let insurer = app.insurer_id.clone();
        let [suspended]: [Subscription; 1] = subscribe(&app, &insurer, &[consented("c", P1, "cns_1")])
            .await
            .try_into()
            .unwrap();
        withdraw(
            &app,
            EndSelector::ByConsent { consent_id: "cns_1" },
            EndReason::ConsentEnded,
        )
        .await;
        let now = app.clock.now_micros();
        let cancel = {
            let (store, party_id, id) = (
                app.store.clone(),
                insurer.clone(),
                suspended.subscription_id.clone(),
            );
            async move {
                let one = EndSelector::One {
                    party_id: &party_id,
                    subscription_id: &id,
                };
                store
                    .withdraw_subscriptions(one, EndReason::Cancelled, "cancelled", now)
                    .await
                    .unwrap()
            }
        };
        let resume = {
            let (store, party_id) = (app.store.clone(), insurer.clone());
            async move {
                store
                    .resume_with_consent(&party_id, &pnr(P1), RISK_ASSESSMENT, "cns_2", now)
                    .await
                    .unwrap()
            }
        };
        // On PostgreSQL the register head is held until both have read the subscription (the
        // cancellation first) and wait to write; on SQLite the one writer takes them in turn.
        let holder = match backend {
            Backend::Postgres => Some(hold_register_head(&app.db_url).await),
            Backend::Sqlite => None,
        };
        // (Waiting for any lock, not only the head's: a fix may lock the subscription first.)
        let cancelling = tokio::spawn(cancel);
        if holder.is_some() {
            lock_waiters(&app.db_url, "", 1).await;
        }
        let resuming = tokio::spawn(resume);
        if let Some(holder) = holder {
            lock_waiters(&app.db_url, "", 2).await;
            release(holder).await;
        }
        let (cancelled, resumed) = (cancelling.await.unwrap(), resuming.await.unwrap());
        assert_eq!(ids(&cancelled), [suspended.subscription_id.as_str()]);

        // Whichever went first, a cancelled subscription ends for good.
        let after = stored(&app, &suspended).await;
        assert_eq!(
            after.state,
            SubscriptionState::Ended,
            "{after:?} (resumed: {resumed:?})"
        );
        let events = history(&app, &insurer).await;
        let last = summary(events.last().unwrap());
        assert_eq!(last.4, "NOTICE ENDED CANCELLED", "{:?}", summaries(&events));
        app.stop().await;
    }
}

/// Consents parties register, and the case references they name.
mod consents {
    use lefi::store::StoreError;
    use lefi::store::consents::{
        CaseRecord, Consent, ConsentFilter, ConsentRegistration, NewConsent, Revocation, RevokedBy,
    };
    use time::macros::date;

    use super::{Backend, P1, P2, RISK_ASSESSMENT, TestApp, backend_tests, codes, pnr};

    backend_tests!(
        registering_a_consent_is_idempotent_by_its_evidence,
        consents_are_listed_newest_first_by_party_person_and_basis,
        a_consent_is_revoked_by_its_party_or_by_the_agency,
        cases_open_on_first_use_and_close_for_good,
    );

    /// A consent for risk assessment given on 2025-01-01, valid through 2027.
    fn consent(party_id: &str, person: &str, evidence: &str) -> NewConsent {
        NewConsent {
            party_id: party_id.to_string(),
            person: pnr(person),
            basis_code: RISK_ASSESSMENT.to_string(),
            given_on: date!(2025 - 01 - 01),
            expires_on: date!(2027 - 12 - 31),
            evidence_reference: evidence.to_string(),
        }
    }

    /// Registers a new consent at `now` and returns it.
    async fn register(app: &TestApp, new: &NewConsent, now: i64) -> Consent {
        match app.store.register_consent(new, now).await.unwrap() {
            ConsentRegistration::Created(c) => c,
            other => panic!("expected Created, got {other:?}"),
        }
    }

    fn consent_ids(consents: &[Consent]) -> Vec<&str> {
        consents.iter().map(|c| c.consent_id.as_str()).collect()
    }

    async fn registering_a_consent_is_idempotent_by_its_evidence(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let now = app.clock.now_micros();
        let new = consent(&app.insurer_id, P1, "EV-1");
        let created = register(&app, &new, now).await;
        assert_eq!(
            created,
            Consent {
                consent_id: created.consent_id.clone(),
                registered: NewConsent {
                    party_id: app.insurer_id.clone(),
                    person: pnr(P1),
                    basis_code: RISK_ASSESSMENT.to_string(),
                    given_on: new.given_on,
                    expires_on: new.expires_on,
                    evidence_reference: "EV-1".to_string(),
                },
                registered_at: now,
                revocation: None,
            }
        );
        assert_eq!(
            app.store.consent(&created.consent_id).await.unwrap(),
            Some(created.clone())
        );

        let later = now + 1_000;
        let again = app.store.register_consent(&new, later).await.unwrap();
        assert_eq!(again, ConsentRegistration::Existing(created.clone()));
        let redated = NewConsent {
            expires_on: date!(2026 - 06 - 30),
            ..new.clone()
        };
        let conflict = app.store.register_consent(&redated, later).await.unwrap();
        assert_eq!(conflict, ConsentRegistration::Conflict);
        // Other evidence, or another party with the same evidence, is another consent.
        let other_evidence = register(&app, &consent(&app.insurer_id, P1, "EV-2"), later).await;
        let other_party = register(&app, &consent(&app.municipality_id, P1, "EV-1"), later).await;
        assert_ne!(other_evidence.consent_id, created.consent_id);
        assert_ne!(other_party.consent_id, created.consent_id);
        assert_eq!(app.store.consent("cns_missing").await.unwrap(), None);
        app.stop().await;
    }

    async fn consents_are_listed_newest_first_by_party_person_and_basis(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let t = app.clock.now_micros();
        let first = register(&app, &consent(&app.insurer_id, P1, "EV-1"), t).await;
        let second = register(&app, &consent(&app.insurer_id, P2, "EV-2"), t + 1).await;
        let coordination = NewConsent {
            basis_code: "INS_COORDINATION".to_string(),
            ..consent(&app.municipality_id, P1, "EV-3")
        };
        let third = register(&app, &coordination, t + 2).await;
        let all = ConsentFilter::default();
        let filters = [
            (all.clone(), vec![&third, &second, &first]),
            (
                ConsentFilter {
                    party_id: Some(app.insurer_id.clone()),
                    ..all.clone()
                },
                vec![&second, &first],
            ),
            (
                ConsentFilter {
                    person: Some(pnr(P1)),
                    ..all.clone()
                },
                vec![&third, &first],
            ),
            (
                ConsentFilter {
                    basis_code: Some(RISK_ASSESSMENT.to_string()),
                    person: Some(pnr(P1)),
                    ..all.clone()
                },
                vec![&first],
            ),
        ];
        for (filter, expected) in filters {
            let found = app.store.consents(&filter).await.unwrap();
            let expected: Vec<&str> = expected.iter().map(|c| c.consent_id.as_str()).collect();
            assert_eq!(consent_ids(&found), expected, "{filter:?}");
        }
        app.stop().await;
    }

    async fn a_consent_is_revoked_by_its_party_or_by_the_agency(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let t = app.clock.now_micros();
        let ours = register(&app, &consent(&app.insurer_id, P1, "EV-1"), t).await;
        let other = register(&app, &consent(&app.insurer_id, P2, "EV-2"), t).await;
        let revoke = async |consent_id: &str, by: RevokedBy<'_>, reason: &str, at: i64| {
            app.store.revoke_consent(consent_id, by, reason, at).await
        };

        // Another party's consent is not found, exactly like an unknown one, and stays as it was.
        let by_municipality = RevokedBy::Party(&app.municipality_id);
        let refused = revoke(&ours.consent_id, by_municipality, "-", t + 1).await;
        assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
        assert_eq!(
            app.store.consent(&ours.consent_id).await.unwrap(),
            Some(ours.clone())
        );

        let by_party = Revocation {
            at: t + 2,
            reason: Some("the person withdrew it".to_string()),
            by_agency: false,
        };
        let revoked = revoke(
            &ours.consent_id,
            RevokedBy::Party(&app.insurer_id),
            "the person withdrew it",
            t + 2,
        )
        .await
        .unwrap();
        assert_eq!(revoked.revocation, Some(by_party.clone()));
        // Revoking again, even by the agency, leaves the first revocation as it was.
        let again = revoke(&ours.consent_id, RevokedBy::Agency, "later", t + 3)
            .await
            .unwrap();
        assert_eq!(again, revoked);

        let by_agency = revoke(&other.consent_id, RevokedBy::Agency, "", t + 4)
            .await
            .unwrap();
        assert_eq!(
            by_agency.revocation,
            Some(Revocation {
                at: t + 4,
                reason: None,
                by_agency: true,
            })
        );
        assert_eq!(
            app.store.consent(&other.consent_id).await.unwrap(),
            Some(by_agency)
        );
        let unknown = revoke("cns_missing", RevokedBy::Agency, "-", t + 5).await;
        assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
        app.stop().await;
    }

    async fn cases_open_on_first_use_and_close_for_good(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let insurer = app.insurer_id.as_str();
        let t = app.clock.now_micros();
        let touch = async |references: &[&str], at: i64| {
            app.store
                .touch_cases(insurer, &codes(references), at)
                .await
                .unwrap()
        };
        let case = async |party_id: &str, reference: &str| app.store.case(party_id, reference).await.unwrap();
        let open = |reference: &str, first_used_at, last_used_at| CaseRecord {
            case_reference: reference.to_string(),
            closed: false,
            first_used_at,
            last_used_at,
            closed_at: None,
        };

        assert_eq!(case(insurer, "K-1").await, None);
        touch(&["K-1", "K-2"], t).await;
        assert_eq!(case(insurer, "K-1").await, Some(open("K-1", t, t)));
        touch(&["K-1"], t + 10).await;
        touch(&[], t + 20).await;
        assert_eq!(case(insurer, "K-1").await, Some(open("K-1", t, t + 10)));
        assert_eq!(
            app.store.cases(insurer).await.unwrap(),
            [open("K-1", t, t + 10), open("K-2", t, t)],
            "most recently used first"
        );
        assert_eq!(
            case(&app.municipality_id, "K-1").await,
            None,
            "cases are the party's own"
        );
        assert!(app.store.cases(&app.municipality_id).await.unwrap().is_empty());

        let closed = CaseRecord {
            closed: true,
            closed_at: Some(t + 30),
            ..open("K-1", t, t + 10)
        };
        let close = async |party_id: &str, reference: &str, at: i64| {
            app.store.close_case(party_id, reference, "decided", at).await
        };
        assert_eq!(close(insurer, "K-1", t + 30).await.unwrap(), closed);
        assert_eq!(
            close(insurer, "K-1", t + 40).await.unwrap(),
            closed,
            "closing is final"
        );
        // Using a closed case again records the use; it stays closed.
        touch(&["K-1"], t + 50).await;
        assert_eq!(
            case(insurer, "K-1").await,
            Some(CaseRecord {
                last_used_at: t + 50,
                ..closed
            })
        );
        for (party_id, reference) in [(insurer, "K-9"), (app.municipality_id.as_str(), "K-2")] {
            let result = close(party_id, reference, t + 60).await;
            assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
        }
        app.stop().await;
    }
}

/// The disclosure log: appending, listing by person and by party, and verifying the chain.
mod disclosure_log {
    use lefi::domain::disclosure::{
        ChainProblem, ChainVerdict, Channel, Decision, DisclosureEntry, GENESIS_HASH, NewDisclosure,
    };
    use lefi::store::disclosure_log::DisclosureQuery;

    use super::{Backend, P1, P2, TestApp, backend_tests, pnr};

    backend_tests!(
        entries_are_listed_by_person_and_by_party_in_entry_order,
        the_chain_verifies_and_names_the_entry_that_breaks_it,
    );

    /// An entry of `party_id`'s query about `person`, told apart by its record count `n`.
    fn entry(party_id: &str, person: &str, decision: Decision, n: u64) -> NewDisclosure {
        NewDisclosure {
            party_id: Some(party_id.to_string()),
            system_identity: "ab".repeat(32),
            request_id: Some(format!("req-{n}")),
            legal_basis: Some("INS_COORDINATION".to_string()),
            purpose: Some("Samordning".to_string()),
            person: Some(pnr(person)),
            benefit_types: vec!["SJP".to_string()],
            record_count: n,
            from_sequence: 0,
            to_sequence: n,
            ..NewDisclosure::new(Channel::Query, decision, "/lefi.v1.QueryService/QueryPerson")
        }
    }

    fn counts(entries: &[DisclosureEntry]) -> Vec<u64> {
        entries.iter().map(|e| e.entry.record_count).collect()
    }

    async fn entries_are_listed_by_person_and_by_party_in_entry_order(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let (insurer, municipality) = (app.insurer_id.as_str(), app.municipality_id.as_str());
        let t = app.clock.now_micros();
        let (t1, t2, t3) = (t, t + 1_000, t + 2_000);
        let first = entry(insurer, P1, Decision::Allowed, 1);
        for (entries, at) in [
            (vec![first.clone(), entry(insurer, P2, Decision::Denied, 2)], t1),
            (vec![entry(municipality, P1, Decision::Allowed, 3)], t2),
            (vec![entry(insurer, P1, Decision::Denied, 4)], t3),
            (Vec::new(), t3),
        ] {
            app.store.append_disclosures(&entries, at).await.unwrap();
        }
        let p1 = pnr(P1);
        let list = async |query, range, after, limit| {
            app.store.disclosures(query, range, after, limit).await.unwrap()
        };
        let everything = (i64::MIN, i64::MAX);
        let about = list(DisclosureQuery::Person(&p1), everything, 0, 100).await;
        assert_eq!(counts(&about), [1, 3, 4]);
        assert_eq!(about.iter().map(|e| e.at).collect::<Vec<_>>(), [t1, t2, t3]);
        assert_eq!(about[0].entry, first, "an entry reads back as appended");
        assert!(about.windows(2).all(|w| w[0].entry_id < w[1].entry_id));

        let by = |decision| DisclosureQuery::Party {
            party_id: insurer,
            decision,
        };
        assert_eq!(counts(&list(by(None), everything, 0, 100).await), [1, 2, 4]);
        assert_eq!(
            counts(&list(by(Some(Decision::Denied)), everything, 0, 100).await),
            [2, 4]
        );
        assert_eq!(
            counts(&list(by(Some(Decision::Allowed)), everything, 0, 100).await),
            [1]
        );

        // Recorded in [from, to).
        for (range, expected) in [
            ((t2, t3), vec![3]),
            ((t1, t2), vec![1]),
            ((t3, i64::MAX), vec![4]),
        ] {
            let found = list(DisclosureQuery::Person(&p1), range, 0, 100).await;
            assert_eq!(counts(&found), expected, "{range:?}");
        }

        // Page by page after the last entry id seen.
        let mut pages = Vec::new();
        let mut after = 0;
        loop {
            let page = list(DisclosureQuery::Person(&p1), everything, after, 1).await;
            let Some(last) = page.last() else { break };
            after = last.entry_id;
            pages.push(counts(&page));
        }
        assert_eq!(pages, [vec![1], vec![3], vec![4]]);
        app.stop().await;
    }

    async fn the_chain_verifies_and_names_the_entry_that_breaks_it(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let insurer = app.insurer_id.as_str();
        for n in 1..=4 {
            let entries = [entry(insurer, P1, Decision::Allowed, n)];
            app.store
                .append_disclosures(&entries, app.clock.now_micros())
                .await
                .unwrap();
        }
        let log = app.disclosures_by(insurer).await;
        assert_eq!(log.len(), 4);
        assert_eq!(log[0].previous_hash, GENESIS_HASH);
        assert!(log.windows(2).all(|w| w[1].previous_hash == w[0].hash));
        let verify = async |from, to| app.store.verify_disclosure_chain(from, to).await.unwrap();
        let intact = |checked, last: &DisclosureEntry| ChainVerdict::Intact {
            checked,
            last_hash: last.hash.clone(),
        };
        assert_eq!(verify(0, 0).await, intact(4, &log[3]));
        assert_eq!(verify(log[1].entry_id, log[2].entry_id).await, intact(2, &log[2]));

        let id = |i: usize| log[i].entry_id;
        let tampering = [
            (
                format!(
                    "UPDATE disclosure_log SET purpose = 'Riskbedömning' WHERE entry_id = {}",
                    id(2)
                ),
                format!(
                    "UPDATE disclosure_log SET purpose = 'Samordning' WHERE entry_id = {}",
                    id(2)
                ),
                (2, id(2), ChainProblem::HashMismatch),
            ),
            (
                format!(
                    "UPDATE disclosure_log SET previous_hash = '{GENESIS_HASH}' WHERE entry_id = {}",
                    id(3)
                ),
                format!(
                    "UPDATE disclosure_log SET previous_hash = '{}' WHERE entry_id = {}",
                    log[2].hash,
                    id(3)
                ),
                (3, id(3), ChainProblem::PreviousHashMismatch),
            ),
            (
                format!("DELETE FROM disclosure_log WHERE entry_id = {}", id(1)),
                String::new(),
                (1, id(1), ChainProblem::EntryMissing),
            ),
        ];
        for (tamper, restore, (checked, entry_id, problem)) in tampering {
            app.execute_sql(&tamper).await;
            let broken = ChainVerdict::Broken {
                checked,
                entry_id,
                problem,
            };
            assert_eq!(verify(0, 0).await, broken, "{tamper}");
            // What comes before the broken entry still verifies.
            assert_eq!(verify(0, id(0)).await, intact(1, &log[0]), "{tamper}");
            if !restore.is_empty() {
                app.execute_sql(&restore).await;
                assert_eq!(verify(0, 0).await, intact(4, &log[3]), "{restore}");
            }
        }
        app.stop().await;
    }
}

/// The handle itself: its backend, migrating, housekeeping, closing, and the wake-ups replicas
/// send each other.
mod handle {
    use std::time::Duration;

    use lefi::store::{BackendKind, ChangeListener, Store, StoreError};

    use super::{Backend, EmptyDatabase, JANUARY, P1, TestApp, accept, backend_tests, period};

    backend_tests!(
        migrating_is_separate_from_connecting_and_idempotent,
        housekeeping_changes_nothing_and_a_closed_handle_is_unavailable,
        a_change_announced_by_one_replica_wakes_the_others,
        the_catalogue_is_read_once_and_again_after_a_migration,
    );

    /// A change listener that passes on the payloads it hears (and watches no party).
    struct Heard(tokio::sync::mpsc::UnboundedSender<String>);

    impl ChangeListener for Heard {
        fn heard(&self, payload: &str) {
            let _ = self.0.send(payload.to_string());
        }

        fn watched_parties(&self) -> Vec<String> {
            Vec::new()
        }

        fn wake(&self, _party_ids: &[String]) {}
    }

    /// Only a migration changes the catalogue tables, so the handle reads them once; migrating
    /// makes it read them again.
    async fn the_catalogue_is_read_once_and_again_after_a_migration(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let before = app.store.legal_bases().await.unwrap();
        let benefits = app.store.benefit_types().await.unwrap();
        let code = before[0].code.clone();
        app.execute_sql(&format!(
            "UPDATE legal_bases SET purpose_en = 'changed by hand' WHERE code = '{code}'; \
             UPDATE benefit_types SET name_en = 'changed by hand' WHERE code = '{}'",
            benefits[0].code
        ))
        .await;
        assert_eq!(
            app.store.legal_bases().await.unwrap(),
            before,
            "kept as first read"
        );
        assert_eq!(
            app.store.benefit_types().await.unwrap(),
            benefits,
            "kept as first read"
        );

        app.store.migrate().await.unwrap();
        let after = app.store.legal_bases().await.unwrap();
        assert_eq!(
            (after[0].code.as_str(), after[0].purpose_en.as_str()),
            (code.as_str(), "changed by hand")
        );
        assert_eq!(after[1..], before[1..], "the others as they were");
        assert_eq!(
            app.store.benefit_types().await.unwrap()[0].name_en,
            "changed by hand"
        );
        app.stop().await;
    }

    async fn migrating_is_separate_from_connecting_and_idempotent(backend: Backend) {
        let Some(database) = EmptyDatabase::create(backend).await else {
            return;
        };
        let store = Store::connect_without_migrating(&database.url, 2).await.unwrap();
        let kind = match backend {
            Backend::Sqlite => BackendKind::Sqlite,
            Backend::Postgres => BackendKind::Postgres,
        };
        assert_eq!(store.kind(), kind);
        store.ping().await.unwrap();
        let before = store.head_seq().await;
        assert!(
            matches!(before, Err(StoreError::Database(_))),
            "no tables yet: {before:?}"
        );
        for _ in 0..2 {
            store.migrate().await.unwrap();
            assert_eq!(store.head_seq().await.unwrap(), 0);
            assert_eq!(store.legal_bases().await.unwrap().len(), 8, "seeded once");
        }
        store.close().await;
        database.remove().await;
    }

    async fn housekeeping_changes_nothing_and_a_closed_handle_is_unavailable(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        accept(&app, vec![period(P1, "a", 1, "SJP", JANUARY)]).await;
        let now = app.clock.now_micros();
        let (stats, log) = (
            app.store.stats(now).await.unwrap(),
            app.store.log_after(0, 10).await.unwrap(),
        );
        let replica = Store::connect(&app.db_url, 2).await.unwrap();
        for _ in 0..2 {
            replica.settle().await.unwrap();
        }
        assert_eq!(replica.stats(now).await.unwrap(), stats);
        assert_eq!(replica.log_after(0, 10).await.unwrap(), log);

        replica.ping().await.unwrap();
        replica.close().await;
        let closed = replica.ping().await;
        assert!(matches!(closed, Err(StoreError::Unavailable(_))), "{closed:?}");
        let closed = replica.head_seq().await;
        assert!(matches!(closed, Err(StoreError::Unavailable(_))), "{closed:?}");
        app.store.ping().await.unwrap();
        app.stop().await;
    }

    async fn a_change_announced_by_one_replica_wakes_the_others(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else {
            return;
        };
        let (woken, mut wake_ups) = tokio::sync::mpsc::unbounded_channel();
        let watching = app
            .store
            .watch_changes(std::sync::Arc::new(Heard(woken)))
            .await
            .unwrap();
        let replica = Store::connect(&app.db_url, 2).await.unwrap();
        let named =
            lefi::wakeups::Wakeups::default().announcement(&["pty_a".to_string(), "pty_b".to_string()]);
        replica.announce_change(&named).await.unwrap();
        replica.announce_change("").await.unwrap();
        match (backend, watching) {
            // One process: nothing to listen for, and the callback is dropped unused.
            (Backend::Sqlite, None) => assert_eq!(wake_ups.recv().await, None),
            (Backend::Postgres, Some(watching)) => {
                // The payloads arrive as sent: the parties named, then a change for everyone. (The
                // test's server announces changes for everyone of its own, e.g. at start.)
                let mut heard = Vec::new();
                while !heard.ends_with(&[named.clone(), String::new()]) {
                    let woke = tokio::time::timeout(Duration::from_secs(30), wake_ups.recv()).await;
                    heard.push(woke.expect("no wake-up within 30 s").unwrap());
                }
                assert!(heard.contains(&named), "{heard:?}");
                watching.abort();
            }
            (backend, watching) => panic!("{backend:?} watching: {:?}", watching.is_some()),
        }
        replica.close().await;
        app.stop().await;
    }
}

/// How the store reports a database it cannot use: a URL of another kind, a server that cannot be
/// connected to, and one that goes away under a statement.
mod errors {
    use lefi::store::{Store, StoreError};
    use sqlx::Connection;
    use sqlx::postgres::PgConnection;

    use lefi::domain::register::versions::IngestResult;

    use super::{
        Backend, JANUARY, P1, TestApp, backend_tests, hold_register_head, lock_waiters, period, release,
    };

    backend_tests!(connection_failures_are_reported_by_kind);

    async fn connection_failures_are_reported_by_kind(backend: Backend) {
        for url in ["mysql://lefi:secret@localhost/lefi", "lefi.db", ""] {
            match Store::connect(url, 1).await {
                Err(StoreError::UnsupportedUrl(shown)) => assert!(!shown.contains("secret"), "{shown}"),
                other => panic!("{url:?}: expected UnsupportedUrl, got {other:?}"),
            }
        }
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let missing = dir.path().join("no such directory").join("lefi.db");
                let result = Store::connect(&format!("sqlite://{}", missing.display()), 1).await;
                assert!(matches!(result, Err(StoreError::Connect { .. })), "{result:?}");
            }
            Backend::Postgres => {
                let Some(app) = TestApp::spawn(backend).await else {
                    return;
                };
                a_server_that_hangs_up_cannot_be_connected_to().await;
                a_statement_cut_off_by_the_server_is_unavailable(&app).await;
                app.stop().await;
            }
        }
    }

    /// Something listens, but hangs up on every connection at once: connecting fails at once.
    /// (A port nothing listens on would do too, but connecting retries a refused connection
    /// until the pool's 30-second acquire timeout.)
    async fn a_server_that_hangs_up_cannot_be_connected_to() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hang_up = tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                drop(connection);
            }
        });
        let url = format!("postgres://lefi:secret@127.0.0.1:{port}/lefi");
        let result = Store::connect_without_migrating(&url, 1).await;
        hang_up.abort();
        match result {
            Err(StoreError::Connect { url, .. }) => assert!(!url.contains("secret"), "{url}"),
            other => panic!("expected Connect, got {other:?}"),
        }
    }

    /// An ingest waits for the register head; the server ends its connection, as an
    /// administrator (or a restart) would: the ingest fails as Unavailable, having stored nothing,
    /// and the next one succeeds on a new connection.
    async fn a_statement_cut_off_by_the_server_is_unavailable(app: &TestApp) {
        let store = Store::connect_without_migrating(&app.db_url, 2).await.unwrap();
        let fact = || vec![period(P1, "a", 1, "SJP", JANUARY)];
        let now = app.clock.now_micros();
        let head = store.head_seq().await.unwrap();
        let holder = hold_register_head(&app.db_url).await;
        let writer = tokio::spawn({
            let (store, facts) = (store.clone(), fact());
            async move { store.ingest(facts, now).await }
        });
        let [pid] = lock_waiters(&app.db_url, "UPDATE register_head", 1).await[..] else {
            unreachable!()
        };
        let mut admin = PgConnection::connect(&app.db_url).await.unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&mut admin)
            .await
            .unwrap();
        let cut_off = writer.await.unwrap();
        assert!(matches!(cut_off, Err(StoreError::Unavailable(_))), "{cut_off:?}");

        release(holder).await;
        assert_eq!(store.head_seq().await.unwrap(), head, "nothing was stored");
        let results = store.ingest(fact(), now).await.unwrap();
        assert!(
            matches!(&results[..], [IngestResult::Accepted(v)] if v.seq == head + 1),
            "{results:?}"
        );
        store.close().await;
    }
}

/// Migrations: rows written before a migration read back right after it.
mod migrations {
    use std::str::FromStr;

    use lefi::domain::delivery::{
        EndReason, EventKind, Notice, SnapshotReason, StateReason, SubscriptionState,
    };
    use lefi::store::Store;
    use sqlx::Connection;
    use sqlx::migrate::Migrator;
    use sqlx::postgres::PgConnection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

    use super::{Backend, EmptyDatabase, backend_tests};

    backend_tests!(
        migration_0008_splits_the_old_detail_into_state_reason_and_message,
        migration_0016_gives_stored_decisions_and_events_their_topic,
        migration_0017_fills_the_current_state_and_0020_drops_it,
        migration_0021_compares_identifiers_bytewise_and_keeps_the_rows,
        migration_0022_leaves_no_trigger_on_the_log,
        a_database_a_newer_lefi_migrated_is_refused,
    );

    static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
    static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

    /// Runs the migrations up to `version` on the empty database at `url`, then `rows` (written as
    /// that version stored them).
    async fn migrate_to(backend: Backend, url: &str, version: i64, rows: &str) {
        match backend {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)
                    .unwrap()
                    .create_if_missing(true);
                let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
                SQLITE_MIGRATIONS.run_to(version, &mut conn).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(rows))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                POSTGRES_MIGRATIONS.run_to(version, &mut conn).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(rows))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// A party, a subscription and its history as schema version 7 stored them: a notice's
    /// state, reason and message in one `detail` text (`STATE:REASON:message`, the message free
    /// to hold colons), a snapshot's reason as the detail, and a change with none.
    const VERSION_7_ROWS: &str = "\
INSERT INTO parties (party_id, org_number, name, kind, state, contact_name, contact_email, requested_bases,
                     requested_benefits, applied_at, updated_at)
VALUES ('pty_v7', '5566778899', 'Testförsäkring AB', 'INSURER', 'CONNECTED', 'Anna Andersson',
        'anna@example.invalid', 'INS_COORDINATION', 'SJP', 1, 1);
INSERT INTO subscriptions (subscription_id, party_id, client_reference, person, benefit_types, from_date,
                           legal_basis, case_reference, consent_id, state, state_reason, created_at,
                           created_seq, ended_at, ended_seq)
VALUES ('sub_v7', 'pty_v7', 'ref-1', '199007042386', 'SJP', '2024-01-01', 'INS_COORDINATION', 'K-1', '',
        'ENDED', 'CASE_CLOSED', 1, 1, 6, 6);
INSERT INTO delivery_events (party_id, seq, ord, subscription_id, event_number, kind, detail, recorded_at)
VALUES ('pty_v7', 1, 1, 'sub_v7', 1, 'SNAPSHOT', 'SUBSCRIPTION_CREATED', 1),
       ('pty_v7', 2, 1, 'sub_v7', 2, 'CHANGE', '', 2),
       ('pty_v7', 3, 1, 'sub_v7', 3, 'NOTICE', 'SUSPENDED:CONSENT_ENDED:', 3),
       ('pty_v7', 4, 1, 'sub_v7', 4, 'NOTICE', 'ACTIVE:RESUMED:a new consent was registered', 4),
       ('pty_v7', 5, 1, 'sub_v7', 5, 'SNAPSHOT', 'FULL_REFRESH', 5),
       ('pty_v7', 6, 1, 'sub_v7', 6, 'NOTICE', 'ENDED:CASE_CLOSED:the case was closed: see DNR 1', 6);";

    async fn migration_0008_splits_the_old_detail_into_state_reason_and_message(backend: Backend) {
        let Some(database) = EmptyDatabase::create(backend).await else {
            return;
        };
        let url = database.url.as_str();
        // Migrations 1 to 7, and rows as they were written then.
        migrate_to(backend, url, 7, VERSION_7_ROWS).await;

        // The store applies the rest.
        let store = Store::connect(url, 2).await.unwrap();
        let events = store
            .delivery_page("pty_v7", (0, 0), u64::MAX, 100)
            .await
            .unwrap();
        let notice = |state, reason, message: &str| {
            EventKind::Notice(Notice {
                state,
                reason,
                message: message.to_string(),
            })
        };
        use SubscriptionState::{Active, Ended, Suspended};
        let read: Vec<(u64, EventKind)> = events.iter().map(|e| (e.event_number, e.kind.clone())).collect();
        assert_eq!(
            read,
            [
                (1, EventKind::Snapshot(SnapshotReason::SubscriptionCreated)),
                (2, EventKind::Change),
                (
                    3,
                    notice(Suspended, StateReason::Withdrawn(EndReason::ConsentEnded), "")
                ),
                (
                    4,
                    notice(Active, StateReason::Resumed, "a new consent was registered")
                ),
                (5, EventKind::Snapshot(SnapshotReason::FullRefresh)),
                (
                    6,
                    notice(
                        Ended,
                        StateReason::Withdrawn(EndReason::CaseClosed),
                        "the case was closed: see DNR 1"
                    )
                ),
            ]
        );
        let subscription = &events[0].subscription;
        assert_eq!((subscription.state, subscription.ended_seq), (Ended, Some(6)));
        store.close().await;
        database.remove().await;
    }

    /// Log rows as schema version 15 stored them (the body's JSON as ingest writes it).
    const VERSION_15_ROWS: &str = r#"
INSERT INTO register_log (seq, recorded_at, person, record_id, version, kind, retroactive, benefit_type,
                          fact_type, valid_from, valid_to, body, source_system, source_id, source_version,
                          content_hash)
VALUES (1, 1, '199007042386', 'rec_1', 1, 'NEW', FALSE, 'SJP', 'DECISION', '2024-01-09', NULL,
        '{"case_id":"FALL-1","kind":"BLOCKED","effective_from":"2024-01-09","decided_on":"2024-01-20"}',
        'MIDAS', 'D1', 1, 'h1'),
       (2, 2, '199007042386', 'rec_2', 1, 'NEW', FALSE, '', 'EVENT', '2024-03-01', '2024-03-01',
        '{"kind":"DEATH_REGISTERED","event_date":"2024-03-01"}', 'MIDAS', 'E1', 1, 'h2'),
       (3, 3, '199007042386', 'rec_3', 1, 'NEW', FALSE, 'SJP', 'CASE', '2024-01-09', NULL,
        '{"case_id":"FALL-1","opened":"2024-01-09","status":"OPEN"}', 'MIDAS', 'C1', 1, 'h3');"#;

    async fn migration_0016_gives_stored_decisions_and_events_their_topic(backend: Backend) {
        let Some(database) = EmptyDatabase::create(backend).await else {
            return;
        };
        let url = database.url.as_str();
        migrate_to(backend, url, 15, VERSION_15_ROWS).await;
        let store = Store::connect(url, 2).await.unwrap();
        store.close().await;
        let topics: Vec<(i64, String)> = match backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::connect(url).await.unwrap();
                sqlx::query_as("SELECT seq, topic FROM register_log ORDER BY seq")
                    .fetch_all(&mut conn)
                    .await
                    .unwrap()
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                sqlx::query_as("SELECT seq, topic FROM register_log ORDER BY seq")
                    .fetch_all(&mut conn)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(
            topics,
            [
                (1, "BLOCKED".to_string()),
                (2, "DEATH_REGISTERED".to_string()),
                (3, String::new())
            ]
        );
        database.remove().await;
    }

    /// Version 15's rows and, written by version 16, a correction of `rec_1`, a retraction of
    /// `rec_3` (a retraction keeps the body it retracts) and a person update, and the person's
    /// row; no encodings (the register was written before they were kept).
    const VERSION_16_ROWS: &str = r#"
INSERT INTO register_log (seq, recorded_at, person, record_id, version, kind, retroactive, benefit_type,
                          fact_type, valid_from, valid_to, body, source_system, source_id, source_version,
                          content_hash, topic)
VALUES (4, 4, '199007042386', 'rec_1', 2, 'CORRECTION', FALSE, 'SJP', 'DECISION', '2024-01-09', NULL,
        '{"case_id":"FALL-1","kind":"BLOCKED","effective_from":"2024-01-10","decided_on":"2024-01-20"}',
        'MIDAS', 'D1', 2, 'h4', 'BLOCKED'),
       (5, 5, '199007042386', 'rec_3', 2, 'RETRACTION', FALSE, 'SJP', 'CASE', '2024-01-09', NULL,
        '{"case_id":"FALL-1","opened":"2024-01-09","status":"OPEN"}', 'MIDAS', 'C1', 2, 'h5', ''),
       (6, 6, '199007042386', 'person:MIDAS', 1, 'NEW', FALSE, '', 'PERSON', '', NULL,
        '{"name":"Anna","protected_identity":false}', 'MIDAS', '', 1, 'h6', '');
INSERT INTO register_persons (person, name, protected_identity, date_of_death, created_seq, latest_seq)
VALUES ('199007042386', 'Anna', FALSE, NULL, 1, 6);"#;

    /// The rows `sql` reads from the database at `url`.
    async fn fetch<T>(backend: Backend, url: &str, sql: &'static str) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + Send
            + Unpin,
    {
        match backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::connect(url).await.unwrap();
                sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
            }
        }
    }

    async fn migration_0017_fills_the_current_state_and_0020_drops_it(backend: Backend) {
        let Some(database) = EmptyDatabase::create(backend).await else {
            return;
        };
        let url = database.url.as_str();
        let rows = format!("{VERSION_15_ROWS}\n{VERSION_16_ROWS}");
        migrate_to(backend, url, 16, &rows).await;
        // 0017 fills the current state from the log: each fact's latest version, the retraction
        // included, each with its body (the log holds no encodings yet).
        migrate_to(backend, url, 17, "SELECT 1").await;
        let filled: Vec<(String, i64, String, bool, bool)> = fetch(
            backend,
            url,
            "SELECT record_id, seq, kind, body IS NOT NULL, wire IS NOT NULL \
             FROM register_current ORDER BY seq",
        )
        .await;
        let row = |id: &str, seq, kind: &str| (id.to_string(), seq, kind.to_string(), true, false);
        assert_eq!(
            filled,
            [
                row("rec_2", 2, "NEW"),
                row("rec_1", 4, "CORRECTION"),
                row("rec_3", 5, "RETRACTION"),
                row("person:MIDAS", 6, "NEW"),
            ]
        );
        // Connecting migrates the rest: 0020 drops the table (person states replace it), every
        // version is encoded and the person's state built.
        let store = Store::connect(url, 2).await.unwrap();
        store.close().await;
        let states: Vec<(i64, i64)> = fetch(
            backend,
            url,
            "SELECT COUNT(*), MAX(seq) FROM register_person_state",
        )
        .await;
        assert_eq!(states, [(1, 6)]);
        let left: Vec<(i64,)> = match backend {
            Backend::Sqlite => {
                fetch(
                    backend,
                    url,
                    "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'register_current%'",
                )
                .await
            }
            Backend::Postgres => {
                fetch(
                    backend,
                    url,
                    "SELECT (SELECT COUNT(*) FROM pg_class WHERE relname = 'register_current') \
                          + (SELECT COUNT(*) FROM pg_trigger WHERE tgname = 'register_current_keep') \
                          + (SELECT COUNT(*) FROM pg_proc WHERE proname = 'register_current_keep')",
                )
                .await
            }
        };
        assert_eq!(left, [(0,)], "table, trigger (and function) dropped");
        let encoded: Vec<(i64,)> = fetch(
            backend,
            url,
            "SELECT COUNT(*) FROM register_log WHERE wire IS NOT NULL",
        )
        .await;
        assert_eq!(encoded, [(5,)], "every benefit version encoded");
        database.remove().await;
    }

    /// After 0021, every column that holds a person, a record id or a source key compares byte by
    /// byte (PostgreSQL's collation "C"; SQLite's columns declare no collation, so BINARY), the
    /// same collation in every table (PostgreSQL refuses a join between two columns of different
    /// ones), and the rows written before it are all there and still join.
    async fn migration_0021_compares_identifiers_bytewise_and_keeps_the_rows(backend: Backend) {
        let Some(database) = EmptyDatabase::create(backend).await else {
            return;
        };
        let url = database.url.as_str();
        let rows = format!("{VERSION_15_ROWS}\n{VERSION_16_ROWS}");
        migrate_to(backend, url, 16, &rows).await;
        let store = Store::connect(url, 2).await.unwrap();
        store.close().await;
        match backend {
            Backend::Sqlite => {
                let declared: Vec<(String,)> = fetch(
                    backend,
                    url,
                    "SELECT name FROM sqlite_master WHERE sql LIKE '%COLLATE%' ORDER BY name",
                )
                .await;
                assert_eq!(declared, [], "no SQLite table or index declares a collation");
            }
            Backend::Postgres => {
                let columns: Vec<(String, String)> = fetch(
                    backend,
                    url,
                    "SELECT c.relname || '.' || a.attname, COALESCE(co.collname, '') \
                     FROM pg_attribute a \
                     JOIN pg_class c ON c.oid = a.attrelid \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     LEFT JOIN pg_collation co ON co.oid = a.attcollation \
                     WHERE n.nspname = current_schema() AND c.relkind = 'r' AND NOT a.attisdropped \
                       AND a.attname IN ('person', 'record_id', 'source_system', 'source_id') \
                     ORDER BY 1",
                )
                .await;
                let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
                for expected in [
                    "register_log.person",
                    "register_records.source_id",
                    "register_person_state.person",
                    "subscriptions.person",
                    "disclosure_log.person",
                ] {
                    assert!(names.contains(&expected), "{expected} missing from {names:?}");
                }
                let other: Vec<&(String, String)> =
                    columns.iter().filter(|(_, collation)| collation != "C").collect();
                assert!(other.is_empty(), "identifier columns not bytewise: {other:?}");
            }
        }
        let joined: Vec<(i64, i64)> = fetch(
            backend,
            url,
            "SELECT COUNT(*), COUNT(DISTINCT l.record_id) FROM register_log l \
             JOIN register_persons p ON p.person = l.person \
             JOIN register_person_state s ON s.person = l.person",
        )
        .await;
        assert_eq!(joined, [(6, 4)], "every log row kept, joined by person");
        database.remove().await;
    }

    /// After 0022 no trigger is left on the log on either backend (PostgreSQL drops 0019's, which
    /// deleted a person's state row when an older release appended a version of theirs): ingest
    /// keeps every person's row itself, and appending a log row costs only its indexes.
    async fn migration_0022_leaves_no_trigger_on_the_log(backend: Backend) {
        let Some(database) = EmptyDatabase::create(backend).await else {
            return;
        };
        let url = database.url.as_str();
        // The log's triggers, and 0019's function, in the database's own schema.
        let triggers = match backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'register_log'"
            }
            Backend::Postgres => {
                "SELECT (SELECT COUNT(*) FROM pg_trigger \
                          WHERE tgrelid = 'register_log'::regclass AND NOT tgisinternal) \
                      + (SELECT COUNT(*) FROM pg_proc WHERE proname = 'register_person_state_drop_stale' \
                          AND pronamespace = current_schema()::regnamespace)"
            }
        };
        if backend == Backend::Postgres {
            migrate_to(backend, url, 21, "SELECT 1").await;
            let before: Vec<(i64,)> = fetch(backend, url, triggers).await;
            assert_eq!(before, [(2,)], "0019's trigger and its function, before 0022");
        }
        let store = Store::connect(url, 2).await.unwrap();
        store.close().await;
        let after: Vec<(i64,)> = fetch(backend, url, triggers).await;
        assert_eq!(after, [(0,)]);
        database.remove().await;
    }

    /// A database that a newer lefi migrated (it holds a migration this binary does not know) is
    /// refused at connection, before anything is served or written, with an error that says so and
    /// what to do. This is what keeps a replica of an older release from writing beside a newer one
    /// once the newer one has migrated.
    async fn a_database_a_newer_lefi_migrated_is_refused(backend: Backend) {
        let Some(database) = EmptyDatabase::create(backend).await else {
            return;
        };
        let url = database.url.as_str();
        let checksum = match backend {
            Backend::Sqlite => "X'00'",
            Backend::Postgres => "'\\x00'::bytea",
        };
        migrate_to(
            backend,
            url,
            i64::MAX,
            &format!(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (9999, 'from a newer lefi', TRUE, {checksum}, 1)"
            ),
        )
        .await;
        let refused = match Store::connect(url, 2).await {
            Ok(store) => {
                store.close().await;
                panic!("a database with an unknown migration was accepted");
            }
            Err(e) => e,
        };
        assert!(
            matches!(refused, lefi::store::StoreError::NewerSchema(9999)),
            "{refused}"
        );
        let text = refused.to_string();
        assert!(text.contains("migrated by a newer release of lefi"), "{text}");
        assert!(text.contains("Rolling back"), "{text}");
        let versions: Vec<(i64,)> = fetch(
            backend,
            url,
            "SELECT COUNT(*) FROM _sqlx_migrations WHERE version = 9999",
        )
        .await;
        assert_eq!(versions, [(1,)], "the newer release's record stays");
        database.remove().await;
    }
}
