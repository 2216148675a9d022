//! The feeder: ingests facts at a steady rate through the admin API, records every fact the
//! register acknowledges, and after any failure reconnects (to whichever server answers) and
//! resends every fact that got no answer, as the ingest contract says a client must. Resent facts
//! that had been committed come back UNCHANGED with their sequence.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::record::{Acked, append};
use crate::client::ClientPem;
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;

/// A fact to send, with what its acknowledgement is recorded as.
#[derive(Debug, Clone)]
pub struct Planned {
    fact: admin_pb::Fact,
    retraction: bool,
    gross: Option<i64>,
}

/// Makes the run's facts: new payments, corrections and retractions of the persons' earlier
/// facts, from the run's seed. Each version's gross amount is unique, so a delivered body names
/// the version it came from.
pub struct Facts {
    rng: ChaCha8Rng,
    persons: Vec<String>,
    made: u64,
    /// Per source id: its person and the latest version made.
    sources: Vec<(String, String, u64)>,
    /// The indexes into `sources` not yet retracted, in no particular order (kept as facts are
    /// made, a retraction's index swapped out in constant time: finding them anew for every fact
    /// cost time in proportion to every fact made, and capped a long soak's rate).
    live: Vec<usize>,
}

impl Facts {
    pub fn new(seed: u64, persons: Vec<String>) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_fac7),
            persons,
            made: 0,
            sources: Vec::new(),
            live: Vec::new(),
        }
    }

    /// A new payment for `person`.
    fn new_payment(&mut self, person: String) -> Planned {
        self.made += 1;
        let source_id = format!("chaos-{}", self.made);
        self.live.push(self.sources.len());
        self.sources.push((source_id.clone(), person.clone(), 1));
        self.payment(person, source_id, 1, pb::RecordKind::New)
    }

    fn payment(&mut self, person: String, source_id: String, version: u64, kind: pb::RecordKind) -> Planned {
        self.made += 1;
        let gross = 100_000 + 7 * self.made as i64;
        let fact = admin_pb::Fact {
            source_system: "CHAOS".into(),
            source_id,
            source_version: version,
            person_id: person,
            benefit_type: "SJP".into(),
            kind: kind as i32,
            body: Some(admin_pb::fact::Body::Payment(pb::Payment {
                case_id: "CHAOS-1".into(),
                payment_date: "2024-02-25".into(),
                covered: Some(pb::DateRange {
                    from: "2024-01-09".into(),
                    to: "2024-01-31".into(),
                }),
                gross_ore: gross,
                tax_ore: 30_000,
                preliminary: false,
                lines: vec![pb::AmountLine {
                    amount_type: "GRUND".into(),
                    amount_ore: gross,
                }],
                payer: "FK".into(),
            })),
            ..Default::default()
        };
        Planned {
            fact,
            retraction: false,
            gross: Some(gross),
        }
    }

    /// One fact per person, to begin with.
    pub fn initial(&mut self) -> Vec<Planned> {
        self.persons
            .clone()
            .into_iter()
            .map(|p| self.new_payment(p))
            .collect()
    }

    /// The next fact: mostly new payments, some corrections, a few retractions.
    fn next(&mut self) -> Planned {
        let roll: f64 = self.rng.random();
        if roll < 0.35 && !self.live.is_empty() {
            let at = self.rng.random_range(0..self.live.len());
            let i = self.live[at];
            let (source_id, person, version) = self.sources[i].clone();
            if roll < 0.07 {
                self.sources[i].2 = version + 1;
                self.live.swap_remove(at);
                let fact = admin_pb::Fact {
                    source_system: "CHAOS".into(),
                    source_id,
                    source_version: version + 1,
                    person_id: person,
                    benefit_type: "SJP".into(),
                    kind: pb::RecordKind::Retraction as i32,
                    ..Default::default()
                };
                return Planned {
                    fact,
                    retraction: true,
                    gross: None,
                };
            }
            self.sources[i].2 = version + 1;
            return self.payment(person, source_id, version + 1, pb::RecordKind::Correction);
        }
        let person = self.persons[self.rng.random_range(0..self.persons.len())].clone();
        self.new_payment(person)
    }
}

/// Where the feeder sends and records.
pub struct Feeder {
    pub addrs: Vec<String>,
    pub pem: ClientPem,
    pub acked_file: PathBuf,
}

