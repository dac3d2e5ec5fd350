//! The sweep as an SVG: throughput against size, one panel per operation, one line per
//! section count, both axes logarithmic.
//!
//! plotters is built with its SVG backend only: no bitmap backend, no font crates (so no
//! fontconfig). Text is emitted as SVG `<text>` elements and laid out by plotters' built-in
//! size estimate; the viewer's font draws it.

use std::collections::BTreeSet;
use std::path::Path;

use plotters::prelude::*;

use super::sweep::{Cell, Row};
use ckpt_bench::SweepCase;

/// Panel size in pixels.
const PANEL: (u32, u32) = (560, 420);

/// Writes the plot of the measured cells to `path`.
pub(super) fn write_svg(cells: &[Cell], title: &str, path: &Path) -> Result<(), String> {
    let svg = render(cells, title)?;
    std::fs::write(path, svg).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The SVG text of the plot.
pub(super) fn render(cells: &[Cell], title: &str) -> Result<String, String> {
    let rows: Vec<&Row> = cells
        .iter()
        .filter_map(|c| match c {
            Cell::Measured(r) => Some(r),
            Cell::Skipped { .. } => None,
        })
        .collect();
    let ops = SweepCase::OPS;
    let mut svg = String::new();
    {
        let size = (PANEL.0 * ops.len() as u32, PANEL.1 + 40);
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 20)).map_err(err)?;
        let panels = root.split_evenly((1, ops.len()));
        let (x_lo, x_hi) = bounds(rows.iter().map(|r| r.size as f64));
        let (y_lo, y_hi) = bounds(rows.iter().map(|r| r.mib_s));
        let counts: BTreeSet<u32> = rows.iter().map(|r| r.sections).collect();
        for (panel, op) in panels.iter().zip(ops) {
            let mut chart = ChartBuilder::on(panel)
                .caption(op.name(), ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d(
                    (x_lo / 2.0..x_hi * 2.0).log_scale(),
                    (y_lo / 2.0..y_hi * 2.0).log_scale(),
                )
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("bytes per call (log)")
                .y_desc("MiB/s (log)")
                .x_label_formatter(&|v| bytes_label(*v))
                .y_label_formatter(&|v| format!("{v:.0}"))
                .draw()
                .map_err(err)?;
            for (i, sections) in counts.iter().enumerate() {
                let points: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| r.op == op.name() && r.sections == *sections)
                    .map(|r| (r.size as f64, r.mib_s))
                    .collect();
                if points.is_empty() {
                    continue;
                }
                let color = Palette99::pick(i).to_rgba();
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(err)?
                    .label(format!("{sections} section(s)"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(
                        points
                            .into_iter()
                            .map(|p| Circle::new(p, 3, color.filled())),
                    )
                    .map_err(err)?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing the plot: {e}")
}

/// The smallest and largest positive value (1..2 when there are none).
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo.is_finite() { (lo, hi) } else { (1.0, 2.0) }
}

/// The log axis's ticks are powers of ten: `1000` → `1k`, `10000000` → `10M`.
fn bytes_label(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.0}M", v / 1e6),
        v if v >= 1e3 => format!("{:.0}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_is_svg_with_a_line_per_count_and_text_elements() {
        let row = |op: &'static str, size: usize, sections: u32, mib_s: f64| {
            Cell::Measured(Row {
                op,
                size,
                sections,
                ns: 1.0,
                mib_s,
                p50_ns: 1.0,
                p99_ns: 1.0,
                samples: 1,
                object_bytes: 1,
            })
        };
        let cells = vec![
            row("overwrite", 64, 1, 900.0),
            row("overwrite", 4096, 1, 20_000.0),
            row("read", 64, 1024, 1200.0),
            row("read", 4096, 1024, 30_000.0),
        ];
        let svg = render(&cells, "ckpt bench").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("<text") && svg.contains("overwrite"));
        assert!(svg.contains("<polyline"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
