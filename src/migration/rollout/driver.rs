//! The driver of one rollout: stage by stage, each organization through
//! Pending → Migrating → Validating → Passed (or Failed), at most
//! max_concurrency at once, every step recorded in the rollout's row before
//! the next is taken, so that a driver adopting it after a crash picks up at
//! the step where the last one stopped.
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::{sync::Semaphore, task::JoinSet};
use tracing::Instrument as _;
use uuid::Uuid;

use super::{Inner, Member, POLL, Rollout, RolloutState, Standing, store};
use crate::{
    auth::Access,
    error::Result,
    migration::{
        engine::{Control, Lease, RollbackFields, StartRequest, rollback_request},
        run::{Phase, RunState, store as runs},
        validation,
    },
};

#[derive(Clone)]
pub(super) struct Driver {
    inner: Arc<Inner>,
    id: Uuid,
    platform: Uuid,
}

/// An organization's access through a rollout: its operator, acting with
/// the platform role the rollout was started with.
pub(super) fn access(rollout: &Rollout, organization_id: Uuid, user_id: Uuid) -> Access {
    Access {
        user_id,
        organization_id,
        role: Some("PLATFORM_OPERATOR".into()),
        migration_allowed: true,
        reasons: vec![format!("platform operator through rollout {}", rollout.id)],
        audit_transaction_id: None,
    }
}

impl Driver {
    pub(super) fn new(inner: Arc<Inner>, id: Uuid, platform: Uuid) -> Self {
        Self {
            inner,
            id,
            platform,
        }
    }

    /// Drives the rollout under a span of its own (a root: it outlives the
    /// call that started it), whose children are its organizations' spans and,
    /// under those, their runs'; `outcome` is the state it was left in.
    pub(super) async fn drive(self, mut lease: Lease) {
        let span = tracing::info_span!(parent: None, "migration.rollout", rollout_id = %self.id,
            platform_organization_id = %self.platform, outcome = tracing::field::Empty);
        let driven = self.stages(&mut lease).instrument(span.clone()).await;
        if let Err(error) = driven {
            tracing::warn!(rollout_id = %self.id, %error, "the rollout's driver stopped; a server adopts it again");
        }
        if let Ok(rollout) = self.read().await {
            span.record("outcome", rollout.recorded.state.as_str());
        }
        lease.release().await;
    }

    async fn read(&self) -> Result<Rollout> {
        store::get(&self.inner.pool, self.platform, self.id).await
    }

    async fn step(
        &self,
        rollout: &Rollout,
        org: Option<Uuid>,
        patch: Value,
        event: Value,
    ) -> Result<()> {
        store::step(&self.inner, rollout, org, patch, event, None).await
    }

    async fn stages(&self, lease: &mut Lease) -> Result<()> {
        loop {
            if self.inner.shutdown.is_cancelled() || !lease.held().await {
                return Ok(()); // a server adopts it (this one, once restarted)
            }
            let rollout = self.read().await?;
            let recorded = &rollout.recorded;
            match recorded.state {
                state if state.is_terminal() => return Ok(()),
                RolloutState::Paused => {
                    self.pause_point().await;
                    continue;
                }
                _ => {}
            }
            let stage = recorded.stage;
            if stage >= recorded.stages.len() {
                let patch =
                    json!({"state": RolloutState::Succeeded, "message": "every stage passed"});
                let event = json!({"kind": "SUCCEEDED", "message": format!(
                    "every stage passed: {} organization(s) migrated and validated", recorded.organizations.len())});
                return self.step(&rollout, None, patch, event).await;
            }
            self.run_stage(&rollout, stage).await?;
            let rollout = self.read().await?;
            if rollout.recorded.state != RolloutState::Running {
                continue;
            }
            let members = stage_members(&rollout, stage);
            let failed: Vec<_> = members
                .iter()
                .filter(|(_, m)| m.standing == Standing::Failed)
                .cloned()
                .collect();
            if !failed.is_empty() {
                return self.fail_stage(&rollout, stage, &failed).await;
            }
            if members.iter().all(|(_, m)| m.standing == Standing::Passed) {
                let next = stage + 1;
                let event = json!({"kind": "STAGE_PASSED", "message": format!(
                    "stage {} of {} passed: {} organization(s) migrated and validated",
                    next, rollout.recorded.stages.len(), members.len())});
                self.step(&rollout, None, json!({"stage": next}), event)
                    .await?;
            }
        }
    }

