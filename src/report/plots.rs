//! The report's plots as SVG text (plotters' SVG backend: text is left to the viewer's fonts, so
//! nothing here needs system fonts): accuracy curves with 95 % interval whiskers, and heat maps.

use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

/// Okabe–Ito colours: distinguishable with the common colour-vision deficiencies.
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 0),
];

/// One point of a curve: y and its interval, in percent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

#[derive(Clone, Debug)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

fn draw_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::input(format!("cannot draw {what}: {e}"))
}

/// Curves of accuracy (0–100 %) against x, one per series, with whiskers for the intervals.
pub fn line_plot(plot: &LinePlot) -> Result<String> {
    let mut svg = String::new();
    draw_lines(plot, &mut svg).map_err(|e| draw_error(&plot.title, e))?;
    Ok(svg)
}

fn draw_lines<'a>(
    plot: &LinePlot,
    svg: &'a mut String,
) -> std::result::Result<(), Box<dyn std::error::Error + 'a>> {
    let xs = plot
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.x));
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let (x0, x1) = if x0.is_finite() && x1 > x0 {
        let pad = 0.04 * (x1 - x0);
        (x0 - pad, x1 + pad)
    } else {
        (x0 - 1.0, x0 + 1.0)
    };
    let root = SVGBackend::with_string(svg, (520, 360)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&plot.title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(52)
        .build_cartesian_2d(x0..x1, 0f64..100f64)?;
    chart
        .configure_mesh()
        .x_desc(&plot.x_label)
        .y_desc(&plot.y_label)
        .light_line_style(RGBColor(238, 238, 238))
        .max_light_lines(1)
        .draw()?;
    for (i, series) in plot.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<(f64, f64)> = series.points.iter().map(|p| (p.x, p.y)).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(&series.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
        chart.draw_series(
            series.points.iter().map(|p| {
                ErrorBar::new_vertical(p.x, p.low, p.y, p.high, colour.stroke_width(1), 6)
            }),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}

/// A heat map of accuracies (0–1; `None` where not evaluated), rows top to bottom, with the value
/// in percent written in each cell.
pub fn heat_map(
    title: &str,
    rows: &[String],
    columns: &[String],
    values: &[Vec<Option<f64>>],
) -> Result<String> {
    let mut svg = String::new();
    draw_heat_map(title, rows, columns, values, &mut svg).map_err(|e| draw_error(title, e))?;
    Ok(svg)
}

fn draw_heat_map<'a>(
    title: &str,
    rows: &[String],
    columns: &[String],
    values: &[Vec<Option<f64>>],
    svg: &'a mut String,
) -> std::result::Result<(), Box<dyn std::error::Error + 'a>> {
    let height = 90 + 24 * rows.len() as u32;
    let width = (160 + 70 * columns.len() as u32).max(8 * title.chars().count() as u32 + 40);
    let root = SVGBackend::with_string(svg, (width, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (n_rows, n_cols) = (rows.len(), columns.len());
    // Cell (c, r) is centred on integer coordinates, so the integer ticks label the cells.
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(130)
        .build_cartesian_2d(-0.5..n_cols as f64 - 0.5, -0.5..n_rows as f64 - 0.5)?;
    let name = |names: &[String], v: f64, flip: bool| {
        let i = v.round();
        if (v - i).abs() > 1e-6 || i < 0.0 || i as usize >= names.len() {
            return String::new();
        }
        let i = i as usize;
        names[if flip { names.len() - 1 - i } else { i }].clone()
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(n_cols + 1)
        .y_labels(n_rows + 1)
        .x_label_formatter(&|v| name(columns, *v, false))
        .y_label_formatter(&|v| name(rows, *v, true))
        .label_style(("sans-serif", 12))
        .draw()?;
    for (r, row) in values.iter().enumerate() {
        let y = (n_rows - 1 - r) as f64;
        for (c, value) in row.iter().enumerate() {
            let Some(v) = value else { continue };
            let x = c as f64;
            let colour: RGBColor = ViridisRGB.get_color(v.clamp(0.0, 1.0) as f32);
            let corners = [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)];
            chart.draw_series(std::iter::once(Rectangle::new(corners, colour.filled())))?;
            let ink = if *v > 0.55 { BLACK } else { WHITE };
            let font = ("sans-serif", 12)
                .into_font()
                .color(&ink)
                .pos(Pos::new(HPos::Center, VPos::Center));
            let label = format!("{:.1}", 100.0 * v);
            chart.draw_series(std::iter::once(Text::new(label, (x, y), font)))?;
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_plot_is_svg_with_every_series_named() {
        let series = |name: &str, y: f64| Series {
            name: name.into(),
            points: (1..=4)
                .map(|x| Point {
                    x: x as f64,
                    y: y / x as f64,
                    low: y / x as f64 - 2.0,
                    high: y / x as f64 + 2.0,
                })
                .collect(),
        };
        let svg = line_plot(&LinePlot {
            title: "PGD".into(),
            x_label: "ε".into(),
            y_label: "robust accuracy (%)".into(),
            series: vec![series("SDNet-18", 60.0), series("ResNet-18", 50.0)],
        })
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("SDNet-18") && svg.contains("ResNet-18"));
    }

    #[test]
    fn heat_map_writes_values_and_skips_gaps() {
        let rows = vec!["gaussian_noise".to_string(), "fog".to_string()];
        let cols = vec!["1".to_string(), "2".to_string()];
        let svg = heat_map(
            "SDNet-18",
            &rows,
            &cols,
            &[vec![Some(0.762), None], vec![Some(0.1), Some(0.5)]],
        )
        .unwrap();
        assert!(svg.contains("76.2") && svg.contains("10.0") && svg.contains("50.0"));
        assert!(svg.contains("gaussian_noise"));
    }
}
