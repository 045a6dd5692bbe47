//! The bench report: a table on stdout, `bench-report.json`, and an SVG chart.

use crate::measure::Samples;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// What a row must show to pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    /// ours / peer ≥ this (throughput-like figures).
    AtLeast(f64),
    /// ours / peer ≤ this (latency- and size-like figures).
    AtMost(f64),
    /// ours ≤ this many units, whatever the peer.
    ValueAtMost(f64),
    /// Reported for context only.
    Info,
}

/// One scenario measured for greenfd and for its peer in the same run.
#[derive(Clone, Debug)]
pub struct Row {
    /// What was measured, e.g. `echo 1 conn 64 B (pinned)`.
    pub scenario: String,
    /// The unit of `ours` and `peer`.
    pub unit: &'static str,
    /// greenfd's samples.
    pub ours: Samples,
    /// The peer's name, e.g. `tokio current_thread`.
    pub peer_name: String,
    /// The peer's samples.
    pub peer: Samples,
    /// What passing means.
    pub goal: Goal,
}

impl Row {
    /// `ours / peer` of the medians.
    pub fn ratio(&self) -> f64 {
        self.ours.median() / self.peer.median()
    }

    /// Whether the goal is met (`None` for information rows).
    pub fn pass(&self) -> Option<bool> {
        match self.goal {
            Goal::AtLeast(r) => Some(self.ratio() >= r),
            Goal::AtMost(r) => Some(self.ratio() <= r),
            Goal::ValueAtMost(v) => Some(self.ours.median() <= v),
            Goal::Info => None,
        }
    }

    fn goal_text(&self) -> String {
        match self.goal {
            Goal::AtLeast(r) => format!("≥ {r:.2}×"),
            Goal::AtMost(r) => format!("≤ {r:.2}×"),
            Goal::ValueAtMost(v) => format!("≤ {v} {}", self.unit),
            Goal::Info => "info".into(),
        }
    }

    /// The goal as a ratio, for the chart's tick (value goals have none).
    fn goal_ratio(&self) -> Option<f64> {
        match self.goal {
            Goal::AtLeast(r) | Goal::AtMost(r) => Some(r),
            Goal::ValueAtMost(_) | Goal::Info => None,
        }
    }

    /// The goal as (kind, value) for the JSON report.
    fn goal_json(&self) -> (&'static str, f64) {
        match self.goal {
            Goal::AtLeast(r) => ("ratio_at_least", r),
            Goal::AtMost(r) => ("ratio_at_most", r),
            Goal::ValueAtMost(v) => ("value_at_most", v),
            Goal::Info => ("info", f64::NAN),
        }
    }

    fn result_text(&self) -> &'static str {
        match self.pass() {
            Some(true) => "pass",
            Some(false) => "BELOW GOAL",
            None => "-",
        }
    }
}

fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v >= 100_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The report as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let header = ["scenario", "ours", "peer", "", "ratio", "goal", "result"];
    let body: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.scenario.clone(),
                format!(
                    "{} {} ±{:.0}%",
                    fmt_value(r.ours.median()),
                    r.unit,
                    r.ours.spread() * 50.0
                ),
                format!(
                    "{} {} ±{:.0}%",
                    fmt_value(r.peer.median()),
                    r.unit,
                    r.peer.spread() * 50.0
                ),
                r.peer_name.clone(),
                format!("{:.2}×", r.ratio()),
                r.goal_text(),
                r.result_text().into(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &body {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            let _ = write!(
                out,
                "{}{}{}",
                cell,
                " ".repeat(pad),
                if i + 1 < cells.len() { "  " } else { "\n" }
            );
        }
    };
    line(&header.map(String::from));
    for row in &body {
        line(row);
    }
    out
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

fn json_list(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|&x| json_num(x)).collect();
    format!("[{}]", items.join(","))
}

