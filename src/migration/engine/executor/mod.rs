//! The executor of one run: batches until its phase is done, the run is
//! paused, cancelled or fails, or the server stops (then the run stays RUNNING
//! after its last committed batch, for this or another server to resume).
//! Each batch's event is appended in the batch's own transaction, so the
//! run's history holds exactly the batches that committed.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;
use tokio::sync::Notify;
use uuid::Uuid;

mod batch;
mod end;
mod listen;
mod outage;
mod prepare;
mod waits;

use self::batch::{Committed, is_lock_wait, lock_wait_cause};
use super::{
    Inner,
    lease::Lease,
    listening::Listener,
    pacing::{Backoff, Pacing},
    report,
    sizing::Sizer,
};
use crate::{
    error::{Error, Result},
    metrics::RunMeter,
    migration::{
        progress::{EventKind, ThrottleReason, Throughput},
        run::{Parameters, Phase, Run, RunState, store},
        signals::{Reading, Signal},
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
    /// The run's pace when it was launched; each batch reads it anew.
    pacing: Pacing,
    /// The size of its batches, and the smaller ones of a lock backoff.
    sizer: Sizer,
    backoff: Backoff,
    /// The database signals it listens to; the one slowing it down now,
    /// and the one holding it (recorded once per hold).
    listener: Listener,
    slowed: Option<Reading>,
    held_by: Option<Signal>,
    lease: Lease,
    /// This executor's lease generation, once it took the run (see
    /// hera_migration_take_lease_v2); 0 before.
    generation: i64,
    wake: Arc<Notify>,
    throughput: Throughput,
    /// What held the run back after its latest event, and for how long in all.
    throttle: ThrottleReason,
    throttled_ms: i64,
    /// The parameters of a run whose plan is still to be checked.
    unplanned: Option<Parameters>,
    /// The trial balance's reading, beside the batches (see prepare.rs).
    trial_balance: Option<tokio::task::JoinHandle<()>>,
    /// Counts this run's batches and waits; the run counts as executing
    /// here until the executor is dropped.
    meter: RunMeter,
}

impl Executor {
    pub(super) fn new(inner: Arc<Inner>, run: &Run, lease: Lease, wake: Arc<Notify>) -> Self {
        let (phase, dry_run) = (run.record.phase, run.record.parameters.dry_run);
        let meter = inner
            .metrics
            .run(run.organization_id, phase.as_str(), dry_run);
        let pacing = Pacing::of(&run.record.parameters);
        let listener = Listener::new(
            (inner.pool.clone(), inner.admin.clone()),
            run.organization_id,
            inner.settings.business_probe_sql.clone(),
            &run.latest.pacing.signals,
        );
        Self {
            inner,
            id: run.id,
            organization_id: run.organization_id,
            phase,
            dry_run,
            sizer: Sizer::new(&pacing.sizing, Some(run.latest.pacing.sizing.batch_size)),
            pacing,
            backoff: Backoff::default(),
            listener,
            slowed: None,
            held_by: None,
            lease,
            generation: 0,
            wake,
            throughput: Throughput::default(),
            throttle: run.latest.pacing.reason,
            throttled_ms: run.latest.pacing.throttled_ms,
            unplanned: run
                .record
                .total_candidates
                .is_none()
                .then(|| run.record.parameters.clone()),
            trial_balance: None,
            meter,
        }
    }

    /// The phase's span: a root of its own (the run outlives the call that
    /// started it) in the trace of `parent` when given.
    pub fn span(&self, parent: Option<opentelemetry::Context>) -> tracing::Span {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        // The attributes a trace search filters by; `outcome` is the state
        // the executor left the run in (SUCCEEDED, FAILED, CANCELLED, ...,
        // or INTERRUPTED / FENCED when another server goes on with it).
        macro_rules! phase_span {
            ($name:literal) => {
                tracing::info_span!(parent: None, $name,
                    organization_id = %self.organization_id, migration_id = %self.id,
                    migration.phase = self.phase.as_str(), dry_run = self.dry_run,
                    outcome = tracing::field::Empty)
            };
        }
        let span = match self.phase {
            Phase::Execution => phase_span!("migration.execution"),
            Phase::Rollback => phase_span!("migration.rollback"),
            Phase::Aliasing => phase_span!("migration.aliasing"),
        };
        if let Some(parent) = parent {
            let _ = span.set_parent(parent);
        }
        span
    }

    pub async fn run(mut self) {
        if !self.take_up().await {
            self.lease.release().await;
            return;
        }
        loop {
            if self.inner.shutdown.is_cancelled() {
                self.interrupted().await;
                break;
            }
            if !self.lease.held().await {
                let lost = Error::Unavailable("the session holding this run's lease ended".into());
                if !self.database_lost(&lost).await {
                    break;
                }
                continue;
            }
            if !self.listen().await {
                self.interrupted().await;
                break;
            }
            let started = Instant::now();
            // The size is always explicit: the run's own or its sizing's, or
            // smaller while backing off from lock waits.
            let size = match self.backoff.batch_size() {
                Some(size) => size,
                None => self.sizer.next(&self.pacing.sizing),
            };
            match self.batch(size, started).await {
                Ok(Committed {
                    result:
                        report::BatchResult {
                            halted: Some(state),
                            ..
                        },
                    ..
                }) => {
                    if !self.halted(&state).await {
                        break;
                    }
                }
                Ok(committed) => {
                    self.meter.state(RunState::Running.as_str());
                    self.pacing = committed.pacing;
                    if !self.committed(&committed).await {
                        break;
                    }
                }
                Err(_) if self.inner.shutdown.is_cancelled() => {
                    self.interrupted().await;
                    break;
                }
                Err(error) if is_lock_wait(&error) => {
                    self.meter
                        .lock_wait(started.elapsed(), lock_wait_cause(&error));
                    if !self.back_off(&error).await {
                        break;
                    }
                }
                Err(error) if error.is_unavailable() => {
                    if !self.database_lost(&error).await {
                        break;
                    }
                }
                Err(error @ Error::Fenced(_)) => {
                    tracing::warn!(%error, "another server executes this run now");
                    outcome("FENCED");
                    break;
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

    /// Takes the run (its fence) and prepares it, waiting out a database that
    /// is away; false when it stops before its first batch.
    async fn take_up(&mut self) -> bool {
        loop {
            let taken = match self.take_lease().await {
                Ok(()) => self.prepare().await,
                Err(error) => Err(error),
            };
            match taken {
                Ok(()) => return true,
                Err(error) if error.is_unavailable() => {
                    if !self.database_lost(&error).await {
                        return false;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "the run could not be prepared; it stops before its first write");
                    self.finish(RunState::Failed, &error.to_string()).await;
                    return false;
                }
            }
        }
    }

    /// The run was no longer RUNNING (the control that paused or ended it
    /// recorded its event). Paused: wait to be resumed (true), with the pace
    /// an update made meanwhile. Ended: stop.
    async fn halted(&mut self, state: &str) -> bool {
        outcome(state);
        if RunState::parse(state) != Some(RunState::Paused) {
            return false;
        }
        self.meter.state(RunState::Paused.as_str());
        tokio::select! {
            () = self.wake.notified() => {}
            () = self.inner.shutdown.cancelled() => return false,
            () = tokio::time::sleep(PAUSED_RECHECK) => {}
        }
        if let Ok((_, pacing)) = self.read_pace().await {
            self.pacing = pacing;
        }
        true
    }

    /// Ends the run when its batch was the last, and otherwise waits as its
    /// pace asks. False when the executor should stop.
    async fn committed(&mut self, batch: &Committed) -> bool {
        let result = &batch.result;
        if result.done {
            let message = match self.phase {
                Phase::Rollback if result.counters.refused > 0 => self.refused_restores().await,
                Phase::Rollback => "rolled back: every migrated transaction restored".to_owned(),
                Phase::Execution => report::executed(self.dry_run, &result.counters),
                Phase::Aliasing => report::aliased(&result.counters),
            };
            self.finish(self.phase.completed(), &message).await;
            return false;
        }
        self.pace(batch).await
    }

    /// The server is stopping: the run stays RUNNING for the next server.
    async fn interrupted(&self) {
        outcome("INTERRUPTED");
        let event = json!({
            "kind": EventKind::Interrupted,
            "message": "the server executing this run is stopping: it stays RUNNING after its \
                        last committed batch and the next server resumes it",
        });
        self.record(&event).await;
    }

    /// Appends an event of the executor's own (not a batch's) in a
    /// transaction of its own; a failure to record it is logged, not fatal.
    async fn record(&self, event: &serde_json::Value) {
        if let Err(error) =
            super::record_event(&self.inner, self.organization_id, self.id, event).await
        {
            tracing::warn!(%error, "recording a run event failed");
        }
    }

    /// The run's state and pace as its row holds them now.
    async fn read_pace(&self) -> Result<(RunState, Pacing)> {
        let (state, parameters) =
            store::state_and_parameters(&self.inner.pool, self.organization_id, self.id).await?;
        Ok((state, Pacing::of(&parameters)))
    }
}

/// Records how the executor left its run on the phase's span (the current
/// one wherever the executor is outside a batch).
fn outcome(state: &str) {
    tracing::Span::current().record("outcome", state);
}
