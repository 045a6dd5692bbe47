//! The bench report: a table on stdout, `bench-report.json`, and an SVG chart.

use crate::measure::Samples;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// Whether a larger or a smaller figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Throughput-like figures (msgs/s, req/s).
    Higher,
    /// Latency- or size-like figures (µs, MiB).
    Lower,
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
    /// Which direction is better.
    pub better: Better,
    /// The goal for `ours / peer` (≥ goal when higher is better, ≤ goal otherwise).
    pub goal: f64,
}

impl Row {
    /// `ours / peer` of the medians.
    pub fn ratio(&self) -> f64 {
        self.ours.median() / self.peer.median()
    }

    /// Whether the ratio meets the goal.
    pub fn pass(&self) -> bool {
        match self.better {
            Better::Higher => self.ratio() >= self.goal,
            Better::Lower => self.ratio() <= self.goal,
        }
    }

    fn goal_text(&self) -> String {
        match self.better {
            Better::Higher => format!("≥ {:.2}×", self.goal),
            Better::Lower => format!("≤ {:.2}×", self.goal),
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
                if r.pass() {
                    "pass".into()
                } else {
                    "BELOW GOAL".into()
                },
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
            "    {{\"scenario\": {}, \"unit\": {}, \"ours_median\": {}, \"ours_samples\": {}, \"peer\": {}, \"peer_median\": {}, \"peer_samples\": {}, \"ratio\": {}, \"goal\": {}, \"higher_is_better\": {}, \"pass\": {}}}{}",
            json_str(&r.scenario),
            json_str(r.unit),
            json_num(r.ours.median()),
            json_list(r.ours.values()),
            json_str(&r.peer_name),
            json_num(r.peer.median()),
            json_list(r.peer.values()),
            json_num(r.ratio()),
            json_num(r.goal),
            r.better == Better::Higher,
            r.pass(),
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
        .flat_map(|r| [r.ratio(), r.goal])
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
        let color = if r.pass() { "#3a7d44" } else { "#c0392b" };
        let _ = writeln!(
            out,
            "<text x=\"10\" y=\"{:.1}\">{}</text>\n<rect x=\"{label_w}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/>\n<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\" stroke-width=\"2\"/>\n<text x=\"{:.1}\" y=\"{:.1}\">{:.2}×</text>",
            y + 14.0,
            xml_escape(&r.scenario),
            y + 3.0,
            ratio * scale,
            bar_h - 6.0,
            label_w + r.goal * scale,
            label_w + r.goal * scale,
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

    fn row(ours: f64, peer: f64, better: Better, goal: f64) -> Row {
        Row {
            scenario: "s \"q\" <x>".into(),
            unit: "msgs/s",
            ours: Samples::from(vec![ours]),
            peer_name: "p".into(),
            peer: Samples::from(vec![peer]),
            better,
            goal,
        }
    }

    #[test]
    fn pass_follows_direction() {
        assert!(row(110.0, 100.0, Better::Higher, 1.1).pass());
        assert!(!row(100.0, 100.0, Better::Higher, 1.1).pass());
        assert!(row(90.0, 100.0, Better::Lower, 1.0).pass());
        assert!(!row(120.0, 100.0, Better::Lower, 1.0).pass());
    }

    #[test]
    fn outputs_escape_and_carry_every_row() {
        let rows = [
            row(2.0, 1.0, Better::Higher, 1.0),
            row(1.0, 2.0, Better::Lower, 1.0),
        ];
        let j = json(&rows, &[("date", "today".into())]);
        assert!(j.contains("\"s \\\"q\\\" <x>\""));
        assert_eq!(j.matches("\"scenario\"").count(), 2);
        let s = svg(&rows);
        assert!(s.contains("&lt;x&gt;") && s.ends_with("</svg>\n"));
        let t = table(&rows);
        assert_eq!(t.lines().count(), 3);
        assert!(t.contains("2.00×") && t.contains("0.50×"));
    }
}