impl Feeder {
    /// Sends `initial`, then one fact from `facts` every `1/rate` s until `until`, and returns once
    /// every fact sent has been acknowledged (giving up after `patience` without progress).
    pub async fn run(
        &self,
        initial: Vec<Planned>,
        facts: &mut Facts,
        rate: u32,
        until: Instant,
        patience: Duration,
    ) -> anyhow::Result<u64> {
        let mut unanswered: VecDeque<Planned> = initial.into();
        let mut acked = 0u64;
        let mut attempt = 0usize;
        let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let mut next_fact = Instant::now();
        let mut last_progress = Instant::now();
        loop {
            if unanswered.is_empty() && Instant::now() >= until {
                return Ok(acked);
            }
            if last_progress.elapsed() > patience {
                bail!(
                    "no fact acknowledged for {patience:?} ({} waiting); see the servers' logs",
                    unanswered.len()
                );
            }
            let addr = &self.addrs[attempt % self.addrs.len()];
            attempt += 1;
            let Ok(channel) = crate::client::connect(addr, &self.pem, None).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let mut client =
                admin_pb::register_admin_service_client::RegisterAdminServiceClient::new(channel);
            let (tx, rx) = mpsc::channel::<admin_pb::IngestRequest>(1024);
            // Every fact without an answer first, in order; the stream's index k is the k-th sent.
            let mut in_flight: HashMap<u64, Planned> = HashMap::new();
            let mut sent = 0u64;
            for planned in unanswered.drain(..) {
                let _ = tx.try_send(admin_pb::IngestRequest {
                    fact: Some(planned.fact.clone()),
                });
                in_flight.insert(sent, planned);
                sent += 1;
            }
            let mut answers = match client.ingest(ReceiverStream::new(rx)).await {
                Ok(r) => r.into_inner(),
                Err(_) => {
                    unanswered = requeue(in_flight);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let mut tx = Some(tx);
            loop {
                if Instant::now() >= until {
                    // No more new facts: close our side once everything sent is answered.
                    if in_flight.is_empty() {
                        tx = None;
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep_until(next_fact), if tx.is_some() && Instant::now() < until => {
                        next_fact += period;
                        let planned = facts.next();
                        if let Some(tx) = &tx {
                            if tx.send(admin_pb::IngestRequest { fact: Some(planned.fact.clone()) }).await.is_err() {
                                in_flight.insert(sent, planned);
                                break;
                            }
                        }
                        in_flight.insert(sent, planned);
                        sent += 1;
                    }
                    answer = tokio::time::timeout(Duration::from_secs(5), answers.message()) => {
                        match answer {
                            Ok(Ok(Some(answer))) => {
                                let Some(planned) = in_flight.remove(&answer.index) else {
                                    bail!("an answer for index {} that was never sent", answer.index);
                                };
                                record(&self.acked_file, &planned, &answer)?;
                                acked += 1;
                                last_progress = Instant::now();
                            }
                            Ok(Ok(None)) => break,
                            // The stream failed (server killed, restarting, storage unavailable)
                            // or went quiet: reconnect and resend what got no answer.
                            Ok(Err(_)) | Err(_) => break,
                        }
                        if in_flight.is_empty() && Instant::now() >= until {
                            return Ok(acked);
                        }
                    }
                }
            }
            unanswered = requeue(in_flight);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The facts without an answer, in the order they were sent.
fn requeue(in_flight: HashMap<u64, Planned>) -> VecDeque<Planned> {
    let mut left: Vec<(u64, Planned)> = in_flight.into_iter().collect();
    left.sort_by_key(|(i, _)| *i);
    left.into_iter().map(|(_, p)| p).collect()
}

fn record(
    path: &std::path::Path,
    planned: &Planned,
    answer: &admin_pb::IngestResponse,
) -> anyhow::Result<()> {
    let outcome =
        admin_pb::IngestOutcome::try_from(answer.outcome).unwrap_or(admin_pb::IngestOutcome::Unspecified);
    if !matches!(
        outcome,
        admin_pb::IngestOutcome::Accepted | admin_pb::IngestOutcome::Unchanged
    ) {
        bail!(
            "fact {} version {} was refused ({:?}: {}); the chaos feeder makes only valid facts",
            planned.fact.source_id,
            planned.fact.source_version,
            outcome,
            answer.message
        );
    }
    let person = crate::domain::Personnummer::parse_now(&planned.fact.person_id)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .as_storage()
        .to_string();
    append(
        path,
        &Acked {
            seq: answer.register_sequence,
            record_id: answer.record_id.clone(),
            version: answer.version,
            person,
            source_id: planned.fact.source_id.clone(),
            source_version: planned.fact.source_version,
            retraction: planned.retraction,
            gross: planned.gross,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persons() -> Vec<String> {
        vec!["199001012385".into(), "199501132386".into()]
    }

    /// The facts of a run follow from its seed alone (what `--replay` relies on), and a retracted
    /// fact is never corrected or retracted again.
    #[test]
    fn facts_follow_the_seed_and_nothing_follows_a_retraction() {
        let made = |seed| {
            let mut facts = Facts::new(seed, persons());
            let mut all = facts.initial();
            all.extend((0..5_000).map(|_| facts.next()));
            all
        };
        let (a, b) = (made(7), made(7));
        let key = |p: &Planned| {
            (
                p.fact.source_id.clone(),
                p.fact.source_version,
                p.fact.kind,
                p.gross,
            )
        };
        assert_eq!(
            a.iter().map(key).collect::<Vec<_>>(),
            b.iter().map(key).collect::<Vec<_>>()
        );
        assert_ne!(
            a.iter().map(key).collect::<Vec<_>>(),
            made(8).iter().map(key).collect::<Vec<_>>()
        );

        let mut retracted = std::collections::HashSet::new();
        let mut versions: HashMap<String, u64> = HashMap::new();
        for p in &a {
            let id = &p.fact.source_id;
            assert!(!retracted.contains(id), "{id} changed after its retraction");
            let last = versions.insert(id.clone(), p.fact.source_version).unwrap_or(0);
            assert_eq!(p.fact.source_version, last + 1, "{id}: versions in order");
            if p.retraction {
                retracted.insert(id.clone());
            }
        }
        assert!(
            retracted.len() > 100,
            "a few percent of the facts are retractions"
        );
    }
}
