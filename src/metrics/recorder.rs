//! The engine's instruments, behind a handle that knows nothing of where
//! the numbers go: the engine records, the pipeline (mod.rs) decides whether
//! Prometheus reads them, a collector receives them, or nobody does.
//!
//! Attributes are the ones a dashboard filters by and nothing unbounded:
//! counters carry `organization_id` (one series per organization that ran
//! migrations here), histograms and the runs gauge only `phase` and `dry_run`
//! (a histogram is a dozen series per attribute set), and no metric names a
//! run.
use std::{sync::Arc, time::Duration};

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Gauge, Histogram, Meter, MeterProvider as _, UpDownCounter},
};
use uuid::Uuid;

/// Batches take milliseconds to minutes: boundaries in seconds.
const BATCH_SECONDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// A lock wait ends at HERA_BATCH_LOCK_TIMEOUT_MS (2 s by default), or
/// sooner on a deadlock.
const LOCK_WAIT_SECONDS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// What one batch did, in the numbers its metrics count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchFigures {
    /// Looked at.
    pub transactions: u64,
    /// The phase's own work: reversed and reposted (EXECUTION), restored
    /// (ROLLBACK), aliased (ALIASING).
    pub migrated: u64,
    pub skipped_closed_period: u64,
    pub skipped_unmapped: u64,
    pub quarantined: u64,
    /// Refused by the database: restores, aliases.
    pub refused: u64,
}

/// Cheap to clone; a disabled one records nothing.
#[derive(Clone)]
pub struct Recorder(Arc<Instruments>);

struct Instruments {
    runs_active: UpDownCounter<i64>,
    runs_started: Counter<u64>,
    runs_ended: Counter<u64>,
    takeovers: Counter<u64>,
    batches: Counter<u64>,
    batch_duration: Histogram<f64>,
    processed: Counter<u64>,
    migrated: Counter<u64>,
    skipped: Counter<u64>,
    quarantined: Counter<u64>,
    refused: Counter<u64>,
    lock_wait: Histogram<f64>,
    lock_backoffs: Counter<u64>,
    throttled: Counter<f64>,
    serving: Gauge<u64>,
    rollouts_active: UpDownCounter<i64>,
    rollouts_started: Counter<u64>,
    rollouts_ended: Counter<u64>,
    rollout_organizations: Counter<u64>,
}

