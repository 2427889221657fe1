//! RollbackMigration: the run's rollback phase, on the same engine as its
//! execution (batched, paced, pausable, resumed after a crash, exactly once).
//! The batches (`hera_migration_rollback_batch_v2`) void each repost and
//! reversal and put the original back; see `sql/functions/rollback.sql` for
//! why voiding is the sound method.
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{Engine, lease::Lease};
use crate::{
    auth::Access,
    db::scope,
    error::{Error, Result},
    migration::run::{
        Phase, RunState,
        store::{self, LockedRun},
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
}

pub fn rollback_request(reason: &str, request_id: &str, force: bool) -> Result<RollbackRequest> {
    let reason = reason.trim();
    if reason.chars().count() > MAX_REASON {
        return Err(Error::invalid(
            "reason",
            format!("is longer than {MAX_REASON} characters"),
        ));
    }
    Ok(RollbackRequest {
        reason: reason.to_owned(),
        request_id: request_id.trim().to_owned(),
        force,
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
        tx.commit().await?;
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
        if phase == Phase::Execution && state.is_active() {
            let why = Some("cancelled to be rolled back");
            store::set_state(
                &mut tx,
                id,
                RunState::Cancelled,
                Some(access.user_id),
                why,
                &[],
            )
            .await?;
        }
        tx.commit().await?;
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
