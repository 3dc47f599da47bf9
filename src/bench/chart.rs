//! The SVG charts of `--report`: plain functions from numbers to markup,
//! with titles, axes and units, and no script, so that a page holding them
//! is readable anywhere (a browser, a README, a mail).
//!
//! Every number written is finite (a non-finite point is left out, an
//! empty series draws an empty frame that says so), and every string is
//! escaped, so the output is well-formed XML whatever the data.

use std::fmt::Write;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 320.0;
/// Room for the tick labels and axis titles.
const LEFT: f64 = 72.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 52.0;

/// How an axis maps values onto its length.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scale {
    Linear,
    /// Base 10; for values that span decades (latencies).
    Log,
}

/// One axis: its title (with the unit), its scale and its range.
pub struct Axis<'a> {
    pub title: &'a str,
    pub scale: Scale,
}

/// `text` with the five characters XML gives meaning escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A line through `points` (x, y), in order.
pub fn line(title: &str, x: &Axis<'_>, y: &Axis<'_>, points: &[(f64, f64)]) -> String {
    let points = usable(points, x.scale, y.scale);
    let frame = Frame::new(&points, x, y, false);
    let mut svg = frame.open(title);
    if points.is_empty() {
        return frame.close(svg, true);
    }
    let path: Vec<String> = points
        .iter()
        .map(|&(px, py)| format!("{:.1},{:.1}", frame.x(px), frame.y(py)))
        .collect();
    let _ = write!(
        svg,
        r#"<polyline class="series" fill="none" points="{}"/>"#,
        path.join(" ")
    );
    frame.close(svg, false)
}

/// One bar per `(from, to, height)` interval of x: a histogram.
pub fn histogram(title: &str, x: &Axis<'_>, y: &Axis<'_>, bins: &[(f64, f64, f64)]) -> String {
    let bins: Vec<(f64, f64, f64)> = bins
        .iter()
        .copied()
        .filter(|&(a, b, h)| {
            [a, b, h].iter().all(|v| v.is_finite())
                && a < b
                && h >= 0.0
                && (x.scale == Scale::Linear || a > 0.0)
        })
        .collect();
    let corners: Vec<(f64, f64)> = bins
        .iter()
        .flat_map(|&(a, b, h)| [(a, 0.0), (b, h)])
        .collect();
    let frame = Frame::new(&corners, x, y, true);
    let mut svg = frame.open(title);
    if bins.is_empty() {
        return frame.close(svg, true);
    }
    for (a, b, h) in bins {
        let (left, right) = (frame.x(a), frame.x(b));
        let top = frame.y(h);
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{left:.1}" y="{top:.1}" width="{:.1}" height="{:.1}"/>"#,
            (right - left).max(0.5),
            (frame.y(0.0) - top).max(0.0)
        );
    }
    frame.close(svg, false)
}

/// One labelled bar per `(label, value)`, for figures without an x.
pub fn bars(title: &str, y: &Axis<'_>, bars: &[(String, f64)]) -> String {
    let bars: Vec<&(String, f64)> = bars
        .iter()
        .filter(|(_, v)| v.is_finite() && *v >= 0.0)
        .collect();
    let x = Axis {
        title: "",
        scale: Scale::Linear,
    };
    let corners: Vec<(f64, f64)> = bars
        .iter()
        .enumerate()
        .flat_map(|(i, (_, v))| [(i as f64, 0.0), (i as f64 + 1.0, *v)])
        .collect();
    let mut frame = Frame::new(&corners, &x, y, true);
    frame.x_ticks = false;
    let mut svg = frame.open(title);
    if bars.is_empty() {
        return frame.close(svg, true);
    }
    for (i, (label, v)) in bars.iter().enumerate() {
        let (left, right) = (frame.x(i as f64 + 0.15), frame.x(i as f64 + 0.85));
        let top = frame.y(*v);
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{left:.1}" y="{top:.1}" width="{:.1}" height="{:.1}"/>"#,
            right - left,
            (frame.y(0.0) - top).max(0.0)
        );
        let _ = write!(
            svg,
            r#"<text class="value" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            (left + right) / 2.0,
            top - 4.0,
            escape(&short(*v))
        );
        let _ = write!(
            svg,
            r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            (left + right) / 2.0,
            HEIGHT - BOTTOM + 16.0,
            escape(label)
        );
    }
    frame.close(svg, false)
}

/// The points a chart can draw: finite, and positive on a log axis.
fn usable(points: &[(f64, f64)], x: Scale, y: Scale) -> Vec<(f64, f64)> {
    let fits = |v: f64, scale: Scale| v.is_finite() && (scale == Scale::Linear || v > 0.0);
    points
        .iter()
        .copied()
        .filter(|&(px, py)| fits(px, x) && fits(py, y))
        .collect()
}

/// The plotting area and the mapping of data onto it.
struct Frame<'a> {
    x: Range,
    y: Range,
    x_title: &'a str,
    y_title: &'a str,
    x_ticks: bool,
}

