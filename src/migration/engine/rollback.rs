//! RollbackMigration: the run's rollback phase, on the same engine as its
//! execution (batched, paced, pausable, resumed after a crash, exactly once).
//! The batches (`hera_migration_rollback_batch_v2`) void each repost and
//! reversal and put the original back; see `sql/functions/rollback.sql` for
//! why voiding is the sound method.
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{Engine, lease::Lease};
use crate::{
    auth::Access,
    db::scope,
    error::{Error, Result},
    migration::{
        input,
        run::{
            Phase, RunState,
            store::{self, LockedRun},
        },
    },
};

/// How long a forced rollback waits for the cancelled execution's batch in
/// flight (and its lease) before giving up.
const CANCEL_WITHIN: Duration = Duration::from_secs(30);
const LEASE_POLL: Duration = Duration::from_millis(100);
const MAX_REASON: usize = 500;

/// A checked RollbackMigration request.
#[derive(Debug, Clone)]
pub struct RollbackRequest {
    pub reason: String,
    pub request_id: String,
    pub force: bool,
    /// The rollback's own pace, when it has one (a forced rollback always
    /// does: no limit unless given).
    pace: Map<String, Value>,
}

/// A RollbackMigration request's fields, as the caller sent them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RollbackFields<'a> {
    pub reason: &'a str,
    pub request_id: &'a str,
    pub force: bool,
    pub max_transactions_per_second: Option<f64>,
    pub batch_delay_ms: Option<u32>,
}

/// Checks a rollback's fields, naming the first bad one: a reason is
/// required (a rollback is never an accident).
pub fn rollback_request(fields: RollbackFields<'_>) -> Result<RollbackRequest> {
    let reason = fields.reason.trim();
    if reason.is_empty() {
        return Err(Error::invalid(
            "reason",
            "is required: say why the migration is rolled back (it is recorded with the rollback)",
        ));
    }
    if reason.chars().count() > MAX_REASON {
        return Err(Error::invalid(
            "reason",
            format!("is longer than {MAX_REASON} characters"),
        ));
    }
    input::no_nul("reason", reason)?;
    let mut pace = Map::new();
    match fields.max_transactions_per_second {
        Some(rate) if rate != 0.0 => {
            let rate = input::rate("max_transactions_per_second", rate)?;
            pace.insert("max_transactions_per_second".into(), json!(rate));
        }
        Some(_) => {
            pace.insert("max_transactions_per_second".into(), Value::Null);
        }
        None if fields.force => {
            pace.insert("max_transactions_per_second".into(), Value::Null);
        }
        None => {}
    }
    match fields.batch_delay_ms {
        Some(delay) => {
            let delay = input::delay_ms("batch_delay_ms", delay)?;
            pace.insert("batch_delay_ms".into(), json!(delay));
        }
        None if fields.force => {
            pace.insert("batch_delay_ms".into(), json!(0));
        }
        None => {}
    }
    Ok(RollbackRequest {
        reason: reason.to_owned(),
        request_id: input::request_id(fields.request_id)?,
        force: fields.force,
        pace,
    })
}

/// What a run's row says about rolling it back.
enum Decision {
    /// This request already began it: watch it.
    Attach,
    /// Begin (or continue) the rollback.
    Begin,
    /// Still executing: cancel it first (force).
    CancelFirst,
}

impl Engine {
    /// Begins rolling run `id` back and executes the rollback here; returns
    /// once it is under way. FAILED_PRECONDITION for a run still executing
    /// (unless `force`, which cancels it first), already rolled back, or dry.
    pub async fn rollback(
        &self,
        access: &Access,
        id: Uuid,
        request: &RollbackRequest,
    ) -> Result<()> {
        match self.decide(access, id, request).await? {
            Decision::Attach => return Ok(()),
            Decision::Begin => {}
            Decision::CancelFirst => self.cancel_for_rollback(access, id).await?,
        }
        let organization_id = access.organization_id;
        let lease = self.lease_within(organization_id, CANCEL_WITHIN).await?;
        let mut tx = scope::begin(&self.inner.pool, organization_id).await?;
        // Decided again under the lock: the run may have changed meanwhile.
        let LockedRun {
            state,
            phase,
            rollback_refused,
            ..
        } = store::lock(&mut tx, organization_id, id).await?;
        if state == RunState::Running
            || (state == RunState::RolledBack && rollback_refused == 0)
            || (state == RunState::Paused && phase == Phase::Execution)
        {
            return Err(Error::Aborted(format!(
                "migration_id: migration {id} changed while its rollback began; try again"
            )));
        }
        store::begin_rollback(
            &mut tx,
            id,
            access.user_id,
            &request.reason,
            &request.request_id,
        )
        .await?;
        let mut events = vec![store::latest_event(&mut tx, organization_id, id).await?];
        let current = serde_json::to_value(
            store::after_batch(&mut tx, organization_id, id)
                .await?
                .parameters,
        )
        .expect("parameters serialize");
        let changes: Map<String, Value> = (request.pace.iter())
            .filter(|(key, value)| current.get(key.as_str()).unwrap_or(&Value::Null) != *value)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if !changes.is_empty() {
            store::set_parameters(&mut tx, id, Value::Object(changes), access.user_id).await?;
            events.push(store::latest_event(&mut tx, organization_id, id).await?);
        }
        tx.commit().await?;
        self.inner.announce(&events);
        let run = store::get(&self.inner.pool, organization_id, id).await?;
        self.launch(&run, lease, Some(super::current_trace()));
        Ok(())
    }

