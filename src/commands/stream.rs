//! `lefi client stream`: the delivery stream as NDJSON on stdout. With `--follow` it is the
//! reference implementation of the resume contract (proto/lefi/v1/delivery.proto, (2), (7), (10)):
//!
//! - each event is applied (printed) and then its cursor persisted: written to `FILE.tmp` and
//!   renamed over the cursor file, so that a crash leaves the old cursor or the new one, never a
//!   torn one (a real consumer persists the cursor in the same transaction as the data);
//! - when the stream ends with UNAVAILABLE (`SERVER_SHUTTING_DOWN`, `UNAVAILABLE_STORAGE`),
//!   INTERNAL or TOO_MANY_STREAMS, when the connection drops or the server cannot be reached, or
//!   when nothing arrives for three heartbeat intervals, it waits (0.5 s doubling to 30 s, ±20 %
//!   jitter, back to 0.5 s once a stream delivers again) and resumes from the last cursor;
//! - it stops on what retrying cannot fix (UNAUTHENTICATED, PERMISSION_DENIED, `CURSOR_EXPIRED`,
//!   `CURSOR_INVALID`, a certificate the server refuses) and says what to do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use super::client::Target;
use super::failure::with_request_id;
use super::output::print_json;
use crate::client::TransportProblem;
use crate::grpc::pb::lefi::v1 as pb;

/// The first wait before reconnecting.
const FIRST_DELAY: Duration = Duration::from_millis(500);
/// The longest wait before reconnecting.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// Each wait is the nominal delay times a random factor in 1 ± this, so that clients cut off by
/// the same restart do not all come back at the same instant.
const JITTER: f64 = 0.2;
/// The heartbeat interval `--follow` asks for when `--heartbeat` is not given: it has to know the
/// interval to tell a silent connection (three intervals without a message) from a quiet stream.
const FOLLOW_HEARTBEAT: Duration = Duration::from_secs(15);

/// What `lefi client stream` was asked to do.
#[derive(Debug, Clone)]
pub(super) struct StreamOptions {
    cursor_file: Option<PathBuf>,
    max_events: Option<u64>,
    heartbeat: Option<Duration>,
    follow: bool,
}

impl StreamOptions {
    pub(super) fn parse(
        cursor_file: Option<&Path>,
        max_events: Option<u64>,
        heartbeat: Option<&str>,
        follow: bool,
    ) -> anyhow::Result<StreamOptions> {
        let heartbeat = heartbeat
            .map(|text| {
                humantime::parse_duration(text)
                    .map_err(|e| anyhow::anyhow!("--heartbeat '{text}' is not a duration such as 5s: {e}"))
            })
            .transpose()?;
        Ok(StreamOptions {
            cursor_file: cursor_file.map(Path::to_path_buf),
            max_events,
            heartbeat: heartbeat.or(follow.then_some(FOLLOW_HEARTBEAT)),
            follow,
        })
    }
}

/// How one call of `DeliveryService.Stream` ended.
enum End {
    /// `--max-events` were printed.
    Enough,
    /// The server ended the stream without an error.
    Closed,
    /// The call failed.
    Failed(Status),
    /// Nothing arrived for three heartbeat intervals.
    Silent(Duration),
}

/// One call: how it ended and whether anything arrived.
struct Session {
    end: End,
    received: bool,
}