    /// Waits a moment for a paused rollout to be resumed or cancelled.
    async fn pause_point(&self) {
        tokio::select! {
            () = self.inner.shutdown.cancelled() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }

    /// Moves every organization of `stage` as far as it goes, at most
    /// max_concurrency at once.
    async fn run_stage(&self, rollout: &Rollout, stage: usize) -> Result<()> {
        let permits = Arc::new(Semaphore::new(
            rollout.recorded.request.max_concurrency.max(1) as usize,
        ));
        let mut tasks = JoinSet::new();
        for (org, _) in stage_members(rollout, stage) {
            let driver = self.clone();
            let permits = permits.clone();
            let span = tracing::info_span!("migration.rollout.organization", organization_id = %org, stage);
            tasks.spawn(
                async move {
                    let _permit = permits.acquire_owned().await.expect("never closed");
                    driver.advance(org).await
                }
                .instrument(span),
            );
        }
        let mut outcome = Ok(());
        while let Some(joined) = tasks.join_next().await {
            match joined.expect("an organization's task does not panic") {
                Ok(()) => {}
                Err(error) => outcome = Err(error),
            }
        }
        outcome
    }

    /// One organization, step by step, until it passes or fails, or the
    /// rollout stops being RUNNING (a paused rollout starts no new run).
    async fn advance(&self, org: Uuid) -> Result<()> {
        loop {
            if self.inner.shutdown.is_cancelled() {
                return Ok(());
            }
            let rollout = self.read().await?;
            let member = rollout
                .recorded
                .organizations
                .get(&org)
                .cloned()
                .unwrap_or_default();
            let running = rollout.recorded.state == RolloutState::Running;
            match (member.standing, member.migration_id) {
                (Standing::Pending, _) if running => self.start_run(&rollout, org).await?,
                (Standing::Migrating, Some(run)) => {
                    if !self.await_run(&rollout, org, run).await? {
                        return Ok(());
                    }
                }
                (Standing::Validating, Some(run)) => self.validate(&rollout, org, run).await?,
                _ => return Ok(()),
            }
        }
    }

    async fn start_run(&self, rollout: &Rollout, org: Uuid) -> Result<()> {
        let access = access(rollout, org, rollout.recorded.started_by);
        let request = StartRequest {
            parameters: rollout.recorded.request.parameters.clone(),
            request_id: format!("rollout {} {org}", rollout.id),
            expected_plan_fingerprint: String::new(),
        };
        match self.inner.engine.start(&access, &request).await {
            Ok(run) => {
                let patch = json!({"standing": Standing::Migrating, "migration_id": run});
                let event = json!({"kind": "ORGANIZATION_STARTED", "migration_id": run,
                                   "message": format!("organization {org}: migration {run} started")});
                self.step(rollout, Some(org), patch, event).await?;
                // Paused meanwhile: this run pauses with the others.
                if self.read().await?.recorded.state == RolloutState::Paused {
                    let _ = self
                        .inner
                        .engine
                        .control(&access, run, Control::Pause)
                        .await;
                }
                Ok(())
            }
            Err(error) => {
                self.fail(
                    rollout,
                    org,
                    format!("its migration could not start: {error}"),
                )
                .await
            }
        }
    }

    /// Waits for run `run` to end; false when the rollout stopped waiting
    /// (cancelled, or this server shutting down).
    async fn await_run(&self, rollout: &Rollout, org: Uuid, run: Uuid) -> Result<bool> {
        loop {
            let state = runs::get(&self.inner.pool, org, run).await?;
            let counted = json!({"processed": state.latest.processed,
                                 "total": state.latest.processed + state.latest.remaining});
            let outcome = match (state.record.state, state.record.phase) {
                (RunState::Succeeded, Phase::Execution) => None,
                (state, _) if state.is_active() => {
                    let rollout = self.read().await?;
                    if rollout.recorded.state.is_terminal() || self.inner.shutdown.is_cancelled() {
                        return Ok(false);
                    }
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                (ended, _) => Some(format!(
                    "its run ended {}: {}",
                    ended.as_str(),
                    state.record.message.as_deref().unwrap_or("no message")
                )),
            };
            return match outcome {
                None => {
                    let patch = json!({"standing": Standing::Validating});
                    self.step(rollout, Some(org), merged(patch, counted), Value::Null)
                        .await?;
                    Ok(true)
                }
                Some(reason) => {
                    self.step(rollout, Some(org), counted, Value::Null).await?;
                    self.fail(rollout, org, reason).await?;
                    Ok(true)
                }
            };
        }
    }

    async fn validate(&self, rollout: &Rollout, org: Uuid, run: Uuid) -> Result<()> {
        let access = access(rollout, org, rollout.recorded.started_by);
        let report = validation::validate(&self.inner.pool, &access, run, false).await?;
        if report.overall == "FAIL" {
            let failing: Vec<String> = report
                .checks
                .iter()
                .filter(|check| check.result == "FAIL")
                .map(|check| format!("{}: {}", check.name, check.summary))
                .collect();
            let patch = json!({"validation": report.overall});
            self.step(rollout, Some(org), patch, Value::Null).await?;
            return self
                .fail(
                    rollout,
                    org,
                    format!("its validation failed ({})", failing.join("; ")),
                )
                .await;
        }
        let patch = json!({"standing": Standing::Passed, "validation": report.overall});
        let event = json!({"kind": "ORGANIZATION_PASSED", "migration_id": run,
                           "message": format!("organization {org}: migration {run} validated {}", report.overall)});
        self.step(rollout, Some(org), patch, event).await
    }

    async fn fail(&self, rollout: &Rollout, org: Uuid, reason: String) -> Result<()> {
        tracing::warn!(rollout_id = %rollout.id, organization_id = %org, %reason, "a rollout's organization failed");
        let patch = json!({"standing": Standing::Failed, "message": reason});
        let event = json!({"kind": "ORGANIZATION_FAILED", "message": format!("organization {org}: {reason}")});
        self.step(rollout, Some(org), patch, event).await
    }

    /// Stops the rollout FAILED at `stage`, first rolling back the stage's
    /// migrated runs when asked.
    async fn fail_stage(
        &self,
        rollout: &Rollout,
        stage: usize,
        failed: &[(Uuid, Member)],
    ) -> Result<()> {
        if rollout.recorded.request.rollback_failed_stage {
            for (org, member) in stage_members(rollout, stage) {
                if let Some(run) = member.migration_id {
                    self.roll_back(rollout, org, run, stage).await?;
                }
            }
        }
        let reasons: Vec<String> = failed
            .iter()
            .map(|(org, m)| format!("{org}: {}", m.message.as_deref().unwrap_or("failed")))
            .collect();
        let message = format!(
            "stage {} of {} failed, later stages not started: {}",
            stage + 1,
            rollout.recorded.stages.len(),
            reasons.join("; ")
        );
        let patch = json!({"state": RolloutState::Failed, "message": message});
        self.step(
            rollout,
            None,
            patch,
            json!({"kind": "FAILED", "message": message}),
        )
        .await
    }

    /// Rolls back one run of a failed stage and waits for it to end.
    async fn roll_back(&self, rollout: &Rollout, org: Uuid, run: Uuid, stage: usize) -> Result<()> {
        let state = runs::get(&self.inner.pool, org, run).await?;
        if state.record.parameters.dry_run || state.record.state == RunState::RolledBack {
            return Ok(());
        }
        let access = access(rollout, org, rollout.recorded.started_by);
        let reason = format!("rollout {}: stage {} failed", rollout.id, stage + 1);
        let request_id = format!("rollout {} rollback {org}", rollout.id);
        let request = rollback_request(RollbackFields {
            reason: &reason,
            request_id: &request_id,
            force: true,
            ..RollbackFields::default()
        })?;
        let outcome = self.inner.engine.rollback(&access, run, &request).await;
        if let Err(error) = outcome {
            let patch = json!({"message": format!("its rollback could not begin: {error}")});
            return self.step(rollout, Some(org), patch, Value::Null).await;
        }
        loop {
            let state = runs::get(&self.inner.pool, org, run).await?;
            if state.record.phase == Phase::Rollback && state.record.state.is_terminal() {
                let rolled_back = state.record.state == RunState::RolledBack;
                let patch = if rolled_back {
                    json!({"standing": Standing::RolledBack})
                } else {
                    json!({"message": format!("its rollback ended {}", state.record.state.as_str())})
                };
                let event = json!({"kind": "ORGANIZATION_ROLLED_BACK", "migration_id": run,
                                   "message": format!("organization {org}: rollback of {run} ended {}", state.record.state.as_str())});
                return self.step(rollout, Some(org), patch, event).await;
            }
            if self.inner.shutdown.is_cancelled() {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn merged(mut patch: Value, more: Value) -> Value {
    if let (Some(patch), Value::Object(more)) = (patch.as_object_mut(), more) {
        patch.extend(more);
    }
    patch
}

fn stage_members(rollout: &Rollout, stage: usize) -> Vec<(Uuid, Member)> {
    let recorded = &rollout.recorded;
    recorded
        .stages
        .get(stage)
        .into_iter()
        .flatten()
        .map(|org| {
            (
                *org,
                recorded.organizations.get(org).cloned().unwrap_or_default(),
            )
        })
        .collect()
}
