//! What the operator sees: lines for people, a live bar on a terminal, or
//! the proto's JSON mapping (as grpcurl prints it) for scripts.
use std::{io::IsTerminal, sync::OnceLock, time::Duration};

use indicatif::{ProgressBar, ProgressStyle};
use prost_reflect::{DescriptorPool, DynamicMessage};

use super::args::Output;
use crate::proto::{self, MigrationProgress, ShortName};

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET).expect("our own descriptor set")
    })
}

/// `message` in the proto3 JSON mapping, on one line.
pub fn json<M: prost::Message>(message: &M, full_name: &str) -> String {
    let descriptor = pool()
        .get_message_by_name(full_name)
        .unwrap_or_else(|| panic!("{full_name} is one of our messages"));
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .expect("a message decodes as itself");
    serde_json::to_string(&dynamic).expect("JSON")
}

/// Prints a result: its JSON mapping, or what `text` makes of it.
pub fn result<M: prost::Message>(
    output: Output,
    message: &M,
    full_name: &str,
    text: impl FnOnce(&M) -> String,
) {
    match output {
        Output::Json => println!("{}", json(message, full_name)),
        Output::Text => println!("{}", text(message)),
    }
}

/// Shows a run's events as they come: a bar on a terminal, else one line each.
pub struct EventView {
    output: Output,
    bar: Option<ProgressBar>,
}

const BAR_UNITS: u64 = 10_000;

impl EventView {
    pub fn new(output: Output) -> Self {
        let bar = (output == Output::Text && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(BAR_UNITS);
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:30}] {percent:>3}% {msg}")
                    .expect("a template")
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self { output, bar }
    }

    pub fn show(&self, event: &MigrationProgress) {
        match (&self.bar, self.output) {
            (_, Output::Json) => println!("{}", json(event, "hera.migration.v2.MigrationProgress")),
            (Some(bar), _) => {
                bar.set_position((event.progress_percentage * 100.0) as u64);
                bar.set_message(summary(event));
                if event.kind() != proto::MigrationEventKind::Batch {
                    bar.println(line(event));
                }
            }
            (None, _) => println!("{}", line(event)),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// "migrated 640, skipped 350, quarantined 10 | 1200 tx/s | ETA 04:12:09 | HEALTHY | held to ...".
fn summary(event: &MigrationProgress) -> String {
    let rate = event
        .performance_metrics
        .as_ref()
        .map_or(0.0, |m| m.transactions_per_second);
    let eta = event
        .estimated_completion
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|t| format!(" | ETA {}", t.format("%H:%M:%S")))
        .unwrap_or_default();
    let pacing = event
        .pacing
        .as_ref()
        .filter(|p| p.throttled)
        .map(|p| format!(" | {}", p.detail))
        .unwrap_or_default();
    // Only a sized run says how: a fixed batch_size is what the operator set.
    let sizing = event
        .pacing
        .as_ref()
        .and_then(|p| p.sizing.as_ref())
        .filter(|s| s.target_batch_ms > 0 || s.reason() == crate::proto::SizingReason::LockBackoff)
        .map(|s| format!(" | {}", s.detail))
        .unwrap_or_default();
    format!(
        "{} migrated {}, skipped {}, quarantined {}, remaining {} | {rate:.0} tx/s{eta} | {}{pacing}{sizing}",
        event.state().short_name(),
        event.transactions_migrated,
        event.transactions_skipped,
        event.transactions_quarantined,
        event.transactions_remaining,
        event.health_status().short_name(),
    )
}

/// One event, as a line: "#12 BATCH 45.0% RUNNING migrated ...: message".
pub fn line(event: &MigrationProgress) -> String {
    let kind = event.kind().short_name();
    format!(
        "#{} {kind} {:.1}% {}: {}",
        event.sequence,
        event.progress_percentage,
        summary(event),
        event.message
    )
}
