//! Reading the database signals a run listens to (`migration::signals`),
//! at most once a second, before its batches. The system views are read on
//! the login role's connection (the service role may not see autovacuum's
//! or replication's rows); the business probe runs where the business does,
//! in the organization's scope on the service's pool, read-only, timed from
//! here. A signal that cannot be read says why: the run then holds (fail
//! closed) until it reads again or the operator disables it.
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    db::{schema::SACRED_SIX, scope},
    migration::signals::{Action, Effective, Reading, Signal, State},
};

const AUTOVACUUM: &str = include_str!("../../../sql/queries/signal_autovacuum.sql");
const WAL_ARCHIVE: &str = include_str!("../../../sql/queries/signal_wal_archive.sql");
const REPLICA_LAG: &str = include_str!("../../../sql/queries/signal_replica_lag.sql");
const DEFAULT_PROBE: &str = include_str!("../../../sql/queries/signal_probe.sql");

/// Signals are read at most this often.
const EVERY: Duration = Duration::from_secs(1);
/// A probe slower than this counts as this slow (and trips).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Probes timed for the idle baseline, before a run's first batch.
const BASELINE_PROBES: usize = 5;
/// A probe trips only this far over its baseline too, so that the noise of
/// sub-millisecond reads never does.
const PROBE_SLACK_MS: f64 = 5.0;

/// A run's ears: the latest readings, and the probe's baseline.
pub struct Listener {
    admin: PgPool,
    pool: PgPool,
    organization_id: Uuid,
    probe: String,
    baseline_ms: Option<f64>,
    latest: Vec<Reading>,
    /// When `latest` was read, and under which settings (new settings, an
    /// update's, are read at once).
    read_at: Option<Instant>,
    read_under: Option<[Effective; 4]>,
}

impl Listener {
    /// `resumed`: the readings of the run's latest event (a server taking
    /// it over keeps the probe's idle baseline, which it cannot measure
    /// mid-run).
    pub fn new(
        (pool, admin): (PgPool, PgPool),
        organization_id: Uuid,
        probe: Option<String>,
        resumed: &[Reading],
    ) -> Self {
        Self {
            admin,
            pool,
            organization_id,
            probe: probe.unwrap_or_else(|| DEFAULT_PROBE.to_owned()),
            baseline_ms: resumed.iter().find_map(|r| r.baseline_ms),
            latest: Vec::new(),
            read_at: None,
            read_under: None,
        }
    }

    /// The readings as of at most a second ago under `settings`.
    pub async fn read(&mut self, settings: &[Effective; 4]) -> &[Reading] {
        let fresh = self.read_at.is_some_and(|at| at.elapsed() < EVERY)
            && self.read_under.as_ref() == Some(settings);
        if !fresh {
            let mut readings = Vec::with_capacity(settings.len());
            for setting in settings {
                readings.push(self.read_one(setting).await);
            }
            self.latest = readings;
            self.read_at = Some(Instant::now());
            self.read_under = Some(*settings);
        }
        &self.latest
    }

    /// The latest readings, without reading again.
    pub fn latest(&self) -> &[Reading] {
        &self.latest
    }

    async fn read_one(&mut self, setting: &Effective) -> Reading {
        let mut reading = Reading {
            signal: setting.signal,
            state: State::Disabled,
            value: 0.0,
            threshold: setting.threshold,
            action: setting.action,
            detail: String::new(),
            read_at: Utc::now(),
            baseline_ms: None,
        };
        if !setting.enabled {
            return reading;
        }
        let value = match setting.signal {
            Signal::Autovacuum => self.autovacuum().await,
            Signal::WalArchiveBacklog => self.wal_archive().await,
            Signal::ReplicaLag => self.replica_lag().await,
            Signal::BusinessProbe => self.probe().await,
        };
        match value {
            Ok((value, detail)) => {
                reading.value = value;
                reading.detail = detail;
                reading.state = if self.trips(setting, value) {
                    State::Tripped
                } else {
                    State::Ok
                };
            }
            Err(why) => {
                reading.state = State::Unreadable;
                reading.detail = why;
            }
        }
        if setting.signal == Signal::BusinessProbe {
            reading.baseline_ms = self.baseline_ms;
        }
        reading
    }

