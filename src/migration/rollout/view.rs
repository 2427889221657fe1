//! What GetRollout and WatchRollout show of a rollout: its row, with its
//! runs' progress, and how far along it is.
use std::collections::BTreeMap;

use uuid::Uuid;

use super::{Rollout, Standing};

/// A rollout with its runs' progress: what GetRollout and WatchRollout show.
#[derive(Debug, Clone)]
pub struct RolloutView {
    pub rollout: Rollout,
    /// Per organization with a run: (looked at, candidates) from its latest event.
    pub progress: BTreeMap<Uuid, (i64, i64)>,
}

impl RolloutView {
    /// Organizations done count whole; those migrating, by their run's share;
    /// at most 99.9 until the rollout ended.
    pub fn percent_complete(&self) -> f64 {
        let members = &self.rollout.recorded.organizations;
        if members.is_empty() {
            return 100.0;
        }
        let done: f64 = members
            .iter()
            .map(|(org, member)| match member.standing {
                Standing::Passed | Standing::Validating => 1.0,
                Standing::Migrating => match self.progress.get(org) {
                    Some(&(looked_at, total)) if total > 0 => {
                        (looked_at as f64 / total as f64).min(1.0)
                    }
                    _ => 0.0,
                },
                _ => 0.0,
            })
            .sum();
        // 100 only once it ended: runs that looked at every candidate still
        // validate (or end) before the rollout is done.
        let ended = self.rollout.recorded.state.is_terminal();
        let cap = if ended { 100.0 } else { 99.9 };
        (100.0 * done / members.len() as f64).min(cap)
    }
}
