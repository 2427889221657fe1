//! StartRollout's request, checked, and its stages resolved to organizations.
use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    error::{Error, Result},
    migration::{engine::StartRequest, input},
};

/// The most organizations a rollout migrates at once (each run holds a
/// connection and an executor; the database has two cores here and few more
/// in most installations).
pub const MAX_CONCURRENCY: u32 = 10;
pub const DEFAULT_CONCURRENCY: u32 = 2;

/// How many organizations one stage takes, as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageSize {
    /// This many (fewer when fewer are left).
    Organizations(u32),
    /// This share of all the rollout's organizations, rounded up (at least one).
    Percent(u32),
    /// Every organization left.
    Rest,
}

/// Which organizations a rollout covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cohort {
    /// These, in this order.
    Listed(Vec<Uuid>),
    /// Every organization with a candidate of the migration when it starts.
    AllWithCandidates,
}

/// A checked StartRollout request.
#[derive(Debug, Clone)]
pub struct RolloutRequest {
    pub cohort: Cohort,
    pub stages: Vec<StageSize>,
    /// Each organization's run: its parameters (its request_id is the
    /// rollout's and the organization's).
    pub migration: StartRequest,
    pub max_concurrency: u32,
    /// When a stage fails, roll back the runs of that stage that migrated.
    pub rollback_failed_stage: bool,
    pub request_id: String,
}

/// The fields of a StartRollout request beyond its migration's, as sent.
#[derive(Debug, Clone, Default)]
pub struct RolloutFields<'a> {
    pub organization_ids: &'a [String],
    pub all_with_candidates: bool,
    /// Each stage as sent: None when it named no size.
    pub stages: Vec<Option<StageSize>>,
    pub max_concurrency: u32,
    pub rollback_failed_stage: bool,
    pub request_id: &'a str,
}

/// Checks a rollout's fields around its already checked `migration`,
/// naming the first bad one.
pub fn rollout_request(
    fields: RolloutFields<'_>,
    migration: StartRequest,
) -> Result<RolloutRequest> {
    let cohort = cohort(fields.organization_ids, fields.all_with_candidates)?;
    let mut stages = Vec::with_capacity(fields.stages.len());
    for (i, stage) in fields.stages.iter().enumerate() {
        let field = format!("stages[{i}]");
        let size = stage.ok_or_else(|| {
            Error::invalid(
                field.clone(),
                "names no size: set organizations, percent or rest",
            )
        })?;
        match size {
            StageSize::Organizations(0) => {
                return Err(Error::invalid(
                    format!("{field}.organizations"),
                    "must be at least 1",
                ));
            }
            StageSize::Percent(p) if !(1..=100).contains(&p) => {
                return Err(Error::invalid(
                    format!("{field}.percent"),
                    format!("must be 1 to 100, not {p}"),
                ));
            }
            StageSize::Rest if i + 1 != fields.stages.len() => {
                return Err(Error::invalid(
                    format!("{field}.rest"),
                    "only the last stage may take the rest",
                ));
            }
            _ => {}
        }
        stages.push(size);
    }
    let max_concurrency = match fields.max_concurrency {
        0 => DEFAULT_CONCURRENCY,
        n if n > MAX_CONCURRENCY => {
            return Err(Error::invalid(
                "max_concurrency",
                format!("must be at most {MAX_CONCURRENCY}, not {n}"),
            ));
        }
        n => n,
    };
    Ok(RolloutRequest {
        cohort,
        stages,
        migration,
        max_concurrency,
        rollback_failed_stage: fields.rollback_failed_stage,
        request_id: input::request_id(fields.request_id)?,
    })
}

