//! PNG chart of demand against capacity per policy. Drawn with plotters'
//! bitmap backend and no text at all, so it needs no fonts or system
//! libraries on a CI runner: one panel per policy, top to bottom in the
//! order of the table; black = demand, red = ready capacity (server slots).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::sim::PolicyResult;

fn chart_err(e: impl std::fmt::Display) -> Error {
    Error::Chart(e.to_string())
}

/// Max over buckets of `step` points, keeping peaks visible when downsampling.
fn bucket_max(v: &[f64], step: usize) -> Vec<f64> {
    v.chunks(step.max(1))
        .map(|c| c.iter().copied().fold(0.0, f64::max))
        .collect()
}

/// Writes the chart; `demand` is per minute over the replayed window.
pub fn draw(path: &Path, demand: &[f64], results: &[PolicyResult]) -> Result<()> {
    let width = 1400u32;
    let panel = 220u32;
    let step = (demand.len() / width as usize).max(1);
    let d = bucket_max(demand, step);
    let caps: Vec<Vec<f64>> = results
        .iter()
        .map(|r| bucket_max(&r.capacity, step))
        .collect();
    let ymax = caps.iter().flatten().chain(&d).copied().fold(1.0, f64::max) * 1.05;
    let root =
        BitMapBackend::new(path, (width, panel * results.len().max(1) as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_err)?;
    let areas = root.split_evenly((results.len().max(1), 1));
    for (area, cap) in areas.iter().zip(&caps) {
        let mut chart = ChartBuilder::on(area)
            .margin(8)
            .build_cartesian_2d(0..d.len().max(1), 0.0..ymax)
            .map_err(chart_err)?;
        chart
            .plotting_area()
            .draw(&Rectangle::new(
                [(0, 0.0), (d.len().max(1), ymax)],
                ShapeStyle::from(&BLACK.mix(0.3)),
            ))
            .map_err(chart_err)?;
        chart
            .draw_series(LineSeries::new(
                cap.iter().enumerate().map(|(i, v)| (i, *v)),
                ShapeStyle::from(&RED).stroke_width(2),
            ))
            .map_err(chart_err)?;
        chart
            .draw_series(LineSeries::new(
                d.iter().enumerate().map(|(i, v)| (i, *v)),
                &BLACK,
            ))
            .map_err(chart_err)?;
    }
    root.present().map_err(chart_err)?;
    Ok(())
}