    async fn decide(
        &self,
        access: &Access,
        id: Uuid,
        request: &RollbackRequest,
    ) -> Result<Decision> {
        let organization_id = access.organization_id;
        let mut tx = scope::begin(&self.inner.pool, organization_id).await?;
        let LockedRun {
            state,
            phase,
            dry_run,
            rollback_request_id,
            rollback_refused,
        } = store::lock(&mut tx, organization_id, id).await?;
        tx.rollback().await?;
        let same_request = !request.request_id.is_empty()
            && rollback_request_id.as_deref() == Some(request.request_id.as_str());
        let active = state.is_active();
        let refuse = |why: String| Err(Error::FailedPrecondition(format!("migration_id: {why}")));
        match (phase, state) {
            (Phase::Aliasing, _) => refuse(format!(
                "{id} is an application of reporting aliases; roll back the migration it aliased, \
                 which removes them"
            )),
            (Phase::Rollback, _) if same_request => Ok(Decision::Attach),
            // Its refused restores are retried (once their cause is fixed).
            (_, RunState::RolledBack) if rollback_refused > 0 => Ok(Decision::Begin),
            (_, RunState::RolledBack) => refuse(format!("migration {id} is already rolled back")),
            (Phase::Rollback, _) if active => refuse(format!(
                "migration {id} is being rolled back already; watch it with WatchMigration"
            )),
            _ if dry_run => refuse(format!(
                "migration {id} was a dry run: it wrote nothing to roll back"
            )),
            (Phase::Execution, _) if active && !request.force => refuse(format!(
                "migration {id} is {}; cancel it first, or roll back with force",
                state.as_str()
            )),
            (Phase::Execution, _) if active => Ok(Decision::CancelFirst),
            _ => {
                store::refuse_while_active(
                    &self.inner.pool,
                    organization_id,
                    Some(id),
                    "it must end first",
                )
                .await?;
                Ok(Decision::Begin)
            }
        }
    }

    /// `force`: cancels the executing run (its executor stops after the batch
    /// in flight and gives its lease up).
    async fn cancel_for_rollback(&self, access: &Access, id: Uuid) -> Result<()> {
        let mut tx = scope::begin(&self.inner.pool, access.organization_id).await?;
        let LockedRun { state, phase, .. } =
            store::lock(&mut tx, access.organization_id, id).await?;
        let mut cancelled = Vec::new();
        if phase == Phase::Execution && state.is_active() {
            let why = format!("cancelled by {} to be rolled back", access.user_id);
            let actor = Some(access.user_id);
            store::set_state(&mut tx, id, RunState::Cancelled, actor, Some(&why), &[]).await?;
            cancelled.push(store::latest_event(&mut tx, access.organization_id, id).await?);
        }
        tx.commit().await?;
        self.inner.announce(&cancelled);
        if let Some(wake) = self.wake(id) {
            wake.notify_one();
        }
        Ok(())
    }

    /// The organization's lease, waiting up to `within` for a cancelled
    /// executor to let go of it.
    async fn lease_within(&self, organization_id: Uuid, within: Duration) -> Result<Lease> {
        let give_up = Instant::now() + within;
        loop {
            if let Some(lease) = Lease::try_acquire(&self.inner.admin, organization_id).await? {
                return Ok(lease);
            }
            if Instant::now() >= give_up {
                return Err(Error::Aborted(format!(
                    "organization {organization_id}'s runs are still executing on a server; try again"
                )));
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
    }
}
