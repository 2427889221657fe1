//! Phase 2's engine. A run belongs to the service, not to the call that
//! started it: its executor is a task of the server, driving
//! `hera_migration_execute_batch_v2` one database transaction at a time and
//! publishing a progress snapshot after each batch. Callers only watch.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::{PgPool, types::Json};
use tokio::sync::{Notify, watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

use super::{
    input::{self, Mapping},
    preview::Preview,
    progress::{Health, Progress, RunState, Throughput},
    runs::Counters,
};
use crate::{
    auth::Access,
    db::scope,
    error::{Error, Result},
};

const PLAN: &str = "SELECT hera_migration_preview_candidates_v2($1, $2, $3, 1, $4)";
const FIND_BY_REQUEST: &str = "SELECT id, metadata -> 'parameters' FROM universal_transactions
    WHERE organization_id = $1 AND transaction_type = 'MIGRATION_RUN' AND metadata ->> 'request_id' = $2";
const FIND_ACTIVE: &str = "SELECT id FROM universal_transactions
    WHERE organization_id = $1 AND transaction_type = 'MIGRATION_RUN'
      AND metadata ->> 'state' IN ('RUNNING', 'PAUSED') LIMIT 1";
const CREATE: &str = "SELECT hera_migration_create_run_v2($1, $2, $3, $4)";
const RECORD_PLAN: &str = "UPDATE universal_transactions
    SET metadata = metadata || jsonb_build_object('total_candidates', $2::bigint, 'state_changes', 1)
    WHERE id = $1";
const BATCH: &str = "SELECT hera_migration_execute_batch_v2($1)";
const FINISH: &str = "UPDATE universal_transactions
    SET metadata = metadata || jsonb_build_object(
            'state', $2::text, 'finished_at', now(), 'message', $3::text,
            'state_changes', coalesce((metadata ->> 'state_changes')::int, 0) + 1),
        transaction_status = lower($2::text), updated_at = now(), version = coalesce(version, 1) + 1
    WHERE id = $1";

/// A checked StartMigration request.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub from_date: chrono::NaiveDate,
    pub to_date: chrono::NaiveDate,
    pub batch_size: i32,
    pub mappings: Vec<Mapping>,
    pub request_id: String,
    pub expected_plan_fingerprint: String,
    pub post_to_open_period: bool,
    pub max_transactions_per_second: Option<f64>,
}

impl StartRequest {
    /// The parameters as the run records them (and idempotency compares them).
    fn parameters(&self) -> Value {
        json!({
            "from_date": self.from_date,
            "to_date": self.to_date,
            "batch_size": self.batch_size,
            "smart_code_mappings": self.mappings,
            "dry_run": false,
            "closed_period_policy": if self.post_to_open_period { "POST_TO_OPEN_PERIOD" } else { "SKIP" },
            "max_transactions_per_second": self.max_transactions_per_second,
            "batch_delay_ms": 0,
        })
    }
}

/// Checks the fields of a start request, naming the first bad one.
#[allow(clippy::too_many_arguments)]
pub fn start_request(
    from_date: &str,
    to_date: &str,
    batch_size: i32,
    mappings: impl IntoIterator<Item = (String, String)>,
    request_id: &str,
    expected_plan_fingerprint: &str,
    post_to_open_period: bool,
    max_transactions_per_second: Option<f64>,
) -> Result<StartRequest> {
    let (from_date, to_date) = input::date_range(from_date, to_date)?;
    if let Some(rate) = max_transactions_per_second
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(Error::invalid(
            "max_transactions_per_second",
            "must be a positive number",
        ));
    }
    Ok(StartRequest {
        from_date,
        to_date,
        batch_size: input::batch("batch_size", batch_size)?,
        mappings: input::mappings(mappings)?,
        request_id: request_id.trim().to_owned(),
        expected_plan_fingerprint: expected_plan_fingerprint.trim().to_owned(),
        post_to_open_period,
        max_transactions_per_second,
    })
}

/// What one batch reports (see `hera_migration_execute_batch_v2`).
#[derive(Debug, Deserialize)]
struct BatchResult {
    transactions: i64,
    done: bool,
    duration_ms: f64,
    counters: Counters,
    #[serde(default)]
    quarantined_ids: Vec<Uuid>,
    /// Set when the run was no longer RUNNING: nothing was done.
    #[serde(default)]
    halted: Option<String>,
}

/// A run executing here: its progress, and a bell that wakes a paused executor.
struct Active {
    progress: watch::Receiver<Progress>,
    wake: Arc<Notify>,
}

/// How often a paused executor looks for a resume made by another server.
const PAUSED_RECHECK: Duration = Duration::from_secs(2);

