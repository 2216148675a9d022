//! Who to wake when delivery histories may have changed.
//!
//! An open stream (or a long-polling pull) sleeps until its party's history may hold something
//! new. Most changes concern a few parties: an ingest commit fans facts out to the subscriptions
//! of the persons it touched, and only those parties' histories grow. Waking every stream of the
//! process for each commit made each of them read the database (its party's right to receive and
//! its next page) a thousand times a second under a steady feed, for nothing. So wake-ups are
//! addressed: [`Wakeups::parties`] wakes the watchers of the named parties, and
//! [`Wakeups::everyone`] (an operator's change, a revoked certificate, a reloaded CRL, a change a
//! replica could not name) wakes all. A missed wake-up would delay a delivery until the stream's
//! next heartbeat, so whatever cannot name its parties wakes everyone.
//!
//! Replicas tell each other through PostgreSQL's NOTIFY; [`Wakeups::announcement`] and
//! [`Announced::read`] are the payload both sides agree on. Every replica listens on the channel it
//! announces on, so it hears its own announcements too: each names the process that made it, and
//! [`Wakeups::heard`] passes over this process's own (its streams were woken when it made them;
//! waking them again made each read an empty page after every commit).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;

/// The wake-ups of one process.
#[derive(Debug)]
pub struct Wakeups {
    /// This process's name in its announcements (random, new at every start).
    origin: String,
    everyone: watch::Sender<u64>,
    /// One sender per party that has a watcher; removed when its last watcher is gone.
    parties: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Default for Wakeups {
    fn default() -> Self {
        Self {
            origin: uuid::Uuid::new_v4().simple().to_string(),
            everyone: watch::Sender::new(0),
            parties: Mutex::default(),
        }
    }
}

impl Wakeups {
    /// Wakes every watcher.
    pub fn everyone(&self) {
        self.everyone.send_modify(bump);
    }

    /// Wakes the watchers of `party_ids` (a party without one is skipped), and forgets the
    /// senders of parties whose watchers are all gone.
    pub fn parties<'a>(&self, party_ids: impl IntoIterator<Item = &'a str>) {
        let mut parties = self.parties.lock().unwrap_or_else(PoisonError::into_inner);
        for party_id in party_ids {
            if let Some(sender) = parties.get(party_id) {
                sender.send_modify(bump);
            }
        }
        parties.retain(|_, sender| sender.receiver_count() > 0);
    }

    /// What one watcher of `party_id` waits on.
    pub fn watch(&self, party_id: &str) -> Watch {
        let mut parties = self.parties.lock().unwrap_or_else(PoisonError::into_inner);
        let party = match parties.get(party_id) {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = watch::channel(0);
                parties.insert(party_id.to_string(), sender);
                receiver
            }
        };
        Watch {
            everyone: self.everyone.subscribe(),
            party,
        }
    }

    /// The NOTIFY payload announcing changes to `party_ids`' histories (`from:ORIGIN;parties:ID,ID…`),
    /// or to everyone's (`from:ORIGIN;`) when there are none or too many to name.
    pub fn announcement(&self, party_ids: &[String]) -> String {
        let length: usize = party_ids.iter().map(|p| p.len() + 1).sum();
        if party_ids.is_empty() || length > MAX_ANNOUNCEMENT {
            return format!("from:{};", self.origin);
        }
        format!("from:{};parties:{}", self.origin, party_ids.join(","))
    }

    /// Acts on an announcement heard from the channel: wakes the parties it names, or everyone;
    /// nothing for one this process made itself.
    pub fn heard(&self, payload: &str) {
        match Announced::read(payload) {
            (Some(origin), _) if origin == self.origin => {}
            (_, Announced::Everyone) => self.everyone(),
            (_, Announced::Parties(ids)) => self.parties(ids.iter().map(String::as_str)),
        }
    }

    /// The parties that have watchers, sorted.
    pub fn watched_parties(&self) -> Vec<String> {
        let parties = self.parties.lock().unwrap_or_else(PoisonError::into_inner);
        let mut watched: Vec<String> = parties
            .iter()
            .filter(|(_, sender)| sender.receiver_count() > 0)
            .map(|(party_id, _)| party_id.clone())
            .collect();
        watched.sort_unstable();
        watched
    }
}

/// What a replica's change watcher ([`crate::store::Store::watch_changes`]) wakes.
impl crate::store::ChangeListener for Wakeups {
    fn heard(&self, payload: &str) {
        Wakeups::heard(self, payload);
    }

    fn watched_parties(&self) -> Vec<String> {
        Wakeups::watched_parties(self)
    }

    fn wake(&self, party_ids: &[String]) {
        self.parties(party_ids.iter().map(String::as_str));
    }
}

fn bump(n: &mut u64) {
    *n = n.wrapping_add(1);
}

/// One watcher's wake-ups: its party's and everyone's.
#[derive(Debug)]
pub struct Watch {
    everyone: watch::Receiver<u64>,
    party: watch::Receiver<u64>,
}

impl Watch {
    /// Forgets wake-ups so far: the watcher is about to read everything they could announce.
    pub fn mark_unchanged(&mut self) {
        self.everyone.mark_unchanged();
        self.party.mark_unchanged();
    }

    /// Waits for the next wake-up of the party or of everyone (cancel-safe). `Err` once the
    /// process's wake-ups are gone (it is shutting down).
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        tokio::select! {
            changed = self.everyone.changed() => changed,
            changed = self.party.changed() => changed,
        }
    }
}

