//! A run's events as watchers get them: read from its history (so every
//! watcher, on any server and after any restart, gets every event, each with
//! the content it was stored with), then followed live until the run ends.
//! Each one is logged, once, by the process that appended it.
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{Engine, Inner};
use crate::{
    db::scope,
    error::{Error, Result},
    migration::{progress::Progress, run::store},
};

/// A run's events, in sequence, ending with its terminal one (or an error).
pub type Events = mpsc::Receiver<Result<Progress>>;

/// Events read from the history at a time.
const PAGE: i64 = 256;
/// How often a watcher reads the history when this process appended nothing
/// (the run executes on another server, or a control was made there).
const POLL: Duration = Duration::from_millis(500);

impl Engine {
    /// Run `id`'s events after sequence `after` (0: its whole history), then
    /// every new one until the run ends; a run that has ended answers at
    /// least its terminal event. The caller has checked that the run is
    /// `organization_id`'s.
    pub fn events(&self, organization_id: Uuid, id: Uuid, after: u64) -> Events {
        let (sender, receiver) = mpsc::channel(16);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            if let Err(error) = follow(&inner, organization_id, id, after, &sender).await {
                let _ = sender.send(Err(error)).await;
            }
        });
        receiver
    }
}

impl Inner {
    /// Events this process appended (and committed): one log line each, and
    /// the watchers of this process woken to read them.
    pub(super) fn announce(&self, events: &[Progress]) {
        events.iter().for_each(log_event);
        self.events.send_modify(|appended| *appended += 1);
    }
}

async fn follow(
    inner: &Inner,
    organization_id: Uuid,
    id: Uuid,
    mut after: u64,
    sender: &mpsc::Sender<Result<Progress>>,
) -> Result<()> {
    let mut bell = inner.events.subscribe();
    loop {
        bell.borrow_and_update();
        let page = store::events_after(&inner.pool, organization_id, id, after, PAGE).await?;
        let full = page.len() as i64 == PAGE;
        let mut ended = false;
        for event in page {
            after = event.sequence;
            ended = event.state.is_terminal();
            if sender.send(Ok(event)).await.is_err() {
                return Ok(()); // the watcher went away; the run goes on
            }
        }
        if full {
            continue;
        }
        if ended {
            return Ok(());
        }
        let latest = store::latest_of(&inner.pool, organization_id, id).await?;
        if latest.state.is_terminal() && latest.sequence <= after {
            // Ended before `after` (or before events were recorded): its end.
            let _ = sender.send(Ok(latest)).await;
            return Ok(());
        }
        if latest.sequence > after {
            continue; // appended meanwhile
        }
        tokio::select! {
            _ = bell.changed() => {}
            () = tokio::time::sleep(POLL) => {}
            () = sender.closed() => return Ok(()),
            () = inner.shutdown.cancelled() => {
                return Err(Error::Unavailable(
                    "the server is stopping; the run goes on and can be watched again".into(),
                ));
            }
        }
    }
}

/// Appends `event` to run `id`'s history in a transaction of its own, logs
/// it and wakes the watchers.
pub(super) async fn record_event(
    inner: &Inner,
    organization_id: Uuid,
    id: Uuid,
    event: &Value,
) -> Result<Progress> {
    let mut tx = scope::begin(&inner.pool, organization_id).await?;
    let stored = store::append_event(&mut tx, id, event, None).await?;
    tx.commit().await?;
    inner.announce(std::slice::from_ref(&stored));
    Ok(stored)
}

/// One log line per event, with what an operator reads it for.
fn log_event(event: &Progress) {
    tracing::info!(
        migration_id = %event.migration_id,
        organization_id = %event.organization_id,
        trace_id = %crate::telemetry::current_trace_id(),
        sequence = event.sequence,
        kind = event.kind.as_str(),
        phase = event.phase.as_str(),
        state = event.state.as_str(),
        batch = event.batch_number,
        batch_transactions = event.batch_transactions,
        processed = event.processed,
        migrated = event.migrated,
        skipped = event.skipped(),
        quarantined = event.quarantined,
        remaining = event.remaining,
        batch_ms = event.current_batch_ms,
        transactions_per_second = event.transactions_per_second,
        health = ?event.health,
        dry_run = event.dry_run,
        "{}",
        event.message
    );
}
