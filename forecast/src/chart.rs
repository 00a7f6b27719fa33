//! PNG chart of demand against capacity per policy, for people reading a
//! simulator run: a title naming the trace and its dates, a legend, and one
//! panel per policy (in the order of the table) captioned with its cost and
//! waits, with a y axis in server slots and an x axis in UTC dates. Drawn
//! with plotters' bitmap backend; text comes from the hand-drawn bitmap font
//! in [`crate::font`], so no font file or system library is needed.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::font;
use crate::sim::{Policy, PolicyResult};

fn chart_err(e: impl std::fmt::Display) -> Error {
    Error::Chart(e.to_string())
}

/// Max over buckets of `step` points, keeping peaks visible when downsampling.
fn bucket_max(v: &[f64], step: usize) -> Vec<f64> {
    v.chunks(step.max(1))
        .map(|c| c.iter().copied().fold(0.0, f64::max))
        .collect()
}

/// What the chart says about the run besides the curves.
#[derive(Debug, Clone)]
pub struct ChartInfo {
    /// Trace name for the title.
    pub trace: String,
    /// Epoch minute (UTC) of the first point of `demand`.
    pub start_minute: i64,
    pub slots_per_node: usize,
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws `text` with its top-left corner at (x, y), `scale` image pixels per font pixel.
fn text(area: &Area, x: i32, y: i32, s: &str, color: &RGBColor, scale: u32) -> Result<()> {
    for (px, py) in font::pixels(s, scale) {
        for dx in 0..scale {
            for dy in 0..scale {
                area.draw_pixel((x + (px + dx) as i32, y + (py + dy) as i32), color)
                    .map_err(chart_err)?;
            }
        }
    }
    Ok(())
}

/// A "nice" tick step (1, 2 or 5 × 10^k) giving at most `max_ticks` ticks up to `top`.
fn tick_step(top: f64, max_ticks: usize) -> f64 {
    let raw = top / max_ticks.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|k| k * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn date_label(minute: i64) -> String {
    let (_, m, d) = crate::calendar::civil_from_days(minute.div_euclid(1440));
    format!("{m:02}-{d:02}")
}

const WIDTH: u32 = 1400;
const HEADER: u32 = 70;
const PANEL: u32 = 220;
const FOOTER: u32 = 34;
const LEFT: i32 = 70;
const RIGHT: i32 = 20;
const CAPTION: i32 = 26;
const TICKS: i32 = 20;
/// Where the title starts, and its scale (image pixels per font pixel).
const TITLE_AT: (i32, i32) = (LEFT, 8);
const TITLE_SCALE: u32 = 2;

/// Width and height of the image for `panels` policies.
pub fn size(panels: usize) -> (u32, u32) {
    (WIDTH, HEADER + PANEL * panels.max(1) as u32 + FOOTER)
}

/// The title line: what is drawn and over which UTC dates.
pub fn title(info: &ChartInfo, minutes: usize) -> String {
    let end_minute = info.start_minute + minutes as i64;
    format!(
        "Demand vs ready capacity per policy: trace {}, {} to {} UTC",
        info.trace,
        crate::cli::hour_label(info.start_minute.div_euclid(60)),
        crate::cli::hour_label(end_minute.div_euclid(60))
    )
}

/// Writes the chart as PNG; `demand` is per minute over the replayed window.
pub fn draw(path: &Path, info: &ChartInfo, demand: &[f64], results: &[PolicyResult]) -> Result<()> {
    let root = BitMapBackend::new(path, size(results.len())).into_drawing_area();
    paint(&root, info, demand, results)?;
    root.present().map_err(chart_err)
}

/// The same chart as RGB bytes (three a pixel, rows top to bottom) of [`size`].
pub fn draw_rgb(info: &ChartInfo, demand: &[f64], results: &[PolicyResult]) -> Result<Vec<u8>> {
    let (w, h) = size(results.len());
    let mut buf = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        paint(&root, info, demand, results)?;
        root.present().map_err(chart_err)?;
    }
    Ok(buf)
}

fn paint(root: &Area, info: &ChartInfo, demand: &[f64], results: &[PolicyResult]) -> Result<()> {
    let (_, height) = size(results.len());
    let plot_w = WIDTH as i32 - LEFT - RIGHT;
    let step = (demand.len() / plot_w as usize).max(1);
    let d = bucket_max(demand, step);
    let caps: Vec<Vec<f64>> = results
        .iter()
        .map(|r| bucket_max(&r.capacity, step))
        .collect();
    let top = caps.iter().flatten().chain(&d).copied().fold(1.0, f64::max) * 1.05;
    let ystep = tick_step(top, 4);
    let top = (top / ystep).ceil() * ystep;
    let oracle = results.iter().find(|r| r.policy == Policy::Oracle);

    root.fill(&WHITE).map_err(chart_err)?;
    let grey = RGBColor(200, 200, 200);
    let dark = RGBColor(90, 90, 90);
    let end_minute = info.start_minute + demand.len() as i64;
    text(
        root,
        TITLE_AT.0,
        TITLE_AT.1,
        &title(info, demand.len()),
        &BLACK,
        TITLE_SCALE,
    )?;
    // legend
    let ly = 40;
    root.draw(&PathElement::new(
        vec![(LEFT, ly + 7), (LEFT + 40, ly + 7)],
        ShapeStyle::from(&BLACK).stroke_width(2),
    ))
    .map_err(chart_err)?;
    text(root, LEFT + 48, ly, "demand (servers in use)", &BLACK, 2)?;
    let lx = LEFT + 48 + font::text_width("demand (servers in use)", 2) as i32 + 40;
    root.draw(&PathElement::new(
        vec![(lx, ly + 7), (lx + 40, ly + 7)],
        ShapeStyle::from(&RED).stroke_width(2),
    ))
    .map_err(chart_err)?;
    text(
        root,
        lx + 48,
        ly,
        &format!(
            "ready capacity (server slots, {} per node)",
            info.slots_per_node
        ),
        &BLACK,
        2,
    )?;

    // x ticks at UTC midnights, thinned so labels do not collide
    // one image pixel per bucket of `step` minutes
    let px_of = |minute: i64| -> i32 { LEFT + ((minute - info.start_minute) / step as i64) as i32 };
    let days = (demand.len() as i64 + 1439) / 1440;
    let label_px = font::text_width("00-00", 1) as f64 + 16.0;
    let px_per_day = 1440.0 / step as f64;
    let every = ((label_px / px_per_day).ceil() as i64).max(1);
    let first_midnight = (info.start_minute + 1439).div_euclid(1440) * 1440;

    for (k, (r, cap)) in results.iter().zip(&caps).enumerate() {
        let y0 = (HEADER + PANEL * k as u32) as i32;
        let plot_top = y0 + CAPTION;
        let plot_bottom = y0 + PANEL as i32 - TICKS;
        let plot_h = (plot_bottom - plot_top) as f64;
        let py = |v: f64| -> i32 { plot_bottom - (v / top * plot_h).round() as i32 };
        let vs = oracle
            .map(|o| format!("{:.2}x oracle", r.cost / o.cost.max(1e-9)))
            .unwrap_or_default();
        text(
            root,
            LEFT,
            y0 + 6,
            &format!(
                "{}: {} node-hours ({vs}), {} cold starts, {:.0} waiting player-min",
                r.policy.name(),
                r.node_hours,
                r.cold_starts,
                r.wait_player_minutes
            ),
            &BLACK,
            2,
        )?;
        // grid, y ticks and labels
        let mut v = 0.0;
        while v <= top + 1e-9 {
            let y = py(v);
            root.draw(&PathElement::new(
                vec![(LEFT, y), (LEFT + plot_w, y)],
                ShapeStyle::from(&grey),
            ))
            .map_err(chart_err)?;
            let label = format!("{v:.0}");
            let w = font::text_width(&label, 1) as i32;
            text(root, LEFT - 6 - w, y - 3, &label, &dark, 1)?;
            v += ystep;
        }
        text(root, 6, plot_top - 2, "slots", &dark, 1)?;
        let mut day = 0;
        let mut mid = first_midnight;
        while mid < end_minute {
            let x = px_of(mid);
            root.draw(&PathElement::new(
                vec![(x, plot_top), (x, plot_bottom)],
                ShapeStyle::from(&grey.mix(0.6)),
            ))
            .map_err(chart_err)?;
            if day % every == 0 {
                root.draw(&PathElement::new(
                    vec![(x, plot_bottom), (x, plot_bottom + 4)],
                    ShapeStyle::from(&dark),
                ))
                .map_err(chart_err)?;
                let label = date_label(mid);
                let w = font::text_width(&label, 1) as i32;
                text(root, x - w / 2, plot_bottom + 7, &label, &dark, 1)?;
            }
            day += 1;
            mid += 1440;
            if day > days + 1 {
                break;
            }
        }
        root.draw(&Rectangle::new(
            [(LEFT, plot_top), (LEFT + plot_w, plot_bottom)],
            ShapeStyle::from(&BLACK.mix(0.5)),
        ))
        .map_err(chart_err)?;
        let line = |vals: &[f64]| -> Vec<(i32, i32)> {
            vals.iter()
                .enumerate()
                .map(|(i, v)| (LEFT + i as i32, py(*v)))
                .collect()
        };
        root.draw(&PathElement::new(
            line(cap),
            ShapeStyle::from(&RED).stroke_width(2),
        ))
        .map_err(chart_err)?;
        root.draw(&PathElement::new(line(&d), ShapeStyle::from(&BLACK)))
            .map_err(chart_err)?;
    }
    text(
        root,
        LEFT,
        (height - FOOTER + 8) as i32,
        "x: date (UTC, month-day, gridlines at midnight)   y: server slots",
        &dark,
        2,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(100.0, 4), 50.0);
        assert_eq!(tick_step(9.0, 4), 5.0);
        assert_eq!(tick_step(1.05, 4), 0.5);
        assert_eq!(date_label(1440 * 20_000), "10-04");
    }

