//! From the rollout API's requests to checked domain requests, naming the
//! first bad field.
use uuid::Uuid;

use super::decode;
use crate::{
    error::{Error, Result},
    migration::{
        input,
        rollout::{self, RolloutFields, RolloutRequest, StageSize},
    },
    proto::{self, rollout_stage::Size},
};

pub fn start(message: &proto::StartRolloutRequest) -> Result<RolloutRequest> {
    let template = message.migration.clone().unwrap_or_default();
    for (field, value) in [
        ("organization_id", &template.organization_id),
        ("request_id", &template.request_id),
        (
            "expected_plan_fingerprint",
            &template.expected_plan_fingerprint,
        ),
    ] {
        if !value.trim().is_empty() {
            return Err(Error::invalid(
                format!("migration.{field}"),
                "must be empty: the rollout sets it for each organization's run",
            ));
        }
    }
    let migration = decode::migration(&template).map_err(|error| match error {
        Error::InvalidArgument { field, reason } => {
            Error::invalid(format!("migration.{field}"), reason)
        }
        other => other,
    })?;
    let stages = message
        .stages
        .iter()
        .map(|stage| match stage.size {
            Some(Size::Organizations(n)) => Some(StageSize::Organizations(n)),
            Some(Size::Percent(p)) => Some(StageSize::Percent(p)),
            Some(Size::Rest(true)) => Some(StageSize::Rest),
            Some(Size::Rest(false)) | None => None,
        })
        .collect();
    rollout::rollout_request(
        RolloutFields {
            organization_ids: &message.organization_ids,
            all_with_candidates: message.all_with_candidates,
            stages,
            max_concurrency: message.max_concurrency,
            rollback_failed_stage: message.rollback_failed_stage,
            request_id: &message.request_id,
        },
        migration,
    )
}

pub fn rollout_id(value: &str) -> Result<Uuid> {
    input::id("rollout_id", value)
}
