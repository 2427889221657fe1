//! The report: a table on stdout (one row per figure: what, value, target,
//! whether it holds) and the same figures as JSON, with the machine, the
//! scale, the sizes, the date and the 1 M run's batches.
use std::{io::Write as _, path::Path};

use anyhow::Context as _;
use serde_json::json;

use super::{figures::Figure, machine::Machine, sizes::Sizes, timeline::BatchSample};

/// Everything `bench.json` holds.
pub struct Report<'a> {
    pub figures: &'a [Figure],
    pub sizes: &'a Sizes,
    pub machine: &'a Machine,
    pub databases: &'a [String],
    pub kept_databases: bool,
    pub big_run_batches: &'a [BatchSample],
}

impl Report<'_> {
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let figures: serde_json::Map<String, serde_json::Value> = self
            .figures
            .iter()
            .map(|f| Ok((f.letter.to_string(), serde_json::to_value(f)?)))
            .collect::<anyhow::Result<_>>()?;
        let json = json!({
            "date": chrono::Utc::now().to_rfc3339(),
            "scale": self.sizes.scale,
            "sizes": self.sizes,
            "machine": self.machine,
            "databases": self.databases,
            "kept_databases": self.kept_databases,
            "figures": figures,
            "big_run_batches": self.big_run_batches,
        });
        let text = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// The table, to stdout.
    pub fn print_table(&self) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", table(self.figures))?;
        let build = if self.machine.release_build {
            ""
        } else {
            " (a debug build: not comparable)"
        };
        writeln!(
            out,
            "scale {} on {} cores, {} MB, PostgreSQL {}{build}; load average {} at the start, {} at the end",
            self.sizes.scale,
            self.machine.cores,
            self.machine.memory_mb,
            self.machine.postgres_version,
            first_field(&self.machine.load_at_start),
            first_field(&self.machine.load_at_end),
        )?;
        let holding: Vec<String> = self
            .figures
            .iter()
            .filter(|f| f.holds == Some(true))
            .map(|f| f.letter.to_string())
            .collect();
        let missed: Vec<String> = self
            .figures
            .iter()
            .filter(|f| f.holds == Some(false))
            .map(|f| f.letter.to_string())
            .collect();
        writeln!(
            out,
            "targets held: {}; missed: {}",
            list(&holding),
            list(&missed)
        )?;
        Ok(())
    }
}

/// The 1-minute load average of a /proc/loadavg line.
fn first_field(loadavg: &str) -> &str {
    loadavg.split_whitespace().next().unwrap_or("?")
}

fn list(letters: &[String]) -> String {
    if letters.is_empty() {
        "none".to_owned()
    } else {
        letters.join(", ")
    }
}

/// The figures as an aligned text table.
pub fn table(figures: &[Figure]) -> String {
    let holds = |f: &Figure| match f.holds {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    };
    let what_width = figures.iter().map(|f| f.what.len()).max().unwrap_or(0);
    let value_width = figures.iter().map(|f| f.value.len()).max().unwrap_or(0);
    let target_width = figures.iter().map(|f| f.target.len()).max().unwrap_or(0);
    let mut lines = vec![format!(
        "   {:what_width$}  {:value_width$}  {:target_width$}  holds",
        "what", "value", "target"
    )];
    for f in figures {
        lines.push(format!(
            "{}. {:what_width$}  {:value_width$}  {:target_width$}  {}",
            f.letter,
            f.what,
            f.value,
            f.target,
            holds(f)
        ));
    }
    lines.join("\n")
}
