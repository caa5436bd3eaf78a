//! The inbound receiver's [`EventSink`] inside the daemon: each verified webhook becomes one
//! `Command::PublishDurable` to the driver, which answers with the event's sequence number only
//! after the event is fsynced in `<home>/events.log`. The delivery id is then journalled
//! (fsynced) before the receiver is told to answer 2xx.
//!
//! # Limitations
//!
//! - The sink is exactly as durable as the driver's answer: while the daemon's event log is
//!   in memory, "durable" means "sequenced by the broker", and a crash can lose an event that
//!   was answered 2xx.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::store::Journal;
use crate::driver::commands::Command;
use crate::webhook::sink::{EventSink, InboundEvent, PublishDone, PublishError};

/// Publishes into the daemon's durable event log through the driver task.
#[derive(Debug, Clone)]
pub struct DriverSink {
    driver: mpsc::Sender<Command>,
    journal: Arc<Journal>,
}

impl DriverSink {
    /// A sink sending to `driver` and journalling delivery ids in `journal`.
    pub fn new(driver: mpsc::Sender<Command>, journal: Arc<Journal>) -> Self {
        Self { driver, journal }
    }
}

impl EventSink for DriverSink {
    fn publish(&self, event: InboundEvent, done: PublishDone) {
        let sink = self.clone();
        tokio::spawn(async move {
            let result = sink.publish_durable(event).await;
            // The receiver may have timed out and gone; nothing else to tell.
            let _ = done.send(result);
        });
    }
}

impl DriverSink {
    async fn publish_durable(&self, event: InboundEvent) -> Result<(), PublishError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::PublishDurable {
            topic: event.topic,
            payload: event.payload.to_vec(),
            reply,
        };
        if self.driver.send(command).await.is_err() {
            return Err(PublishError::Closed);
        }
        let seq = match answer.await {
            Ok(Ok(seq)) => seq,
            Ok(Err(reason)) => return Err(PublishError::Write(reason)),
            Err(_) => return Err(PublishError::Closed),
        };
        if let Some(id) = event.delivery_id {
            self.journal_delivery(event.source, id, seq).await;
        }
        Ok(())
    }

    /// Records the delivery id. The event is durable already, so a failure here is logged and
    /// the provider still gets its 2xx: the worst outcome is a duplicate after a restart.
    async fn journal_delivery(&self, route: String, id: String, seq: u64) {
        let journal = self.journal.clone();
        let written = tokio::task::spawn_blocking(move || {
            journal.append(&route, &id, seq, crate::driver::unix_now())
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(%err, seq, "webhook delivery journal write failed"),
            Err(err) => tracing::error!(%err, seq, "webhook delivery journal task failed"),
        }
    }
}
