//! The chart of the 1 M run: per batch, the migrated transactions per second
//! (left axis) and the batch's time in ms (right axis), as SVG.
use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use super::timeline::{BatchSample, median};

const SIZE: (u32, u32) = (1000, 520);

pub fn write_svg(path: &Path, batches: &[BatchSample], title: &str) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let x_max = batches.len().max(1) as f64;
    let rate_max = upper(batches.iter().map(BatchSample::per_second));
    // A rare stall (a checkpoint, a neighbour's burst) would flatten the
    // batch times into the floor: their axis stops at three times the
    // median batch, and the few above it are drawn at its top.
    let ms_max = ms_axis_top(batches);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .right_y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..rate_max)
        .map_err(|e| anyhow!("{e}"))?
        .set_secondary_coord(0f64..x_max, 0f64..ms_max);
    chart
        .configure_mesh()
        .x_desc("batch number")
        .y_desc("migrated transactions / s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_secondary_axes()
        .y_desc("batch time (ms)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    let rate = batches.iter().map(|b| (b.number as f64, b.per_second()));
    chart
        .draw_series(LineSeries::new(rate, &BLUE))
        .map_err(|e| anyhow!("{e}"))?
        .label("throughput (migrated/s)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    let time = batches.iter().map(|b| (b.number as f64, b.ms.min(ms_max)));
    chart
        .draw_secondary_series(LineSeries::new(time, &RED))
        .map_err(|e| anyhow!("{e}"))?
        .label(format!("batch time (ms, shown up to {ms_max:.0})"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// The batch-time axis: up to three times the median batch (or the longest
/// batch, if shorter).
fn ms_axis_top(batches: &[BatchSample]) -> f64 {
    let times: Vec<f64> = batches.iter().map(|b| b.ms).collect();
    let longest = upper(times.iter().copied());
    median(&times).map_or(longest, |m| (3.0 * m).min(longest))
}

/// A round top for an axis holding `values` (1 when there are none).
fn upper(values: impl Iterator<Item = f64>) -> f64 {
    let max = values.filter(|v| v.is_finite()).fold(0.0, f64::max);
    if max > 0.0 { max * 1.1 } else { 1.0 }
}