    fn result(policy: Policy, capacity: Vec<f64>) -> PolicyResult {
        PolicyResult {
            policy,
            node_hours: 10,
            cost: 10.0,
            cold_starts: 0,
            wait_player_minutes: 0.0,
            wait_p95: 0.0,
            refused: 0,
            utilization: 0.5,
            capacity,
            created: 0,
            deleted: 0,
        }
    }

    #[test]
    fn title_legend_and_axes_are_drawn_as_text() {
        let info = ChartInfo {
            trace: "t".into(),
            start_minute: 1440 * 20_000,
            slots_per_node: 8,
        };
        let demand: Vec<f64> = (0..2 * 1440).map(|i| f64::from(i % 300) / 30.0).collect();
        let results = vec![
            result(Policy::Reactive, vec![8.0; demand.len()]),
            result(Policy::Oracle, vec![16.0; demand.len()]),
        ];
        let buf = draw_rgb(&info, &demand, &results).unwrap();
        let (w, h) = size(results.len());
        assert_eq!(buf.len(), (w * h * 3) as usize);
        let px = |x: i32, y: i32| {
            let i = (y as usize * w as usize + x as usize) * 3;
            (buf[i], buf[i + 1], buf[i + 2])
        };
        let count = |x0: i32, y0: i32, x1: i32, y1: i32, c: (u8, u8, u8)| {
            (y0..y1)
                .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                .filter(|&(x, y)| px(x, y) == c)
                .count()
        };
        // the title: exactly its glyphs' pixels are black in its band
        let t = title(&info, demand.len());
        assert_eq!(
            t,
            "Demand vs ready capacity per policy: trace t, 2024-10-04 00:00 to 2024-10-06 00:00 UTC"
        );
        let lit = font::pixels(&t, TITLE_SCALE);
        for (x, y) in &lit {
            assert_eq!(
                px(TITLE_AT.0 + *x as i32, TITLE_AT.1 + *y as i32),
                (0, 0, 0)
            );
        }
        let band = (
            TITLE_AT.0,
            TITLE_AT.1,
            TITLE_AT.0 + font::text_width(&t, TITLE_SCALE) as i32,
            TITLE_AT.1 + (font::HEIGHT * TITLE_SCALE) as i32,
        );
        let scale2 = (TITLE_SCALE * TITLE_SCALE) as usize;
        assert_eq!(
            count(band.0, band.1, band.2, band.3, (0, 0, 0)),
            lit.len() * scale2
        );
        // the legend: a red sample line and black text after the demand sample
        assert!(count(LEFT, 40, WIDTH as i32 - RIGHT, 60, (255, 0, 0)) >= 40);
        let legend = font::pixels("demand (servers in use)", 2).len() * 4;
        assert!(count(LEFT + 48, 40, LEFT + 48 + 300, 60, (0, 0, 0)) >= legend);
        // axis labels: the unit beside the y axis, dates under the x axis
        let dark = (90, 90, 90);
        let plot_top = HEADER as i32 + CAPTION;
        assert!(count(0, plot_top - 2, LEFT - 30, plot_top + 8, dark) > 0);
        let under = HEADER as i32 + PANEL as i32 - TICKS + 7;
        assert!(count(LEFT, under, WIDTH as i32 - RIGHT, under + 9, dark) > 0);
        // each panel's caption names its policy
        let caption = font::pixels("oracle", 2).len() * 4;
        let y1 = (HEADER + PANEL) as i32 + 6;
        assert!(count(LEFT, y1, LEFT + 80, y1 + 18, (0, 0, 0)) >= caption);
    }
}
