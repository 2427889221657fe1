//! A run's event history, read for an incident: its batches with what each
//! did (the BATCH events carry the run's counts after the batch; a batch's
//! own are the difference from the batch before it in the same phase: a
//! rollback's counts start at zero and carry over a retried rollback), who
//! did what, and what went wrong.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::migration::{
    progress::{EventKind, Health, Progress},
    run::{Phase, RunState},
};

/// One committed batch, as its BATCH event records it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRow {
    pub sequence: u64,
    pub phase: Phase,
    pub batch_number: i64,
    /// Taken by the batch (looked at).
    pub transactions: i64,
    /// Reversed and reposted (a rollback: restored; aliases: aliased).
    pub migrated: i64,
    pub skipped: i64,
    pub quarantined: i64,
    /// Refused by the database (a rollback's restores, aliases).
    pub refused: i64,
    pub duration_ms: f64,
    pub at: DateTime<Utc>,
}

/// Every batch of the history, in order.
pub fn batches(events: &[Progress]) -> Vec<BatchRow> {
    let mut before: BTreeMap<&'static str, (i64, i64, i64, i64)> = BTreeMap::new();
    let mut rows = Vec::new();
    for event in events {
        let now = (
            event.migrated,
            event.skipped(),
            event.quarantined,
            event.refused,
        );
        if event.kind != EventKind::Batch {
            continue;
        }
        let (migrated, skipped, quarantined, refused) =
            before.insert(event.phase.as_str(), now).unwrap_or_default();
        rows.push(BatchRow {
            sequence: event.sequence,
            phase: event.phase,
            batch_number: event.batch_number,
            transactions: event.batch_transactions,
            migrated: (now.0 - migrated).max(0),
            skipped: (now.1 - skipped).max(0),
            quarantined: (now.2 - quarantined).max(0),
            refused: (now.3 - refused).max(0),
            duration_ms: event.current_batch_ms,
            at: event.emitted_at,
        });
    }
    rows
}

/// An actor (None: the service itself) and the kinds of the events they
/// caused, with how many of each.
pub type ActorEvents = (Option<Uuid>, Vec<(EventKind, usize)>);

/// Who did what: each actor with what they did, in order of first appearance.
pub fn actors(events: &[Progress]) -> Vec<ActorEvents> {
    let mut found: Vec<ActorEvents> = Vec::new();
    for event in events {
        let index = match found.iter().position(|(actor, _)| *actor == event.actor) {
            Some(index) => index,
            None => {
                found.push((event.actor, Vec::new()));
                found.len() - 1
            }
        };
        let kinds = &mut found[index].1;
        match kinds.iter_mut().find(|(kind, _)| *kind == event.kind) {
            Some((_, count)) => *count += 1,
            None => kinds.push((event.kind, 1)),
        }
    }
    found
}

/// The events that record a failure (the run ended FAILED), in order.
pub fn failures(events: &[Progress]) -> impl Iterator<Item = &Progress> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Ended && e.state == RunState::Failed)
}

/// The events a person must look at: failures, and warnings (lock backoffs,
/// batches that set transactions aside, ends with quarantines or refusals).
pub fn troubles(events: &[Progress]) -> impl Iterator<Item = &Progress> {
    events.iter().filter(|e| e.health != Health::Healthy)
}

/// How many events of `kind` the history holds.
pub fn count(events: &[Progress], kind: EventKind) -> i64 {
    events.iter().filter(|e| e.kind == kind).count() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(sequence: u64, kind: EventKind, phase: Phase, migrated: i64) -> Progress {
        Progress {
            sequence,
            kind,
            phase,
            migrated,
            processed: migrated,
            batch_number: sequence as i64,
            batch_transactions: 10,
            ..Progress::default()
        }
    }

    #[test]
    fn a_batch_counts_what_it_did_itself_and_a_rollback_counts_from_zero() {
        let events = [
            event(1, EventKind::Started, Phase::Execution, 0),
            event(2, EventKind::Batch, Phase::Execution, 10),
            event(3, EventKind::Batch, Phase::Execution, 18),
            event(4, EventKind::RollbackStarted, Phase::Rollback, 0),
            event(5, EventKind::Batch, Phase::Rollback, 10),
            event(6, EventKind::Batch, Phase::Rollback, 18),
        ];
        let migrated: Vec<(u64, i64)> = batches(&events)
            .iter()
            .map(|b| (b.sequence, b.migrated))
            .collect();
        assert_eq!(migrated, [(2, 10), (3, 8), (5, 10), (6, 8)]);
    }

    #[test]
    fn actors_are_listed_with_the_kinds_of_what_they_did() {
        let owner = Some(Uuid::new_v4());
        let mut started = event(1, EventKind::Started, Phase::Execution, 0);
        started.actor = owner;
        let mut paused = event(3, EventKind::Paused, Phase::Execution, 0);
        paused.actor = owner;
        let events = [
            started,
            event(2, EventKind::Batch, Phase::Execution, 10),
            paused,
            event(4, EventKind::Batch, Phase::Execution, 20),
        ];
        let found = actors(&events);
        assert_eq!(
            found,
            [
                (owner, vec![(EventKind::Started, 1), (EventKind::Paused, 1)]),
                (None, vec![(EventKind::Batch, 2)]),
            ]
        );
    }
}
