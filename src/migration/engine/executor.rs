//! The executor of one run: batches until its phase is done, the run is
//! paused, cancelled or fails, or the server stops (then the run stays RUNNING
//! after its last committed batch, for this or another server to resume).
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{Notify, watch};
use uuid::Uuid;

use super::{
    Inner,
    lease::Lease,
    pacing::{Backoff, Pacing},
    report::{self, BatchResult},
};
use crate::{
    db::scope,
    error::{Error, Result},
    migration::{
        progress::{Health, Progress, Throughput},
        run::{Phase, Run, RunState, store},
    },
};

/// How often a paused executor looks for a resume made on another server.
const PAUSED_RECHECK: Duration = Duration::from_secs(2);

/// SQLSTATEs of a batch that waited on the business's locks: lock_not_available
/// (lock_timeout), deadlock_detected, serialization_failure. Retried smaller.
const LOCK_WAITS: [&str; 3] = ["55P03", "40P01", "40001"];

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

/// A committed batch, with the pace the run's row asked for at that moment.
struct Committed {
    result: BatchResult,
    pacing: Pacing,
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
            total: match run.record.phase {
                Phase::Execution => run.record.total_candidates.unwrap_or(0),
                Phase::Rollback => run.record.counters.migrated,
            },
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

    /// One batch of the run's phase in one database transaction, committed
    /// (or rolled back, for a dry run), inside its `migration.batch` span.
    async fn batch(&self, batch_size: i32) -> Result<Committed> {
        let span = tracing::info_span!(
            "migration.batch",
            migration.phase = self.phase.as_str(),
            batch.number = tracing::field::Empty,
            batch.size = tracing::field::Empty,
            batch.duration_ms = tracing::field::Empty,
            batch.transactions_per_second = tracing::field::Empty,
            batch.balanced = tracing::field::Empty,
            dry_run = self.dry_run,
        );
        let started = Instant::now();
        let committed =
            tracing::Instrument::instrument(self.batch_transaction(batch_size), span.clone())
                .await?;
        let result = &committed.result;
        if result.halted.is_none() {
            let seconds = started.elapsed().as_secs_f64();
            span.record("batch.number", result.batch_number);
            span.record("batch.size", result.transactions);
            span.record("batch.duration_ms", seconds * 1000.0);
            span.record(
                "batch.transactions_per_second",
                result.transactions as f64 / seconds.max(1e-9),
            );
            span.record("batch.balanced", result.balanced);
        }
        Ok(committed)
    }

    async fn batch_transaction(&self, batch_size: i32) -> Result<Committed> {
        let mut tx = scope::begin(&self.inner.pool, self.organization_id).await?;
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(format!("{}ms", self.inner.settings.batch_lock_timeout_ms))
            .execute(&mut *tx)
            .await?;
        let sqlx::types::Json(result): sqlx::types::Json<BatchResult> =
            sqlx::query_scalar(self.phase.batch_sql())
                .bind(self.id)
                .bind(batch_size)
                .fetch_one(&mut *tx)
                .await?;
        let after = store::after_batch(&mut tx, self.id).await?;
        if self.dry_run && result.halted.is_none() {
            tx.rollback().await?;
            let mut keep = scope::begin(&self.inner.pool, self.organization_id).await?;
            store::keep_dry_run_position(&mut keep, self.id, &after).await?;
            keep.commit().await?;
        } else {
            tx.commit().await?;
        }
        Ok(Committed {
            result,
            pacing: Pacing::of(&after.parameters),
        })
    }

    /// The run's state and pace as its row holds them now.
    async fn read_pace(&self) -> Result<(RunState, Pacing)> {
        let (state, parameters) =
            store::state_and_parameters(&self.inner.pool, self.organization_id, self.id).await?;
        Ok((state, Pacing::of(&parameters)))
    }

    /// What a rollback that ends with refused restores says: which, and why.
    async fn refused_restores(&self) -> String {
        let refused = match store::get(&self.inner.pool, self.organization_id, self.id).await {
            Ok(run) => run.record.rollback.unwrap_or_default().refused,
            Err(_) => Vec::new(),
        };
        report::refused_restores(&refused)
    }

    async fn finish(&self, state: RunState, message: &str) {
        let health = if state == RunState::Failed {
            Health::Critical
        } else {
            Health::Healthy
        };
        self.finish_with(state, health, message).await;
    }

    async fn finish_with(&self, state: RunState, health: Health, message: &str) {
        match self.record_end(state, message).await {
            Ok(None) => report::publish_end(&self.sender, state, health, message),
            Ok(Some((ended, why))) => {
                let health = if ended == RunState::Failed {
                    Health::Critical
                } else {
                    Health::Healthy
                };
                report::publish_end(&self.sender, ended, health, &why)
            }
            Err(error) => {
                tracing::error!(%error, "recording the end of the run failed");
                report::publish_end(&self.sender, state, health, message);
            }
        }
    }

    /// Records the end of the run, unless it ended meanwhile (say, cancelled
    /// just as its last batch committed: a user's control wins); then
    /// returns how it ended instead.
    async fn record_end(
        &self,
        state: RunState,
        message: &str,
    ) -> Result<Option<(RunState, String)>> {
        let mut tx = scope::begin(&self.inner.pool, self.organization_id).await?;
        let active = [RunState::Running, RunState::Paused];
        let recorded =
            store::set_state(&mut tx, self.id, state, None, Some(message), &active).await?;
        let ended = if recorded {
            None
        } else {
            let (ended, why) = store::ended_as(&mut tx, self.id).await?;
            Some((ended.unwrap_or(state), why))
        };
        tx.commit().await?;
        Ok(ended)
    }
}

fn is_lock_wait(error: &Error) -> bool {
    match error {
        Error::Database(sqlx::Error::Database(db)) => db
            .code()
            .is_some_and(|code| LOCK_WAITS.contains(&code.as_ref())),
        _ => false,
    }
}