impl Recorder {
    pub fn new(meter: &Meter) -> Self {
        let counter = |name: &'static str, unit: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_unit(unit)
                .with_description(description)
                .build()
        };
        Self(Arc::new(Instruments {
            runs_active: meter
                .i64_up_down_counter("hera.migration.runs.active")
                .with_unit("{run}")
                .with_description("Runs this server executes now, by state (RUNNING, PAUSED)")
                .build(),
            runs_started: counter(
                "hera.migration.runs.started",
                "{run}",
                "Runs started here (a rollback starts its run's ROLLBACK phase)",
            ),
            runs_ended: counter(
                "hera.migration.runs.ended",
                "{run}",
                "Runs whose end this server recorded, by final state",
            ),
            rollouts_active: meter
                .i64_up_down_counter("hera.migration.rollouts.active")
                .with_unit("{rollout}")
                .with_description("Rollouts this server drives now")
                .build(),
            rollouts_started: counter(
                "hera.migration.rollouts.started",
                "{rollout}",
                "Rollouts started here",
            ),
            rollouts_ended: counter(
                "hera.migration.rollouts.ended",
                "{rollout}",
                "Rollouts whose end this server recorded, by final state",
            ),
            rollout_organizations: counter(
                "hera.migration.rollout.organizations",
                "{organization}",
                "Organizations a rollout settled here, by standing",
            ),
            takeovers: counter(
                "hera.migration.lease.takeovers",
                "{run}",
                "Runs this server took over from a server that went away",
            ),
            batches: counter(
                "hera.migration.batches",
                "{batch}",
                "Batches committed (a dry run's: rolled back)",
            ),
            batch_duration: meter
                .f64_histogram("hera.migration.batch.duration")
                .with_unit("s")
                .with_description("Time of one batch, from its start to its commit")
                .with_boundaries(BATCH_SECONDS.to_vec())
                .build(),
            processed: counter(
                "hera.migration.transactions.processed",
                "{transaction}",
                "Transactions batches looked at: migrated, skipped, quarantined or refused",
            ),
            migrated: counter(
                "hera.migration.transactions.migrated",
                "{transaction}",
                "Transactions reversed and reposted (EXECUTION), restored (ROLLBACK) or aliased (ALIASING)",
            ),
            skipped: counter(
                "hera.migration.transactions.skipped",
                "{transaction}",
                "Transactions skipped, by reason (closed_period, unmapped)",
            ),
            quarantined: counter(
                "hera.migration.transactions.quarantined",
                "{transaction}",
                "Transactions set aside untouched",
            ),
            refused: counter(
                "hera.migration.transactions.refused",
                "{transaction}",
                "Restores or aliases the database refused",
            ),
            lock_wait: meter
                .f64_histogram("hera.migration.batch.lock_wait")
                .with_unit("s")
                .with_description(
                    "Time a batch waited on the business's row locks before it rolled back to retry smaller",
                )
                .with_boundaries(LOCK_WAIT_SECONDS.to_vec())
                .build(),
            lock_backoffs: counter(
                "hera.migration.lock_backoffs",
                "{retry}",
                "Batches rolled back and retried smaller after a lock wait, by cause",
            ),
            throttled: meter
                .f64_counter("hera.migration.throttled")
                .with_unit("s")
                .with_description("Time runs were held back between batches, by reason")
                .build(),
            serving: meter
                .u64_gauge("hera_migrate.health.serving")
                .with_description("1 while the database answers (health SERVING), else 0")
                .build(),
        }))
    }

    /// Records nothing: for an engine nobody measures.
    pub fn disabled() -> Self {
        Self::new(&opentelemetry::metrics::noop::NoopMeterProvider::new().meter("hera-migrate"))
    }

    /// The meter of one run's executor; its run counts as RUNNING here
    /// until `state` says otherwise or it is dropped.
    pub fn run(&self, organization_id: Uuid, phase: &'static str, dry_run: bool) -> RunMeter {
        let mut meter = RunMeter {
            recorder: self.clone(),
            counted: counted(organization_id, phase, dry_run),
            state: None,
        };
        meter.state("RUNNING");
        meter
    }

    /// A run's STARTED or ROLLBACK_STARTED event was committed here.
    pub fn run_started(&self, organization_id: Uuid, phase: &'static str, dry_run: bool) {
        let attributes = counted(organization_id, phase, dry_run);
        self.0.runs_started.add(1, &attributes);
    }

    /// A run's end (ENDED or CANCELLED, in its final `state`) was committed here.
    pub fn run_ended(
        &self,
        organization_id: Uuid,
        phase: &'static str,
        dry_run: bool,
        state: &'static str,
    ) {
        let mut attributes = counted(organization_id, phase, dry_run).to_vec();
        attributes.push(KeyValue::new("state", state));
        self.0.runs_ended.add(1, &attributes);
    }

    /// This server took a run over (its TAKEN_OVER event).
    pub fn taken_over(&self, organization_id: Uuid, phase: &'static str) {
        let attributes = [
            KeyValue::new("organization_id", organization_id.to_string()),
            KeyValue::new("phase", phase),
        ];
        self.0.takeovers.add(1, &attributes);
    }

    /// A rollout started here.
    pub fn rollout_started(&self) {
        self.0.rollouts_started.add(1, &[]);
    }

    /// This server began (+1) or stopped (-1) driving a rollout.
    pub fn rollouts_driven(&self, delta: i64) {
        self.0.rollouts_active.add(delta, &[]);
    }

    /// A rollout's end recorded here: SUCCEEDED, FAILED, CANCELLED.
    pub fn rollout_ended(&self, state: &'static str) {
        let attributes = [KeyValue::new("state", state)];
        self.0.rollouts_ended.add(1, &attributes);
    }

    /// An organization a rollout settled here: PASSED, FAILED, ROLLED_BACK,
    /// CANCELLED.
    pub fn rollout_organization(&self, standing: &'static str) {
        let attributes = [KeyValue::new("standing", standing)];
        self.0.rollout_organizations.add(1, &attributes);
    }

    /// What the health probe found.
    pub fn serving(&self, serving: bool) {
        self.0.serving.record(u64::from(serving), &[]);
    }
}

