//! What every service shares: the store, the clock, settings, the shutdown token and the wake-up
//! of open streams. It sits below the services (they import it; it imports none of them).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::clock::{Clock, Micros};
use crate::domain::delivery::EndReason;
use crate::domain::disclosure::NewDisclosure;
use crate::domain::limits::PartyLimits;
use crate::grpc::rate_limit::RateLimits;
use crate::metrics::Metrics;
use crate::store::consents::{Consent, RevokedBy};
use crate::store::delivery::{EndSelector, Subscription};
use crate::store::{BackendKind, Store, StoreError};
use crate::streams::OpenStreams;

/// What every service shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The clock rules are judged by (tests move it).
    pub clock: Clock,
    /// Default idle heartbeat interval on delivery streams.
    pub heartbeat_interval: Duration,
    /// Cancelled when the server begins to shut down; long-lived streams watch it.
    pub shutdown: CancellationToken,
    /// Wakes open streams whenever a party's delivery history or its right to receive may have
    /// changed: the parties an ingest commit fanned facts out to, or everyone (a new subscription,
    /// a notice, a revoked certificate, a termination). Streams wait on it instead of polling.
    /// With PostgreSQL, other replicas' changes arrive through LISTEN/NOTIFY and wake here too.
    pub wakeups: Arc<crate::wakeups::Wakeups>,
    /// How long delivery history is kept (`serve --history-retention`).
    pub history_retention: Duration,
    /// The longest consent period, in days.
    pub max_consent_days: u32,
    /// The largest request message the APIs read, in bytes (`serve --max-message-size`).
    pub max_message_bytes: usize,
    /// How the party listener judges client certificates (party CA, CRLs); the admin API checks a
    /// certificate with it before registering it for a party.
    /// Its CRLs are reloaded without a restart ([`crate::revocation`]).
    pub party_certificates: Arc<crate::revocation::PartyVerifier>,
    /// What the server counts (served on `--metrics-listen`).
    pub metrics: Arc<Metrics>,
    /// Each party's limits unless an operator set its own (`serve --party-max-streams`, …).
    pub party_limits: PartyLimits,
    /// Each party's request-rate bucket.
    pub rates: Arc<RateLimits>,
    /// The delivery streams open in this process.
    pub streams: Arc<OpenStreams>,
    /// True under `serve --dev`: the sandbox's development-only admin RPCs answer
    /// (`OperationsAdminService.PruneDeliveryHistory`), and `GetServerInfo` says so.
    pub dev_mode: bool,
}

impl AppState {
    /// Appends entries to the disclosure log (one transaction), timed in the metrics.
    pub async fn append_disclosures(&self, entries: &[NewDisclosure], now: Micros) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let appended = self.store.append_disclosures(entries, now).await;
        self.metrics.log_appended(started.elapsed());
        appended
    }

    /// Reads the party listener's CRL files again and puts them in force (see
    /// [`crate::revocation`]); wakes every open stream, so that one whose certificate is now
    /// revoked ends. The CRLs in force are kept when the reload fails.
    pub fn reload_crls(&self) -> Result<Vec<crate::revocation::CrlInfo>, crate::revocation::ReloadError> {
        match self.party_certificates.reload() {
            Ok(crls) => {
                self.metrics.crl_reloaded(true);
                self.metrics.crls_in_force(&crls);
                tracing::info!(
                    crls = crls.len(),
                    numbers = ?crls.iter().map(|c| c.number.clone().unwrap_or_default()).collect::<Vec<_>>(),
                    "certificate revocation lists reloaded"
                );
                self.notify_history();
                Ok(crls)
            }
            Err(e) => {
                self.metrics.crl_reloaded(false);
                tracing::warn!(error = %e, "reloading the certificate revocation lists failed; the ones in force stay");
                Err(e)
            }
        }
    }

    /// Wakes every open stream in this process and, on PostgreSQL, in every other replica (see
    /// [`AppState::wakeups`]).
    pub fn notify_history(&self) {
        self.wakeups.everyone();
        self.announce(self.wakeups.announcement(&[]));
    }

    /// Wakes the open streams of `party_ids` (the parties whose histories an ingest commit grew),
    /// here and, on PostgreSQL, in every other replica.
    pub fn notify_parties(&self, party_ids: &[String]) {
        if party_ids.is_empty() {
            return;
        }
        self.wakeups.parties(party_ids.iter().map(String::as_str));
        self.announce(self.wakeups.announcement(party_ids));
    }

    /// Tells the other replicas (PostgreSQL's NOTIFY; nothing on SQLite, one process).
    fn announce(&self, payload: String) {
        if self.store.kind() == BackendKind::Postgres {
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.announce_change(&payload).await {
                    tracing::warn!(error = %e, "could not announce a change to other replicas");
                }
            });
        }
    }

    /// Withdraws the selected subscriptions for `reason` (suspends or ends them, with a notice in
    /// their histories; see [`crate::store::Store::withdraw_subscriptions`]) and wakes the streams
    /// that deliver the notices. Returns those changed.
    pub async fn withdraw_subscriptions(
        &self,
        selector: EndSelector<'_>,
        reason: EndReason,
        message: &str,
    ) -> Result<Vec<Subscription>, StoreError> {
        let changed = self
            .store
            .withdraw_subscriptions(selector, reason, message, self.clock.now_micros())
            .await?;
        if !changed.is_empty() {
            self.notify_history();
        }
        Ok(changed)
    }

    /// Revokes a consent (for the party that registered it, or for the agency) and suspends every
    /// active subscription made under it (their SUSPENDED notices go into the parties' histories at
    /// once; a new consent for the same person and basis resumes them). Returns the consent and how
    /// many subscriptions were suspended. An unknown consent, or another party's, is
    /// [`StoreError::NotFound`].
    pub async fn revoke_consent(
        &self,
        consent_id: &str,
        by: RevokedBy<'_>,
        reason: &str,
    ) -> Result<(Consent, u32), StoreError> {
        let consent = self
            .store
            .revoke_consent(consent_id, by, reason, self.clock.now_micros())
            .await?;
        let suspended = self
            .withdraw_subscriptions(
                EndSelector::ByConsent {
                    consent_id: &consent.consent_id,
                },
                EndReason::ConsentEnded,
                "the consent was revoked; register a new consent for this person and basis to resume",
            )
            .await?;
        Ok((consent, u32::try_from(suspended.len()).unwrap_or(u32::MAX)))
    }
}

/// How often a daily job looks at the clock for a new day.
pub const DAY_TICK: Duration = Duration::from_secs(1);

/// Runs `job` at start and then whenever the day changes on `clock` (rules are judged by date, so
/// a daily job is due once per day, however long the server has been down), until `shutdown`. A
/// round that fails (the database is away) is logged as `what` failing and retried at the next
/// tick, one second later; the day counts as done only after a round succeeded.
pub async fn on_each_new_day<Job, Round, E>(
    clock: Clock,
    shutdown: CancellationToken,
    what: &'static str,
    mut job: Job,
) where
    Job: FnMut(time::Date) -> Round,
    Round: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut every = tokio::time::interval(DAY_TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut done: Option<time::Date> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let today = clock.today();
        if done == Some(today) {
            continue;
        }
        match job(today).await {
            Ok(()) => done = Some(today),
            Err(e) => tracing::warn!(error = %e, "{what} failed; retrying"),
        }
    }
}
