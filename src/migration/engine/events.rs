//! A run's events as watchers get them: read from its history (so every
//! watcher, on any server and after any restart, gets every event, each with
//! the content it was stored with), then followed live until the run ends.
//! Live, an event this process appended reaches its watchers from memory,
//! exactly as stored (a hundred watchers cost no query per event); the
//! history is read again only to fill a gap (an event appended by another
//! server, or more than the backlog at once) and, while nothing arrives,
//! every POLL. Each event is logged, once, by the process that appended it.
use std::{sync::Arc, time::Duration};

use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use super::{Engine, Inner};
use crate::{
    db::scope,
    error::{Error, Result},
    migration::{
        progress::{EventKind, Progress},
        run::store,
    },
};

/// A run's events, in sequence, ending with its terminal one (or an error).
pub type Events = mpsc::Receiver<Result<Progress>>;

/// Events read from the history at a time.
const PAGE: i64 = 256;
/// How often a watcher reads the history when this process appended nothing
/// (the run executes on another server, or a control was made there).
const POLL: Duration = Duration::from_millis(500);
/// Appends kept for watchers that fall behind; one further behind reads the
/// history instead.
pub(super) const APPENDED_BACKLOG: usize = 1024;
/// How long a watcher's stream outlasts a database that does not answer (a
/// restart, a failover) before it ends with UNAVAILABLE and how to re-attach.
const OUTLASTED: Duration = Duration::from_secs(60);
/// How often a watcher asks a database that does not answer again.
const OUTAGE_RECHECK: Duration = Duration::from_millis(250);

impl Engine {
    /// Run `id`'s events after sequence `after` (0: its whole history), then
    /// every new one until the run ends; a run that has ended answers at
    /// least its terminal event. The caller has checked that the run is
    /// `organization_id`'s.
    pub fn events(&self, organization_id: Uuid, id: Uuid, after: u64) -> Events {
        let (sender, receiver) = mpsc::channel(16);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let follower = Follower {
                inner: &inner,
                organization_id,
                id,
                after,
                sender: &sender,
            };
            if let Err(error) = follower.follow().await {
                let _ = sender.send(Err(error)).await;
            }
        });
        receiver
    }
}

impl Inner {
    /// Events this process appended (and committed): one log line each, and
    /// handed to the watchers of this process.
    pub(super) fn announce(&self, events: &[Progress]) {
        events.iter().for_each(log_event);
        events.iter().for_each(|event| self.count(event));
        // No receiver (no watcher) is no error.
        let _ = self.events.send(Arc::from(events));
    }

    /// Runs' starts, ends and takeovers, counted from the events that
    /// record them (so a run counts once, on the server that committed it).
    fn count(&self, event: &Progress) {
        let (organization_id, phase) = (event.organization_id, event.phase.as_str());
        match event.kind {
            EventKind::Started | EventKind::RollbackStarted => {
                self.metrics
                    .run_started(organization_id, phase, event.dry_run);
            }
            EventKind::Ended | EventKind::Cancelled if event.state.is_terminal() => {
                let state = event.state.as_str();
                self.metrics
                    .run_ended(organization_id, phase, event.dry_run, state);
            }
            EventKind::TakenOver => self.metrics.taken_over(organization_id, phase),
            _ => {}
        }
    }
}

/// What one watcher has been given so far.
struct Follower<'a> {
    inner: &'a Inner,
    organization_id: Uuid,
    id: Uuid,
    /// The sequence of the last event sent.
    after: u64,
    sender: &'a mpsc::Sender<Result<Progress>>,
}

impl Follower<'_> {
    async fn follow(mut self) -> Result<()> {
        // Subscribed before the history is read: nothing appended after the
        // read can be missed.
        let mut appended = self.inner.events.subscribe();
        loop {
            match self.caught_up_to_the_end().await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(error) if error.is_unavailable() => {
                    self.outlast(&error).await?;
                    continue;
                }
                Err(error) => return Err(error),
            }
            loop {
                let next = tokio::select! {
                    next = appended.recv() => next,
                    () = tokio::time::sleep(POLL) => break,
                    () = self.sender.closed() => return Ok(()),
                    () = self.inner.shutdown.cancelled() => {
                        return Err(Error::Unavailable(
                            "the server is stopping; the run goes on and can be watched again".into(),
                        ));
                    }
                };
                match next {
                    Ok(events) => match self.take(&events).await {
                        Taken::InSequence => {}
                        Taken::Ended => return Ok(()),
                        Taken::Gap => break,
                    },
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        }
    }

    /// Sends this run's events among `events` that follow the last one sent.
    async fn take(&mut self, events: &[Progress]) -> Taken {
        let id = self.id;
        let mut ended = false;
        for event in events.iter().filter(|e| e.migration_id == id) {
            if event.sequence <= self.after {
                continue; // sent already (read from the history)
            }
            if event.sequence > self.after + 1 {
                return Taken::Gap; // another's append in between: read the history
            }
            // Ended only if nothing follows (a rollback may begin with the end
            // of the execution it cancels).
            ended = event.state.is_terminal();
            if !self.send(event.clone()).await {
                return Taken::Ended;
            }
        }
        if ended {
            Taken::Ended
        } else {
            Taken::InSequence
        }
    }

    /// Waits (the stream stays open) until the database answers again, up to
    /// [`OUTLASTED`]; then the stream ends with UNAVAILABLE and the call that
    /// picks it up where it stopped.
    async fn outlast(&self, error: &Error) -> Result<()> {
        let since = tokio::time::Instant::now();
        while since.elapsed() < OUTLASTED {
            tokio::select! {
                () = tokio::time::sleep(OUTAGE_RECHECK) => {}
                () = self.sender.closed() => return Ok(()),
                () = self.inner.shutdown.cancelled() => break,
            }
            if sqlx::query("SELECT 1")
                .execute(&self.inner.pool)
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        Err(Error::Unavailable(format!(
            "it has not answered for {} s ({error}). The run goes on by itself once the \
             database is back: re-attach with WatchMigration (migration_id {}, after_sequence {})",
            since.elapsed().as_secs(),
            self.id,
            self.after
        )))
    }

    /// Whether the watcher still listens.
    async fn send(&mut self, event: Progress) -> bool {
        self.after = event.sequence;
        self.sender.send(Ok(event)).await.is_ok()
    }

    /// Sends what the history holds after the last event sent; true when
    /// the run has ended (its terminal event sent) or the watcher went away.
    async fn caught_up_to_the_end(&mut self) -> Result<bool> {
        let inner = self.inner;
        loop {
            let page =
                store::events_after(&inner.pool, self.organization_id, self.id, self.after, PAGE)
                    .await?;
            let full = page.len() as i64 == PAGE;
            // An end followed by more (a rollback after its execution's
            // end) is not the end: only the latest event says.
            let mut ended = false;
            for event in page {
                ended = event.state.is_terminal();
                if !self.send(event).await {
                    return Ok(true);
                }
            }
            if full {
                continue;
            }
            if ended {
                return Ok(true);
            }
            let latest = store::latest_of(&inner.pool, self.organization_id, self.id).await?;
            if latest.state.is_terminal() && latest.sequence <= self.after {
                // Ended before `after` (or before events were recorded): its end.
                let _ = self.sender.send(Ok(latest)).await;
                return Ok(true);
            }
            if latest.sequence <= self.after {
                return Ok(false);
            }
            // Appended meanwhile: read again.
        }
    }
}

/// What a batch of appended events did for a follower.
enum Taken {
    InSequence,
    Ended,
    Gap,
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
