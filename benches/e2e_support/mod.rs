//! Helpers of the end-to-end bench: processes and /proc, load, the baseline.

pub mod baseline;
pub mod load;
pub mod proc;

use std::fmt::Write;

/// The bench's findings as Markdown, printed as they come and written to `target/bench/e2e-<mode>.md`.
#[derive(Default)]
pub struct Report {
    pub md: String,
}

impl Report {
    pub fn section(&mut self, title: &str) {
        let text = format!("\n### {title}\n\n");
        print!("{text}");
        self.md.push_str(&text);
    }

    pub fn line(&mut self, text: &str) {
        println!("{text}");
        let _ = writeln!(self.md, "{text}");
    }

    pub fn table(&mut self, headers: &[&str], rows: &[Vec<String>]) {
        let mut text = format!("| {} |\n|{}\n", headers.join(" | "), "---|".repeat(headers.len()));
        for row in rows {
            let _ = writeln!(text, "| {} |", row.join(" | "));
        }
        text.push('\n');
        print!("{text}");
        self.md.push_str(&text);
    }
}

/// Megabytes from kB, one decimal.
pub fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

/// A number with a sensible number of digits.
pub fn num(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
