//! SVG plots written by hand (no plotting dependency): lines against an x axis, and stacked
//! bars. Plain SVG 1.1 with text labels, readable in a browser and on GitHub.

use std::fmt::Write;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
/// Series colours, in order (colour-blind safe: Okabe–Ito).
const COLOURS: &[&str] = &[
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
];

/// One line: its points (x ascending), drawn dashed when `dashed`.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

/// A line chart; `log_y` draws the y axis in decades (values ≤ 0 are left out).
pub fn lines(title: &str, x_label: &str, y_label: &str, series: &[Series], log_y: bool) -> String {
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|&(_, y)| y.is_finite() && (!log_y || y > 0.0))
        .collect();
    let mut svg = open(title);
    if all.is_empty() {
        empty(&mut svg);
        return close(svg);
    }
    let x = Axis::linear(
        all.iter()
            .map(|p| p.0)
            .fold(f64::INFINITY, f64::min)
            .min(0.0),
        all.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max),
    );
    let (y_low, y_high) = (
        all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min),
        all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
    );
    let y = if log_y {
        Axis::log(y_low, y_high)
    } else {
        Axis::linear(0.0, y_high)
    };
    frame(&mut svg, &x, &y, x_label, y_label);
    // Distinct colours per series name without the "p50"/"p99" part (a side keeps its colour).
    let mut keys: Vec<String> = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let key = s.name.split(" p").next().unwrap_or(&s.name).to_owned();
        let colour_index = keys.iter().position(|k| *k == key).unwrap_or_else(|| {
            keys.push(key);
            keys.len() - 1
        });
        let colour = COLOURS[colour_index % COLOURS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .filter(|&&(_, v)| v.is_finite() && (!log_y || v > 0.0))
            .map(|&(a, b)| format!("{:.1},{:.1}", x.to_px_x(a), y.to_px_y(b)))
            .collect();
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"#,
            points.join(" ")
        );
        for point in &points {
            let (px, py) = point.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                svg,
                r#"<circle cx="{px}" cy="{py}" r="3" fill="{colour}"/>"#
            );
        }
        legend(&mut svg, i, colour, &s.name, s.dashed);
    }
    close(svg)
}

/// One bar: its label and its stacked parts `(part, value)`.
pub struct Bar {
    pub label: String,
    pub parts: Vec<(String, f64)>,
}

/// Stacked bars, one colour per part name (the same name, the same colour on every bar).
pub fn stacked_bars(title: &str, y_label: &str, bars: &[Bar]) -> String {
    let mut svg = open(title);
    let top = bars
        .iter()
        .map(|b| b.parts.iter().map(|p| p.1.max(0.0)).sum::<f64>())
        .fold(0.0, f64::max);
    if bars.is_empty() || top <= 0.0 {
        empty(&mut svg);
        return close(svg);
    }
    let x = Axis::linear(0.0, bars.len() as f64);
    let y = Axis::linear(0.0, top);
    frame(&mut svg, &x, &y, "", y_label);
    let mut names: Vec<&str> = Vec::new();
    let slot = (WIDTH - LEFT - RIGHT) / bars.len() as f64;
    for (i, bar) in bars.iter().enumerate() {
        let left = LEFT + slot * (i as f64 + 0.15);
        let mut base = 0.0;
        for (name, value) in &bar.parts {
            let colour_index = names.iter().position(|n| n == name).unwrap_or_else(|| {
                names.push(name);
                names.len() - 1
            });
            let colour = COLOURS[colour_index % COLOURS.len()];
            let (y0, y1) = (y.to_px_y(base), y.to_px_y(base + value.max(0.0)));
            let _ = writeln!(
                svg,
                r#"<rect x="{left:.1}" y="{y1:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{}: {} {value:.3}</title></rect>"#,
                slot * 0.7,
                (y0 - y1).max(0.0),
                escape(&bar.label),
                escape(name)
            );
            base += value.max(0.0);
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" transform="rotate(-30 {:.1} {:.1})">{}</text>"#,
            left + slot * 0.35,
            HEIGHT - BOTTOM + 14.0,
            left + slot * 0.35,
            HEIGHT - BOTTOM + 14.0,
            escape(&bar.label)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{base:.3}</text>"#,
            left + slot * 0.35,
            y.to_px_y(base) - 4.0
        );
    }
    for (i, name) in names.iter().enumerate() {
        legend(&mut svg, i, COLOURS[i % COLOURS.len()], name, false);
    }
    close(svg)
}

/// A scale from data to pixels.
struct Axis {
    low: f64,
    high: f64,
    log: bool,
    ticks: Vec<f64>,
}

impl Axis {
    fn linear(low: f64, high: f64) -> Axis {
        let high = if high > low { high } else { low + 1.0 };
        let step = nice_step((high - low) / 5.0);
        let (low, high) = ((low / step).floor() * step, (high / step).ceil() * step);
        let ticks = (0..)
            .map(|i| low + step * i as f64)
            .take_while(|t| *t <= high + step / 2.0)
            .collect();
        Axis {
            low,
            high,
            log: false,
            ticks,
        }
    }