fn cohort(ids: &[String], all_with_candidates: bool) -> Result<Cohort> {
    match (ids.is_empty(), all_with_candidates) {
        (true, true) => return Ok(Cohort::AllWithCandidates),
        (false, true) => {
            return Err(Error::invalid(
                "all_with_candidates",
                "cannot be combined with organization_ids: name organizations or ask for all",
            ));
        }
        (true, false) => {
            return Err(Error::invalid(
                "organization_ids",
                "is empty: name the organizations, or set all_with_candidates",
            ));
        }
        (false, false) => {}
    }
    let mut seen = HashSet::new();
    let mut listed = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let field = format!("organization_ids[{i}]");
        let id = Uuid::parse_str(id.trim())
            .map_err(|_| Error::invalid(field.clone(), format!("{id:?} is not a UUID")))?;
        if !seen.insert(id) {
            return Err(Error::invalid(field, format!("{id} is listed twice")));
        }
        listed.push(id);
    }
    Ok(Cohort::Listed(listed))
}

/// The organizations of each stage: the stages in order, each taking its
/// size from those left; organizations no stage took form a last stage.
/// Empty stages are dropped.
pub fn resolve_stages(organizations: &[Uuid], stages: &[StageSize]) -> Vec<Vec<Uuid>> {
    let total = organizations.len();
    let mut left = organizations;
    let mut resolved = Vec::new();
    for stage in stages {
        let wanted = match *stage {
            StageSize::Organizations(n) => n as usize,
            StageSize::Percent(p) => (total * p as usize).div_ceil(100).max(1),
            StageSize::Rest => left.len(),
        };
        let (taken, rest) = left.split_at(wanted.min(left.len()));
        if !taken.is_empty() {
            resolved.push(taken.to_vec());
        }
        left = rest;
    }
    if !left.is_empty() {
        resolved.push(left.to_vec());
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orgs(n: u128) -> Vec<Uuid> {
        (1..=n).map(Uuid::from_u128).collect()
    }

    #[test]
    fn stages_take_counts_then_shares_then_the_rest() {
        let all = orgs(5);
        let stages = resolve_stages(
            &all,
            &[StageSize::Organizations(1), StageSize::Organizations(2)],
        );
        assert_eq!(
            stages,
            vec![all[..1].to_vec(), all[1..3].to_vec(), all[3..].to_vec()]
        );
        let stages = resolve_stages(&orgs(20), &[StageSize::Percent(10), StageSize::Rest]);
        assert_eq!(stages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 18]);
        // A share rounds up and takes at least one; what is gone is gone.
        let stages = resolve_stages(
            &orgs(3),
            &[
                StageSize::Percent(1),
                StageSize::Organizations(9),
                StageSize::Rest,
            ],
        );
        assert_eq!(stages.iter().map(Vec::len).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(resolve_stages(&orgs(2), &[]), vec![orgs(2)]);
    }

    #[test]
    fn bad_fields_are_named() {
        let migration =
            crate::migration::engine::start_request(crate::migration::engine::StartFields {
                from_date: "2024-01-01",
                to_date: "2024-12-31",
                ..Default::default()
            })
            .unwrap();
        let ids = ["not-a-uuid".to_owned()];
        let field = |fields: RolloutFields<'_>| match rollout_request(fields, migration.clone()) {
            Err(Error::InvalidArgument { field, .. }) => field.into_owned(),
            other => panic!("{other:?}"),
        };
        let listed = [Uuid::from_u128(1).to_string()];
        assert_eq!(
            field(RolloutFields {
                organization_ids: &ids,
                ..Default::default()
            }),
            "organization_ids[0]"
        );
        assert_eq!(field(RolloutFields::default()), "organization_ids");
        assert_eq!(
            field(RolloutFields {
                organization_ids: &listed,
                stages: vec![Some(StageSize::Rest), None],
                ..Default::default()
            }),
            "stages[0].rest"
        );
        assert_eq!(
            field(RolloutFields {
                organization_ids: &listed,
                stages: vec![Some(StageSize::Percent(101))],
                ..Default::default()
            }),
            "stages[0].percent"
        );
        assert_eq!(
            field(RolloutFields {
                organization_ids: &listed,
                max_concurrency: 11,
                ..Default::default()
            }),
            "max_concurrency"
        );
    }
}
