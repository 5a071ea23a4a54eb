//! The SVG chart: one panel per figure (msgs/s, p99, server CPU per
//! message), a group of bars per case, one bar per server.

use std::path::Path;

use plotters::prelude::*;

use super::report::{Median, Results};

const COLORS: [RGBColor; 4] = [
    RGBColor(230, 97, 1),
    RGBColor(64, 118, 196),
    RGBColor(90, 160, 90),
    RGBColor(150, 100, 180),
];

type Pick = fn(&Median) -> f64;

/// Draws `res` into an SVG file at `path`.
pub fn draw(res: &Results, path: &Path) -> anyhow::Result<()> {
    let cpu_title = format!("{} CPU µs per message (lower is better)", res.measured);
    let panels: [(&str, Pick); 3] = [
        ("msgs/s (higher is better)", |m| m.msgs_per_s),
        ("p99 latency, µs (lower is better)", |m| m.p99_us),
        (&cpu_title, |m| m.cpu_us_per_msg),
    ];
    let root = SVGBackend::new(path, (1500, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (title, body) = root.split_vertically(40);
    title
        .titled(
            &format!(
                "ringport bench: medians of {} rounds × {:.1} s ({} CPUs, kernel {})",
                res.rounds, res.duration_s, res.machine.nproc, res.machine.kernel
            ),
            ("sans-serif", 20),
        )
        .map_err(err)?;
    let areas = body.split_evenly((1, panels.len()));
    let n = res.cases.len();
    let nserv = res.cases.first().map_or(0, |c| c.servers.len()).max(1);
    let width = 0.8 / nserv as f64;
    for (area, (name, pick)) in areas.iter().zip(panels) {
        let ymax = res
            .cases
            .iter()
            .flat_map(|c| c.servers.iter().map(|s| pick(&s.median)))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..ymax)
            .map_err(err)?;
        let labels: Vec<String> = res.cases.iter().map(|c| c.label.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.max(1) + 1)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| short(*y))
            .draw()
            .map_err(err)?;
        for si in 0..nserv {
            let color = COLORS[si % COLORS.len()];
            let bars = res.cases.iter().enumerate().filter_map(|(ci, c)| {
                let v = pick(&c.servers.get(si)?.median);
                let x0 = ci as f64 - 0.4 + si as f64 * width;
                v.is_finite()
                    .then(|| Rectangle::new([(x0, 0.0), (x0 + width * 0.95, v)], color.filled()))
            });
            let name = res
                .cases
                .first()
                .and_then(|c| c.servers.get(si))
                .map_or_else(String::new, |s| s.server.clone());
            chart
                .draw_series(bars)
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}
