//! How big a run's next batch is. Without a target, the operator's
//! `batch_size`, as today. With `target_batch_ms`, each batch is sized from
//! the work time of the batches before it, the way Spirit sizes chunks and
//! GitLab's batched migrations size jobs:
//! - the cost of a transaction is the median over the last few batches of
//!   work time / transactions, where work time leaves out the batch's waits
//!   on other transactions' locks (so that contention, which is not work,
//!   cannot collapse the size: Spirit's lesson);
//! - the next size is target / that cost, but at most 1.5x the last (growth
//!   is cautious: the cost of a larger batch is a guess);
//! - a batch that worked over five times the target cuts the size to a
//!   tenth at once (shrinking is urgent: the business waits behind it);
//! - always within the operator's bounds, `min_batch_size`..`max_batch_size`.
//!
//! A fixed per-batch overhead makes small batches look dear per
//! transaction, so the size climbs towards the target over a few batches
//! rather than in one; the growth cap sets that pace anyway.
use std::{collections::VecDeque, time::Duration};

use crate::{
    error::{Error, Result},
    migration::{
        input,
        progress::{BatchSizing, SizingReason},
        run::Parameters,
    },
};

/// Growth per batch, at most.
const GROWTH: f64 = 1.5;
/// A batch whose work exceeds this multiple of the target...
const OVERRUN: f64 = 5.0;
/// ...cuts the size to this fraction.
const CUT: f64 = 0.1;
/// The batches whose cost per transaction the next size is computed from.
const WINDOW: usize = 5;
/// The bounds unless the operator sets them.
pub const DEFAULT_MIN: i32 = 10;
pub const DEFAULT_MAX: i32 = input::MAX_BATCH;
/// An adaptive run's first batch unless its batch_size says otherwise:
/// small, as nothing is known yet of what a batch costs here.
pub const DEFAULT_START: i32 = 100;
/// The targets an operator may set, in milliseconds.
pub const TARGET_MS: std::ops::RangeInclusive<u32> = 10..=60_000;

/// The sizing fields of a request, checked (each error names its field):
/// a target of 0 means none; bounds are 1 to MAX_BATCH, min not above max
/// (an unset bound is checked against the other's default).
pub fn checked(
    target_batch_ms: Option<u32>,
    min_batch_size: Option<i32>,
    max_batch_size: Option<i32>,
) -> Result<(Option<u32>, Option<i32>, Option<i32>)> {
    if let Some(ms) = target_batch_ms.filter(|ms| *ms != 0 && !TARGET_MS.contains(ms)) {
        return Err(Error::invalid(
            "target_batch_ms",
            format!(
                "{ms} is out of range ({} to {} ms, or 0 for a fixed batch_size)",
                TARGET_MS.start(),
                TARGET_MS.end()
            ),
        ));
    }
    for (field, bound) in [
        ("min_batch_size", min_batch_size),
        ("max_batch_size", max_batch_size),
    ] {
        if let Some(size) = bound.filter(|size| !(1..=input::MAX_BATCH).contains(size)) {
            return Err(Error::invalid(
                field,
                format!("{size} is out of range (1 to {})", input::MAX_BATCH),
            ));
        }
    }
    let (min, max) = (
        min_batch_size.unwrap_or(DEFAULT_MIN),
        max_batch_size.unwrap_or(DEFAULT_MAX),
    );
    if min > max {
        return Err(Error::invalid(
            "min_batch_size",
            format!("{min} is above max_batch_size {max}"),
        ));
    }
    Ok((target_batch_ms, min_batch_size, max_batch_size))
}

/// What sizes a run's batches, from its parameters (read anew after every
/// batch, so that UpdateMigration takes effect at the next one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// None: every batch is `fixed`.
    pub target: Option<Duration>,
    pub min: i32,
    pub max: i32,
    /// The run's batch_size: the fixed size, or where sizing starts.
    pub fixed: i32,
}

impl Bounds {
    pub fn of(parameters: &Parameters) -> Self {
        let target = parameters
            .target_batch_ms
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(u64::from(ms)));
        let min = parameters.min_batch_size.unwrap_or(DEFAULT_MIN).max(1);
        Self {
            target,
            min,
            max: parameters.max_batch_size.unwrap_or(DEFAULT_MAX).max(min),
            fixed: parameters.batch_size.max(1),
        }
    }
}

/// The size of a run's batches as they go.
#[derive(Debug, Clone)]
pub struct Sizer {
    size: i32,
    reason: SizingReason,
    /// The operator's batch_size when `size` was last set: a new one (an
    /// update) restarts the sizing from it.
    fixed: i32,
    /// Work milliseconds per transaction of the latest batches, newest last.
    costs: VecDeque<f64>,
    work_ms: f64,
    detail: String,
}