/// `lefi client stream [--follow]`.
pub(super) async fn run(target: &Target, options: &StreamOptions) -> anyhow::Result<()> {
    let mut cursor = read_cursor(options.cursor_file.as_deref())?;
    let mut printed = 0u64;
    if !options.follow {
        let channel = target.connect().await?;
        let session = call(channel, &mut cursor, &mut printed, options).await?;
        return match session.end {
            End::Enough | End::Closed => Ok(()),
            End::Failed(status) => Err(status.into()),
            End::Silent(after) => anyhow::bail!("the stream went silent for {after:?}"),
        };
    }
    // A channel that connects at its first call and again after the connection drops.
    let channel = target.lazy()?;
    let mut backoff = Backoff::new();
    loop {
        let session = call(channel.clone(), &mut cursor, &mut printed, options).await?;
        let why = match session.end {
            End::Enough => return Ok(()),
            End::Failed(status) => {
                if !worth_retrying(&status, session.received, target).await {
                    return Err(status.into());
                }
                super::failure::Failure::explain(&anyhow::Error::from(status), None)
                    .await
                    .summary()
            }
            End::Closed => "the server ended the stream".to_string(),
            End::Silent(after) => format!("nothing arrived for {after:?} (three heartbeat intervals)"),
        };
        if session.received {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::warn!(
            cause = %why,
            retry_in = %humantime::format_duration(round_to_millis(delay)),
            "the stream was interrupted; reconnecting, then resuming from the last cursor"
        );
        tokio::time::sleep(delay).await;
    }
}

/// Streams from `cursor` until the call ends, printing every event and persisting its cursor.
/// `Err` only for local failures (the cursor file cannot be written, stdout is gone).
async fn call(
    channel: Channel,
    cursor: &mut String,
    printed: &mut u64,
    options: &StreamOptions,
) -> anyhow::Result<Session> {
    let heartbeat_interval = options
        .heartbeat
        .map(prost_types::Duration::try_from)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--heartbeat: {e}"))?;
    let response = pb::delivery_service_client::DeliveryServiceClient::new(channel)
        .stream(pb::StreamRequest {
            cursor: cursor.clone(),
            max_batch_records: 0,
            heartbeat_interval,
        })
        .await;
    let response = match response {
        Ok(response) => response,
        Err(status) => {
            return Ok(Session {
                end: End::Failed(status),
                received: false,
            });
        }
    };
    let headers = response.metadata().clone();
    let mut events = response.into_inner();
    // Only --follow watches for silence; without it the command waits as long as the stream lasts.
    let silence = options
        .heartbeat
        .filter(|_| options.follow)
        .map(|interval| interval.saturating_mul(3));
    let mut received = false;
    loop {
        let next = match silence {
            Some(limit) => match tokio::time::timeout(limit, events.message()).await {
                Ok(next) => next,
                Err(_) => {
                    return Ok(Session {
                        end: End::Silent(limit),
                        received,
                    });
                }
            },
            None => events.message().await,
        };
        let event = match next {
            Ok(Some(event)) => event,
            Ok(None) => {
                return Ok(Session {
                    end: End::Closed,
                    received,
                });
            }
            Err(status) => {
                return Ok(Session {
                    end: End::Failed(with_request_id(status, &headers)),
                    received,
                });
            }
        };
        received = true;
        // Apply (print), then persist the cursor: a crash in between repeats the event on resume,
        // never skips it.
        print_json(&event)?;
        if !event.cursor.is_empty() {
            if let Some(path) = &options.cursor_file {
                write_atomically(path, &event.cursor)?;
            }
            *cursor = event.cursor;
        }
        *printed += 1;
        if options.max_events.is_some_and(|max| *printed >= max) {
            return Ok(Session {
                end: End::Enough,
                received,
            });
        }
    }
}

/// Whether a failed call is worth repeating from the same cursor (delivery.proto (10)).
async fn worth_retrying(status: &Status, received: bool, target: &Target) -> bool {
    if status.get_details_error_info().is_some() {
        // A service answered: its code says whether waiting helps. CURSOR_EXPIRED
        // (FAILED_PRECONDITION), CURSOR_INVALID (INVALID_ARGUMENT), UNAUTHENTICATED and
        // PERMISSION_DENIED do not get better by themselves.
        return matches!(
            status.code(),
            Code::Unavailable
                | Code::Internal
                | Code::ResourceExhausted
                | Code::Aborted
                | Code::DeadlineExceeded
        );
    }
    // No service answered: the connection failed or dropped.
    if !matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal | Code::DeadlineExceeded
    ) {
        return false;
    }
    match TransportProblem::of(status) {
        Some(problem) if problem != TransportProblem::Closed => problem.is_transient(),
        // Dropped after data arrived: these files work; the server went away.
        _ if received => true,
        // Closed before anything arrived: a refused client certificate looks the same (TLS 1.3),
        // so look again with a bare handshake.
        _ => crate::client::probe(&target.addr, &target.pem, target.server_name.as_deref())
            .await
            .is_none_or(|problem| problem.is_transient()),
    }
}

/// Exponential backoff with jitter.
struct Backoff {
    nominal: Duration,
    rng: ChaCha8Rng,
}