    fn trips(&self, setting: &Effective, value: f64) -> bool {
        let over = value >= setting.threshold;
        match (setting.signal, self.baseline_ms) {
            (Signal::BusinessProbe, Some(baseline)) => {
                over && value * baseline - baseline >= PROBE_SLACK_MS
            }
            _ => over,
        }
    }

    async fn autovacuum(&self) -> Result<(f64, String), String> {
        let (running, hidden, detail): (i64, i64, String) = sqlx::query_as(AUTOVACUUM)
            .bind(SACRED_SIX)
            .fetch_one(&self.admin)
            .await
            .map_err(|e| e.to_string())?;
        if hidden > 0 && running == 0 {
            return Err(format!(
                "{hidden} VACUUM(s) run whose tables this role may not see \
                 (grant it pg_read_all_stats or pg_monitor)"
            ));
        }
        Ok((running as f64, detail))
    }

    async fn wal_archive(&self) -> Result<(f64, String), String> {
        let (waiting, mode): (i64, String) = sqlx::query_as(WAL_ARCHIVE)
            .fetch_one(&self.admin)
            .await
            .map_err(|e| format!("{e} (the backlog needs superuser or pg_monitor)"))?;
        let detail = if mode == "off" {
            "archive_mode is off".to_owned()
        } else {
            String::new()
        };
        Ok((waiting as f64, detail))
    }

    async fn replica_lag(&self) -> Result<(f64, String), String> {
        let (lag_ms, hidden, replicas, detail): (f64, i64, i64, String) =
            sqlx::query_as(REPLICA_LAG)
                .fetch_one(&self.admin)
                .await
                .map_err(|e| e.to_string())?;
        if hidden > 0 {
            return Err(format!(
                "{hidden} of {replicas} replica(s) this role may not see \
                 (grant it pg_read_all_stats or pg_monitor)"
            ));
        }
        let detail = if replicas == 0 {
            "no streaming replicas".to_owned()
        } else {
            detail
        };
        Ok((lag_ms, detail))
    }

    /// The probe's latency as a multiple of its idle baseline (measured the
    /// first time, before the run's first batch).
    async fn probe(&mut self) -> Result<(f64, String), String> {
        let baseline = match self.baseline_ms {
            Some(baseline) => baseline,
            None => {
                let mut idle = Vec::with_capacity(BASELINE_PROBES);
                for _ in 0..BASELINE_PROBES {
                    idle.push(self.time_probe().await?);
                }
                idle.sort_by(f64::total_cmp);
                let baseline = idle[BASELINE_PROBES / 2].max(0.1);
                self.baseline_ms = Some(baseline);
                baseline
            }
        };
        let ms = self.time_probe().await?;
        Ok((
            ms / baseline,
            format!("{ms:.1} ms against {baseline:.1} ms idle"),
        ))
    }

    /// One probe, in milliseconds; one that times out counts as the timeout.
    async fn time_probe(&self) -> Result<f64, String> {
        let started = Instant::now();
        let outcome = async {
            let mut tx = scope::begin_read_only(&self.pool, self.organization_id).await?;
            sqlx::query("SELECT set_config('statement_timeout', $1, true)")
                .bind(format!("{}ms", PROBE_TIMEOUT.as_millis()))
                .execute(&mut *tx)
                .await?;
            let probe = sqlx::query(sqlx::AssertSqlSafe(self.probe.as_str()));
            let bound = if self.probe.contains("$1") {
                probe.bind(self.organization_id)
            } else {
                probe
            };
            bound.execute(&mut *tx).await?;
            tx.rollback().await
        }
        .await;
        match outcome {
            Ok(()) => Ok(started.elapsed().as_secs_f64() * 1000.0),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("57014") => {
                Ok(PROBE_TIMEOUT.as_secs_f64() * 1000.0)
            }
            Err(error) => Err(format!("the business probe failed: {error}")),
        }
    }
}

/// The hold a reading asks for, or None.
pub fn hold_for(reading: &Reading, settings: &[Effective]) -> Option<Duration> {
    (reading.demands() == Some(Action::Hold)).then(|| {
        let ms = settings
            .iter()
            .find(|s| s.signal == reading.signal)
            .map_or(crate::migration::signals::DEFAULT_HOLD_MS, |s| s.hold_ms);
        Duration::from_millis(u64::from(ms))
    })
}