/// The controls of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Cancel,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// Runs executing in this process, by id.
    active: Mutex<HashMap<Uuid, Active>>,
    /// Cancelled at shutdown: executors stop after the batch in flight.
    shutdown: CancellationToken,
    executors: TaskTracker,
}

impl Engine {
    pub fn new(pool: PgPool, shutdown: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                active: Mutex::new(HashMap::new()),
                shutdown,
                executors: TaskTracker::new(),
            }),
        }
    }

    /// Resolves once every executor has stopped (after the shutdown token is
    /// cancelled, each finishes the batch in flight).
    pub async fn stopped(&self) {
        self.inner.executors.close();
        self.inner.executors.wait().await;
    }

    /// Progress of a run executing in this process.
    pub fn watch(&self, id: Uuid) -> Option<watch::Receiver<Progress>> {
        let active = self.inner.active.lock().expect("registry");
        active.get(&id).map(|run| run.progress.clone())
    }

    /// Creates a run (or finds the one this `request_id` created) and starts
    /// executing it. ABORTED while the organization has another active run;
    /// FAILED_PRECONDITION when the plan no longer has the expected fingerprint.
    pub async fn start(&self, access: &Access, request: &StartRequest) -> Result<Uuid> {
        let organization_id = access.organization_id;
        let parameters = request.parameters();
        let mut tx = scope::begin(&self.inner.pool, organization_id).await?;
        // One start at a time per organization, across replicas.
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended('hera-migrate:start:' || $1::text, 0))",
        )
        .bind(organization_id)
        .execute(&mut *tx)
        .await?;
        if !request.request_id.is_empty() {
            let existing: Option<(Uuid, Value)> = sqlx::query_as(FIND_BY_REQUEST)
                .bind(organization_id)
                .bind(&request.request_id)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some((id, mut recorded)) = existing {
                if let Some(recorded) = recorded.as_object_mut() {
                    recorded.remove("plan_fingerprint");
                }
                return if recorded == parameters {
                    Ok(id)
                } else {
                    Err(Error::AlreadyExists(format!(
                        "request_id: {} already started migration {id} with other parameters",
                        request.request_id
                    )))
                };
            }
        }
        let active: Option<Uuid> = sqlx::query_scalar(FIND_ACTIVE)
            .bind(organization_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(active) = active {
            return Err(Error::Aborted(format!(
                "organization {organization_id} already has an active migration {active}"
            )));
        }
        let Json(plan): Json<Preview> = sqlx::query_scalar(PLAN)
            .bind(organization_id)
            .bind(request.from_date)
            .bind(request.to_date)
            .bind(Json(&request.mappings))
            .fetch_one(&mut *tx)
            .await?;
        if !request.expected_plan_fingerprint.is_empty()
            && request.expected_plan_fingerprint != plan.plan_fingerprint
        {
            return Err(Error::FailedPrecondition(format!(
                "expected_plan_fingerprint: the plan has changed since it was previewed (it is now {})",
                plan.plan_fingerprint
            )));
        }
        let mut parameters = parameters;
        parameters["plan_fingerprint"] = json!(plan.plan_fingerprint);
        let id: Uuid = sqlx::query_scalar(CREATE)
            .bind(organization_id)
            .bind(access.user_id)
            .bind(&parameters)
            .bind((!request.request_id.is_empty()).then_some(&request.request_id))
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(RECORD_PLAN)
            .bind(id)
            .bind(plan.total_candidates)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let run = super::runs::get(&self.inner.pool, organization_id, id).await?;
        self.spawn(&run);
        Ok(id)
    }

    /// Resumes every run left RUNNING by a server that stopped or died: each
    /// goes on from its last committed batch, as the user who started it. The
    /// batch function's lock on the run row keeps two servers from running the
    /// same run's batches at once.
    pub async fn resume_interrupted(&self, admin: &PgPool) -> Result<usize> {
        let interrupted: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT id, organization_id FROM universal_transactions
              WHERE transaction_type = 'MIGRATION_RUN' AND metadata ->> 'state' = 'RUNNING'",
        )
        .fetch_all(admin)
        .await?;
        let mut resumed = 0;
        for (id, organization_id) in interrupted {
            if self.watch(id).is_some() {
                continue;
            }
            let run = super::runs::get(&self.inner.pool, organization_id, id).await?;
            tracing::info!(migration_id = %id, %organization_id, "resuming an interrupted run");
            self.spawn(&run);
            resumed += 1;
        }
        Ok(resumed)
    }

    /// Pauses, resumes or cancels a run of the caller's organization. The
    /// change waits for the batch in flight (which holds the run row's lock)
    /// and is recorded on the run row, so it holds across servers and
    /// restarts. FAILED_PRECONDITION for a finished run.
    pub async fn control(
        &self,
        access: &Access,
        id: Uuid,
        control: Control,
    ) -> Result<super::runs::Run> {
        let organization_id = access.organization_id;
        let mut tx = scope::begin(&self.inner.pool, organization_id).await?;
        let state: Option<String> = sqlx::query_scalar(
            "SELECT metadata ->> 'state' FROM universal_transactions
              WHERE organization_id = $1 AND id = $2 AND transaction_type = 'MIGRATION_RUN'
                FOR UPDATE",
        )
        .bind(organization_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let state = state.ok_or_else(|| {
            Error::NotFound(format!(
                "migration_id: no migration {id} in organization {organization_id}"
            ))
        })?;
        let current = RunState::parse(&state).unwrap_or(RunState::Failed);
        let next = match (control, current) {
            (_, finished) if finished.is_terminal() => {
                return Err(Error::FailedPrecondition(format!(
                    "migration_id: migration {id} is {state}; only a running or paused run can change"
                )));
            }
            (Control::Pause, RunState::Paused) | (Control::Resume, RunState::Running) => None,
            (Control::Pause, _) => Some(RunState::Paused),
            (Control::Resume, _) => Some(RunState::Running),
            (Control::Cancel, _) => Some(RunState::Cancelled),
        };
        if let Some(next) = next {
            sqlx::query(
                "UPDATE universal_transactions
                    SET metadata = metadata || jsonb_build_object(
                            'state', $2::text,
                            'state_changes', coalesce((metadata ->> 'state_changes')::int, 0) + 1)
                        || CASE WHEN $3 THEN jsonb_build_object('finished_at', now(), 'message', 'cancelled')
                                ELSE '{}'::jsonb END,
                        transaction_status = lower($2::text), updated_by = $4, updated_at = now(),
                        version = coalesce(version, 1) + 1
                  WHERE id = $1",
            )
            .bind(id)
            .bind(next.as_str())
            .bind(next.is_terminal())
            .bind(access.user_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let run = super::runs::get(&self.inner.pool, organization_id, id).await?;
        let wake = self
            .inner
            .active
            .lock()
            .expect("registry")
            .get(&id)
            .map(|run| run.wake.clone());
        match wake {
            Some(wake) => wake.notify_one(),
            None if next == Some(RunState::Running) => self.spawn(&run),
            None => {}
        }
        Ok(run)
    }

    fn spawn(&self, run: &super::runs::Run) {
        let (id, organization_id) = (run.id, run.organization_id);
        let total = run.record.total_candidates.unwrap_or(0);
        let (sender, receiver) = watch::channel(snapshot(run));
        let wake = Arc::new(Notify::new());
        let active = Active {
            progress: receiver,
            wake: wake.clone(),
        };
        self.inner
            .active
            .lock()
            .expect("registry")
            .insert(id, active);
        let inner = self.inner.clone();
        let span = tracing::info_span!(parent: None, "migration.execution",
            organization_id = %organization_id, migration_id = %id);
        self.inner.executors.spawn(tracing::Instrument::instrument(
            async move {
                inner
                    .execute(id, organization_id, total, sender, wake)
                    .await;
                inner.active.lock().expect("registry").remove(&id);
            },
            span,
        ));
    }
}

impl Inner {
    /// Runs batches until one finds nothing left, the run fails, or the server
    /// stops (then the run stays RUNNING for a later server to resume).
    async fn execute(
        &self,
        id: Uuid,
        organization_id: Uuid,
        total: i64,
        sender: watch::Sender<Progress>,
        wake: Arc<Notify>,
    ) {
        let mut throughput = Throughput::default();
        loop {
            if self.shutdown.is_cancelled() {
                tracing::info!(
                    "server stopping: the run stays RUNNING after its last committed batch"
                );
                return;
            }
            let started = Instant::now();
            let outcome = self.run_batch(id, organization_id).await;
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            match outcome {
                Ok(BatchResult {
                    halted: Some(state),
                    ..
                }) => match RunState::parse(&state) {
                    Some(RunState::Paused) => {
                        publish_state(
                            &sender,
                            RunState::Paused,
                            "paused after the batch in flight",
                        );
                        tokio::select! {
                            () = wake.notified() => {}
                            () = self.shutdown.cancelled() => return,
                            () = tokio::time::sleep(PAUSED_RECHECK) => {}
                        }
                    }
                    Some(ended) => {
                        publish_state(
                            &sender,
                            ended,
                            &format!("{state} after the batch in flight"),
                        );
                        return;
                    }
                    None => return,
                },
                Ok(batch) => {
                    throughput.record(batch.transactions, elapsed_ms);
                    let done = batch.done;
                    sender.send_modify(|p| apply_batch(p, &batch, &throughput, total));
                    if done {
                        self.finish(
                            id,
                            RunState::Succeeded,
                            "every candidate processed",
                            &sender,
                        )
                        .await;
                        return;
                    }
                }
                Err(error) if self.shutdown.is_cancelled() => {
                    tracing::info!(%error, "server stopping: the batch rolled back, the run stays RUNNING");
                    return;
                }
                Err(error) => {
                    tracing::error!(%error, "batch failed; the run stops");
                    self.finish(id, RunState::Failed, &error.to_string(), &sender)
                        .await;
                    return;
                }
            }
        }
    }

    async fn run_batch(&self, id: Uuid, organization_id: Uuid) -> Result<BatchResult> {
        let span = tracing::info_span!("migration.batch", batch.size = tracing::field::Empty);
        let batch = async {
            let mut tx = scope::begin(&self.pool, organization_id).await?;
            let Json(result): Json<BatchResult> = sqlx::query_scalar(BATCH)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, Error>(result)
        };
        let result = tracing::Instrument::instrument(batch, span.clone()).await?;
        span.record("batch.size", result.transactions);
        Ok(result)
    }

    async fn finish(
        &self,
        id: Uuid,
        state: RunState,
        message: &str,
        sender: &watch::Sender<Progress>,
    ) {
        let organization_id = sender.borrow().organization_id;
        let recorded = async {
            let mut tx = scope::begin(&self.pool, organization_id).await?;
            sqlx::query(FINISH)
                .bind(id)
                .bind(state.as_str())
                .bind(message)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await;
        if let Err(error) = recorded {
            tracing::error!(%error, "recording the end of the run failed");
        }
        sender.send_modify(|p| {
            p.sequence += 1;
            p.state = state;
            p.health = if state == RunState::Failed {
                Health::Critical
            } else {
                Health::Healthy
            };
            p.errors += i64::from(state == RunState::Failed);
            p.message = message.to_owned();
            p.estimated_completion = None;
            if state == RunState::Succeeded {
                p.remaining = 0;
            }
            p.emitted_at = chrono::Utc::now();
        });
    }
}

fn apply_batch(progress: &mut Progress, batch: &BatchResult, throughput: &Throughput, total: i64) {
    let now = chrono::Utc::now();
    let counters = batch.counters;
    if progress.state != RunState::Running {
        // Resumed: the state change is an event of its own.
        progress.state = RunState::Running;
        progress.sequence += 1;
    }
    progress.sequence += 1;
    progress.batch_number = counters.batches;
    progress.processed = counters.processed;
    progress.remaining = (total - counters.processed).max(0);
    progress.migrated = counters.migrated;
    progress.skipped = counters.skipped_closed + counters.skipped_unmapped;
    progress.quarantined = counters.quarantined;
    progress.warnings += batch.quarantined_ids.len() as i64;
    progress.current_batch_ms = batch.duration_ms;
    progress.average_batch_ms = throughput.average_batch_ms();
    progress.transactions_per_second = throughput.transactions_per_second().unwrap_or(0.0);
    progress.estimated_completion = throughput.estimated_completion(progress.remaining, now);
    progress.health = if batch.quarantined_ids.is_empty() {
        Health::Healthy
    } else {
        Health::Warning
    };
    progress.message = format!("batch {} committed", counters.batches);
    progress.emitted_at = now;
}

/// A run's latest state as recorded in its row, for runs not executing in
/// this process (finished, or executed by another replica).
pub fn snapshot(run: &super::runs::Run) -> Progress {
    let record = &run.record;
    let counters = record.counters;
    let state = RunState::parse(&record.state).unwrap_or(RunState::Running);
    let total = record.total_candidates.unwrap_or(counters.processed);
    Progress {
        migration_id: run.id,
        organization_id: run.organization_id,
        sequence: u64::try_from(counters.batches).unwrap_or(0) + record.state_changes.unwrap_or(0),
        state,
        processed: counters.processed,
        remaining: if state == RunState::Succeeded {
            0
        } else {
            (total - counters.processed).max(0)
        },
        migrated: counters.migrated,
        skipped: counters.skipped_closed + counters.skipped_unmapped,
        quarantined: counters.quarantined,
        batch_number: counters.batches,
        current_batch_ms: 0.0,
        average_batch_ms: 0.0,
        transactions_per_second: 0.0,
        estimated_completion: None,
        health: if state == RunState::Failed {
            Health::Critical
        } else {
            Health::Healthy
        },
        errors: i64::from(state == RunState::Failed),
        warnings: counters.quarantined,
        message: record.message.clone().unwrap_or_default(),
        emitted_at: run.updated_at,
    }
}

/// Publishes a state the run's row already records (set by a control).
fn publish_state(sender: &watch::Sender<Progress>, state: RunState, message: &str) {
    sender.send_if_modified(|p| {
        if p.state == state {
            return false;
        }
        p.sequence += 1;
        p.state = state;
        p.message = message.to_owned();
        p.estimated_completion = None;
        p.emitted_at = chrono::Utc::now();
        true
    });
}
