//! Figures a to n from what was measured: each its value as the table prints
//! it, its target, whether it holds, and the numbers behind it.
use serde_json::{Value, json};

use super::{Measurements, figures_pace, targets, targets::Target};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Figure {
    pub letter: char,
    pub what: &'static str,
    /// As the table prints it ("not measured: why" when it failed).
    pub value: String,
    pub target: String,
    /// None: nothing is judged, or nothing was measured.
    pub holds: Option<bool>,
    pub measured: bool,
    /// The numbers behind the value: medians of the raw samples, counts, ratios.
    pub detail: Value,
}

pub(super) type Built = Option<(String, Option<f64>, Value)>;

/// Every figure, a to n.
pub fn all(m: &Measurements) -> Vec<Figure> {
    type Row = (
        char,
        &'static str,
        Target,
        &'static str,
        fn(&Measurements) -> Built,
    );
    let rows: [Row; 13] = [
        (
            'a',
            "floor: one batch by plain INSERT/UPDATE",
            Target::None,
            "",
            floor,
        ),
        (
            'b',
            "engine: one batch end to end",
            targets::ENGINE_OVER_FLOOR,
            "b/a",
            engine,
        ),
        (
            'c',
            "the guide's way: one at a time, each committed",
            targets::GUIDE_OVER_ENGINE,
            "c/b",
            guide,
        ),
        (
            'd',
            "scale: b at 1 M over b at 50 k",
            targets::SCALE_RATIO,
            "ratio",
            scale,
        ),
        (
            'e',
            "preview of the 1 M organization",
            targets::PREVIEW_SECONDS,
            "s",
            preview,
        ),
        ('f', "reporting aliases (100 k)", Target::None, "", aliases),
        (
            'g',
            "rollback over migration rate",
            targets::ROLLBACK_OVER_MIGRATION,
            "ratio",
            rollback,
        ),
        (
            'h',
            "ten organizations at once over one",
            targets::FLEET_RATIO,
            "ratio",
            fleet,
        ),
        (
            'i',
            "a hundred watchers over none",
            targets::WATCHERS_RATIO,
            "ratio",
            watchers,
        ),
        (
            'j',
            "server memory during the 1 M run",
            targets::MEMORY_MB,
            "MB",
            memory,
        ),
        (
            'k',
            "business traffic p99, migrating/idle",
            targets::TRAFFIC_P99_RATIO,
            "ratio",
            traffic,
        ),
        (
            'm',
            "a run sized to 500 ms a batch",
            targets::SIZED_WITHIN_30_PERCENT,
            "share",
            figures_pace::sized,
        ),
        (
            'n',
            "business p99 under it, listening to a probe",
            targets::TRAFFIC_P99_RATIO,
            "ratio",
            figures_pace::listening_traffic,
        ),
    ];
    let mut figures: Vec<Figure> = rows
        .into_iter()
        .map(|(letter, what, target, judged, build)| match build(m) {
            Some((value, number, detail)) => Figure {
                letter,
                what,
                value,
                target: target.describe(judged),
                holds: target.holds(number),
                measured: true,
                detail,
            },
            None => unmeasured(m, letter, what, target.describe(judged)),
        })
        .collect();
    figures.push(first_event(m));
    figures.sort_by_key(|figure| figure.letter);
    figures
}

fn unmeasured(m: &Measurements, letter: char, what: &'static str, target: String) -> Figure {
    let why = m
        .failures
        .iter()
        .find(|failure| failure.letters.contains(letter))
        .map_or("not run".to_owned(), |failure| failure.message.clone());
    Figure {
        letter,
        what,
        value: format!("not measured: {why}"),
        target,
        holds: None,
        measured: false,
        detail: Value::Null,
    }
}

fn ratio(over: f64, under: f64) -> Option<f64> {
    (under > 0.0).then(|| over / under)
}