fn counted(organization_id: Uuid, phase: &'static str, dry_run: bool) -> [KeyValue; 3] {
    [
        KeyValue::new("organization_id", organization_id.to_string()),
        KeyValue::new("phase", phase),
        KeyValue::new("dry_run", dry_run),
    ]
}

/// One executor's instruments with its run's attributes, built once.
pub struct RunMeter {
    recorder: Recorder,
    /// organization_id, phase, dry_run: for counters.
    counted: [KeyValue; 3],
    /// The state the run is counted in by `hera.migration.runs.active`.
    state: Option<&'static str>,
}

impl RunMeter {
    /// phase and dry_run: for histograms and the runs gauge.
    fn shared(&self) -> &[KeyValue] {
        &self.counted[1..]
    }

    fn with(&self, key: &'static str, value: &'static str, base: &[KeyValue]) -> Vec<KeyValue> {
        let mut attributes = base.to_vec();
        attributes.push(KeyValue::new(key, value));
        attributes
    }

    /// Moves the run between the states the runs gauge counts (idempotent).
    pub fn state(&mut self, state: &'static str) {
        if self.state == Some(state) {
            return;
        }
        let gauge = &self.recorder.0.runs_active;
        if let Some(previous) = self.state {
            gauge.add(-1, &self.with("state", previous, self.shared()));
        }
        gauge.add(1, &self.with("state", state, self.shared()));
        self.state = Some(state);
    }

    /// A batch that did something committed (a dry run's: rolled back) after `took`.
    pub fn batch(&self, figures: &BatchFigures, took: Duration) {
        let instruments = &self.recorder.0;
        instruments.batches.add(1, &self.counted);
        instruments
            .batch_duration
            .record(took.as_secs_f64(), self.shared());
        instruments
            .processed
            .add(figures.transactions, &self.counted);
        instruments.migrated.add(figures.migrated, &self.counted);
        for (reason, count) in [
            ("closed_period", figures.skipped_closed_period),
            ("unmapped", figures.skipped_unmapped),
        ] {
            if count > 0 {
                let attributes = self.with("reason", reason, &self.counted);
                instruments.skipped.add(count, &attributes);
            }
        }
        if figures.quarantined > 0 {
            instruments
                .quarantined
                .add(figures.quarantined, &self.counted);
        }
        if figures.refused > 0 {
            instruments.refused.add(figures.refused, &self.counted);
        }
    }

    /// A batch rolled back after waiting `waited` on locks (`cause`:
    /// lock_timeout, deadlock, serialization_failure), to be retried smaller.
    pub fn lock_wait(&self, waited: Duration, cause: &'static str) {
        let instruments = &self.recorder.0;
        instruments
            .lock_wait
            .record(waited.as_secs_f64(), self.shared());
        let attributes = self.with("cause", cause, &self.counted);
        instruments.lock_backoffs.add(1, &attributes);
    }

    /// The run is held back `wait` before its next batch, for `reason`
    /// (OPERATOR_RATE_LIMIT, OPERATOR_BATCH_DELAY, LOCK_BACKOFF).
    pub fn throttled(&self, reason: &'static str, wait: Duration) {
        if wait.is_zero() {
            return;
        }
        let attributes = self.with("reason", reason, &self.counted);
        self.recorder
            .0
            .throttled
            .add(wait.as_secs_f64(), &attributes);
    }
}

impl Drop for RunMeter {
    /// The executor stopped: the run no longer executes here.
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            let attributes = self.with("state", state, self.shared());
            self.recorder.0.runs_active.add(-1, &attributes);
        }
    }
}