    fn log(low: f64, high: f64) -> Axis {
        let low = low.max(1e-9).log10().floor();
        let high = high.max(1e-9).log10().ceil().max(low + 1.0);
        let ticks = (low as i32..=high as i32).map(|e| 10f64.powi(e)).collect();
        Axis {
            low,
            high,
            log: true,
            ticks,
        }
    }

    fn share(&self, v: f64) -> f64 {
        let v = if self.log { v.max(1e-12).log10() } else { v };
        (v - self.low) / (self.high - self.low)
    }

    fn to_px_x(&self, v: f64) -> f64 {
        LEFT + self.share(v) * (WIDTH - LEFT - RIGHT)
    }

    fn to_px_y(&self, v: f64) -> f64 {
        HEIGHT - BOTTOM - self.share(v) * (HEIGHT - TOP - BOTTOM)
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.max(1e-12).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power)
}

fn open(title: &str) -> String {
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">"#
    );
    svg.push('\n');
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/><text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    svg
}

fn close(mut svg: String) -> String {
    svg.push_str("</svg>\n");
    svg
}

fn empty(svg: &mut String) {
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{:.0}" font-size="13">no data in this run</text>"#,
        HEIGHT / 2.0
    );
}

/// Axes, grid lines, tick labels and axis titles.
fn frame(svg: &mut String, x: &Axis, y: &Axis, x_label: &str, y_label: &str) {
    let (right, bottom) = (WIDTH - RIGHT, HEIGHT - BOTTOM);
    for &t in &y.ticks {
        let py = y.to_px_y(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{right}" y2="{py:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            py + 4.0,
            number(t)
        );
    }
    if !x_label.is_empty() {
        for &t in &x.ticks {
            let px = x.to_px_x(t);
            let _ = writeln!(
                svg,
                r##"<line x1="{px:.1}" y1="{bottom}" x2="{px:.1}" y2="{:.0}" stroke="#999"/><text x="{px:.1}" y="{:.0}" font-size="11" text-anchor="middle">{}</text>"##,
                bottom + 5.0,
                bottom + 18.0,
                number(t)
            );
        }
    }
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.0}" y="{:.0}" font-size="12" text-anchor="middle">{}</text>"#,
        (LEFT + right) / 2.0,
        HEIGHT - 12.0,
        escape(x_label)
    );
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{:.0}" font-size="12" text-anchor="middle" transform="rotate(-90 16 {:.0})">{}</text>"#,
        (TOP + bottom) / 2.0,
        (TOP + bottom) / 2.0,
        escape(y_label)
    );
}

fn legend(svg: &mut String, index: usize, colour: &str, name: &str, dashed: bool) {
    let (x, y) = (WIDTH - RIGHT + 14.0, TOP + 10.0 + 18.0 * index as f64);
    let dash = if dashed {
        r#" stroke-dasharray="6 4""#
    } else {
        ""
    };
    let _ = writeln!(
        svg,
        r#"<line x1="{x:.0}" y1="{y:.0}" x2="{:.0}" y2="{y:.0}" stroke="{colour}" stroke-width="3"{dash}/><text x="{:.0}" y="{:.0}" font-size="11">{}</text>"#,
        x + 24.0,
        x + 30.0,
        y + 4.0,
        escape(name)
    );
}

/// A tick label: integers without decimals, small numbers with what they need.
fn number(v: f64) -> String {
    if v == 0.0 || v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        let digits = (-v.abs().log10().floor()) as usize + 1;
        format!("{v:.digits$}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_chart_places_its_points_inside_the_frame() {
        let series = [Series {
            name: "parley p99".into(),
            points: vec![(200.0, 1.5), (2000.0, 40.0)],
            dashed: false,
        }];
        let svg = lines("latency", "offered msg/s", "ms", &series, true);
        assert!(
            svg.starts_with("<svg") && svg.ends_with("</svg>\n"),
            "{svg}"
        );
        assert!(svg.contains("<polyline"), "{svg}");
        // Decade ticks 1, 10 and 100 for values 1.5 to 40.
        for tick in [">1<", ">10<", ">100<"] {
            assert!(svg.contains(tick), "{tick} in {svg}");
        }
    }

    #[test]
    fn stacked_bars_sum_their_parts_and_escape_labels() {
        let bars = [Bar {
            label: "parley <batch 10>".into(),
            parts: vec![("api".into(), 0.1), ("postgres".into(), 0.25)],
        }];
        let svg = stacked_bars("cpu", "CPU-s / 1000", &bars);
        assert!(svg.contains("parley &lt;batch 10&gt;"), "{svg}");
        assert!(svg.contains(">0.350<"), "{svg}");
        assert_eq!(svg.matches("<rect x=").count(), 2, "{svg}");
    }

    #[test]
    fn no_data_says_so() {
        assert!(stacked_bars("cpu", "s", &[]).contains("no data"));
        assert!(lines("l", "x", "y", &[], false).contains("no data"));
    }
}
