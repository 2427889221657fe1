//! CheckEnvironment's checks of connections: max_connections headroom, the
//! service's pool, and the replicas (their lag where visible).
use sqlx::PgPool;

use super::{Check, Outcome, environment::Settings};

pub(super) const REPLICAS: &str = include_str!("../../sql/queries/environment_replicas.sql");

#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct Replicas {
    pub may_read_details: bool,
    pub names: Vec<String>,
    pub states: Vec<String>,
    pub replay_lag_s: Vec<f64>,
    pub standby_replay_age_s: Option<f64>,
}

/// Connections of the service's two pools: (open, idle, maximum) each.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pools {
    pub service: (u32, usize, u32),
    pub admin: (u32, usize, u32),
}

impl Pools {
    pub fn of(service: &PgPool, admin: &PgPool) -> Self {
        let stats = |pool: &PgPool| {
            let max = pool.options().get_max_connections();
            (pool.size(), pool.num_idle(), max)
        };
        Self {
            service: stats(service),
            admin: stats(admin),
        }
    }
}

pub(super) fn max_connections(s: &Settings, pools: Pools) -> Check {
    const NAME: &str = "max_connections";
    let usable = (s.max_connections - s.reserved_connections).max(0);
    let free = usable - s.connections_in_use;
    let (service_open, _, service_max) = pools.service;
    let (admin_open, _, admin_max) = pools.admin;
    // What this server may still open: the rest of its pools, and a lease
    // connection for a run it executes.
    let may_open = (service_max.saturating_sub(service_open) + admin_max.saturating_sub(admin_open))
        as i32
        + 1;
    let detail = format!(
        "{} of {usable} connections in use (max_connections {}, {} reserved for superusers); \
         this server may still open {may_open} (its pools: {service_open} of {service_max} and \
         {admin_open} of {admin_max} open, and one per run it executes)",
        s.connections_in_use, s.max_connections, s.reserved_connections
    );
    let remedy = "raise max_connections (a restart), put a pooler in front, or lower \
                  HERA_DB_POOL_SIZE; find idle sessions in pg_stat_activity";
    if free < may_open {
        Check::not_passing(
            NAME,
            Outcome::Fail,
            format!("{detail}: only {free} free"),
            remedy,
        )
    } else if s.connections_in_use * 5 >= usable * 4 {
        Check::not_passing(
            NAME,
            Outcome::Warn,
            format!("{detail}: 80 % or more in use"),
            remedy,
        )
    } else {
        Check::pass(NAME, detail)
    }
}

pub(super) fn service_pool(pools: Pools) -> Check {
    const NAME: &str = "service_pool";
    let (open, idle, max) = pools.service;
    let detail = format!("{open} of {max} connections open, {idle} idle");
    if open >= max && idle == 0 {
        Check::not_passing(
            NAME,
            Outcome::Warn,
            format!("{detail}: every connection is busy, calls wait (up to 5 s) for one"),
            "raise HERA_DB_POOL_SIZE (within max_connections), or pace the runs",
        )
    } else {
        Check::pass(NAME, detail)
    }
}

pub(super) fn replicas_check(r: &Replicas) -> Check {
    const NAME: &str = "replicas";
    if let Some(age) = r.standby_replay_age_s {
        return Check::not_passing(
            NAME,
            Outcome::Fail,
            format!(
                "the database is a standby (in recovery), its last replayed transaction {age:.1} s \
                 old: a migration cannot write here"
            ),
            "point DATABASE_URL at the primary",
        );
    }
    if r.names.is_empty() {
        return Check::pass(NAME, "no replicas visible (pg_stat_replication is empty)");
    }
    if !r.may_read_details && r.states.iter().all(String::is_empty) {
        return Check::unreadable(
            NAME,
            &format!(
                "insufficient privilege to read pg_stat_replication's state and lag (needs \
                 pg_read_all_stats): {} replicas connected ({})",
                r.names.len(),
                r.names.join(", ")
            ),
        );
    }
    let mut lagging = Vec::new();
    let each: Vec<String> = r
        .names
        .iter()
        .zip(&r.states)
        .zip(&r.replay_lag_s)
        .map(|((name, state), lag)| {
            let lag_text = if *lag < 0.0 {
                "no replay lag reported".to_owned()
            } else {
                format!("replay lag {lag:.1} s")
            };
            if state != "streaming" || *lag > 60.0 {
                lagging.push(name.clone());
            }
            format!("{name} {state}, {lag_text}")
        })
        .collect();
    let detail = format!("{} replicas: {}", r.names.len(), each.join("; "));
    if lagging.is_empty() {
        Check::pass(NAME, detail)
    } else {
        Check::not_passing(
            NAME,
            Outcome::Warn,
            format!(
                "{detail}; not streaming or over 60 s behind: {}",
                lagging.join(", ")
            ),
            "reads on a lagging replica see the migration late: pace the run \
             (max_transactions_per_second) or look at the replica's network and replay",
        )
    }
}
