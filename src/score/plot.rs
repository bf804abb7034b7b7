//! The PNG of one store's day: what its customers were told against what they waited.
//!
//! No text (so no font libraries): x is the hour of the day (a vertical line each hour, a
//! darker one each 6 h), y the wait in minutes (a line each 15 min, darker each hour). Gray
//! dots: real waits of completed orders, at their placement. Blue: the estimator's published
//! minute, with its p90 band in light blue. Red: the 30-minute rolling mean. Green: the oracle.

use std::path::Path;

use plotters::prelude::*;

use super::{Scored, column_of, oracle_column, rolling_mean_column};
use crate::datagen::sim::Outcome;
use crate::state::Estimator;

const SIZE: (u32, u32) = (1400, 700);

pub(super) fn draw(
    path: &Path,
    orders: &[Scored],
    store: i32,
    estimator: Estimator,
) -> Result<(), String> {
    let mut mine: Vec<&Scored> = orders.iter().filter(|o| o.store_id == store).collect();
    if mine.is_empty() {
        return Err(format!("store {store} has no scored order"));
    }
    mine.sort_by_key(|o| o.placed_at_ms);
    let hour = |o: &Scored| o.placed_at_ms.rem_euclid(86_400_000) as f64 / 3_600_000.0;
    let col = column_of(estimator);
    let series = |c: usize, p90: bool| -> Vec<(f64, f64)> {
        mine.iter()
            .filter_map(|o| {
                let a = o.answers.get(c).copied().flatten()?;
                let y = if p90 { a.p90_minutes? } else { a.minutes };
                Some((hour(o), y))
            })
            .collect()
    };
    let estimate = series(col, false);
    let band = series(col, true);
    let rolling = series(rolling_mean_column(), false);
    let oracle = series(oracle_column(), false);
    let real: Vec<(f64, f64)> = mine
        .iter()
        .filter(|o| o.outcome == Outcome::Completed)
        .map(|o| (hour(o), o.wait_minutes))
        .collect();
    let top = real
        .iter()
        .chain(&band)
        .chain(&rolling)
        .map(|p| p.1)
        .fold(60.0f64, f64::max);
    let top = (top / 15.0).ceil() * 15.0;

    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .build_cartesian_2d(0f64..24f64, 0f64..top)
        .map_err(|e| err(&e))?;
    let light = RGBColor(232, 232, 232);
    let dark = RGBColor(180, 180, 180);
    for h in 0..=24 {
        let c = if h % 6 == 0 { dark } else { light };
        let x = f64::from(h);
        chart
            .draw_series(LineSeries::new([(x, 0.0), (x, top)], c))
            .map_err(|e| err(&e))?;
    }
    let mut m = 0.0;
    while m <= top {
        let c = if (m as i64) % 60 == 0 { dark } else { light };
        chart
            .draw_series(LineSeries::new([(0.0, m), (24.0, m)], c))
            .map_err(|e| err(&e))?;
        m += 15.0;
    }
    // The p90 band: from the estimate up to its p90, as one polygon.
    let mut polygon: Vec<(f64, f64)> = band.clone();
    polygon.extend(estimate.iter().rev().copied());
    chart
        .draw_series(std::iter::once(Polygon::new(
            polygon,
            RGBColor(120, 170, 255).mix(0.35).filled(),
        )))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(
            real.iter()
                .map(|&p| Circle::new(p, 3, RGBColor(90, 90, 90).filled())),
        )
        .map_err(|e| err(&e))?;
    for (line, color) in [
        (&oracle, RGBColor(40, 160, 60)),
        (&rolling, RGBColor(220, 40, 40)),
        (&estimate, RGBColor(30, 80, 220)),
    ] {
        chart
            .draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(2)))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
