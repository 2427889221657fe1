//! The rollout service, one method per RolloutService RPC, knowing nothing
//! of gRPC: it admits the caller as a platform operator (see
//! `auth::platform`) and answers in domain types.
use std::sync::Arc;

use uuid::Uuid;

use crate::{
    auth::{Caller, Guard, Operation},
    error::Result,
    migration::rollout::{RolloutControl, RolloutRequest, RolloutSnapshots, RolloutView, Rollouts},
};

#[derive(Clone)]
pub struct RolloutService {
    guard: Arc<Guard>,
    rollouts: Rollouts,
}

impl RolloutService {
    pub fn new(guard: Arc<Guard>, rollouts: Rollouts) -> Self {
        Self { guard, rollouts }
    }

    /// The rollouts' drivers (adopted at startup, drained at shutdown).
    pub fn rollouts(&self) -> &Rollouts {
        &self.rollouts
    }

    /// Starts a rollout (or finds the one its request_id started); it as it
    /// stands once started.
    pub async fn start(&self, caller: Caller, request: &RolloutRequest) -> Result<RolloutView> {
        let access = self
            .guard
            .authorize_platform(caller, Operation::StartRollout)
            .await?;
        let id = self.rollouts.start(&access, request).await?;
        self.rollouts.get(&access, id).await
    }

    pub async fn get(&self, caller: Caller, id: Uuid) -> Result<RolloutView> {
        let access = self
            .guard
            .authorize_platform(caller, Operation::GetRollout)
            .await?;
        self.rollouts.get(&access, id).await
    }

    pub async fn watch(&self, caller: Caller, id: Uuid) -> Result<RolloutSnapshots> {
        let access = self
            .guard
            .authorize_platform(caller, Operation::WatchRollout)
            .await?;
        self.rollouts.watch(&access, id).await
    }

    pub async fn control(
        &self,
        caller: Caller,
        id: Uuid,
        control: RolloutControl,
    ) -> Result<RolloutView> {
        let operation = match control {
            RolloutControl::Pause => Operation::PauseRollout,
            RolloutControl::Resume => Operation::ResumeRollout,
            RolloutControl::Cancel => Operation::CancelRollout,
        };
        let access = self.guard.authorize_platform(caller, operation).await?;
        self.rollouts.control(&access, id, control).await
    }
}
