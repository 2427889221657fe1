//! What must hold after each phase, read from outside the engine (the login
//! role, SQL of its own in `sql/faults/`): each compared with what an
//! uninterrupted run leaves, and reported as a list of what did not hold.
use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

const COUNTS: &str = include_str!("../../sql/faults/checks.sql");
const HISTORY: &str = include_str!("../../sql/faults/history.sql");
const TRIAL_BALANCE: &str = "SELECT hera_migration_trial_balance_v2($1)::text";

#[derive(Debug, Clone, Copy, FromRow, serde::Serialize)]
pub struct Counts {
    pub originals_reversed: i64,
    pub live_reversals: i64,
    pub live_reposts: i64,
    pub doubled: i64,
    pub half_written: i64,
    pub unbalanced: i64,
    pub aliased: i64,
    pub audit_chain_broken: i64,
}

pub async fn counts(conn: &mut PgConnection, org: Uuid) -> anyhow::Result<Counts> {
    Ok(sqlx::query_as(COUNTS).bind(org).fetch_one(conn).await?)
}

/// The organization's trial balance as text: equal texts, equal balances.
pub async fn trial_balance(conn: &mut PgConnection, org: Uuid) -> anyhow::Result<String> {
    Ok(sqlx::query_scalar(TRIAL_BALANCE)
        .bind(org)
        .fetch_one(conn)
        .await?)
}

/// One event of a run's history as stored, with who wrote it.
#[derive(Debug, Clone, FromRow)]
pub struct Event {
    pub sequence: i64,
    pub kind: Option<String>,
    pub phase: Option<String>,
    pub emitted_at: Option<DateTime<Utc>>,
    /// When the transaction that appended it began (a batch's own).
    pub began_at: Option<DateTime<Utc>>,
    /// The executor's lease generation and server when it was appended.
    pub generation: Option<i64>,
    pub server: Option<String>,
}

/// Run `id`'s history, in sequence.
pub async fn history(conn: &mut PgConnection, id: Uuid) -> anyhow::Result<Vec<Event>> {
    Ok(sqlx::query_as(HISTORY).bind(id).fetch_all(conn).await?)
}

/// What is wrong with a history: a sequence missing or out of place, an
/// event emitted before the one it follows. Empty when complete and
/// strictly ordered.
pub fn history_faults(events: &[Event]) -> Vec<String> {
    let mut faults = Vec::new();
    for (at, event) in events.iter().enumerate() {
        let expected = i64::try_from(at).unwrap_or(i64::MAX) + 1;
        if event.sequence != expected {
            faults.push(format!("event {} where {expected} was due", event.sequence));
        }
        if at > 0 && event.emitted_at < events[at - 1].emitted_at {
            faults.push(format!(
                "event {} ({}) emitted before the event it follows",
                event.sequence,
                event.kind.as_deref().unwrap_or("?")
            ));
        }
    }
    if events.is_empty() {
        faults.push("no event recorded".into());
    }
    faults
}

/// The batches of one phase, as their events record them.
pub fn batches<'a>(events: &'a [Event], phase: &'a str) -> impl Iterator<Item = &'a Event> {
    events
        .iter()
        .filter(move |e| e.kind.as_deref() == Some("BATCH") && e.phase.as_deref() == Some(phase))
}

/// Who wrote one phase's batches, in time.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Executors {
    /// Lease generations that committed batches of the phase.
    pub generations: usize,
    /// Distinct servers among them.
    pub servers: usize,
}

pub fn executors(events: &[Event], phase: &str) -> Executors {
    let mut generations: Vec<i64> = batches(events, phase)
        .filter_map(|e| e.generation)
        .collect();
    generations.dedup();
    let mut servers: Vec<&str> = batches(events, phase)
        .filter_map(|e| e.server.as_deref())
        .collect();
    servers.sort_unstable();
    servers.dedup();
    Executors {
        generations: generations.len(),
        servers: servers.len(),
    }
}

