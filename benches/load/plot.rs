//! The load bench's pictures: a throughput bar chart and a latency
//! percentile chart, as SVG next to the text tables, so a reader sees a
//! run in one look. `benches/plots/` keeps the latest ones (README shows
//! them); every run overwrites them.

use crate::oha::OhaResult;
use anyhow::{Result, anyhow};
use plotters::prelude::*;
use std::path::Path;

const COLORS: [RGBColor; 5] = [
    RGBColor(120, 120, 120),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("plotting: {e}")
}

/// One bar per target: successful responses per second.
pub fn throughput(path: &Path, title: &str, bars: &[(&str, f64)]) -> Result<()> {
    let root = SVGBackend::new(path, (760, 380)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let top = bars.iter().map(|(_, v)| *v).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d((0..bars.len()).into_segmented(), 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("successful requests / s")
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => bars.get(*i).map_or(String::new(), |b| b.0.to_string()),
            _ => String::new(),
        })
        .draw()
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), *v)],
                COLORS[i % COLORS.len()].mix(0.8).filled(),
            );
            bar.set_margin(0, 0, 24, 24);
            bar
        }))
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            Text::new(
                format!("{:.0}", v),
                (SegmentValue::CenterOf(i), *v * 1.02 + top * 0.02),
                ("sans-serif", 14),
            )
        }))
        .map_err(err)?;
    root.present().map_err(err)
}

/// Latency at p50, p90, p99 and p99.9 for each target (log scale, ms).
pub fn latency(path: &Path, title: &str, series: &[(&str, &OhaResult)]) -> Result<()> {
    const PCTS: [&str; 4] = ["p50", "p90", "p99", "p99.9"];
    let points = |r: &OhaResult| -> Vec<(usize, f64)> {
        [r.p50, r.p90, r.p99, r.p999]
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|s| (i, (s * 1000.0).max(0.001))))
            .collect()
    };
    let all: Vec<f64> = series.iter().flat_map(|(_, r)| points(r)).map(|(_, v)| v).collect();
    let low = all.iter().copied().fold(f64::INFINITY, f64::min).min(1.0) * 0.7;
    let high = all.iter().copied().fold(0.01, f64::max) * 1.5;
    let root = SVGBackend::new(path, (760, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.3f64..3.3f64, (low..high).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(4)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && (0.0..4.0).contains(&i) {
                PCTS[i as usize].to_string()
            } else {
                String::new()
            }
        })
        .y_desc("latency (ms, log scale)")
        .draw()
        .map_err(err)?;
    for (k, (label, result)) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let line: Vec<(f64, f64)> = points(result).into_iter().map(|(i, v)| (i as f64, v)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        chart
            .draw_series(line.into_iter().map(|p| Circle::new(p, 4, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}