fn floor(m: &Measurements) -> Built {
    let a = m.floor.as_ref()?;
    let value = format!("{:.1} ms per 1,000", a.ms_per_1000());
    Some((
        value,
        None,
        json!({"ms_per_1000": a.ms_per_1000(), "floor": a}),
    ))
}

fn engine(m: &Measurements) -> Built {
    let b = m.base.as_ref()?.steady_ms_per_1000?;
    let a = m.floor.as_ref()?.ms_per_1000();
    let over = ratio(b, a);
    let value = format!("{b:.1} ms per 1,000 ({:.2}x a)", over.unwrap_or(f64::NAN));
    Some((
        value,
        over,
        json!({"ms_per_1000": b, "b_over_a": over, "run": m.base}),
    ))
}

fn guide(m: &Measurements) -> Built {
    let c = m.guide.as_ref()?;
    let b = m.base.as_ref()?.steady_ms_per_1000?;
    let over = ratio(c.ms_per_1000(), b);
    let once = c.one_commit_ms_per_1000();
    let once_over = ratio(once, b);
    let value = format!(
        "{:.0} ms per 1,000 ({:.1}x b); under one commit {once:.0} ({:.1}x b)",
        c.ms_per_1000(),
        over.unwrap_or(f64::NAN),
        once_over.unwrap_or(f64::NAN)
    );
    Some((
        value,
        over,
        json!({
            "ms_per_1000": c.ms_per_1000(),
            "c_over_b": over,
            "one_commit_ms_per_1000": once,
            "one_commit_over_b": once_over,
            "guide": c,
        }),
    ))
}

fn scale(m: &Measurements) -> Built {
    let big = m.big.as_ref()?.run.steady_ms_per_1000?;
    let base = m.base.as_ref()?.steady_ms_per_1000?;
    let over = ratio(big, base);
    // PostgreSQL's own growth over the same sizes, when the floor was
    // measured on both: what the engine adds is its ratio over this one.
    let floors = m.floor.as_ref().zip(m.big_floor.as_ref());
    let floor_over =
        floors.and_then(|(small, large)| ratio(large.ms_per_1000(), small.ms_per_1000()));
    let floor_note = floor_over.map_or(String::new(), |f| format!("; the floor {f:.2}x"));
    let value = format!(
        "{big:.1} vs {base:.1} ms per 1,000 ({:.2}x{floor_note})",
        over.unwrap_or(f64::NAN)
    );
    Some((
        value,
        over,
        json!({
            "big_ms_per_1000": big,
            "base_ms_per_1000": base,
            "ratio": over,
            "floor_big_ms_per_1000": m.big_floor.as_ref().map(|f| f.ms_per_1000()),
            "floor_ratio": floor_over,
            "engine_over_floor_at_1m": m.big_floor.as_ref().and_then(|f| ratio(big, f.ms_per_1000())),
            "big_floor": m.big_floor,
            "run": m.big.as_ref().map(|b| &b.run),
        }),
    ))
}

fn preview(m: &Measurements) -> Built {
    let e = m.preview.as_ref()?;
    let seconds = e.wall_ms / 1000.0;
    let value = format!("{seconds:.2} s ({} candidates)", e.candidates);
    Some((
        value,
        Some(seconds),
        json!({"seconds": seconds, "preview": e}),
    ))
}

fn aliases(m: &Measurements) -> Built {
    let f = m.aliases.as_ref()?;
    let value = format!(
        "{:.2} s, {:.0} tx/s ({} aliased)",
        f.wall_ms / 1000.0,
        f.per_second(),
        f.aliased
    );
    Some((
        value,
        None,
        json!({"seconds": f.wall_ms / 1000.0, "per_second": f.per_second(), "aliases": f}),
    ))
}

