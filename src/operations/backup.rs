//! CheckEnvironment's backup checks: what PostgreSQL can prove about the
//! backups a restore to just before a migration would need. It sees its own
//! WAL archiving (pg_stat_archiver) and its replication slots; base backups
//! and any backup system outside it (volume snapshots, pg_basebackup or a
//! backup tool on another host, a managed service) it cannot see, and those
//! checks are UNKNOWN with the reason, never PASS.
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{Check, Outcome, Readable, readable};
use crate::error::Result;

const ARCHIVER: &str = include_str!("../../sql/queries/environment_archiver.sql");
const SLOTS: &str = include_str!("../../sql/queries/environment_slots.sql");
const COMMANDS: &str = "SELECT current_setting('archive_command'), \
                        coalesce(current_setting('archive_library', true), '')";
const BASE_BACKUPS_RUNNING: &str = "SELECT count(*) FROM pg_stat_progress_basebackup";

#[derive(Debug, Clone, sqlx::FromRow)]
struct Archiver {
    archived_count: i64,
    last_archived_wal: Option<String>,
    last_archived_time: Option<DateTime<Utc>>,
    failed_count: i64,
    last_failed_wal: Option<String>,
    last_failed_time: Option<DateTime<Utc>>,
    stats_reset: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    current_wal: Option<String>,
    wal_segment_size: i64,
    archive_timeout_s: i32,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct Slot {
    slot_name: String,
    slot_type: String,
    active: bool,
    wal_status: Option<String>,
    retained_bytes: Option<f64>,
}

const OUTSIDE_VIEW: &str = "archive_mode off: PostgreSQL archives no WAL here, so it can prove \
    nothing about backups; they may be taken outside its view (volume snapshots, pg_basebackup \
    or a backup tool on another host, a managed service's backups)";
const CONFIRM: &str = "confirm with your backup system that a backup finished before the \
    migration window and restores (to a point in time, if you need one); or turn on WAL \
    archiving (archive_mode = on, archive_command or archive_library, a restart)";

/// `archive_mode` as read with the settings (None: they could not be read).
pub(super) async fn checks(admin: &PgPool, archive_mode: Option<&str>) -> Result<Vec<Check>> {
    let commands: Readable<(String, String)> = readable(
        "archive_command and archive_library",
        sqlx::query_as(COMMANDS).fetch_one(admin).await,
    )?;
    let archiver: Readable<Archiver> = readable(
        "pg_stat_archiver",
        sqlx::query_as(ARCHIVER).fetch_one(admin).await,
    )?;
    let slots: Readable<Vec<Slot>> = readable(
        "pg_replication_slots",
        sqlx::query_as(SLOTS).fetch_all(admin).await,
    )?;
    let running: Readable<i64> = readable(
        "pg_stat_progress_basebackup",
        sqlx::query_scalar(BASE_BACKUPS_RUNNING)
            .fetch_one(admin)
            .await,
    )?;
    Ok(vec![
        wal_archiving(archive_mode, &commands, &archiver),
        last_archived(archive_mode, &archiver),
        replication_slots(&slots),
        base_backup(&running),
    ])
}

/// The archive_mode judged, or the check it decides without more facts.
fn archiving_on(name: &str, archive_mode: Option<&str>) -> Option<Check> {
    match archive_mode {
        None => Some(Check::unreadable(
            name,
            "insufficient privilege to read archive_mode",
        )),
        Some("off") => Some(Check::not_passing(
            name,
            Outcome::Unknown,
            OUTSIDE_VIEW,
            CONFIRM,
        )),
        Some(_) => None,
    }
}

fn ago(now: DateTime<Utc>, at: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds().max(0);
    match seconds {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

fn since_reset(a: &Archiver) -> String {
    a.stats_reset.map_or_else(String::new, |at| {
        format!(" since statistics were reset {}", ago(a.now, at))
    })
}

fn wal_archiving(
    archive_mode: Option<&str>,
    commands: &Readable<(String, String)>,
    archiver: &Readable<Archiver>,
) -> Check {
    const NAME: &str = "backup_wal_archiving";
    if let Some(decided) = archiving_on(NAME, archive_mode) {
        return decided;
    }
    let mode = archive_mode.unwrap_or_default();
    let (command, library) = match commands {
        Ok((command, library)) => (command.trim(), library.trim()),
        Err(why) => return Check::unreadable(NAME, why),
    };
    let by = if library.is_empty() {
        format!("archive_command {command:?}")
    } else {
        format!("archive_library {library:?}")
    };
    if library.is_empty() && matches!(command, "" | "(disabled)") {
        return Check::not_passing(
            NAME,
            Outcome::Fail,
            format!(
                "archive_mode {mode} but neither archive_command nor archive_library is set: WAL \
                 is kept for an archiver that never runs (pg_wal grows), nothing is archived"
            ),
            "set archive_command (or archive_library), then SELECT pg_reload_conf()",
        );
    }
    if library.is_empty()
        && matches!(
            command,
            "true" | "/bin/true" | "/usr/bin/true" | ":" | "exit 0"
        )
    {
        return Check::not_passing(
            NAME,
            Outcome::Warn,
            format!("{by}: every segment is reported archived and none is kept"),
            "set an archive_command (or archive_library) that stores WAL where a restore fetches it",
        );
    }
    let archiver = match archiver {
        Ok(a) => a,
        Err(why) => return Check::unreadable(NAME, why),
    };
    let failing = match (archiver.last_failed_time, archiver.last_archived_time) {
        (Some(failed), Some(archived)) => failed > archived,
        (Some(_), None) => true,
        _ => false,
    };
    if failing {
        return Check::not_passing(
            NAME,
            Outcome::Fail,
            format!(
                "archiving is failing ({by}): the last attempt, {}, failed for {}; {} failures \
                 and {} segments archived{}; the last success: {}",
                archiver
                    .last_failed_time
                    .map_or_else(String::new, |at| ago(archiver.now, at)),
                archiver.last_failed_wal.as_deref().unwrap_or("?"),
                archiver.failed_count,
                archiver.archived_count,
                since_reset(archiver),
                archiver.last_archived_time.map_or_else(
                    || "never".to_owned(),
                    |at| format!(
                        "{}, {}",
                        ago(archiver.now, at),
                        archiver.last_archived_wal.as_deref().unwrap_or("?")
                    )
                ),
            ),
            "read the server log for the archiver's error and fix the command or the archive's \
             storage (the archiver retries the segment until it succeeds; pg_wal grows meanwhile)",
        );
    }
    if archiver.archived_count == 0 {
        return Check::not_passing(
            NAME,
            Outcome::Warn,
            format!(
                "archive_mode {mode} with {by}, but no segment archived{}",
                since_reset(archiver)
            ),
            "SELECT pg_switch_wal(), then watch pg_stat_archiver: the segment should be archived \
             within seconds",
        );
    }
    Check::pass(
        NAME,
        format!(
            "archiving works ({by}): {} segments archived{}, {} failures, none since the last \
             success",
            archiver.archived_count,
            since_reset(archiver),
            archiver.failed_count
        ),
    )
}

/// A WAL file's segment number (its name's log and segment parts); None
/// for a timeline history file.
fn segment_number(name: &str, wal_segment_size: i64) -> Option<i64> {
    let hex = |range: std::ops::Range<usize>| {
        name.get(range)
            .and_then(|part| i64::from_str_radix(part, 16).ok())
    };
    let per_log = 0x1_0000_0000_i64 / wal_segment_size.max(1);
    Some(hex(8..16)? * per_log + hex(16..24)?)
}

fn last_archived(archive_mode: Option<&str>, archiver: &Readable<Archiver>) -> Check {
    const NAME: &str = "backup_last_archived";
    if let Some(decided) = archiving_on(NAME, archive_mode) {
        return decided;
    }
    let a = match archiver {
        Ok(a) => a,
        Err(why) => return Check::unreadable(NAME, why),
    };
    let (Some(wal), Some(at)) = (&a.last_archived_wal, a.last_archived_time) else {
        return Check::not_passing(
            NAME,
            Outcome::Warn,
            format!("no WAL segment archived{}", since_reset(a)),
            "see backup_wal_archiving; SELECT pg_switch_wal() archives the segment being written",
        );
    };
    let last = format!("the last archived segment, {wal}, {}", ago(a.now, at));
    let Some(current) = &a.current_wal else {
        return Check::not_passing(
            NAME,
            Outcome::Unknown,
            format!(
                "{last}; this server is a standby: its primary's archive is what a restore uses"
            ),
            "check the primary's archiving",
        );
    };
    let quiet = if a.archive_timeout_s > 0 {
        format!("archive_timeout {} s", a.archive_timeout_s)
    } else {
        "archive_timeout 0: on a quiet server it waits until it fills".to_owned()
    };
    let backlog = segment_number(current, a.wal_segment_size)
        .zip(segment_number(wal, a.wal_segment_size))
        .map(|(now, last)| now - last - 1);
    match backlog {
        Some(waiting) if waiting <= 2 => Check::pass(
            NAME,
            format!(
                "{last}; {} complete segments wait; the segment being written ({current}) is \
                 archived when it is complete ({quiet})",
                waiting.max(0)
            ),
        ),
        Some(waiting) => Check::not_passing(
            NAME,
            Outcome::Warn,
            format!(
                "{last}; {waiting} complete segments ({} MB) wait to be archived behind it (the \
                 segment being written is {current}): a restore from the archive now loses what \
                 they hold",
                waiting * a.wal_segment_size / (1024 * 1024)
            ),
            "check that the archiver keeps up (the command's throughput, the archive's storage); \
             pg_wal grows meanwhile",
        ),
        None => Check::not_passing(
            NAME,
            Outcome::Unknown,
            format!("{last} (a timeline history file): the backlog cannot be counted from it"),
            "SELECT pg_switch_wal(), then check again",
        ),
    }
}

fn replication_slots(slots: &Readable<Vec<Slot>>) -> Check {
    const NAME: &str = "backup_replication_slots";
    let slots = match slots {
        Ok(slots) => slots,
        Err(why) => return Check::unreadable(NAME, why),
    };
    if slots.is_empty() {
        return Check::pass(NAME, "no replication slots: none holds WAL back");
    }
    let mb = |s: &Slot| s.retained_bytes.unwrap_or(0.0) / (1024.0 * 1024.0);
    let each = |s: &Slot| {
        format!(
            "{} ({}, {}, wal_status {}, holding {:.0} MB)",
            s.slot_name,
            s.slot_type,
            if s.active { "active" } else { "inactive" },
            s.wal_status.as_deref().unwrap_or("?"),
            mb(s)
        )
    };
    let list =
        |pick: &dyn Fn(&Slot) -> bool| -> Vec<&Slot> { slots.iter().filter(|s| pick(s)).collect() };
    let lost = list(&|s| s.wal_status.as_deref() == Some("lost"));
    let inactive = list(&|s| !s.active || s.wal_status.as_deref() == Some("unreserved"));
    let drop = |bad: &[&Slot]| {
        bad.iter()
            .map(|s| format!("SELECT pg_drop_replication_slot('{}');", s.slot_name))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if !lost.is_empty() {
        return Check::not_passing(
            NAME,
            Outcome::Fail,
            format!(
                "slots that lost WAL their consumer needs (it can never catch up): {}",
                lost.iter().map(|s| each(s)).collect::<Vec<_>>().join("; ")
            ),
            format!("{} then re-create the replica or subscriber", drop(&lost)),
        );
    }
    if !inactive.is_empty() {
        return Check::not_passing(
            NAME,
            Outcome::Warn,
            format!(
                "inactive slots hold WAL back, and a migration writes much of it (three rows per \
                 candidate): {}",
                inactive
                    .iter()
                    .map(|s| each(s))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            format!(
                "bring their consumers back, or when they are gone for good: {} \
                 (max_slot_wal_keep_size bounds what a slot may hold)",
                drop(&inactive)
            ),
        );
    }
    Check::pass(
        NAME,
        format!(
            "{} slots, all active: {}",
            slots.len(),
            slots.iter().map(each).collect::<Vec<_>>().join("; ")
        ),
    )
}

fn base_backup(running: &Readable<i64>) -> Check {
    const NAME: &str = "backup_base_backup";
    let now = match running {
        Ok(0) => String::new(),
        Ok(n) => format!("; {n} base backup(s) streaming from this server right now"),
        Err(why) => format!("; {why}"),
    };
    Check::not_passing(
        NAME,
        Outcome::Unknown,
        format!(
            "PostgreSQL keeps no record of finished base backups (pg_basebackup, pgBackRest, \
             Barman, snapshots): whether a recent one exists is outside its view{now}"
        ),
        "confirm with your backup tool (pgbackrest info, barman list-backups, your snapshots) \
         that a base backup finished before the migration window and that it restores",
    )
}

#[cfg(test)]
mod tests;
