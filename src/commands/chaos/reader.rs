//! The reader: a party's consumer as the delivery contract asks for one. It appends every message
//! with its cursor to `events.ndjson` (one write per message: the record of a message and its
//! cursor are persisted together), and whenever the stream ends or goes quiet for three heartbeat
//! intervals it resumes from the last cursor in that file, at whichever server answers. A killed
//! reader is a task aborted at any point; its successor starts from the file.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::record::{Received, Seen, append, read_all};
use crate::client::ClientPem;
use crate::grpc::pb::lefi::v1 as pb;

/// Where the reader reads from and writes to.
#[derive(Clone)]
pub struct Reader {
    pub addrs: Vec<String>,
    pub pem: ClientPem,
    pub events_file: PathBuf,
    /// The highest register sequence a heartbeat said the stream had reached.
    pub reached: watch::Sender<u64>,
}

impl Reader {
    /// Starts reading in a task of its own.
    pub fn spawn(&self) -> JoinHandle<()> {
        let reader = self.clone();
        tokio::spawn(async move { reader.run().await })
    }

    async fn run(self) {
        let mut attempt = 0usize;
        loop {
            let addr = &self.addrs[attempt % self.addrs.len()];
            attempt += 1;
            // The last cursor persisted (the file is the reader's only memory).
            let cursor = match read_all::<Received>(&self.events_file) {
                Ok(seen) => seen.last().map(|r| r.cursor.clone()).unwrap_or_default(),
                Err(e) => {
                    tracing::error!(error = %e, "the chaos reader cannot read its own events file");
                    return;
                }
            };
            if let Err(e) = self.session(addr, cursor).await {
                tracing::debug!(error = %e, "the chaos reader's stream ended; resuming");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One stream, from `cursor`, until it fails or goes quiet.
    async fn session(&self, addr: &str, cursor: String) -> anyhow::Result<()> {
        let channel = crate::client::connect(addr, &self.pem, None).await?;
        let mut stream = pb::delivery_service_client::DeliveryServiceClient::new(channel)
            .stream(pb::StreamRequest {
                cursor,
                max_batch_records: 4,
                heartbeat_interval: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
            })
            .await?
            .into_inner();
        loop {
            let Some(event) = tokio::time::timeout(Duration::from_secs(3), stream.message()).await?? else {
                anyhow::bail!("the stream ended without a status");
            };
            let Some(received) = Received::of(event) else {
                continue;
            };
            append(&self.events_file, &received)?;
            if let Seen::Heartbeat { reached, .. } = received.seen {
                self.reached.send_if_modified(|r| {
                    let moved = reached > *r;
                    *r = (*r).max(reached);
                    moved
                });
            }
        }
    }
}