/// The report as JSON (hand-written: one flat schema, no serde needed).
pub fn json(rows: &[Row], context: &[(&str, String)]) -> String {
    let mut out = String::from("{\n");
    for (k, v) in context {
        let _ = writeln!(out, "  {}: {},", json_str(k), json_str(v));
    }
    out.push_str("  \"rows\": [\n");
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(
            out,
            "    {{\"scenario\": {}, \"unit\": {}, \"ours_median\": {}, \"ours_samples\": {}, \"peer\": {}, \"peer_median\": {}, \"peer_samples\": {}, \"ratio\": {}, \"goal\": {}, \"goal_value\": {}, \"pass\": {}}}{}",
            json_str(&r.scenario),
            json_str(r.unit),
            json_num(r.ours.median()),
            json_list(r.ours.values()),
            json_str(&r.peer_name),
            json_num(r.peer.median()),
            json_list(r.peer.values()),
            json_num(r.ratio()),
            json_str(r.goal_json().0),
            json_num(r.goal_json().1),
            r.pass().map_or("null".into(), |p| p.to_string()),
            if i + 1 < rows.len() { "," } else { "" }
        );
    }
    out.push_str("  ]\n}\n");
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar chart of each row's ratio, with the goal marked.
pub fn svg(rows: &[Row]) -> String {
    let bar_h = 22.0;
    let label_w = 360.0;
    let plot_w = 420.0;
    let max_ratio = rows
        .iter()
        .flat_map(|r| [r.ratio(), r.goal_ratio().unwrap_or(0.0)])
        .filter(|v| v.is_finite())
        .fold(2.0_f64, f64::max);
    let scale = plot_w / max_ratio;
    let height = 40.0 + bar_h * rows.len() as f64 + 30.0;
    let width = label_w + plot_w + 80.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">greenfd / peer (ratio of medians; tick = goal)</text>\n"
    );
    for (i, r) in rows.iter().enumerate() {
        let y = 35.0 + bar_h * i as f64;
        let ratio = if r.ratio().is_finite() {
            r.ratio()
        } else {
            0.0
        };
        let color = match r.pass() {
            Some(true) => "#3a7d44",
            Some(false) => "#c0392b",
            None => "#7f8c8d",
        };
        let tick = r.goal_ratio().unwrap_or(f64::NAN);
        let _ = writeln!(
            out,
            "<text x=\"10\" y=\"{:.1}\">{}</text>\n<rect x=\"{label_w}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/>\n<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\" stroke-width=\"2\"/>\n<text x=\"{:.1}\" y=\"{:.1}\">{:.2}×</text>",
            y + 14.0,
            xml_escape(&r.scenario),
            y + 3.0,
            ratio * scale,
            bar_h - 6.0,
            label_w + tick * scale,
            label_w + tick * scale,
            y,
            y + bar_h,
            label_w + ratio * scale + 6.0,
            y + 14.0,
            ratio
        );
    }
    let base_y = 35.0 + bar_h * rows.len() as f64;
    let _ = writeln!(
        out,
        "<line x1=\"{label_w}\" x2=\"{label_w}\" y1=\"30\" y2=\"{base_y}\" stroke=\"#444\"/>\n<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"30\" y2=\"{base_y}\" stroke=\"#999\" stroke-dasharray=\"4\"/>\n<text x=\"{:.1}\" y=\"{:.1}\">1.0×</text>\n</svg>",
        label_w + scale,
        label_w + scale,
        label_w + scale - 10.0,
        base_y + 16.0
    );
    out
}

/// Writes the JSON report and the SVG chart beside it.
pub fn write_files(
    rows: &[Row],
    context: &[(&str, String)],
    json_path: &Path,
    svg_path: &Path,
) -> io::Result<()> {
    std::fs::write(json_path, json(rows, context))?;
    std::fs::write(svg_path, svg(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ours: f64, peer: f64, goal: Goal) -> Row {
        Row {
            scenario: "s \"q\" <x>".into(),
            unit: "msgs/s",
            ours: Samples::from(vec![ours]),
            peer_name: "p".into(),
            peer: Samples::from(vec![peer]),
            goal,
        }
    }

    #[test]
    fn pass_follows_direction() {
        assert_eq!(row(110.0, 100.0, Goal::AtLeast(1.1)).pass(), Some(true));
        assert_eq!(row(100.0, 100.0, Goal::AtLeast(1.1)).pass(), Some(false));
        assert_eq!(row(90.0, 100.0, Goal::AtMost(1.0)).pass(), Some(true));
        assert_eq!(row(120.0, 100.0, Goal::AtMost(1.0)).pass(), Some(false));
        assert_eq!(row(9.0, 100.0, Goal::ValueAtMost(10.0)).pass(), Some(true));
        assert_eq!(row(11.0, 1.0, Goal::ValueAtMost(10.0)).pass(), Some(false));
        assert_eq!(row(11.0, 1.0, Goal::Info).pass(), None);
    }

    #[test]
    fn outputs_escape_and_carry_every_row() {
        let rows = [
            row(2.0, 1.0, Goal::AtLeast(1.0)),
            row(1.0, 2.0, Goal::AtMost(1.0)),
            row(1.0, 2.0, Goal::Info),
        ];
        let j = json(&rows, &[("date", "today".into())]);
        assert!(j.contains("\"s \\\"q\\\" <x>\""));
        assert_eq!(j.matches("\"scenario\"").count(), 3);
        assert!(j.contains("\"goal\": \"info\", \"goal_value\": null, \"pass\": null"));
        let s = svg(&rows);
        assert!(s.contains("&lt;x&gt;") && s.ends_with("</svg>\n"));
        let t = table(&rows);
        assert_eq!(t.lines().count(), 4);
        assert!(t.contains("2.00×") && t.contains("0.50×"));
    }
}