/// An axis's data range, in scale units (log10 of the value on a log
/// axis), widened to round ticks.
#[derive(Clone, Copy)]
struct Range {
    scale: Scale,
    lo: f64,
    hi: f64,
}

impl Range {
    fn of(values: impl Iterator<Item = f64>, scale: Scale, from_zero: bool) -> Range {
        let to = |v: f64| match scale {
            Scale::Linear => v,
            Scale::Log => v.log10(),
        };
        let (mut lo, mut hi) = values
            .map(to)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        if !lo.is_finite() || !hi.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if from_zero && scale == Scale::Linear {
            lo = lo.min(0.0);
        }
        match scale {
            Scale::Log => (lo.floor(), hi.ceil().max(lo.floor() + 1.0)),
            Scale::Linear => {
                if hi <= lo {
                    hi = lo + 1.0;
                }
                let step = nice_step(hi - lo);
                ((lo / step).floor() * step, (hi / step).ceil() * step)
            }
        }
        .into_range(scale)
    }

    /// Tick positions, as values (not scale units).
    fn ticks(&self) -> Vec<f64> {
        match self.scale {
            Scale::Log => {
                let decades = (self.hi - self.lo).round() as i32;
                let lo = self.lo.round() as i32;
                let mut ticks = Vec::new();
                for d in lo..=lo + decades {
                    let base = 10f64.powi(d);
                    ticks.push(base);
                    if decades <= 2 && d < lo + decades {
                        ticks.extend([2.0 * base, 5.0 * base]);
                    }
                }
                ticks
            }
            Scale::Linear => {
                let step = nice_step(self.hi - self.lo);
                let n = ((self.hi - self.lo) / step).round() as usize;
                (0..=n).map(|i| self.lo + i as f64 * step).collect()
            }
        }
    }

    /// Where `v` falls, from 0 (low end) to 1.
    fn fraction(&self, v: f64) -> f64 {
        let v = match self.scale {
            Scale::Linear => v,
            Scale::Log => v.max(f64::MIN_POSITIVE).log10(),
        };
        let f = (v - self.lo) / (self.hi - self.lo);
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

trait IntoRange {
    fn into_range(self, scale: Scale) -> Range;
}

impl IntoRange for (f64, f64) {
    fn into_range(self, scale: Scale) -> Range {
        Range {
            scale,
            lo: self.0,
            hi: self.1,
        }
    }
}

/// 1, 2 or 5 times a power of ten, giving about five ticks over `span`.
fn nice_step(span: f64) -> f64 {
    let raw = span / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power);
    if step.is_finite() && step > 0.0 {
        step
    } else {
        1.0
    }
}

/// A number in few characters: `1.5M`, `12k`, `0.25`.
pub fn short(v: f64) -> String {
    let a = v.abs();
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if a >= 1e9 {
        trim(format!("{:.2}", v / 1e9)) + "G"
    } else if a >= 1e6 {
        trim(format!("{:.2}", v / 1e6)) + "M"
    } else if a >= 1e4 {
        trim(format!("{:.1}", v / 1e3)) + "k"
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim(format!("{v:.2}"))
    } else {
        trim(format!("{v:.4}"))
    }
}

impl<'a> Frame<'a> {
    fn new(points: &[(f64, f64)], x: &Axis<'a>, y: &Axis<'a>, from_zero: bool) -> Frame<'a> {
        Frame {
            x: Range::of(points.iter().map(|p| p.0), x.scale, false),
            y: Range::of(points.iter().map(|p| p.1), y.scale, from_zero),
            x_title: x.title,
            y_title: y.title,
            x_ticks: true,
        }
    }

    fn x(&self, v: f64) -> f64 {
        LEFT + self.x.fraction(v) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        HEIGHT - BOTTOM - self.y.fraction(v) * (HEIGHT - TOP - BOTTOM)
    }