impl Sizer {
    /// A run's sizer; `resumed` is the size its latest event reported (a
    /// restart or another server goes on from there, not from scratch).
    pub fn new(bounds: &Bounds, resumed: Option<i32>) -> Self {
        let mut sizer = Self {
            size: bounds.fixed,
            reason: SizingReason::Fixed,
            fixed: bounds.fixed,
            costs: VecDeque::with_capacity(WINDOW),
            work_ms: 0.0,
            detail: String::new(),
        };
        if bounds.target.is_some() {
            let start = resumed.filter(|size| *size > 0).unwrap_or(bounds.fixed);
            sizer.set(bounds, f64::from(start), SizingReason::Target);
            sizer.detail = format!("starting at {}", sizer.size);
        }
        sizer
    }

    /// The next batch's size under `bounds` (they may have changed since
    /// the last batch).
    pub fn next(&mut self, bounds: &Bounds) -> i32 {
        if bounds.fixed != self.fixed {
            // The operator set a new batch_size: fixed, or where to go on from.
            self.fixed = bounds.fixed;
            self.costs.clear();
            self.set(bounds, f64::from(bounds.fixed), SizingReason::Target);
        }
        match bounds.target {
            None => {
                self.size = bounds.fixed;
                self.reason = SizingReason::Fixed;
            }
            // New bounds hold from the next batch on.
            Some(_) if self.size < bounds.min || self.size > bounds.max => {
                self.set(bounds, f64::from(self.size), SizingReason::Target);
            }
            Some(_) => {}
        }
        self.size
    }

    /// A batch of `transactions` worked `work` (its time less its lock
    /// waits): the size after it.
    pub fn observe(&mut self, bounds: &Bounds, transactions: i64, work: Duration) {
        self.work_ms = work.as_secs_f64() * 1000.0;
        let Some(target) = bounds.target else {
            self.next(bounds);
            return;
        };
        if transactions <= 0 {
            return;
        }
        let target_ms = target.as_secs_f64() * 1000.0;
        if self.costs.len() == WINDOW {
            self.costs.pop_front();
        }
        self.costs.push_back(self.work_ms / transactions as f64);
        let size = f64::from(self.size);
        let (proposed, reason) = if self.work_ms > OVERRUN * target_ms {
            // What came before no longer describes this database.
            self.costs.clear();
            self.costs.push_back(self.work_ms / transactions as f64);
            (size * CUT, SizingReason::OverTarget)
        } else {
            let ideal = target_ms / median(&self.costs).max(1e-6);
            if ideal > size * GROWTH {
                (size * GROWTH, SizingReason::GrowthLimit)
            } else {
                (ideal, SizingReason::Target)
            }
        };
        self.set(bounds, proposed, reason);
        self.detail = format!(
            "{:.0} ms of work for {transactions} against a target of {:.0} ms ({:+.0}%)",
            self.work_ms,
            target_ms,
            (self.work_ms / target_ms - 1.0) * 100.0
        );
    }

    /// What the next event reports.
    pub fn state(&self, bounds: &Bounds) -> BatchSizing {
        let target_batch_ms = bounds
            .target
            .map_or(0, |t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX));
        let detail = match self.reason {
            SizingReason::Fixed => format!("batch_size {}, as set", self.size),
            reason => format!("batch {}{}: {}", self.size, why(reason), self.detail),
        };
        BatchSizing {
            batch_size: self.size,
            reason: self.reason,
            target_batch_ms,
            work_ms: (self.work_ms * 1000.0).round() / 1000.0,
            detail,
        }
    }

    fn set(&mut self, bounds: &Bounds, proposed: f64, reason: SizingReason) {
        let proposed = proposed.round().clamp(1.0, f64::from(i32::MAX)) as i32;
        (self.size, self.reason) = if proposed < bounds.min {
            (bounds.min, SizingReason::MinBatchSize)
        } else if proposed > bounds.max {
            (bounds.max, SizingReason::MaxBatchSize)
        } else {
            (proposed, reason)
        };
    }
}

fn why(reason: SizingReason) -> &'static str {
    match reason {
        SizingReason::GrowthLimit => " (growing at most 1.5x a batch)",
        SizingReason::OverTarget => " (cut to a tenth: the last batch ran over 5x the target)",
        SizingReason::MinBatchSize => " (held at min_batch_size)",
        SizingReason::MaxBatchSize => " (held at max_batch_size)",
        _ => "",
    }
}

