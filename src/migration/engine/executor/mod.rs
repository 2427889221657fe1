//! The executor of one run: batches until its phase is done, the run is
//! paused, cancelled or fails, or the server stops (then the run stays RUNNING
//! after its last committed batch, for this or another server to resume).
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{Notify, watch};
use uuid::Uuid;

mod batch;
mod end;

use self::batch::{Committed, is_lock_wait};
use super::{
    Inner,
    lease::Lease,
    pacing::{Backoff, Pacing},
    report::{self, BatchResult},
};
use crate::{
    error::{Error, Result},
    migration::{
        progress::{Health, Progress, Throughput},
        run::{Phase, Run, RunState, store},
    },
};

/// How often a paused executor looks for a resume made on another server.
const PAUSED_RECHECK: Duration = Duration::from_secs(2);

pub struct Executor {
    inner: Arc<Inner>,
    id: Uuid,
    organization_id: Uuid,
    phase: Phase,
    dry_run: bool,
    total: i64,
    /// The run's pace when it was launched; each batch reads it anew.
    pacing: Pacing,
    lease: Lease,
    sender: watch::Sender<Progress>,
    wake: Arc<Notify>,
}

impl Executor {
    pub(super) fn new(
        inner: Arc<Inner>,
        run: &Run,
        lease: Lease,
        sender: watch::Sender<Progress>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            inner,
            id: run.id,
            organization_id: run.organization_id,
            phase: run.record.phase,
            dry_run: run.record.parameters.dry_run,
            total: run.record.phase.progress_of(&run.record).1,
            pacing: Pacing::of(&run.record.parameters),
            lease,
            sender,
            wake,
        }
    }

    /// The phase's span: a root of its own (the run outlives the call that
    /// started it) in the trace of `parent` when given.
    pub fn span(&self, parent: Option<opentelemetry::Context>) -> tracing::Span {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let (organization_id, migration_id) = (self.organization_id, self.id);
        let span = match self.phase {
            Phase::Execution => tracing::info_span!(parent: None, "migration.execution",
                organization_id = %organization_id, migration_id = %migration_id, dry_run = self.dry_run),
            Phase::Rollback => tracing::info_span!(parent: None, "migration.rollback",
                organization_id = %organization_id, migration_id = %migration_id),
            Phase::Aliasing => tracing::info_span!(parent: None, "migration.aliasing",
                organization_id = %organization_id, migration_id = %migration_id),
        };
        if let Some(parent) = parent {
            let _ = span.set_parent(parent);
        }
        span
    }

    pub async fn run(mut self) {
        let mut throughput = Throughput::default();
        let mut backoff = Backoff::default();
        loop {
            if self.inner.shutdown.is_cancelled() {
                tracing::info!(
                    "server stopping: the run stays RUNNING after its last committed batch"
                );
                break;
            }
            if !self.lease.held().await {
                tracing::warn!("the lease on this run was lost; another server may resume it");
                break;
            }
            let started = Instant::now();
            // The size is always explicit: the run's own, or smaller while
            // backing off from lock waits.
            let size = backoff.batch_size().unwrap_or(self.pacing.batch_size);
            match self.batch(size).await {
                Ok(Committed {
                    result:
                        BatchResult {
                            halted: Some(state),
                            ..
                        },
                    ..
                }) => {
                    if !self.halted(&state).await {
                        break;
                    }
                }
                Ok(Committed { result, pacing }) => {
                    backoff.committed(pacing.batch_size);
                    self.pacing = pacing;
                    if !self
                        .committed(&result, pacing, started, &mut throughput)
                        .await
                    {
                        break;
                    }
                }
                Err(error) if self.inner.shutdown.is_cancelled() => {
                    tracing::info!(%error, "server stopping: the batch rolled back, the run stays RUNNING");
                    break;
                }
                Err(error) if is_lock_wait(&error) => {
                    if !self.back_off(&error, &mut backoff).await {
                        break;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "batch failed; the run stops");
                    self.finish(RunState::Failed, &error.to_string()).await;
                    break;
                }
            }
        }
        self.lease.release().await;
    }

    /// The run was no longer RUNNING. Paused: wait to be resumed (true).
    /// Ended: publish it and stop (false).
    async fn halted(&self, state: &str) -> bool {
        match RunState::parse(state) {
            Some(RunState::Paused) => {
                report::publish_state(
                    &self.sender,
                    RunState::Paused,
                    "paused after the batch in flight",
                );
                tokio::select! {
                    () = self.wake.notified() => true,
                    () = self.inner.shutdown.cancelled() => false,
                    () = tokio::time::sleep(PAUSED_RECHECK) => true,
                }
            }
            Some(ended) => {
                report::publish_state(
                    &self.sender,
                    ended,
                    &format!("{state} after the batch in flight"),
                );
                false
            }
            None => false,
        }
    }

    /// Publishes a committed batch, ends the run when it was the last, and
    /// otherwise waits as its pace asks. False when the executor should stop.
    async fn committed(
        &self,
        result: &BatchResult,
        pacing: Pacing,
        started: Instant,
        throughput: &mut Throughput,
    ) -> bool {
        let took = started.elapsed();
        let (wait, throttled) = pacing.wait_after(result.transactions, took);
        let slowed = (throttled || !pacing.batch_delay.is_zero()).then(|| pacing.describe());
        throughput.record(
            result.transactions,
            took.as_secs_f64() * 1000.0,
            (took + wait).as_secs_f64() * 1000.0,
        );
        let total = self.total;
        self.sender.send_modify(|p| {
            report::apply_batch(
                p,
                result,
                throughput,
                total,
                slowed.filter(|_| !result.done),
            )
        });
        if result.done {
            let (health, message) = match self.phase {
                Phase::Rollback if result.counters.refused > 0 => {
                    (Health::Warning, self.refused_restores().await)
                }
                Phase::Rollback => (
                    Health::Healthy,
                    "rolled back: every migrated transaction restored".to_owned(),
                ),
                Phase::Execution if self.dry_run => (
                    Health::Healthy,
                    "dry run complete: every batch rolled back, nothing written".to_owned(),
                ),
                Phase::Execution => (Health::Healthy, "every candidate processed".to_owned()),
                Phase::Aliasing => report::aliased(&result.counters),
            };
            self.finish_with(self.phase.completed(), health, &message)
                .await;
            return false;
        }
        self.pace(Instant::now(), result.transactions, took, pacing)
            .await
    }

    /// Waits between batches as the run's pace asks, re-reading it when woken
    /// (UpdateMigration) and cutting the wait short on a pause or cancel.
    /// False when the server is stopping.
    async fn pace(
        &self,
        batch_end: Instant,
        transactions: i64,
        took: Duration,
        mut pacing: Pacing,
    ) -> bool {
        loop {
            let until = batch_end + pacing.wait_after(transactions, took).0;
            if Instant::now() >= until {
                return true;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until.into()) => return true,
                () = self.inner.shutdown.cancelled() => return false,
                () = self.wake.notified() => match self.read_pace().await {
                    Ok((RunState::Running, latest)) => pacing = latest,
                    _ => return true, // paused or ended: the next batch says so
                },
            }
        }
    }

    /// A batch waited too long on locks: retry smaller after a wait, as a
    /// WARNING; past the retry budget the run fails. False when it stops.
    async fn back_off(&self, error: &Error, backoff: &mut Backoff) -> bool {
        let configured = match self.read_pace().await {
            Ok((_, pacing)) => pacing.batch_size,
            Err(_) => self.pacing.batch_size,
        };
        if backoff.retries() >= self.inner.settings.batch_lock_retries {
            let message = format!(
                "batches kept waiting on row locks ({} retries): {error}",
                backoff.retries()
            );
            self.finish(RunState::Failed, &message).await;
            return false;
        }
        let wait = backoff.retry(configured);
        let message = format!(
            "batch waited more than {} ms on row locks held by other transactions; \
             retrying with {} transactions in {} ms (retry {} of {})",
            self.inner.settings.batch_lock_timeout_ms,
            backoff.batch_size().unwrap_or(configured),
            wait.as_millis(),
            backoff.retries(),
            self.inner.settings.batch_lock_retries
        );
        tracing::warn!("{message}");
        report::publish_health(&self.sender, Health::Warning, message);
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = self.inner.shutdown.cancelled() => false,
        }
    }

    /// The run's state and pace as its row holds them now.
    async fn read_pace(&self) -> Result<(RunState, Pacing)> {
        let (state, parameters) =
            store::state_and_parameters(&self.inner.pool, self.organization_id, self.id).await?;
        Ok((state, Pacing::of(&parameters)))
    }
}