    /// The `<svg>` start, the title, the grid, ticks and axis titles.
    fn open(&self, title: &str) -> String {
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img"><title>{t}</title><text class="title" x="{x:.1}" y="20" text-anchor="middle">{t}</text>"#,
            t = escape(title),
            x = WIDTH / 2.0
        );
        let (left, right) = (LEFT, WIDTH - RIGHT);
        let (top, bottom) = (TOP, HEIGHT - BOTTOM);
        for v in self.y.ticks() {
            let y = self.y(v);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                left - 6.0,
                y + 4.0,
                escape(&short(v))
            );
        }
        if self.x_ticks {
            for v in self.x.ticks() {
                let x = self.x(v);
                let _ = write!(
                    svg,
                    r#"<line class="grid" x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                    bottom + 16.0,
                    escape(&short(v))
                );
            }
        }
        let _ = write!(
            svg,
            r#"<line class="axis" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/><line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{bottom}"/><text class="axis-title" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text class="axis-title" x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
            (left + right) / 2.0,
            HEIGHT - 10.0,
            escape(self.x_title),
            (top + bottom) / 2.0,
            (top + bottom) / 2.0,
            escape(self.y_title)
        );
        svg
    }

    fn close(&self, mut svg: String, empty: bool) -> String {
        if empty {
            let _ = write!(
                svg,
                r#"<text class="empty" x="{:.1}" y="{:.1}" text-anchor="middle">no data</text>"#,
                WIDTH / 2.0,
                HEIGHT / 2.0
            );
        }
        svg.push_str("</svg>");
        svg
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Checks that `text` is well-formed enough for a browser's XML parser:
    /// tags balance, attributes are quoted, no raw `<` or `&` in text, and
    /// every number is finite. Returns the element names in order.
    pub(crate) fn well_formed(text: &str) -> Vec<String> {
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('<') {
            let between = &rest[..open];
            assert!(!between.contains('>'), "stray > in {between:?}");
            for (i, _) in between.match_indices('&') {
                let entity = &between[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                        .iter()
                        .any(|e| entity.starts_with(e)),
                    "raw & in {between:?}"
                );
            }
            let close = rest[open..].find('>').expect("unclosed tag") + open;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if tag.starts_with('!') {
                continue;
            }
            assert_eq!(tag.matches('"').count() % 2, 0, "unquoted in <{tag}>");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "misnested </{name}>");
                continue;
            }
            let name: String = tag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            assert!(!name.is_empty(), "bad tag <{tag}>");
            for word in ["NaN", "inf"] {
                assert!(!tag.contains(word), "{word} in <{tag}>");
            }
            names.push(name.clone());
            if !tag.ends_with('/') && !["meta", "br", "hr", "img", "link"].contains(&&*name) {
                stack.push(name);
            }
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
        names
    }

    const MS: Axis<'static> = Axis {
        title: "latency (ms)",
        scale: Scale::Log,
    };
    const COUNT: Axis<'static> = Axis {
        title: "deliveries",
        scale: Scale::Linear,
    };

    #[test]
    fn a_line_chart_is_well_formed_with_its_titles_escaped() {
        let svg = line(
            "<deliveries> & \"more\"",
            &Axis {
                title: "time (s)",
                scale: Scale::Linear,
            },
            &COUNT,
            &[(0.0, 10.0), (0.1, 2e6), (0.2, f64::NAN), (0.3, 1.5e6)],
        );
        let names = well_formed(&svg);
        assert_eq!(names[0], "svg");
        assert!(names.contains(&"polyline".to_string()));
        assert!(svg.contains("&lt;deliveries&gt; &amp; &quot;more&quot;"));
        assert!(svg.contains(">time (s)<") && svg.contains(">deliveries<"));
        // Three finite points drawn, the NaN left out.
        let points = svg.split("points=\"").nth(1).unwrap();
        let points = &points[..points.find('"').unwrap()];
        assert_eq!(points.split(' ').count(), 3);
    }

    #[test]
    fn a_log_histogram_and_bars_are_well_formed() {
        let svg = histogram(
            "latency",
            &MS,
            &COUNT,
            &[
                (0.01, 0.02, 5.0),
                (0.02, 0.05, 50.0),
                (0.0, 1.0, 3.0),
                (1.0, 2.0, f64::INFINITY),
            ],
        );
        let names = well_formed(&svg);
        // The zero-width-on-log and the infinite bin are left out.
        assert_eq!(names.iter().filter(|n| *n == "rect").count(), 2);
        assert!(svg.contains(">0.01<") && svg.contains(">0.1<"), "{svg}");
        let svg = bars(
            "memory per connection",
            &Axis {
                title: "bytes",
                scale: Scale::Linear,
            },
            &[("json <door>".into(), 5000.0), ("ws".into(), 7000.0)],
        );
        well_formed(&svg);
        assert!(svg.contains("json &lt;door&gt;") && svg.contains(">7000<"));
    }

    #[test]
    fn empty_and_degenerate_series_still_draw_a_frame() {
        for svg in [
            line("empty", &COUNT, &MS, &[]),
            line("one point", &COUNT, &MS, &[(1.0, 1.0)]),
            line("flat", &COUNT, &COUNT, &[(1.0, 5.0), (2.0, 5.0)]),
            histogram("none", &MS, &COUNT, &[]),
            bars("none", &COUNT, &[]),
        ] {
            well_formed(&svg);
        }
        assert!(line("empty", &COUNT, &MS, &[]).contains("no data"));
    }

    #[test]
    fn short_numbers_read_well() {
        assert_eq!(short(1_500_000.0), "1.5M");
        assert_eq!(short(12_000.0), "12k");
        assert_eq!(short(250.0), "250");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(0.0), "0");
        assert_eq!(short(2.0), "2");
    }

    #[test]
    fn ticks_are_round() {
        let r = Range::of([0.0, 97.0].into_iter(), Scale::Linear, true);
        assert_eq!(r.ticks(), [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        let r = Range::of([0.03, 40.0].into_iter(), Scale::Log, false);
        let labels: Vec<String> = r.ticks().into_iter().map(short).collect();
        assert_eq!(labels, ["0.01", "0.1", "1", "10", "100"]);
    }
}
