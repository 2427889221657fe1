//! An incident report in Markdown: the incident, a summary of the run, the
//! assessment with its recommended actions, errors, quarantined
//! transactions, every batch, a timeline of every event, who did what, and
//! the latest recorded validation. A pure function of the assessment.
use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use super::{
    assessment::Assessment,
    history::{self, BatchRow},
    record::Severity,
};
use crate::migration::{
    progress::{EventKind, Health, Progress},
    run::SetAside,
    validation::Check,
};

/// What the incident says of itself.
pub struct Header<'a> {
    pub incident_id: Uuid,
    pub title: &'a str,
    pub severity: Severity,
    pub description: &'a str,
    pub request_id: &'a str,
    pub recorded_by: Uuid,
}

/// Text in a table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn actor(actor: Option<Uuid>) -> String {
    actor.map_or_else(|| "the service".to_owned(), |id| format!("`{id}`"))
}

fn health(health: Health) -> &'static str {
    match health {
        Health::Healthy => "HEALTHY",
        Health::Warning => "WARNING",
        Health::Critical => "CRITICAL",
    }
}

fn yes(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

pub fn render(header: &Header<'_>, a: &Assessment) -> String {
    let mut out = String::new();
    incident(&mut out, header, a);
    summary(&mut out, a);
    assessment(&mut out, a);
    errors(&mut out, &a.events);
    set_aside(&mut out, "Quarantined transactions", a.quarantined());
    if !a.rollback_refused().is_empty() {
        set_aside(
            &mut out,
            "Restores the database refused",
            a.rollback_refused(),
        );
    }
    batches(&mut out, &history::batches(&a.events));
    timeline(&mut out, &a.events);
    who(&mut out, &a.events);
    validation(&mut out, a);
    out
}

fn incident(out: &mut String, h: &Header<'_>, a: &Assessment) {
    let _ = writeln!(out, "# Incident: {}\n", cell(h.title));
    let _ = writeln!(out, "| Field | Value |\n| --- | --- |");
    let rows = [
        ("Incident", format!("`{}`", h.incident_id)),
        (
            "Severity",
            format!("{} ({})", h.severity.as_str(), h.severity.meaning()),
        ),
        ("Migration", format!("`{}`", a.id())),
        ("Organization", format!("`{}`", a.organization_id())),
        ("Request", format!("`{}`", cell(h.request_id))),
        ("Recorded by", format!("`{}`", h.recorded_by)),
        ("Assessed at", time(a.assessed_at)),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "| {name} | {value} |");
    }
    let _ = writeln!(out, "\n## Description\n");
    if h.description.is_empty() {
        let _ = writeln!(out, "_No description given._\n");
    } else {
        let _ = writeln!(out, "{}\n", h.description);
    }
}

fn summary(out: &mut String, a: &Assessment) {
    let p = a.parameters();
    let c = a.counters();
    let record = &a.run.record;
    let _ = writeln!(out, "## Summary\n");
    let _ = writeln!(
        out,
        "- **State**: {} in phase {}{}",
        a.state().as_str(),
        a.phase().as_str(),
        if a.dry_run() {
            " (a dry run: batches roll back)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "- **Started by** {} at {}; {}",
        actor(record.started_by),
        time(a.run.created_at),
        record
            .finished_at
            .filter(|_| a.state().is_terminal())
            .map_or("not finished".to_owned(), |at| format!(
                "finished at {}",
                time(at)
            ))
    );
    let rate = p
        .max_transactions_per_second
        .map_or("no rate limit".to_owned(), |r| {
            format!("at most {r} transactions/s")
        });
    let _ = writeln!(
        out,
        "- **Parameters**: {} to {}, batches of {}, statuses {}, closed periods {}, {rate}",
        p.from_date,
        p.to_date,
        p.batch_size,
        p.candidate_statuses.join(", "),
        p.closed_period_policy.as_str()
    );
    let total = record
        .total_candidates
        .map_or("not counted".to_owned(), |n| n.to_string());
    let _ = writeln!(
        out,
        "- **Candidates**: {total} counted at the start; {} processed: {} migrated, {} skipped \
         ({} closed period, {} unmapped), {} quarantined; {} pending",
        c.processed,
        c.migrated,
        c.skipped_closed + c.skipped_unmapped,
        c.skipped_closed,
        c.skipped_unmapped,
        c.quarantined,
        a.pending
    );
    let k = a.committed;
    let _ = writeln!(
        out,
        "- **Committed**: {} reverse-and-repost batch(es) migrating {} transaction(s); {} \
         rollback batch(es) restoring {}; {} original(s) still migrated",
        k.batches, k.migrated, k.rollback_batches, k.restored, a.still_migrated
    );
    let _ = writeln!(
        out,
        "- **Events**: {} ({} lock backoff(s), {} takeover(s), {} interruption(s))",
        a.events.len(),
        a.count(EventKind::LockBackoff),
        a.count(EventKind::TakenOver),
        a.count(EventKind::Interrupted)
    );
    if let Some(rollback) = &record.rollback {
        let _ = writeln!(
            out,
            "- **Rollback**: {}",
            cell(rollback.reason.as_deref().unwrap_or("no reason recorded"))
        );
    }
    out.push('\n');
}

fn assessment(out: &mut String, a: &Assessment) {
    let advice = &a.advice;
    let _ = writeln!(out, "## Assessment\n\n{}\n", advice.summary);
    let _ = writeln!(
        out,
        "- **Ledger balanced**: {}: {}",
        yes(a.ledger_balanced()),
        a.ledger_summary()
    );
    let _ = writeln!(
        out,
        "- **Rollback recommended**: {}",
        yes(advice.rollback_recommended)
    );
    let error = a.last_error();
    let _ = writeln!(
        out,
        "- **Last error**: {}\n",
        if error.is_empty() { "none" } else { error }
    );
    let _ = writeln!(out, "### Recommended actions\n");
    for (n, action) in advice.actions.iter().enumerate() {
        let _ = writeln!(out, "{}. **{}**: {}", n + 1, action.action, action.reason);
        if !action.command.is_empty() {
            let _ = writeln!(out, "\n   ```sh");
            for line in action.command.lines() {
                let _ = writeln!(out, "   {line}");
            }
            let _ = writeln!(out, "   ```");
        }
    }
    out.push('\n');
    if let Some(report) = &a.checks {
        let _ = writeln!(
            out,
            "### Checks now (read-only, allow_partial; not recorded): {}\n",
            report.overall
        );
        checks(out, &report.checks);
    }
}

fn checks(out: &mut String, checks: &[Check]) {
    let _ = writeln!(out, "| Check | Result | Summary |\n| --- | --- | --- |");
    for check in checks {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            check.name,
            check.result,
            cell(&check.summary)
        );
    }
    out.push('\n');
}