fn rollback(m: &Measurements) -> Built {
    let restored = m.rollback.as_ref()?.steady_per_second()?;
    let migrated = m.base.as_ref()?.steady_per_second()?;
    let over = ratio(restored, migrated);
    let value = format!(
        "{restored:.0} restored/s vs {migrated:.0} migrated/s ({:.2}x)",
        over.unwrap_or(f64::NAN)
    );
    Some((
        value,
        over,
        json!({
            "restored_per_second": restored,
            "migrated_per_second": migrated,
            "ratio": over,
            "overall_restored_per_second": m.rollback.as_ref().map(|r| r.overall_per_second()),
            "run": m.rollback,
        }),
    ))
}

fn fleet(m: &Measurements) -> Built {
    let h = m.fleet.as_ref()?;
    let over = ratio(h.together_per_second(), h.alone_per_second());
    let value = format!(
        "{:.0} tx/s ten at once vs {:.0} alone ({:.2}x)",
        h.together_per_second(),
        h.alone_per_second(),
        over.unwrap_or(f64::NAN)
    );
    Some((value, over, json!({"ratio": over, "fleet": h})))
}

fn watchers(m: &Measurements) -> Built {
    let i = m.watchers.as_ref()?;
    let value = format!(
        "{:.1} s with {} vs {:.1} s without ({:.2}x)",
        i.with_s,
        i.watchers,
        i.without_s,
        i.ratio().unwrap_or(f64::NAN)
    );
    Some((value, i.ratio(), json!({"ratio": i.ratio(), "watchers": i})))
}

fn memory(m: &Measurements) -> Built {
    let j = &m.big.as_ref()?.memory;
    let peak_mb = j.peak_kb as f64 / 1024.0;
    let value = format!("{peak_mb:.1} MB peak RSS (VmHWM)");
    Some((
        value,
        Some(peak_mb),
        json!({"peak_mb": peak_mb, "highest_sampled_rss_mb": j.rss_kb as f64 / 1024.0}),
    ))
}

fn traffic(m: &Measurements) -> Built {
    let k = m.traffic.as_ref()?;
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let value = format!(
        "p50 {} / {} ms, p99 {} / {} ms idle / migrating ({:.2}x)",
        ms(k.idle.p50_ms),
        ms(k.during_migration.p50_ms),
        ms(k.idle.p99_ms),
        ms(k.during_migration.p99_ms),
        k.p99_ratio().unwrap_or(f64::NAN)
    );
    Some((
        value,
        k.p99_ratio(),
        json!({"p99_ratio": k.p99_ratio(), "traffic": k}),
    ))
}

/// Figure l has two targets; it holds when both do.
fn first_event(m: &Measurements) -> Figure {
    let what = "first event and first batch at 1 M";
    let target = format!(
        "{}; {}",
        targets::FIRST_EVENT_SECONDS.describe("first event s"),
        targets::FIRST_BATCH_RATIO.describe("first/steady")
    );
    let Some(run) = m.big.as_ref().map(|big| &big.run) else {
        return unmeasured(m, 'l', what, target);
    };
    let first_s = run.first_event_ms.map(|ms| ms / 1000.0);
    let over = match (run.first_batch_ms_per_1000, run.steady_ms_per_1000) {
        (Some(first), Some(steady)) => ratio(first, steady),
        _ => None,
    };
    let holds = match (
        targets::FIRST_EVENT_SECONDS.holds(first_s),
        targets::FIRST_BATCH_RATIO.holds(over),
    ) {
        (Some(a), Some(b)) => Some(a && b),
        _ => None,
    };
    Figure {
        letter: 'l',
        what,
        value: format!(
            "first event {:.2} s; first batch {:.2}x steady",
            first_s.unwrap_or(f64::NAN),
            over.unwrap_or(f64::NAN)
        ),
        target,
        holds,
        measured: first_s.is_some() && over.is_some(),
        detail: json!({
            "first_event_seconds": first_s,
            "first_batch_ms_per_1000": run.first_batch_ms_per_1000,
            "steady_ms_per_1000": run.steady_ms_per_1000,
            "first_over_steady": over,
        }),
    }
}
