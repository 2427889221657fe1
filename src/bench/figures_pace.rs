//! Figures m and n: a run sized to a target batch time (issue 17) that
//! listens to the business probe, with business postings beside it as in k.
use serde_json::json;

use super::{Measurements, figures::Built, traffic::CONVERGING};

/// m: how close the sized run's batches kept to their target.
pub fn sized(m: &Measurements) -> Built {
    let run = m.adaptive.as_ref()?;
    let sized = run.sizing.as_ref()?;
    let value = format!(
        "{:.0}% of {} batches within ±30% of {:.0} ms (median {:.0} ms; the first {CONVERGING} climbing excluded)",
        sized.within_30_percent * 100.0,
        sized.judged,
        sized.target_ms,
        sized.median_work_ms.unwrap_or(f64::NAN),
    );
    Some((
        value,
        Some(sized.within_30_percent),
        json!({"sizing": sized, "run": run.migration}),
    ))
}

/// n: the business's p99 during the sized, listening run over idle, beside
/// k's (a fixed batch_size at full speed).
pub fn listening_traffic(m: &Measurements) -> Built {
    let n = m.adaptive.as_ref()?;
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let fixed = m
        .traffic
        .as_ref()
        .and_then(|k| k.p99_ratio().map(|r| (r, k.migration.overall_per_second())));
    let beside = fixed.map_or(String::new(), |(ratio, rate)| {
        format!("; fixed-size k: {ratio:.2}x at {rate:.0} tx/s")
    });
    let value = format!(
        "p99 {} / {} ms idle / migrating ({:.2}x at {:.0} tx/s{beside})",
        ms(n.idle.p99_ms),
        ms(n.during_migration.p99_ms),
        n.p99_ratio().unwrap_or(f64::NAN),
        n.migration.overall_per_second(),
    );
    Some((
        value,
        n.p99_ratio(),
        json!({"p99_ratio": n.p99_ratio(), "traffic": n, "fixed_p99_ratio": fixed.map(|f| f.0)}),
    ))
}
