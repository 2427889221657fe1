//! Steering a run: pause, resume, cancel, and changing its pace. Every change
//! is recorded on the run's row under its lock, so it waits for the batch in
//! flight (which holds that lock) and holds across servers and restarts.
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{Engine, lease::Lease, sizing};
use crate::{
    auth::Access,
    db::scope,
    error::{Error, Refusal, Result},
    migration::{
        input,
        run::{Run, RunState, store},
        signals::{self, Setting, Signal},
    },
};

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

/// The fields of an UpdateMigration, as the caller sent them.
#[derive(Debug, Clone, Default)]
pub struct UpdateFields {
    pub batch_size: Option<i32>,
    pub max_transactions_per_second: Option<f64>,
    pub batch_delay_ms: Option<u32>,
    pub target_batch_ms: Option<u32>,
    pub min_batch_size: Option<i32>,
    pub max_batch_size: Option<i32>,
    /// Signal settings to replace, one per signal.
    pub signals: Vec<(Option<Signal>, Setting)>,
}

/// Checks an UpdateMigration's fields, naming the first bad one. A
/// `max_transactions_per_second` of 0 lifts the limit, a `target_batch_ms`
/// of 0 goes back to a fixed batch_size.
pub fn update_request(fields: UpdateFields) -> Result<UpdateRequest> {
    let UpdateFields {
        batch_size,
        max_transactions_per_second,
        batch_delay_ms,
        ..
    } = fields.clone();
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
    let (target, min, max) = sizing::checked(
        fields.target_batch_ms,
        fields.min_batch_size,
        fields.max_batch_size,
    )?;
    for (key, value) in [
        // 0: no target (the run's record then holds none).
        (
            "target_batch_ms",
            target.map(|ms| json!((ms > 0).then_some(ms))),
        ),
        ("min_batch_size", min.map(|size| json!(size))),
        ("max_batch_size", max.map(|size| json!(size))),
    ] {
        if let Some(value) = value {
            changes.insert(key.into(), value);
        }
    }
    let replaced = signals::checked(fields.signals)?;
    if !replaced.is_empty() {
        // Merged into the run's own by hera_migration_set_parameters_v2.
        changes.insert("signals".into(), json!(replaced));
    }
    if changes.is_empty() {
        // A field violation names a field of the request: the first, as the
        // one a caller most often means to set.
        return Err(Error::invalid(
            "batch_size",
            "nothing to change: set batch_size, max_transactions_per_second, batch_delay_ms, \
             target_batch_ms, min_batch_size, max_batch_size or signals",
        ));
    }
    Ok(UpdateRequest { changes })
}

impl Engine {
    /// Pauses, resumes or cancels a run of the caller's organization.
    /// FAILED_PRECONDITION for a finished run, except that a FAILED one may
    /// be resumed: it goes on from its last committed batch (the failed
    /// batch rolled back whole), ABORTED while another run of the
    /// organization is active.
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
        let resuming = control == Control::Resume;
        let current = locked_state(&mut tx, organization_id, id, resuming).await?;
        if current == RunState::Failed {
            resumable(&mut tx, organization_id, id, lease.is_some()).await?;
        }
        let next = match (control, current) {
            (Control::Pause, RunState::Paused) | (Control::Resume, RunState::Running) => None,
            (Control::Pause, _) => Some(RunState::Paused),
            (Control::Resume, _) => Some(RunState::Running),
            (Control::Cancel, _) => Some(RunState::Cancelled),
        };
        let mut events = Vec::new();
        if let Some(next) = next {
            let message = control_message(next, current, access.user_id);
            store::set_state(&mut tx, id, next, Some(access.user_id), Some(&message), &[]).await?;
            events.push(store::latest_event(&mut tx, organization_id, id).await?);
        }
        tx.commit().await?;
        self.inner.announce(&events);
        let run = store::get(&self.inner.pool, organization_id, id).await?;
        match (self.wake(id), lease) {
            (Some(wake), _) => wake.notify_one(),
            (None, Some(lease)) if run.record.state == RunState::Running => {
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
        locked_state(&mut tx, organization_id, id, false).await?;
        let changes = Value::Object(update.changes.clone());
        store::set_parameters(&mut tx, id, changes, access.user_id).await?;
        let event = store::latest_event(&mut tx, organization_id, id).await?;
        tx.commit().await?;
        self.inner.announce(&[event]);
        if let Some(wake) = self.wake(id) {
            wake.notify_one(); // an executor waiting between batches re-reads its pace
        }
        store::get(&self.inner.pool, organization_id, id).await
    }
}

/// What a control's event says, naming who acted.
fn control_message(next: RunState, current: RunState, actor: Uuid) -> String {
    match next {
        RunState::Paused => {
            format!("paused by {actor} after the batch in flight; resume it to go on")
        }
        RunState::Running if current == RunState::Failed => {
            format!("resumed by {actor} after it failed: from its last committed batch")
        }
        RunState::Running => format!("resumed by {actor}"),
        _ => format!(
            "cancelled by {actor} after the batch in flight; what it migrated stays (roll it \
             back to undo it)"
        ),
    }
}

/// The state of a run, its row locked; FAILED_PRECONDITION once it has
/// ended, except that a FAILED run may be resumed (`resuming`).
async fn locked_state(
    tx: &mut scope::OrgTransaction,
    organization_id: Uuid,
    id: Uuid,
    resuming: bool,
) -> Result<RunState> {
    let state = store::lock(tx, organization_id, id).await?.state;
    if state.is_terminal() && !(resuming && state == RunState::Failed) {
        let can = if resuming {
            "only a running, paused or failed run can be resumed"
        } else {
            "only a running or paused run can change"
        };
        return Err(Error::FailedPrecondition(format!(
            "migration_id: migration {id} is {}; {can}",
            state.as_str()
        )));
    }
    Ok(state)
}

/// A FAILED run resumes (from its last committed batch, executed here) only
/// while no other run of its organization is active, and once this server
/// holds the organization's lease (its executor has let go).
async fn resumable(
    tx: &mut scope::OrgTransaction,
    organization_id: Uuid,
    id: Uuid,
    leased: bool,
) -> Result<()> {
    if let Some(other) = store::active(tx, organization_id, Some(id)).await? {
        return Err(Error::refused(
            Refusal::RunAlreadyActive,
            format!(
                "organization {organization_id} has an active migration {other}; resume {id} once it ends"
            ),
        )
        .naming("active_migration_id", other));
    }
    if !leased {
        return Err(Error::Aborted(format!(
            "migration {id} is still letting go of organization {organization_id}'s lease; try again"
        )));
    }
    Ok(())
}

impl Engine {
    /// Leaves a run whose server is gone PAUSED, saying why
    /// (HERA_ON_INTERRUPTED=pause), unless it is no longer RUNNING (a user's
    /// control wins).
    pub(super) async fn pause_interrupted(&self, run: &Run) -> Result<()> {
        let mut tx = scope::begin(&self.inner.pool, run.organization_id).await?;
        let message = "paused: the server executing it stopped; resume it when ready \
                       (HERA_ON_INTERRUPTED=pause)";
        let running = [RunState::Running];
        let mut events = Vec::new();
        if store::set_state(
            &mut tx,
            run.id,
            RunState::Paused,
            None,
            Some(message),
            &running,
        )
        .await?
        {
            events.push(store::latest_event(&mut tx, run.organization_id, run.id).await?);
        }
        tx.commit().await?;
        self.inner.announce(&events);
        Ok(())
    }
}
