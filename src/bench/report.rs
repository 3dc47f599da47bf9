//! A run's results, printed as an aligned table for people or as one flat
//! JSON object for scripts (`--json`; `bench/run.sh` reads it with awk, so
//! it stays on one line with no nesting).
//!
//! A figure the run could not measure is printed as why (and null in
//! JSON), never as a zero that reads like a result; a warning says when
//! the figures measure something other than what the run was meant to.

/// One measured figure.
enum Value {
    Count(u64),
    /// A number printed with this many decimals.
    Real(f64, usize),
    Text(String),
    /// Not measured; the table says why and what would measure it.
    Unmeasured(&'static str),
}

struct Row {
    /// The JSON key.
    key: &'static str,
    /// The table's words for it.
    label: &'static str,
    value: Value,
    unit: &'static str,
}

pub struct Report {
    mode: &'static str,
    heading: String,
    rows: Vec<Row>,
    warnings: Vec<String>,
}

impl Report {
    pub fn new(mode: &'static str, heading: String) -> Report {
        Report {
            mode,
            heading,
            rows: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn count(&mut self, key: &'static str, label: &'static str, n: u64) {
        self.push(key, label, Value::Count(n), "");
    }

    pub fn real(
        &mut self,
        key: &'static str,
        label: &'static str,
        x: f64,
        decimals: usize,
        unit: &'static str,
    ) {
        self.push(key, label, Value::Real(x, decimals), unit);
    }

    pub fn text(&mut self, key: &'static str, label: &'static str, text: String) {
        self.push(key, label, Value::Text(text), "");
    }

    /// A figure this run cannot give, with the reason the table shows.
    pub fn unmeasured(&mut self, key: &'static str, label: &'static str, why: &'static str) {
        self.push(key, label, Value::Unmeasured(why), "");
    }

    /// A sentence printed under the table (and as `warning` in JSON): the
    /// figures above are not what they seem.
    pub fn warn(&mut self, text: String) {
        self.warnings.push(text);
    }

    fn push(&mut self, key: &'static str, label: &'static str, value: Value, unit: &'static str) {
        self.rows.push(Row {
            key,
            label,
            value,
            unit,
        });
    }

    /// The heading, as the table's first line.
    pub fn heading(&self) -> &str {
        &self.heading
    }

    /// Each figure as `(label, value, unit)`, for the HTML page.
    pub fn rows(&self) -> Vec<(&'static str, String, &'static str)> {
        self.rows
            .iter()
            .map(|r| (r.label, plain(&r.value), r.unit))
            .collect()
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The heading, then one `label  value unit` line per figure, values
    /// right-aligned.
    pub fn table(&self) -> String {
        let cells: Vec<String> = self.rows.iter().map(|r| plain(&r.value)).collect();
        let label_width = self.rows.iter().map(|r| r.label.len()).max().unwrap_or(0);
        let value_width = cells
            .iter()
            .zip(&self.rows)
            .filter(|(_, r)| !matches!(r.value, Value::Text(_) | Value::Unmeasured(_)))
            .map(|(c, _)| c.len())
            .max()
            .unwrap_or(0);
        let mut out = format!("{}\n", self.heading);
        for (row, cell) in self.rows.iter().zip(&cells) {
            let line = match row.value {
                Value::Text(_) | Value::Unmeasured(_) => {
                    format!("  {:label_width$}  {cell}", row.label)
                }
                _ => format!(
                    "  {:label_width$}  {cell:>value_width$} {}",
                    row.label, row.unit
                ),
            };
            out.push_str(line.trim_end());
            out.push('\n');
        }
        for warning in &self.warnings {
            out.push_str(&format!("warning: {warning}\n"));
        }
        out
    }

    /// One JSON object on one line: `mode` first, then every figure under
    /// its key, in the table's order.
    pub fn json(&self) -> String {
        let mut out = format!("{{\"mode\":{}", quoted(self.mode));
        for row in &self.rows {
            let value = match &row.value {
                Value::Text(t) => quoted(t),
                Value::Real(x, _) if !x.is_finite() => "null".into(),
                Value::Unmeasured(_) => "null".into(),
                other => plain(other),
            };
            out.push_str(&format!(",{}:{value}", quoted(row.key)));
        }
        let warning = quoted(&self.warnings.join(" "));
        out.push_str(&format!(",\"warning\":{warning}}}"));
        out
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::Count(n) => n.to_string(),
        Value::Real(x, decimals) => format!("{x:.decimals$}"),
        Value::Text(t) => t.clone(),
        Value::Unmeasured(why) => (*why).to_string(),
    }
}

fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut r = Report::new("fanout", "fanout: a test".into());
        r.count("received", "deliveries received", 8_000_000);
        r.real("latency_p50_ms", "latency p50", 0.1234, 3, "ms");
        r.real("rate", "rate", f64::NAN, 1, "/s");
        r.text("lost", "lost \"connections\"", "r1 (slow)".into());
        r.unmeasured("cpu", "server CPU", "not measured");
        r
    }

    #[test]
    fn json_is_one_flat_object_in_order() {
        let json = sample().json();
        assert_eq!(
            json,
            r#"{"mode":"fanout","received":8000000,"latency_p50_ms":0.123,"rate":null,"lost":"r1 (slow)","cpu":null,"warning":""}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["received"], 8_000_000);
    }

    #[test]
    fn table_aligns_values() {
        let table = sample().table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "fanout: a test");
        assert_eq!(lines[1], "  deliveries received  8000000");
        assert_eq!(lines[2], "  latency p50            0.123 ms");
        assert_eq!(lines[3], "  rate                     NaN /s");
        assert_eq!(lines[4], "  lost \"connections\"   r1 (slow)");
        assert_eq!(lines[5], "  server CPU           not measured");
    }

    #[test]
    fn warnings_follow_the_table_and_fill_the_json_key() {
        let mut r = sample();
        r.warn("measured the flood control".into());
        assert!(
            r.table()
                .ends_with("\nwarning: measured the flood control\n")
        );
        assert!(
            r.json()
                .ends_with(r#","warning":"measured the flood control"}"#)
        );
    }
}
