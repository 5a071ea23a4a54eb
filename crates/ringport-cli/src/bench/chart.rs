//! The SVG chart: one row per case and figure, the first server's value
//! over the second's (ringport / tokio) on one logarithmic ratio axis with
//! 1.0 marked: a dot at the median of the paired rounds, a bar over their
//! range. Figures of different units and sizes (30 µs and 6 µs per message,
//! KiB per connection) become comparable.

use std::path::Path;

use plotters::prelude::*;

use super::report::Results;

const DOT: RGBColor = RGBColor(230, 97, 1);
const RANGE: RGBColor = RGBColor(64, 118, 196);

/// One row of the chart.
struct Row {
    label: String,
    median: f64,
    min: f64,
    max: f64,
}

/// Draws `res` into an SVG file at `path`.
pub fn draw(res: &Results, path: &Path) -> anyhow::Result<()> {
    let names = res
        .cases
        .first()
        .and_then(|c| Some((&c.servers.first()?.server, &c.servers.get(1)?.server)));
    let who = &res.measured;
    let rows: Vec<Row> = res
        .cases
        .iter()
        .flat_map(|c| {
            c.ratios().into_iter().filter_map(|(figure, _, spread)| {
                let s = spread?;
                let figure = if figure.starts_with("p99") || figure.starts_with("sys") {
                    figure.to_string()
                } else {
                    format!("{who} {figure}")
                };
                Some(Row {
                    label: format!("{}: {figure}", c.label),
                    median: s.median,
                    min: s.min,
                    max: s.max,
                })
            })
        })
        .collect();
    let height = 120 + 34 * rows.len().max(1) as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (a, b) = names.map_or(("first".to_string(), "second".to_string()), |(a, b)| {
        (a.clone(), b.clone())
    });
    let title = format!(
        "{a} / {b} per case: median and range of {} paired rounds × {:.1} s \
         ({} CPUs, kernel {}); left of 1.0: {a} needs less",
        res.rounds, res.duration_s, res.machine.nproc, res.machine.kernel
    );
    // The axis spans every range and 1.0 on a log scale.
    let lo = rows
        .iter()
        .map(|r| r.min)
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold(1.0f64, f64::min)
        / 1.3;
    let hi = rows
        .iter()
        .map(|r| r.max)
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max)
        * 3.0; // room for the value written right of the range
    let n = rows.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(&title, ("sans-serif", 16))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(330)
        .build_cartesian_2d((lo..hi).log_scale(), -0.5f64..(n as f64 - 0.5))
        .map_err(err)?;
    let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n.max(1) * 2 + 1)
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 {
                // Row 0 at the top.
                labels
                    .get(n.saturating_sub(1 + i as usize))
                    .cloned()
                    .unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc(format!("{a} / {b} (log scale)"))
        .x_label_formatter(&|x| format!("{x:.2}"))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            [(1.0, -0.5), (1.0, n as f64 - 0.5)],
            BLACK.stroke_width(2),
        ))
        .map_err(err)?;
    let y = |i: usize| (n - 1 - i) as f64;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            Rectangle::new(
                [
                    (r.min, y(i) - 0.12),
                    (r.max.max(r.min * 1.002), y(i) + 0.12),
                ],
                RANGE.mix(0.5).filled(),
            )
        }))
        .map_err(err)?;
    chart
        .draw_series(
            rows.iter()
                .enumerate()
                .map(|(i, r)| Circle::new((r.median, y(i)), 6, DOT.filled())),
        )
        .map_err(err)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            Text::new(
                format!("{:.2} ({:.2}–{:.2})", r.median, r.min, r.max),
                (r.max.max(r.median) * 1.04, y(i) + 0.3),
                ("sans-serif", 13),
            )
        }))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}