impl Backoff {
    fn new() -> Backoff {
        // Seeded from a random (v4) UUID: any two clients start from different jitter.
        let seed = uuid::Uuid::new_v4().as_u64_pair().0;
        Backoff {
            nominal: FIRST_DELAY,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn reset(&mut self) {
        self.nominal = FIRST_DELAY;
    }

    /// The next wait: the nominal delay with jitter; the nominal delay then doubles, up to
    /// [`MAX_DELAY`].
    fn next_delay(&mut self) -> Duration {
        let factor = self.rng.random_range(1.0 - JITTER..=1.0 + JITTER);
        let delay = self.nominal.mul_f64(factor);
        self.nominal = self.nominal.saturating_mul(2).min(MAX_DELAY);
        delay
    }
}

/// `lefi client pull`: FetchEvents from the cursor in `cursor_file` (or the beginning), printing
/// each event as NDJSON and persisting its cursor after printing it, until an answer says it is
/// caught up (or, with `follow`, for ever, long-polling).
pub(super) async fn pull(
    target: &Target,
    cursor_file: Option<&Path>,
    max_events: Option<u32>,
    wait: Option<&str>,
    follow: bool,
) -> anyhow::Result<()> {
    let wait = match (wait, follow) {
        (Some(text), _) => Some(humantime::parse_duration(text).map_err(|e| anyhow::anyhow!("--wait: {e}"))?),
        (None, true) => Some(Duration::from_secs(20)),
        (None, false) => None,
    };
    let wait = wait
        .map(prost_types::Duration::try_from)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--wait: {e}"))?;
    let mut cursor = read_cursor(cursor_file)?;
    let mut client = pb::delivery_service_client::DeliveryServiceClient::new(target.connect().await?);
    loop {
        let response = client
            .fetch_events(pb::FetchEventsRequest {
                cursor: cursor.clone(),
                max_events: max_events.unwrap_or(0),
                max_batch_records: 0,
                wait,
            })
            .await?;
        let answer = response.into_inner();
        // Apply (print), then persist the cursor: a crash in between repeats the event, never
        // skips it.
        for event in &answer.events {
            print_json(event)?;
            if let Some(path) = cursor_file {
                write_atomically(path, &event.cursor)?;
            }
        }
        if answer.events.is_empty()
            && let Some(path) = cursor_file
        {
            write_atomically(path, &answer.cursor)?;
        }
        cursor = answer.cursor;
        if answer.caught_up && !follow {
            return Ok(());
        }
    }
}

fn round_to_millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The cursor in `path`, or the empty cursor (the beginning) when there is no file.
fn read_cursor(path: Option<&Path>) -> anyhow::Result<String> {
    match path {
        Some(path) if path.exists() => Ok(std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read --cursor-file '{}': {e}", path.display()))?
            .trim()
            .to_string()),
        _ => Ok(String::new()),
    }
}

/// Replaces `path` with `contents` so that a crash leaves either the old or the new cursor: the
/// new one goes to `PATH.tmp` first, which a rename then puts in place in one step.
fn write_atomically(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).map_err(|e| anyhow::anyhow!("cannot write '{}': {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| anyhow::anyhow!("cannot replace '{}': {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_within_the_jitter_and_resets() {
        let mut backoff = Backoff::new();
        let mut nominal = FIRST_DELAY;
        for _ in 0..12 {
            let delay = backoff.next_delay();
            assert!(
                delay >= nominal.mul_f64(1.0 - JITTER),
                "{delay:?} for {nominal:?}"
            );
            assert!(
                delay <= nominal.mul_f64(1.0 + JITTER),
                "{delay:?} for {nominal:?}"
            );
            nominal = (nominal * 2).min(MAX_DELAY);
        }
        assert_eq!(backoff.nominal, MAX_DELAY);
        backoff.reset();
        assert!(backoff.next_delay() <= FIRST_DELAY.mul_f64(1.0 + JITTER));
    }

    #[test]
    fn cursor_files_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.cursor");
        assert_eq!(read_cursor(Some(&path)).unwrap(), "");
        write_atomically(&path, "abc").unwrap();
        write_atomically(&path, "def").unwrap();
        assert_eq!(read_cursor(Some(&path)).unwrap(), "def");
        assert!(!dir.path().join("demo.cursor.tmp").exists());
    }
}
