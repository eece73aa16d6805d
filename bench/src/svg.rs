//! Small inline-SVG line charts for the report: several named series on shared axes, with
//! ticks, a legend and an optional "nines" x axis for latency percentiles (50, 90, 99, 99.9,
//! ... spaced evenly). Text is XML-escaped; non-finite points are skipped, so a chart of
//! empty or odd data still renders (as empty axes).

use std::fmt::Write;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 45.0;
/// One colour per series, cycling.
const COLOURS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One named line.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// How the x axis is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    Linear,
    /// Percentiles (0-100) placed by their number of nines.
    Percentile,
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// -log10(1 - p/100): 50 -> 0.3, 90 -> 1, 99 -> 2, 99.9 -> 3; 100 is drawn at 99.999.
fn nines(percentile: f64) -> f64 {
    -(1.0 - percentile.min(99.999) / 100.0).log10()
}

fn nice_ticks(max: f64) -> Vec<f64> {
    if max <= 0.0 || !max.is_finite() {
        return vec![0.0, 1.0];
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(magnitude * 10.0);
    (0..=((max / step).ceil() as usize))
        .map(|i| i as f64 * step)
        .collect()
}

fn label(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if value >= 1e4 {
        format!("{:.0}k", value / 1e3)
    } else if value == value.trunc() {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// An `<svg>` element with `series` drawn as lines.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    x_axis: XAxis,
    series: &[Series],
) -> String {
    let to_x = |x: f64| match x_axis {
        XAxis::Linear => x,
        XAxis::Percentile => nines(x),
    };
    let points = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let x_max = match x_axis {
        XAxis::Linear => points().map(|p| p.0).fold(0.0, f64::max).max(1e-9),
        XAxis::Percentile => nines(99.999),
    };
    let y_ticks = nice_ticks(points().map(|p| p.1).fold(0.0, f64::max));
    let y_max = *y_ticks.last().unwrap_or(&1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + to_x(x) / x_max * plot_w;
    let sy = |y: f64| TOP + plot_h - y / y_max * plot_h;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="18" font-size="14" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        escape(title)
    );
    for tick in &y_ticks {
        let y = sy(*tick);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            label(*tick)
        );
    }
    let x_ticks: Vec<(f64, String)> = match x_axis {
        XAxis::Linear => nice_ticks(x_max)
            .into_iter()
            .filter(|t| *t <= x_max)
            .map(|t| (t, label(t)))
            .collect(),
        XAxis::Percentile => [50.0, 90.0, 99.0, 99.9, 99.99, 99.999]
            .into_iter()
            .map(|p| (p, format!("{p}")))
            .collect(),
    };
    for (tick, text) in &x_ticks {
        let x = sx(*tick);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 15.0,
            escape(text)
        );
    }
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(14,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 8.0,
        escape(x_label),
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        if !path.is_empty() {
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
        }
        let ly = TOP + 10.0 + i as f64 * 18.0;
        let lx = LEFT + plot_w + 12.0;
        let _ = write!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_a_line_per_series_and_escapes_names() {
        let series = vec![
            Series {
                name: "a<b>".into(),
                points: vec![(0.0, 1.0), (10.0, 5.0)],
            },
            Series {
                name: "c".into(),
                points: vec![(0.0, 2.0), (f64::NAN, 1.0), (10.0, 3.0)],
            },
            Series {
                name: "empty".into(),
                points: vec![],
            },
        ];
        let svg = line_chart("t & u", "x", "y", XAxis::Linear, &series);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a&lt;b&gt;") && svg.contains("t &amp; u"));
        assert!(!svg.contains("NaN"));
        let cdf = line_chart("cdf", "percentile", "ms", XAxis::Percentile, &series[..1]);
        assert!(cdf.contains(">99.9<"));
    }

    #[test]
    fn ticks_cover_the_maximum() {
        assert_eq!(nice_ticks(9.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert!(*nice_ticks(48_000.0).last().unwrap() >= 48_000.0);
        assert_eq!(nice_ticks(0.0), vec![0.0, 1.0]);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
    }
}