fn errors(out: &mut String, events: &[Progress]) {
    let _ = writeln!(out, "## Errors and warnings\n");
    let troubles: Vec<&Progress> = history::troubles(events).collect();
    if troubles.is_empty() {
        let _ = writeln!(out, "_No errors or warnings recorded._\n");
        return;
    }
    let _ = writeln!(
        out,
        "| Seq | Time | Kind | Health | Phase | Batch | Message |\n| --- | --- | --- | --- | --- | --- | --- |"
    );
    for e in troubles {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            e.sequence,
            time(e.emitted_at),
            e.kind.as_str(),
            health(e.health),
            e.phase.as_str(),
            e.batch_number,
            cell(&e.message)
        );
    }
    out.push('\n');
}

fn set_aside(out: &mut String, title: &str, list: &[SetAside]) {
    let _ = writeln!(out, "## {title}\n");
    if list.is_empty() {
        let _ = writeln!(out, "_None._\n");
        return;
    }
    let _ = writeln!(out, "| Transaction | Rule | Reason |\n| --- | --- | --- |");
    for s in list {
        let id = s
            .transaction_id
            .map(|id| id.to_string())
            .unwrap_or_default();
        let _ = writeln!(out, "| `{id}` | {} | {} |", cell(&s.rule), cell(&s.reason));
    }
    out.push('\n');
}

fn batches(out: &mut String, rows: &[BatchRow]) {
    let _ = writeln!(out, "## Batches\n");
    if rows.is_empty() {
        let _ = writeln!(out, "_No batch committed._\n");
        return;
    }
    let _ = writeln!(
        out,
        "| Phase | Batch | Transactions | Migrated | Skipped | Quarantined | Refused | Duration (ms) | Committed at |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for b in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
            b.phase.as_str(),
            b.batch_number,
            b.transactions,
            b.migrated,
            b.skipped,
            b.quarantined,
            b.refused,
            b.duration_ms,
            time(b.at)
        );
    }
    out.push('\n');
}

fn timeline(out: &mut String, events: &[Progress]) {
    let _ = writeln!(out, "## Timeline\n");
    let _ = writeln!(
        out,
        "| Seq | Time | Kind | State | Actor | Message |\n| --- | --- | --- | --- | --- | --- |"
    );
    for e in events {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            e.sequence,
            time(e.emitted_at),
            e.kind.as_str(),
            e.state.as_str(),
            actor(e.actor),
            cell(&e.message)
        );
    }
    out.push('\n');
}

fn who(out: &mut String, events: &[Progress]) {
    let _ = writeln!(out, "## Who did what\n");
    let _ = writeln!(out, "| Actor | Events |\n| --- | --- |");
    for (who, kinds) in history::actors(events) {
        let kinds: Vec<String> = kinds
            .iter()
            .map(|(kind, n)| format!("{} x{n}", kind.as_str()))
            .collect();
        let _ = writeln!(out, "| {} | {} |", actor(who), kinds.join(", "));
    }
    out.push('\n');
}

fn validation(out: &mut String, a: &Assessment) {
    let _ = writeln!(out, "## Latest validation\n");
    match &a.latest_validation {
        Some(v) => {
            let _ = writeln!(
                out,
                "Recorded as MIGRATION_VALIDATION row `{}` at {} by {}: overall **{}**{}.\n",
                v.id,
                time(v.recorded_at),
                actor(v.recorded_by),
                v.report.overall,
                if v.report.allow_partial {
                    " (a partial run, allow_partial)"
                } else {
                    ""
                }
            );
            checks(out, &v.report.checks);
        }
        None => {
            let _ = writeln!(out, "_No validation recorded for this run._\n");
        }
    }
}
