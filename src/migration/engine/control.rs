//! Steering a run: pause, resume, cancel, and changing its pace. Every change
//! is recorded on the run's row under its lock, so it waits for the batch in
//! flight (which holds that lock) and holds across servers and restarts.
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Engine, lease::Lease};
use crate::{
    auth::Access,
    db::scope,
    error::{Error, Result},
    migration::{
        input,
        progress::RunState,
        runs::{self, Run},
    },
};

const LOCK_RUN: &str = "SELECT metadata ->> 'state', coalesce(metadata ->> 'phase', 'EXECUTION'),
           coalesce((metadata #>> '{parameters,dry_run}')::boolean, false),
           metadata #>> '{rollback,request_id}',
           coalesce(jsonb_array_length(metadata #> '{rollback,refused}'), 0)::bigint
      FROM universal_transactions
     WHERE organization_id = $1 AND id = $2 AND transaction_type = 'MIGRATION_RUN'
       FOR UPDATE";
/// Leaves a run PAUSED only if it is still RUNNING (a user's control wins).
const PAUSE_INTERRUPTED: &str = "UPDATE universal_transactions
    SET metadata = metadata || jsonb_build_object(
            'state', 'PAUSED', 'message', $2::text,
            'state_changes', coalesce((metadata ->> 'state_changes')::int, 0) + 1),
        transaction_status = 'paused', updated_at = now(), version = coalesce(version, 1) + 1,
        smart_code = smart_code
    WHERE id = $1 AND metadata ->> 'state' = 'RUNNING'";
const SET_STATE: &str = "UPDATE universal_transactions
    SET metadata = metadata || jsonb_build_object(
            'state', $2::text,
            'state_changes', coalesce((metadata ->> 'state_changes')::int, 0) + 1)
        || CASE WHEN $3 THEN jsonb_build_object('finished_at', now()) ELSE '{}'::jsonb END
        || CASE WHEN $5::text IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('message', $5::text) END,
        transaction_status = lower($2::text), updated_by = $4, updated_at = now(),
        version = coalesce(version, 1) + 1, smart_code = smart_code
    WHERE id = $1";
const SET_PARAMETERS: &str = "UPDATE universal_transactions
    SET metadata = metadata
            || jsonb_build_object(
                   'parameters', (metadata -> 'parameters') || $2::jsonb,
                   'last_update', jsonb_build_object('at', now(), 'by', $3::uuid, 'changes', $2::jsonb)),
        updated_by = $3, updated_at = now(), version = coalesce(version, 1) + 1,
        smart_code = smart_code
    WHERE id = $1";

/// The controls of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Cancel,
}

/// A checked UpdateMigration: the parameters to change, as the run records them.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateRequest {
    changes: Map<String, Value>,
}

/// Checks an UpdateMigration's fields, naming the first bad one. A
/// `max_transactions_per_second` of 0 lifts the limit.
pub fn update_request(
    batch_size: Option<i32>,
    max_transactions_per_second: Option<f64>,
    batch_delay_ms: Option<u32>,
) -> Result<UpdateRequest> {
    let mut changes = Map::new();
    if let Some(size) = batch_size {
        changes.insert(
            "batch_size".into(),
            json!(input::batch("batch_size", size)?),
        );
    }
    if let Some(rate) = max_transactions_per_second {
        let limit = if rate == 0.0 {
            Value::Null
        } else {
            json!(input::rate("max_transactions_per_second", rate)?)
        };
        changes.insert("max_transactions_per_second".into(), limit);
    }
    if let Some(delay) = batch_delay_ms {
        changes.insert(
            "batch_delay_ms".into(),
            json!(input::delay_ms("batch_delay_ms", delay)?),
        );
    }
    if changes.is_empty() {
        return Err(Error::invalid(
            "batch_size",
            "nothing to change: set batch_size, max_transactions_per_second or batch_delay_ms",
        ));
    }
    Ok(UpdateRequest { changes })
}

impl Engine {
    /// Pauses, resumes or cancels a run of the caller's organization.
    /// FAILED_PRECONDITION for a finished run.
    pub async fn control(&self, access: &Access, id: Uuid, control: Control) -> Result<Run> {
        let organization_id = access.organization_id;
        // A resume executes here unless a live executor (here, or a paused
        // one elsewhere) holds the lease. Taken before the run turns RUNNING,
        // so that no other server mistakes it for an orphan meanwhile.
        let lease = match control {
            Control::Resume if self.wake(id).is_none() => {
                Lease::try_acquire(&self.inner.admin, organization_id).await?
            }
            _ => None,
        };
        let mut tx = scope::begin(&self.inner.pool, organization_id).await?;
        let current = locked_state(&mut tx, organization_id, id).await?;
        let next = match (control, current) {
            (Control::Pause, RunState::Paused) | (Control::Resume, RunState::Running) => None,
            (Control::Pause, _) => Some(RunState::Paused),
            (Control::Resume, _) => Some(RunState::Running),
            (Control::Cancel, _) => Some(RunState::Cancelled),
        };
        if let Some(next) = next {
            let message = (next == RunState::Cancelled).then_some("cancelled");
            set_state(&mut tx, id, next, access.user_id, message).await?;
        }
        tx.commit().await?;
        let run = runs::get(&self.inner.pool, organization_id, id).await?;
        match (self.wake(id), lease) {
            (Some(wake), _) => wake.notify_one(),
            (None, Some(lease)) if run.record.state == RunState::Running.as_str() => {
                self.launch(&run, lease, Some(super::current_trace()));
            }
            (None, _) => {}
        }
        Ok(run)
    }

    /// Changes a run's batch size, rate limit or delay between batches,
    /// effective from its next batch. FAILED_PRECONDITION for a finished run.
    pub async fn update(&self, access: &Access, id: Uuid, update: &UpdateRequest) -> Result<Run> {
        let organization_id = access.organization_id;
        let mut tx = scope::begin(&self.inner.pool, organization_id).await?;
        locked_state(&mut tx, organization_id, id).await?;
        sqlx::query(SET_PARAMETERS)
            .bind(id)
            .bind(Value::Object(update.changes.clone()))
            .bind(access.user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if let Some(wake) = self.wake(id) {
            wake.notify_one(); // an executor waiting between batches re-reads its pace
        }
        runs::get(&self.inner.pool, organization_id, id).await
    }
}

/// What the controls and a rollback decide on: a run's row, locked.
pub(super) struct LockedRun {
    pub state: String,
    pub phase: String,
    pub dry_run: bool,
    /// The request id of its rollback, once one began.
    pub rollback_request_id: Option<String>,
    /// Originals whose restore the database refused in its rollback.
    pub rollback_refused: i64,
}

/// LOCK_RUN's columns: state, phase, dry run, rollback request id, refused restores.
type LockedRow = (Option<String>, String, bool, Option<String>, i64);

/// Locks run `id`'s row; NOT_FOUND outside the organization.
pub(super) async fn lock_run(
    tx: &mut scope::OrgTransaction,
    organization_id: Uuid,
    id: Uuid,
) -> Result<LockedRun> {
    let row: Option<LockedRow> = sqlx::query_as(LOCK_RUN)
        .bind(organization_id)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    let (state, phase, dry_run, rollback_request_id, rollback_refused) = row.ok_or_else(|| {
        Error::NotFound(format!(
            "migration_id: no migration {id} in organization {organization_id}"
        ))
    })?;
    Ok(LockedRun {
        state: state.unwrap_or_else(|| RunState::Running.as_str().to_owned()),
        phase,
        dry_run,
        rollback_request_id,
        rollback_refused,
    })
}

/// The state of a run, its row locked; FAILED_PRECONDITION once it has ended.
async fn locked_state(
    tx: &mut scope::OrgTransaction,
    organization_id: Uuid,
    id: Uuid,
) -> Result<RunState> {
    let state = lock_run(tx, organization_id, id).await?.state;
    let current = RunState::parse(&state).unwrap_or(RunState::Failed);
    if current.is_terminal() {
        return Err(Error::FailedPrecondition(format!(
            "migration_id: migration {id} is {state}; only a running or paused run can change"
        )));
    }
    Ok(current)
}

/// Records a control's state change on the run's (locked) row.
pub(super) async fn set_state(
    tx: &mut scope::OrgTransaction,
    id: Uuid,
    state: RunState,
    actor: Uuid,
    message: Option<&str>,
) -> Result<()> {
    sqlx::query(SET_STATE)
        .bind(id)
        .bind(state.as_str())
        .bind(state.is_terminal())
        .bind(actor)
        .bind(message)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Leaves a run whose server is gone PAUSED, saying why (HERA_ON_INTERRUPTED=pause).
pub async fn pause_interrupted(pool: &PgPool, run: &Run) -> Result<()> {
    let mut tx = scope::begin(pool, run.organization_id).await?;
    sqlx::query(PAUSE_INTERRUPTED)
        .bind(run.id)
        .bind(
            "paused: the server executing it stopped; resume it when ready \
             (HERA_ON_INTERRUPTED=pause)",
        )
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