/// The largest NOTIFY payload sent (PostgreSQL's limit is 8,000 bytes): more parties than fit
/// are announced as a change for everyone.
const MAX_ANNOUNCEMENT: usize = 7_000;

/// What a replica's NOTIFY payload says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announced {
    /// Anything may have changed: wake everyone (the empty payload).
    Everyone,
    /// The histories of these parties grew.
    Parties(Vec<String>),
}

impl Announced {
    /// Reads a NOTIFY payload: the process that made it (when it says) and what it announces;
    /// anything but a list of parties means everyone.
    pub fn read(payload: &str) -> (Option<&str>, Self) {
        let (origin, rest) = match payload.strip_prefix("from:").and_then(|p| p.split_once(';')) {
            Some((origin, rest)) => (Some(origin), rest),
            None => (None, payload),
        };
        let announced = match rest.strip_prefix("parties:") {
            Some(list) if !list.is_empty() => Self::Parties(list.split(',').map(str::to_string).collect()),
            _ => Self::Everyone,
        };
        (origin, announced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_party_wake_up_reaches_only_that_partys_watchers() {
        let wakeups = Wakeups::default();
        let mut a = wakeups.watch("pty_a");
        let mut a2 = wakeups.watch("pty_a");
        let mut b = wakeups.watch("pty_b");
        wakeups.parties(["pty_a", "pty_nobody"]);
        assert!(a.changed().await.is_ok());
        assert!(a2.changed().await.is_ok());
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), b.changed()).await;
        assert!(waited.is_err(), "pty_b was not woken");
        wakeups.everyone();
        assert!(b.changed().await.is_ok());
        assert!(a.changed().await.is_ok());
    }

    #[tokio::test]
    async fn marked_unchanged_waits_for_the_next_wake_up() {
        let wakeups = Wakeups::default();
        let mut a = wakeups.watch("pty_a");
        wakeups.parties(["pty_a"]);
        wakeups.everyone();
        a.mark_unchanged();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), a.changed()).await;
        assert!(waited.is_err(), "both wake-ups were marked seen");
    }

    #[test]
    fn senders_are_forgotten_when_their_watchers_are_gone() {
        let wakeups = Wakeups::default();
        let a = wakeups.watch("pty_a");
        let b = wakeups.watch("pty_b");
        assert_eq!(wakeups.watched_parties(), ["pty_a", "pty_b"]);
        drop(a);
        wakeups.parties(["pty_b"]);
        assert_eq!(wakeups.watched_parties(), ["pty_b"]);
        assert_eq!(wakeups.parties.lock().unwrap().len(), 1, "pty_a's sender dropped");
        drop(b);
        wakeups.parties(std::iter::empty());
        assert!(wakeups.parties.lock().unwrap().is_empty());
    }

    #[test]
    fn announcements_name_their_origin_and_parties_or_everyone() {
        let wakeups = Wakeups::default();
        let origin = wakeups.origin.clone();
        let ids = vec!["pty_a".to_string(), "pty_b".to_string()];
        let named = wakeups.announcement(&ids);
        assert_eq!(named, format!("from:{origin};parties:pty_a,pty_b"));
        assert_eq!(
            Announced::read(&named),
            (Some(origin.as_str()), Announced::Parties(ids))
        );
        let everyone = wakeups.announcement(&[]);
        assert_eq!(
            Announced::read(&everyone),
            (Some(origin.as_str()), Announced::Everyone)
        );
        let many: Vec<String> = (0..1_000).map(|i| format!("pty_{i:032}")).collect();
        assert_eq!(
            wakeups.announcement(&many),
            everyone,
            "too many to name: everyone"
        );
        // Payloads without an origin (and anything unreadable) still wake.
        assert_eq!(Announced::read(""), (None, Announced::Everyone));
        assert_eq!(Announced::read("parties:"), (None, Announced::Everyone));
        assert_eq!(
            Announced::read("parties:pty_a"),
            (None, Announced::Parties(vec!["pty_a".to_string()]))
        );
        assert_eq!(Announced::read("something else"), (None, Announced::Everyone));
        assert_eq!(Announced::read("from:x"), (None, Announced::Everyone));
    }

    #[tokio::test]
    async fn a_process_passes_over_its_own_announcements() {
        let here = Wakeups::default();
        let there = Wakeups::default();
        assert_ne!(here.origin, there.origin, "every process has its own origin");
        let mut a = here.watch("pty_a");
        let quiet = std::time::Duration::from_millis(50);
        here.heard(&here.announcement(&["pty_a".to_string()]));
        here.heard(&here.announcement(&[]));
        assert!(
            tokio::time::timeout(quiet, a.changed()).await.is_err(),
            "its own: not woken"
        );
        here.heard(&there.announcement(&["pty_a".to_string()]));
        assert!(
            a.changed().await.is_ok(),
            "another replica's change for pty_a wakes it"
        );
        here.heard(&there.announcement(&["pty_b".to_string()]));
        assert!(
            tokio::time::timeout(quiet, a.changed()).await.is_err(),
            "pty_b's change: not woken"
        );
        here.heard(&there.announcement(&[]));
        assert!(
            a.changed().await.is_ok(),
            "another replica's change for everyone wakes it"
        );
        here.heard("");
        assert!(a.changed().await.is_ok(), "a payload without origin wakes it");
    }
}