/// Where two servers' batches of one phase could have overlapped: every
/// batch must carry its executor's generation, never an older one than the
/// batch before it (a fenced server commits nothing), and begin only after
/// the batch before it had done its work, whoever wrote either.
pub fn overlap_faults(events: &[Event], phase: &str) -> Vec<String> {
    let mut faults = Vec::new();
    let mut previous: Option<&Event> = None;
    for batch in batches(events, phase) {
        if batch.generation.is_none() || batch.began_at.is_none() {
            faults.push(format!("batch event {} names no executor", batch.sequence));
        }
        if let Some(before) = previous {
            if batch.generation < before.generation {
                faults.push(format!(
                    "batch event {} written under lease generation {:?} after one under {:?}",
                    batch.sequence, batch.generation, before.generation
                ));
            }
            if batch.began_at < before.emitted_at {
                faults.push(format!(
                    "batch event {} ({:?}) began before batch event {} ({:?}) had ended",
                    batch.sequence, batch.server, before.sequence, before.server
                ));
            }
        }
        previous = Some(batch);
    }
    faults
}

/// A kill of a server during a phase: when, and whether it was the run's
/// executor then (with its lease generation).
#[derive(Debug, Clone, Copy)]
pub struct Kill {
    pub at: DateTime<Utc>,
    pub executor_generation: Option<i64>,
}

/// For each kill of the run's executor, how long until an event was written
/// under a later lease generation (the run taken over); None where nothing
/// was written after it (the run had ended).
pub fn takeovers(events: &[Event], kills: &[Kill]) -> Vec<Option<std::time::Duration>> {
    kills
        .iter()
        .filter_map(|kill| kill.executor_generation.map(|g| (kill.at, g)))
        .map(|(at, generation)| {
            events
                .iter()
                .find(|e| e.generation > Some(generation) && e.emitted_at > Some(at))
                .and_then(|e| e.emitted_at)
                .map(|taken| (taken - at).to_std().unwrap_or_default())
        })
        .collect()
}

/// `what` unless `holds`.
pub fn expect(faults: &mut Vec<String>, holds: bool, what: impl FnOnce() -> String) {
    if !holds {
        faults.push(what());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms)
    }

    fn batch(sequence: i64, (began, ended): (i64, i64), generation: i64) -> Event {
        Event {
            sequence,
            kind: Some("BATCH".into()),
            phase: Some("EXECUTION".into()),
            emitted_at: at(ended),
            began_at: at(began),
            generation: Some(generation),
            server: Some(format!("host/{generation}")),
        }
    }

    #[test]
    fn batches_one_after_another_under_rising_generations_do_not_overlap() {
        let events = [
            batch(1, (0, 10), 1),
            batch(2, (11, 20), 1),
            batch(3, (90, 99), 2),
        ];
        assert!(overlap_faults(&events, "EXECUTION").is_empty());
        let executors = executors(&events, "EXECUTION");
        assert_eq!((executors.generations, executors.servers), (2, 2));
    }

    #[test]
    fn a_batch_beginning_before_the_last_ended_or_under_an_older_lease_is_an_overlap() {
        let overlapping = [batch(1, (0, 10), 1), batch(2, (5, 20), 2)];
        assert_eq!(overlap_faults(&overlapping, "EXECUTION").len(), 1);
        let fenced = [batch(1, (0, 10), 2), batch(2, (11, 20), 1)];
        assert_eq!(overlap_faults(&fenced, "EXECUTION").len(), 1);
        let mut anonymous = batch(1, (0, 10), 1);
        anonymous.generation = None;
        assert_eq!(overlap_faults(&[anonymous], "EXECUTION").len(), 1);
    }

    #[test]
    fn a_takeover_is_the_first_event_under_a_later_generation_after_the_kill() {
        let events = [
            batch(1, (0, 10), 1),
            batch(2, (11, 20), 1),
            batch(3, (300, 310), 2),
        ];
        let kill = |ms, generation| Kill {
            at: at(ms).unwrap(),
            executor_generation: generation,
        };
        let taken = takeovers(
            &events,
            &[kill(15, Some(1)), kill(16, None), kill(400, Some(2))],
        );
        assert_eq!(taken, [Some(std::time::Duration::from_millis(295)), None]);
    }
}
