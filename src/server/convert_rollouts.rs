//! From rollouts to the rollout API's messages.
use super::convert::timestamp;
use crate::{
    migration::rollout::{RolloutState, RolloutView, Standing},
    proto,
};

fn state(state: RolloutState) -> proto::RolloutState {
    match state {
        RolloutState::Running => proto::RolloutState::Running,
        RolloutState::Paused => proto::RolloutState::Paused,
        RolloutState::Succeeded => proto::RolloutState::Succeeded,
        RolloutState::Failed => proto::RolloutState::Failed,
        RolloutState::Cancelled => proto::RolloutState::Cancelled,
    }
}

fn standing(standing: Standing) -> proto::OrganizationStanding {
    match standing {
        Standing::Pending => proto::OrganizationStanding::Pending,
        Standing::Migrating => proto::OrganizationStanding::Migrating,
        Standing::Validating => proto::OrganizationStanding::Validating,
        Standing::Passed => proto::OrganizationStanding::Passed,
        Standing::Failed => proto::OrganizationStanding::Failed,
        Standing::RolledBack => proto::OrganizationStanding::RolledBack,
        Standing::Cancelled => proto::OrganizationStanding::Cancelled,
    }
}

pub fn rollout(view: RolloutView) -> proto::Rollout {
    let percent_complete = view.percent_complete();
    let RolloutView { rollout, progress } = view;
    let recorded = rollout.recorded;
    // Stage by stage, in the order each stage takes them.
    let organizations = recorded
        .stages
        .iter()
        .flatten()
        .map(|org| {
            let member = recorded.organizations.get(org).cloned().unwrap_or_default();
            let (processed, total) = progress.get(org).copied().unwrap_or((0, 0));
            proto::RolloutOrganization {
                organization_id: org.to_string(),
                stage: u32::try_from(member.stage).unwrap_or(u32::MAX),
                standing: standing(member.standing).into(),
                migration_id: member
                    .migration_id
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                validation_overall: member.validation.unwrap_or_default(),
                message: member.message.unwrap_or_default(),
                transactions_processed: processed,
                transactions_total: total,
            }
        })
        .collect();
    proto::Rollout {
        rollout_id: rollout.id.to_string(),
        platform_organization_id: rollout.platform_organization_id.to_string(),
        state: state(recorded.state).into(),
        current_stage: u32::try_from(recorded.stage).unwrap_or(u32::MAX),
        stage_count: u32::try_from(recorded.stages.len()).unwrap_or(u32::MAX),
        organizations,
        percent_complete,
        message: recorded.message.unwrap_or_default(),
        started_by: recorded.started_by.to_string(),
        started_at: Some(timestamp(recorded.started_at)),
        finished_at: recorded.finished_at.map(timestamp),
        max_concurrency: recorded.request.max_concurrency,
        rollback_failed_stage: recorded.request.rollback_failed_stage,
        updated_at: Some(timestamp(rollout.updated_at)),
    }
}