fn median(values: &VecDeque<f64>) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(target_ms: Option<u64>, min: i32, max: i32, fixed: i32) -> Bounds {
        Bounds {
            target: target_ms.map(Duration::from_millis),
            min,
            max,
            fixed,
        }
    }

    /// A database where a batch of n costs `overhead + per * n` ms.
    fn work(n: i32, overhead: f64, per: f64) -> Duration {
        Duration::from_secs_f64((overhead + per * f64::from(n)) / 1000.0)
    }

    #[test]
    fn without_a_target_every_batch_is_the_operators_size() {
        let b = bounds(None, 10, 5000, 700);
        let mut sizer = Sizer::new(&b, Some(123));
        assert_eq!(sizer.next(&b), 700);
        sizer.observe(&b, 700, Duration::from_secs(30));
        assert_eq!(sizer.next(&b), 700);
        assert_eq!(sizer.state(&b).reason, SizingReason::Fixed);
        let updated = Bounds { fixed: 40, ..b };
        assert_eq!(sizer.next(&updated), 40);
    }

    #[test]
    fn sizing_converges_on_the_target_growing_at_most_one_and_a_half_times() {
        let b = bounds(Some(500), 10, 5000, DEFAULT_START);
        let mut sizer = Sizer::new(&b, None);
        let mut sizes = vec![sizer.next(&b)];
        for _ in 0..30 {
            let n = sizer.next(&b);
            // 20 ms a batch and 0.3 ms a transaction: 500 ms is 1,600.
            sizer.observe(&b, i64::from(n), work(n, 20.0, 0.3));
            let next = sizer.next(&b);
            assert!(
                f64::from(next) <= f64::from(n) * GROWTH + 0.5,
                "{n} -> {next}"
            );
            sizes.push(next);
        }
        assert_eq!(sizes[1], 150, "{sizes:?}");
        let last = *sizes.last().unwrap();
        let took = 20.0 + 0.3 * f64::from(last);
        assert!((took - 500.0).abs() < 500.0 * 0.05, "{sizes:?}: {took} ms");
        assert_eq!(sizer.state(&b).reason, SizingReason::Target);
    }

    #[test]
    fn a_batch_far_over_the_target_cuts_the_size_to_a_tenth() {
        let b = bounds(Some(100), 10, 5000, 2000);
        let mut sizer = Sizer::new(&b, None);
        assert_eq!(sizer.next(&b), 2000);
        sizer.observe(&b, 2000, Duration::from_millis(900));
        assert_eq!(sizer.next(&b), 200);
        assert_eq!(sizer.state(&b).reason, SizingReason::OverTarget);
        // The cut forgets the cheaper past: the next size follows the new cost.
        sizer.observe(&b, 200, Duration::from_millis(90));
        assert_eq!(sizer.next(&b), 222);
    }

    #[test]
    fn the_operators_bounds_hold_and_say_so() {
        let b = bounds(Some(500), 50, 300, DEFAULT_START);
        let mut sizer = Sizer::new(&b, None);
        for _ in 0..10 {
            let n = sizer.next(&b);
            sizer.observe(&b, i64::from(n), work(n, 1.0, 0.01));
        }
        assert_eq!(sizer.next(&b), 300);
        assert_eq!(sizer.state(&b).reason, SizingReason::MaxBatchSize);
        // Expensive now: down to the floor, not below.
        for _ in 0..5 {
            let n = sizer.next(&b);
            sizer.observe(&b, i64::from(n), work(n, 400.0, 50.0));
        }
        assert_eq!(sizer.next(&b), 50);
        assert_eq!(sizer.state(&b).reason, SizingReason::MinBatchSize);
        // An update of the bounds applies at the next batch.
        let higher = Bounds { min: 80, ..b };
        assert_eq!(sizer.next(&higher), 80);
    }

    #[test]
    fn a_resumed_run_goes_on_from_its_reported_size_and_a_new_batch_size_restarts_it() {
        let b = bounds(Some(500), 10, 5000, DEFAULT_START);
        let mut sizer = Sizer::new(&b, Some(1800));
        assert_eq!(sizer.next(&b), 1800);
        let updated = Bounds { fixed: 400, ..b };
        assert_eq!(sizer.next(&updated), 400);
        assert_eq!(sizer.next(&updated), 400);
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        let field = |r: Result<_>| match r {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(checked(Some(0), None, None).unwrap(), (Some(0), None, None));
        assert_eq!(field(checked(Some(5), None, None)), "target_batch_ms");
        assert_eq!(field(checked(Some(500), Some(0), None)), "min_batch_size");
        assert_eq!(field(checked(None, None, Some(5001))), "max_batch_size");
        assert_eq!(
            field(checked(Some(500), Some(300), Some(200))),
            "min_batch_size"
        );
        assert_eq!(field(checked(None, None, Some(5))), "min_batch_size");
        assert!(checked(Some(500), Some(5), Some(5)).is_ok());
    }

    #[test]
    fn an_empty_batch_changes_nothing() {
        let b = bounds(Some(500), 10, 5000, 300);
        let mut sizer = Sizer::new(&b, None);
        sizer.observe(&b, 0, Duration::from_millis(5));
        assert_eq!(sizer.next(&b), 300);
    }
}
