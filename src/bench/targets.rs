//! The targets each figure is held to, and whether a measured value holds.

/// What a figure's judged number must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
    /// Reported, not judged (the floor itself, the aliases' rate).
    None,
}

impl Target {
    /// Whether `value` holds; None when nothing is judged or measured.
    pub fn holds(self, value: Option<f64>) -> Option<bool> {
        let value = value?;
        match self {
            Self::AtMost(limit) => Some(value <= limit),
            Self::AtLeast(limit) => Some(value >= limit),
            Self::None => None,
        }
    }

    /// The target as the table prints it, with what it judges.
    pub fn describe(self, judged: &str) -> String {
        match self {
            Self::AtMost(limit) => format!("{judged} <= {limit}"),
            Self::AtLeast(limit) => format!("{judged} >= {limit}"),
            Self::None => "-".to_owned(),
        }
    }
}

/// b over a.
pub const ENGINE_OVER_FLOOR: Target = Target::AtMost(1.3);
/// c over b.
pub const GUIDE_OVER_ENGINE: Target = Target::AtLeast(3.0);
/// b at 1 M over b at 50 k.
pub const SCALE_RATIO: Target = Target::AtMost(1.25);
/// Seconds.
pub const PREVIEW_SECONDS: Target = Target::AtMost(2.0);
/// Rollback's rate over the migration's.
pub const ROLLBACK_OVER_MIGRATION: Target = Target::AtLeast(0.8);
/// Ten at once over one alone.
pub const FLEET_RATIO: Target = Target::AtLeast(1.0);
/// With 100 watchers over without.
pub const WATCHERS_RATIO: Target = Target::AtMost(1.05);
/// MB.
pub const MEMORY_MB: Target = Target::AtMost(150.0);
/// p99 during a migration over p99 idle.
pub const TRAFFIC_P99_RATIO: Target = Target::AtMost(3.0);
/// Of a sized run's batches, the share within ±30 % of its target.
pub const SIZED_WITHIN_30_PERCENT: Target = Target::AtLeast(0.9);
/// Seconds from StartMigration to the first event.
pub const FIRST_EVENT_SECONDS: Target = Target::AtMost(1.0);
/// The first batch over a steady one.
pub const FIRST_BATCH_RATIO: Target = Target::AtMost(2.0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_hold_at_their_limits_and_not_past_them() {
        assert_eq!(ENGINE_OVER_FLOOR.holds(Some(1.3)), Some(true));
        assert_eq!(ENGINE_OVER_FLOOR.holds(Some(1.31)), Some(false));
        assert_eq!(GUIDE_OVER_ENGINE.holds(Some(2.9)), Some(false));
        assert_eq!(Target::None.holds(Some(1.0)), None);
        assert_eq!(MEMORY_MB.holds(None), None);
    }
}
