//! PauseRollout, ResumeRollout, CancelRollout and WatchRollout.
use serde_json::json;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{RolloutState, RolloutView, Rollouts, Standing, driver, store};
use crate::{
    auth::PlatformAccess,
    error::{Error, Result},
    migration::engine::Control,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutControl {
    /// Pauses its runs under way; starts no new one until resumed.
    Pause,
    /// Resumes it and its paused runs.
    Resume,
    /// Cancels its runs under way; later organizations are never started.
    Cancel,
}

/// A watcher's snapshots, each once something changed, until it ends.
pub type RolloutSnapshots = mpsc::Receiver<Result<RolloutView>>;

impl Rollouts {
    pub async fn control(
        &self,
        access: &PlatformAccess,
        id: Uuid,
        control: RolloutControl,
    ) -> Result<RolloutView> {
        let platform = access.platform_organization_id;
        let rollout = store::get(&self.inner.pool, platform, id).await?;
        let state = rollout.recorded.state;
        if state.is_terminal() {
            return Err(Error::FailedPrecondition(format!(
                "rollout_id: rollout {id} is {}: there is nothing to {}",
                state.as_str(),
                verb(control)
            )));
        }
        let (to, kind, run_control) = match control {
            RolloutControl::Pause => (RolloutState::Paused, "PAUSED", Control::Pause),
            RolloutControl::Resume => (RolloutState::Running, "RESUMED", Control::Resume),
            RolloutControl::Cancel => (RolloutState::Cancelled, "CANCELLED", Control::Cancel),
        };
        if state != to {
            let patch = match to {
                RolloutState::Cancelled => {
                    json!({"state": to, "message": format!("cancelled by {}", access.user_id)})
                }
                _ => json!({"state": to}),
            };
            let event = json!({"kind": kind, "message": format!("{} by {} ({})", kind.to_lowercase(), access.user_id, access.role)});
            store::step(
                &self.inner,
                &rollout,
                None,
                patch,
                event,
                Some(access.user_id),
            )
            .await?;
            tracing::info!(rollout_id = %id, user_id = %access.user_id, state = to.as_str(), "rollout controlled");
        }
        // Its runs under way follow (one that ended meanwhile refuses: fine).
        for (org, member) in &rollout.recorded.organizations {
            if let (Standing::Migrating, Some(run)) = (member.standing, member.migration_id) {
                let run_access = driver::access(&rollout, *org, access.user_id);
                match self
                    .inner
                    .engine
                    .control(&run_access, run, run_control)
                    .await
                {
                    Err(error) => {
                        tracing::info!(rollout_id = %id, migration_id = %run, %error, "a rollout's run did not follow its control");
                    }
                    Ok(_) if control == RolloutControl::Cancel => {
                        let patch = json!({"standing": Standing::Cancelled});
                        let event = json!({"kind": "ORGANIZATION_CANCELLED", "migration_id": run,
                                           "message": format!("organization {org}: its run was cancelled with the rollout")});
                        store::step(
                            &self.inner,
                            &rollout,
                            Some(*org),
                            patch,
                            event,
                            Some(access.user_id),
                        )
                        .await?;
                    }
                    Ok(_) => {}
                }
            }
        }
        if to == RolloutState::Running {
            self.adopt(id, platform).await?;
        }
        self.get(access, id).await
    }

    /// The rollout now, then again whenever it or its runs' progress
    /// changes, until it ends (its last snapshot is its terminal one).
    /// NOT_FOUND before anything is sent for another platform's rollout.
    pub async fn watch(&self, access: &PlatformAccess, id: Uuid) -> Result<RolloutSnapshots> {
        let first = self.get(access, id).await?;
        let (sender, receiver) = mpsc::channel(4);
        let rollouts = self.clone();
        let access = access.clone();
        tokio::spawn(async move {
            let mut last = first;
            if sender.send(Ok(last.clone())).await.is_err() {
                return;
            }
            while !last.rollout.recorded.state.is_terminal() {
                tokio::select! {
                    () = sender.closed() => return,
                    () = tokio::time::sleep(super::POLL) => {}
                }
                let view = match rollouts.get(&access, id).await {
                    Ok(view) => view,
                    Err(error) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                };
                let changed = view.rollout.updated_at != last.rollout.updated_at
                    || view.progress != last.progress;
                last = view;
                if changed && sender.send(Ok(last.clone())).await.is_err() {
                    return;
                }
            }
        });
        Ok(receiver)
    }
}

fn verb(control: RolloutControl) -> &'static str {
    match control {
        RolloutControl::Pause => "pause",
        RolloutControl::Resume => "resume",
        RolloutControl::Cancel => "cancel",
    }
}
