//! CheckEnvironment: reads what the checks judge, then judges it. Each judge
//! is a plain function of what was read (tested below without a database).

use super::{
    Check, Operations, Outcome, Readable, backup,
    connections::{self, Pools, Replicas, max_connections, replicas_check, service_pool},
    installation, readable,
};
use crate::{auth::Access, db::schema::SACRED_SIX, db::scope, error::Result};

const SETTINGS: &str = include_str!("../../sql/queries/environment_settings.sql");
const SESSION: &str = include_str!("../../sql/queries/environment_session.sql");

/// The answer: every check, and what the database is.
#[derive(Debug, Clone)]
pub struct Environment {
    pub checks: Vec<Check>,
    /// "PostgreSQL 15.4", or empty when it could not be read.
    pub database_version: String,
    pub schema_version: String,
    pub schema_mode: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct Settings {
    pub version_num: i32,
    pub version: String,
    pub max_connections: i32,
    pub reserved_connections: i32,
    pub connections_in_use: i32,
    pub wal_level: String,
    pub archive_mode: String,
    pub autovacuum: String,
    pub track_counts: String,
    pub autovacuum_off_tables: Vec<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct Session {
    pub statement_timeout_ms: i64,
    pub lock_timeout_ms: i64,
    pub role: String,
    pub login_role: String,
    pub bypasses_rls: bool,
    pub longest_batch_ms: Option<f64>,
}

/// A check judged from what was read, or UNKNOWN saying why it was not.
fn judged<T>(name: &str, facts: &Readable<T>, judge: impl FnOnce(&T) -> Check) -> Check {
    match facts {
        Ok(facts) => judge(facts),
        Err(why) => Check::unreadable(name, why),
    }
}

impl Operations {
    pub async fn environment(&self, access: &Access) -> Result<Environment> {
        // Before this call takes a connection of its own.
        let pools = Pools::of(&self.pool, &self.admin);
        let settings: Readable<Settings> = readable(
            "the server's settings (pg_settings, pg_stat_activity)",
            sqlx::query_as(SETTINGS)
                .bind(SACRED_SIX)
                .fetch_one(&self.admin)
                .await,
        )?;
        let session = self.session(access).await?;
        let replicas: Readable<Replicas> = readable(
            "pg_stat_replication",
            sqlx::query_as(connections::REPLICAS)
                .fetch_one(&self.admin)
                .await,
        )?;
        let lock_ms = self.batch_lock_timeout_ms;
        let mut checks = vec![
            judged("database_version", &settings, database_version),
            judged("max_connections", &settings, |s| max_connections(s, pools)),
            judged("statement_timeout", &session, statement_timeout),
            judged("lock_timeout", &session, |s| lock_timeout(s, lock_ms)),
            judged("wal_level", &settings, wal_level),
            judged("archive_mode", &settings, archive_mode),
            judged("autovacuum", &settings, autovacuum),
        ];
        let installation = installation::checks(self, &session).await?;
        checks.extend(installation.checks);
        checks.push(service_pool(pools));
        checks.push(judged("replicas", &replicas, replicas_check));
        let archive_mode = settings.as_ref().ok().map(|s| s.archive_mode.as_str());
        checks.extend(backup::checks(&self.admin, archive_mode).await?);
        Ok(Environment {
            checks,
            database_version: settings
                .as_ref()
                .map(|s| format!("PostgreSQL {}", s.version))
                .unwrap_or_default(),
            schema_version: installation.version,
            schema_mode: self.schema.mode.as_str().to_owned(),
        })
    }

    /// A session of the service's pool, in the caller's organization.
    async fn session(&self, access: &Access) -> Result<Readable<Session>> {
        let mut tx = scope::begin_read_only(&self.pool, access.organization_id).await?;
        let session = sqlx::query_as(SESSION)
            .bind(access.organization_id)
            .fetch_one(&mut *tx)
            .await;
        tx.rollback().await?;
        readable("the service's session settings", session)
    }
}

fn database_version(s: &Settings) -> Check {
    const NAME: &str = "database_version";
    let detail = format!(
        "PostgreSQL {} (server_version_num {})",
        s.version, s.version_num
    );
    let upgrade =
        "upgrade PostgreSQL to 15 or later (pg_upgrade, or a logical replica) before migrating";
    match s.version_num {
        n if n < 140_000 => Check::not_passing(
            NAME,
            Outcome::Fail,
            format!("{detail}: hera-migrate needs 14 or later (tested on 15)"),
            upgrade,
        ),
        n if n < 150_000 => Check::not_passing(
            NAME,
            Outcome::Warn,
            format!(
                "{detail}: supported, but hera-migrate is tested on 15, and 14's community \
                 support ends in November 2026"
            ),
            upgrade,
        ),
        _ => Check::pass(NAME, detail),
    }
}

fn statement_timeout(s: &Session) -> Check {
    const NAME: &str = "statement_timeout";
    let timeout = s.statement_timeout_ms;
    if timeout == 0 {
        return Check::pass(
            NAME,
            format!(
                "statement_timeout 0 (no limit) in the service's sessions (login role {}): no \
                 batch is cut short",
                s.login_role
            ),
        );
    }
    let remedy = format!(
        "ALTER ROLE {} SET statement_timeout = 0 (or well above the longest batch; a run's first \
         batch also records the trial balance, about 6 s for a million transactions), or migrate \
         in smaller batches (batch_size)",
        s.login_role
    );
    let recorded = s.longest_batch_ms.map(|ms| ms.round() as i64);
    match recorded {
        Some(longest) if longest >= timeout => Check::not_passing(
            NAME,
            Outcome::Fail,
            format!(
                "statement_timeout {timeout} ms, and the organization's longest recorded batch \
                 took {longest} ms: such a batch is cancelled"
            ),
            remedy,
        ),
        Some(longest) if longest * 2 > timeout => Check::not_passing(
            NAME,
            Outcome::Warn,
            format!(
                "statement_timeout {timeout} ms is less than twice the organization's longest \
                 recorded batch ({longest} ms): a slower batch is cancelled"
            ),
            remedy,
        ),
        None if timeout < 60_000 => Check::not_passing(
            NAME,
            Outcome::Warn,
            format!(
                "statement_timeout {timeout} ms and no batch on record to judge it by: a batch \
                 of 1,000 takes about 0.5 s, a run's first (with its trial-balance snapshot) \
                 several seconds on a large organization"
            ),
            remedy,
        ),
        _ => Check::pass(
            NAME,
            format!(
                "statement_timeout {timeout} ms, above twice the longest recorded batch ({})",
                recorded.map_or_else(|| "none yet".to_owned(), |ms| format!("{ms} ms"))
            ),
        ),
    }
}

fn lock_timeout(s: &Session, batch_lock_timeout_ms: u64) -> Check {
    const NAME: &str = "lock_timeout";
    let own = format!(
        "each batch sets its own lock_timeout (HERA_BATCH_LOCK_TIMEOUT_MS = \
         {batch_lock_timeout_ms} ms) and backs off smaller when it expires"
    );
    match s.lock_timeout_ms {
        0 => Check::pass(
            NAME,
            format!("lock_timeout 0 (no limit) in the service's sessions; {own}"),
        ),
        ms if ms < 1000 => Check::not_passing(
            NAME,
            Outcome::Warn,
            format!(
                "lock_timeout {ms} ms in the service's sessions: its own writes besides batches \
                 (run controls, events, audit rows) fail after {ms} ms behind a business lock; {own}"
            ),
            format!("ALTER ROLE {} SET lock_timeout = '5s' (or 0)", s.login_role),
        ),
        ms => Check::pass(
            NAME,
            format!("lock_timeout {ms} ms in the service's sessions; {own}"),
        ),
    }
}

fn wal_level(s: &Settings) -> Check {
    const NAME: &str = "wal_level";
    if s.wal_level == "minimal" {
        Check::not_passing(
            NAME,
            Outcome::Warn,
            "wal_level minimal: no WAL archiving, no replicas, no point-in-time recovery to \
             just before the migration",
            "ALTER SYSTEM SET wal_level = replica; then restart PostgreSQL",
        )
    } else {
        Check::pass(
            NAME,
            format!(
                "wal_level {}: WAL serves archiving and replicas",
                s.wal_level
            ),
        )
    }
}

fn archive_mode(s: &Settings) -> Check {
    const NAME: &str = "archive_mode";
    if s.archive_mode == "off" {
        Check::not_passing(
            NAME,
            Outcome::Warn,
            "archive_mode off: this server archives no WAL, so no point-in-time recovery to just \
             before the migration from it (RollbackMigration still undoes a run)",
            "ALTER SYSTEM SET archive_mode = on and set archive_command or archive_library, then \
             restart; or confirm that your backup system (snapshots, pg_basebackup, a managed \
             service's backups) covers the migration window",
        )
    } else {
        Check::pass(
            NAME,
            format!(
                "archive_mode {} (backup_wal_archiving says whether archiving works)",
                s.archive_mode
            ),
        )
    }
}

fn autovacuum(s: &Settings) -> Check {
    const NAME: &str = "autovacuum";
    let why = "a migration marks every candidate reversed and writes two transactions for \
               each: dead rows pile up without it";
    if s.autovacuum != "on" || s.track_counts != "on" {
        Check::not_passing(
            NAME,
            Outcome::Warn,
            format!(
                "autovacuum {}, track_counts {}: {why}",
                s.autovacuum, s.track_counts
            ),
            "ALTER SYSTEM SET autovacuum = on; ALTER SYSTEM SET track_counts = on; SELECT \
             pg_reload_conf()",
        )
    } else if !s.autovacuum_off_tables.is_empty() {
        let tables = s.autovacuum_off_tables.join(", ");
        Check::not_passing(
            NAME,
            Outcome::Warn,
            format!("autovacuum on, but turned off for {tables}: {why}"),
            s.autovacuum_off_tables
                .iter()
                .map(|t| format!("ALTER TABLE {t} RESET (autovacuum_enabled);"))
                .collect::<Vec<_>>()
                .join(" "),
        )
    } else {
        Check::pass(NAME, "autovacuum on (track_counts on), for all six tables")
    }
}

#[cfg(test)]
mod tests;
