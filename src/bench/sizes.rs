//! The benchmark's sizes at a scale: 1.0 is the full benchmark; smaller
//! scales shrink every size linearly, down to floors that keep every figure
//! measurable (a run of at least a few batches, enough originals for every
//! round of the floor and the guide's way).
use super::{floor, guide};

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sizes {
    pub scale: f64,
    /// Transactions per batch (the engine's, the floor's, the guide's).
    pub batch: u32,
    /// The big organization (figures d, e, j, l).
    pub big: u64,
    /// The base organization (figures b, g) and the one under traffic (k).
    pub base: u64,
    /// The floor's organization (figures a, c), in the base run's database:
    /// the base size, or more when the rounds need more originals.
    pub floor: u64,
    /// The organization given reporting aliases (f).
    pub aliases: u64,
    /// Each organization of the fleet (h) and of the watched runs (i).
    pub fleet: u64,
    /// Postings timed on the idle database (k).
    pub idle_posts: usize,
}

impl Sizes {
    pub fn at(scale: f64) -> Self {
        let batch = scaled(1_000, scale, 10).min(5_000);
        let rounds = (floor::ROUNDS + 1 + guide::BATCHES_TAKEN) as u64;
        let base = scaled(50_000, scale, 10 * batch);
        Self {
            scale,
            batch: u32::try_from(batch).expect("a batch size fits"),
            big: scaled(1_000_000, scale, 20 * batch),
            base,
            floor: base.max(rounds * batch),
            aliases: scaled(100_000, scale, 10 * batch),
            fleet: scaled(20_000, scale, 5 * batch),
            idle_posts: usize::try_from(scaled(300, scale, 10)).expect("a count fits"),
        }
    }
}

/// `full` at `scale`, never below `floor`.
fn scaled(full: u64, scale: f64, floor: u64) -> u64 {
    ((full as f64 * scale).round() as u64).max(floor)
}

#[cfg(test)]
mod tests {
    use super::Sizes;

    #[test]
    fn the_full_benchmark_and_its_smoke_test() {
        let full = Sizes::at(1.0);
        assert_eq!(
            (full.batch, full.big, full.base),
            (1_000, 1_000_000, 50_000)
        );
        assert_eq!(
            (full.aliases, full.fleet, full.floor),
            (100_000, 20_000, 50_000)
        );
        let tiny = Sizes::at(0.002);
        assert_eq!(tiny.batch, 10);
        assert!(tiny.base >= 10 * 10 && tiny.big >= 20 * 10);
        assert!(tiny.floor >= 16 * 10, "every round has originals");
    }
}
