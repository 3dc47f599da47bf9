//! `--report FILE.html`: a run's results as one self-contained page, its
//! charts inline SVG ([`super::chart`]), its style inline CSS, no script
//! and nothing fetched from anywhere, so it can be mailed, committed or
//! opened from a disk years later and look the same.
//!
//! The page holds the charts a person would rather look at than the table
//! (deliveries per second over the run, the latency distribution as a
//! histogram and a percentile curve, memory per connection for idle runs),
//! then the run's parameters and figures as the table prints them.

use std::path::Path;

use super::chart::{self, Axis, Scale, escape};
use super::report::Report;
use super::stats::Histogram;
use crate::fail::Fail;

/// The width of one point of the deliveries-per-second series.
const BIN_NS: u64 = 100_000_000;
/// Histogram bins per decade of latency.
const BINS_PER_DECADE: f64 = 10.0;

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:2em auto;max-width:60em;\
padding:0 1em;color:#222;background:#fff}h1{font-size:1.3em}h2{font-size:1.1em;margin-top:2em}\
.warning{color:#a40}.charts svg{display:block;margin:1em 0;max-width:100%;height:auto}\
svg .title{font-size:15px;font-weight:600;fill:#222}svg .tick,svg .value{font-size:11px;fill:#555}\
svg .axis-title{font-size:12px;fill:#333}svg .grid{stroke:#e4e4e4}svg .axis{stroke:#444}\
svg .series{stroke:#1f6fb2;stroke-width:2}svg .bar{fill:#1f6fb2}svg .empty{fill:#999}\
table{border-collapse:collapse}td{padding:.15em .8em;border-bottom:1px solid #eee}\
td.v{text-align:right;font-variant-numeric:tabular-nums}footer{margin-top:2em;color:#777;font-size:.85em}\
@media (prefers-color-scheme:dark){body{background:#111;color:#ddd}svg .title{fill:#ddd}\
svg .tick,svg .value{fill:#aaa}svg .axis-title{fill:#ccc}svg .grid{stroke:#333}svg .axis{stroke:#aaa}\
td{border-color:#333}}";

/// The charts of a fan-out run: deliveries per second over time from the
/// coordinator's samples `(ns since sending began, deliveries so far)`,
/// and the latency distribution.
pub fn fanout_charts(samples: &[(u64, u64)], latency: &Histogram) -> Vec<String> {
    let rate = rate_series(samples, BIN_NS);
    let time = Axis {
        title: "time since sending began (s)",
        scale: Scale::Linear,
    };
    let per_s = Axis {
        title: "deliveries per second",
        scale: Scale::Linear,
    };
    let ms = Axis {
        title: "latency (ms, log scale)",
        scale: Scale::Log,
    };
    let share = Axis {
        title: "share of deliveries (%)",
        scale: Scale::Linear,
    };
    let tail = Axis {
        title: "1 / (1 - quantile), log scale: 10 is p90, 100 is p99, 1000 is p99.9",
        scale: Scale::Log,
    };
    let latency_ms = Axis {
        title: "latency (ms)",
        scale: Scale::Linear,
    };
    vec![
        chart::line(
            "Deliveries per second over the run (100 ms intervals)",
            &time,
            &per_s,
            &rate,
        ),
        chart::histogram(
            "Latency distribution (sender's stamp to receiver)",
            &ms,
            &share,
            &latency_bins(latency),
        ),
        chart::line(
            "Latency by percentile",
            &tail,
            &latency_ms,
            &percentile_curve(latency),
        ),
    ]
}

/// The charts of an idle run: the server's memory per connection as the
/// connections arrived (`(connections, resident bytes)` samples, from
/// `before` bytes with none), else the one figure as a bar.
pub fn idle_charts(
    samples: &[(u64, u64)],
    before: Option<u64>,
    per_conn: Option<f64>,
) -> Vec<String> {
    let bytes = Axis {
        title: "RSS growth / connections (bytes)",
        scale: Scale::Linear,
    };
    let mut charts = Vec::new();
    if let Some(before) = before {
        let curve: Vec<(f64, f64)> = samples
            .iter()
            .filter(|&&(n, _)| n > 0)
            .map(|&(n, rss)| (n as f64, rss.saturating_sub(before) as f64 / n as f64))
            .collect();
        if curve.len() >= 2 {
            charts.push(chart::line(
                "Server memory per connection while connecting",
                &Axis {
                    title: "connections welcomed",
                    scale: Scale::Linear,
                },
                &bytes,
                &curve,
            ));
        }
    }
    let bar = per_conn.map_or_else(Vec::new, |b| vec![("held, after sync".to_string(), b)]);
    charts.push(chart::bars(
        "Server memory per idle connection",
        &bytes,
        &bar,
    ));
    charts
}

/// Deliveries per second in each `bin_ns` interval, from cumulative
/// samples taken at irregular times (interpolated at the bin edges).
fn rate_series(samples: &[(u64, u64)], bin_ns: u64) -> Vec<(f64, f64)> {
    let Some(&(end, _)) = samples.last() else {
        return Vec::new();
    };
    let at = |t: u64| -> f64 {
        let after = samples.partition_point(|&(s, _)| s < t);
        match (after.checked_sub(1).map(|i| samples[i]), samples.get(after)) {
            (Some((t0, n0)), Some(&(t1, n1))) if t1 > t0 => {
                n0 as f64 + (n1 as f64 - n0 as f64) * (t - t0) as f64 / (t1 - t0) as f64
            }
            (_, Some(&(_, n))) | (Some((_, n)), None) => n as f64,
            (None, None) => 0.0,
        }
    };
    let secs = bin_ns as f64 / 1e9;
    (0..end.div_ceil(bin_ns))
        .map(|k| {
            let (from, to) = (k * bin_ns, ((k + 1) * bin_ns).min(end));
            let width = (to - from) as f64 / 1e9;
            let rate = if width > 0.0 {
                (at(to) - at(from)) / width
            } else {
                0.0
            };
            ((k as f64 + 0.5) * secs, rate)
        })
        .collect()
}

/// The histogram's buckets gathered into [`BINS_PER_DECADE`] bins a decade
/// of milliseconds, each as a share of all deliveries.
fn latency_bins(h: &Histogram) -> Vec<(f64, f64, f64)> {
    let total = h.count();
    if total == 0 {
        return Vec::new();
    }
    let mut bins: std::collections::BTreeMap<i64, u64> = Default::default();
    for (lo, hi, count) in h.buckets() {
        let mid_ms = ((lo + hi) as f64 / 2.0).max(1.0) / 1e6;
        let bin = (mid_ms.log10() * BINS_PER_DECADE).floor() as i64;
        *bins.entry(bin).or_default() += count;
    }
    bins.into_iter()
        .map(|(bin, count)| {
            let edge = |b: i64| 10f64.powf(b as f64 / BINS_PER_DECADE);
            (
                edge(bin),
                edge(bin + 1),
                100.0 * count as f64 / total as f64,
            )
        })
        .collect()
}

/// Latency at quantiles from the median to as far into the tail as the
/// sample count supports, x as `1 / (1 - q)`.
fn percentile_curve(h: &Histogram) -> Vec<(f64, f64)> {
    let n = h.count() as f64;
    let mut points = Vec::new();
    let mut q: f64 = 0.0;
    while n > 0.0 && 1.0 / (1.0 - q) <= n {
        points.push((1.0 / (1.0 - q), h.quantile(q) as f64 / 1e6));
        // Ten points a decade of the tail.
        q = 1.0 - (1.0 - q) / 10f64.powf(0.1);
        if q >= 1.0 - 1e-9 {
            break;
        }
    }
    points.push((n.max(1.0), h.max() as f64 / 1e6));
    points
}

/// The page: heading, warnings, charts, then the table.
pub fn render(report: &Report, charts: &[String]) -> String {
    let heading = escape(report.heading());
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{heading}</title><style>{STYLE}</style></head><body>\n<h1>{heading}</h1>\n"
    );
    for warning in report.warnings() {
        out.push_str(&format!(
            "<p class=\"warning\">warning: {}</p>\n",
            escape(warning)
        ));
    }
    out.push_str("<section class=\"charts\">\n");
    for svg in charts {
        out.push_str(svg);
        out.push('\n');
    }
    out.push_str("</section>\n<h2>Parameters and figures</h2>\n<table>\n");
    for (label, value, unit) in report.rows() {
        out.push_str(&format!(
            "<tr><td>{}</td><td class=\"v\">{}</td><td>{}</td></tr>\n",
            escape(label),
            escape(&value),
            escape(unit)
        ));
    }
    out.push_str(&format!(
        "</table>\n<footer>Written by chat {} (chat bench --report).</footer>\n</body></html>\n",
        escape(crate::cli::version())
    ));
    out
}

/// Writes the page to `path`.
pub fn write(path: &Path, report: &Report, charts: &[String]) -> Result<(), Fail> {
    std::fs::write(path, render(report, charts)).map_err(|e| {
        Fail::runtime(format!(
            "cannot write the report page {}: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::chart::tests::well_formed;

    #[test]
    fn the_rate_series_interpolates_irregular_samples() {
        // 1000 deliveries a second, sampled at odd times, for 0.35 s.
        let samples = [
            (0, 0),
            (30_000_000, 30),
            (170_000_000, 170),
            (350_000_000, 350),
        ];
        let series = rate_series(&samples, 100_000_000);
        assert_eq!(series.len(), 4);
        for (t, rate) in &series {
            assert!((rate - 1000.0).abs() < 1e-6, "{t}: {rate}");
        }
        assert!((series[0].0 - 0.05).abs() < 1e-9);
        assert!(rate_series(&[], 100).is_empty());
    }

    #[test]
    fn latency_bins_and_the_percentile_curve_cover_every_sample() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let bins = latency_bins(&h);
        let share: f64 = bins.iter().map(|b| b.2).sum();
        assert!((share - 100.0).abs() < 1e-6, "{share}");
        let curve = percentile_curve(&h);
        assert!(
            curve
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        );
        assert_eq!(curve.last().unwrap(), &(10_000.0, 10.0));
    }

    #[test]
    fn a_page_is_self_contained_well_formed_and_escaped() {
        let mut r = Report::new("fanout", "fanout <b>&</b>".into());
        r.text(
            "lost",
            "connections lost",
            "r1 <script>alert(1)</script>".into(),
        );
        r.count("received", "deliveries received", 42);
        r.warn("a \"warning\" & more".into());
        let mut h = Histogram::default();
        h.record(2_000_000);
        let charts = fanout_charts(&[(0, 0), (200_000_000, 42)], &h);
        let page = render(&r, &charts);
        let body = page.strip_prefix("<!DOCTYPE html>\n").unwrap();
        let names = well_formed(body);
        assert_eq!(names.iter().filter(|n| *n == "svg").count(), 3);
        assert!(
            !names
                .iter()
                .any(|n| n == "script" || n == "link" || n == "img")
        );
        // Nothing fetched: the only address is the SVG namespace.
        let svg_ns = "http://www.w3.org/2000/svg";
        assert_eq!(page.matches("http").count(), page.matches(svg_ns).count());
        assert!(page.contains("r1 &lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("fanout &lt;b&gt;&amp;&lt;/b&gt;"));
        let idle = render(
            &r,
            &idle_charts(&[(10, 1000), (20, 3000)], Some(0), Some(150.0)),
        );
        let names = well_formed(idle.strip_prefix("<!DOCTYPE html>\n").unwrap());
        assert_eq!(names.iter().filter(|n| *n == "svg").count(), 2);
    }
}
