//! The faults, injected at seeded random moments into one phase of a run
//! until it ends: SIGKILL of the server executing the run (with two or more
//! replicas, another one takes it over; a new replica is started at once in
//! the killed one's place), `pg_terminate_backend` of the batch in flight, a
//! restart of PostgreSQL under the running servers, and a storm of pause,
//! resume and update calls from concurrent callers.
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rand::{Rng, rngs::StdRng};
use sqlx::{Connection, PgConnection};
use tokio::task::JoinSet;

use super::{checks::Kill, cluster::Cluster};
use crate::{
    bench::{
        client::{self, Client, Owner},
        server::ServerChild,
    },
    proto::{
        GetMigrationRequest, Migration, MigrationState, PauseMigrationRequest,
        ResumeMigrationRequest, UpdateMigrationRequest,
    },
};

/// A phase that has not ended by then is a failure of the campaign.
const PHASE_WITHIN: Duration = Duration::from_secs(600);
/// How long an aimed kill polls for a batch executing.
const AIM_WITHIN: Duration = Duration::from_millis(300);
/// How often the replicas look for a run whose executor's lease is gone:
/// the lease interval a takeover is measured against.
pub const LEASE_CHECK: Duration = Duration::from_millis(500);
/// How long past the lease interval a kill waits for the standby to take
/// the run over before the campaign goes on (the check is on the events).
const TAKEOVER_WAIT: Duration = Duration::from_secs(3);
/// Backends executing a batch of any phase.
const BATCH_BACKENDS: &str = "state = 'active' AND pid <> pg_backend_pid()
    AND (query LIKE 'SELECT hera_migration_execute_batch_v2%'
      OR query LIKE 'SELECT hera_migration_rollback_batch_v2%'
      OR query LIKE 'SELECT hera_migration_alias_batch_v2%')";

/// What was done to one phase.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Tally {
    pub kills: u32,
    /// Kills of the replica executing the run (the others hit a standby).
    pub executor_kills: u32,
    /// Kills that found a batch executing in the database.
    pub kills_inside_a_batch: u32,
    pub terminated_batches: u32,
    pub database_restarts: u32,
    pub storms: u32,
    /// Storm calls answered INTERNAL or UNKNOWN: must stay 0.
    pub storm_internal_errors: u32,
}

pub struct Chaos<'a> {
    pub cluster: &'a mut Cluster,
    pub rng: StdRng,
    pub secret: String,
    pub owner: Owner,
    /// The running replicas, kept at `replicas` (a killed one is replaced).
    pub servers: Vec<ServerChild>,
    pub replicas: usize,
    /// The phase's kills and database restarts, as they happened.
    pub kills: Vec<Kill>,
    pub restarts: Vec<chrono::DateTime<chrono::Utc>>,
    /// Replicas that exited without being killed, with their last log lines:
    /// failures of the phase they happened in.
    pub crashes: Vec<String>,
    /// The phases' pace (transactions a second), which storms' updates keep,
    /// and batch size, which they change only downwards (a larger batch would
    /// end the phase before its faults).
    pub pace: f64,
    pub batch_size: u32,
}

impl Chaos<'_> {
    /// A client of a running replica, starting replicas up to `replicas`.
    pub async fn client(&mut self) -> anyhow::Result<Client> {
        self.reap_crashed();
        while self.servers.len() < self.replicas.max(1) {
            let settings = [(
                "HERA_LEASE_CHECK_INTERVAL_MS",
                LEASE_CHECK.as_millis().to_string(),
            )];
            let url = self.cluster.url();
            let server = ServerChild::spawn_with(&url, &self.secret, &settings).await?;
            self.servers.push(server);
        }
        client::connect(&self.servers[0].endpoint()).await
    }

    /// Replicas that exited by themselves leave the list (so that others
    /// replace them), each recorded as a crash with what it logged last.
    fn reap_crashed(&mut self) {
        let mut at = 0;
        while at < self.servers.len() {
            let Some(status) = self.servers[at].exited() else {
                at += 1;
                continue;
            };
            let server = self.servers.remove(at);
            let crash = format!(
                "replica {} exited by itself ({status}); its last log lines:\n{}",
                server.pid(),
                server.logs()
            );
            eprintln!("faults: {crash}");
            self.crashes.push(crash);
        }
    }

    /// Stops every replica.
    pub async fn stop_servers(&mut self) {
        for server in self.servers.drain(..) {
            server.stop().await;
        }
    }

    /// Faults into the phase of run `id` until it ends: `kills` SIGKILLs,
    /// between them (seeded) terminated batches, a database restart and a
    /// storm. Returns the run as it ended and what was done.
    pub async fn drive(&mut self, id: &str, kills: u32) -> anyhow::Result<(Migration, Tally)> {
        let mut tally = Tally::default();
        self.kills.clear();
        self.restarts.clear();
        let deadline = Instant::now() + PHASE_WITHIN;
        loop {
            let run = self.get(id).await?;
            match run.state() {
                MigrationState::Running | MigrationState::Pending => {}
                MigrationState::Paused => {
                    self.resume(id).await?;
                    continue;
                }
                _ => return Ok((run, tally)),
            }
            if Instant::now() > deadline {
                bail!("run {id} did not end within {PHASE_WITHIN:?}");
            }
            let pause = self.rng.random_range(20..250);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            if tally.kills >= kills {
                continue; // faults done: let it end
            }
            // Every phase gets each kind: a restart once half its kills are
            // done, a terminated batch from a quarter on; the rest at random.
            if tally.database_restarts == 0 && tally.kills >= kills / 2 {
                self.restart_database(&mut tally).await?;
                continue;
            }
            if tally.terminated_batches == 0 && tally.kills >= kills / 4 {
                self.terminate_batch(&mut tally).await?;
            }
            match self.rng.random_range(0..100) {
                0..75 => self.kill(id, &mut tally).await?,
                75..90 => self.terminate_batch(&mut tally).await?,
                _ => self.storm(id, &mut tally).await?,
            }
        }
    }

    async fn get(&mut self, id: &str) -> anyhow::Result<Migration> {
        let request = GetMigrationRequest {
            organization_id: self.owner.org.to_string(),
            migration_id: id.to_owned(),
        };
        let mut client = self.client().await?;
        // Right after a restart the server may still be reconnecting.
        for _ in 0..100 {
            match client
                .get_migration(self.owner.request(request.clone()))
                .await
            {
                Ok(run) => return Ok(run.into_inner().into_migration()),
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(status) => return Err(status).context("GetMigration"),
            }
        }
        bail!("GetMigration stayed UNAVAILABLE for 10 s")
    }

    async fn resume(&mut self, id: &str) -> anyhow::Result<()> {
        let mut client = self.client().await?;
        let request = ResumeMigrationRequest {
            organization_id: self.owner.org.to_string(),
            migration_id: id.to_owned(),
            request_id: uuid::Uuid::new_v4().to_string(),
        };
        // A resume racing the run's end is refused; the next look tells.
        let _ = client.resume_migration(self.owner.request(request)).await;
        Ok(())
    }

    /// SIGKILL of the replica executing run `id` (any one when none holds
    /// its lease now).
    async fn kill(&mut self, id: &str, tally: &mut Tally) -> anyhow::Result<()> {
        if self.servers.is_empty() {
            return Ok(());
        }
        // Half the kills wait (a little) for a batch to be executing, so that
        // some land inside a batch's database transaction.
        let aim = self.rng.random_bool(0.5);
        let inside = self.batch_executing(aim).await?;
        let executor = self.executor(id).await?;
        let at = executor
            .and_then(|(pid, _)| self.servers.iter().position(|s| s.pid() == pid))
            .unwrap_or_else(|| self.rng.random_range(0..self.servers.len()));
        let server = self.servers.remove(at);
        let executor_generation = executor
            .filter(|(pid, _)| *pid == server.pid())
            .map(|(_, generation)| generation);
        if inside {
            tally.kills_inside_a_batch += 1;
        }
        if executor_generation.is_some() {
            tally.executor_kills += 1;
        }
        server.kill().await;
        self.kills.push(Kill {
            at: chrono::Utc::now(),
            executor_generation,
        });
        tally.kills += 1;
        if let Some(generation) = executor_generation
            && !self.servers.is_empty()
        {
            self.await_takeover(id, generation).await?;
        }
        Ok(())
    }

    /// Waits until a surviving replica has taken run `id` over (its lease
    /// generation past `generation`), or the run ended, for at most the
    /// lease interval and [`TAKEOVER_WAIT`]: the killed replica's successor
    /// starts only then, so that the takeover is the standby's own.
    async fn await_takeover(&self, id: &str, generation: i64) -> anyhow::Result<()> {
        let give_up = Instant::now() + LEASE_CHECK + TAKEOVER_WAIT;
        let mut admin = self.admin().await?;
        while Instant::now() < give_up {
            let (taken, active): (bool, bool) = sqlx::query_as(
                "SELECT coalesce((metadata #>> '{lease,generation}')::bigint, 0) > $2,
                        metadata ->> 'state' IN ('PENDING', 'RUNNING')
                   FROM universal_transactions WHERE id = $1::uuid",
            )
            .bind(id)
            .bind(generation)
            .fetch_one(&mut admin)
            .await?;
            if taken || !active {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = admin.close().await;
        Ok(())
    }

    /// The process id and lease generation of run `id`'s executor, as its
    /// row names it ("host/pid").
    async fn executor(&self, id: &str) -> anyhow::Result<Option<(u32, i64)>> {
        let mut admin = self.admin().await?;
        let lease: Option<(Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT metadata #>> '{lease,server}', (metadata #>> '{lease,generation}')::bigint
               FROM universal_transactions WHERE id = $1::uuid",
        )
        .bind(id)
        .fetch_optional(&mut admin)
        .await?;
        let _ = admin.close().await;
        Ok(lease.and_then(|(server, generation)| {
            let pid = server?.rsplit_once('/')?.1.parse().ok()?;
            Some((pid, generation?))
        }))
    }

    async fn terminate_batch(&mut self, tally: &mut Tally) -> anyhow::Result<()> {
        if !self.batch_executing(true).await? {
            return Ok(());
        }
        let mut admin = self.admin().await?;
        let terminated: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {BATCH_BACKENDS}"
        )))
        .fetch_one(&mut admin)
        .await?;
        let _ = admin.close().await;
        tally.terminated_batches += u32::try_from(terminated).unwrap_or(0);
        Ok(())
    }

    async fn restart_database(&mut self, tally: &mut Tally) -> anyhow::Result<()> {
        self.restarts.push(chrono::Utc::now());
        self.cluster.restart().await?;
        tally.database_restarts += 1;
        Ok(())
    }

    /// Pause, resume and update from concurrent callers at once, then a
    /// resume: whatever wins, the run must end as an undisturbed one would.
    async fn storm(&mut self, id: &str, tally: &mut Tally) -> anyhow::Result<()> {
        let client = self.client().await?;
        let mut calls = JoinSet::new();
        for call in 0..9 {
            let (mut client, owner, id) = (client.clone(), self.owner.clone(), id.to_owned());
            let org = owner.org.to_string();
            let request_id = uuid::Uuid::new_v4().to_string();
            let batch_size = i32::try_from(self.rng.random_range(1..=self.batch_size))?;
            let pace = self.pace;
            calls.spawn(async move {
                let answer = match call % 3 {
                    0 => client
                        .pause_migration(owner.request(PauseMigrationRequest {
                            organization_id: org,
                            migration_id: id,
                            request_id,
                        }))
                        .await
                        .map(drop),
                    1 => client
                        .resume_migration(owner.request(ResumeMigrationRequest {
                            organization_id: org,
                            migration_id: id,
                            request_id,
                        }))
                        .await
                        .map(drop),
                    _ => client
                        .update_migration(owner.request(UpdateMigrationRequest {
                            organization_id: org,
                            migration_id: id,
                            request_id,
                            batch_size: Some(batch_size),
                            max_transactions_per_second: Some(pace),
                            ..Default::default()
                        }))
                        .await
                        .map(drop),
                };
                answer.err().map(|status| status.code())
            });
        }
        while let Some(answer) = calls.join_next().await {
            if matches!(answer?, Some(tonic::Code::Internal | tonic::Code::Unknown)) {
                tally.storm_internal_errors += 1;
            }
        }
        self.resume(id).await?;
        tally.storms += 1;
        Ok(())
    }

    /// Whether a batch executes in the database now; with `aim`, after
    /// polling for one for up to [`AIM_WITHIN`].
    async fn batch_executing(&self, aim: bool) -> anyhow::Result<bool> {
        let mut admin = self.admin().await?;
        let give_up = Instant::now() + if aim { AIM_WITHIN } else { Duration::ZERO };
        let executing = loop {
            let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM pg_stat_activity WHERE {BATCH_BACKENDS}"
            )))
            .fetch_one(&mut admin)
            .await?;
            if count > 0 || Instant::now() >= give_up {
                break count > 0;
            }
        };
        let _ = admin.close().await;
        Ok(executing)
    }

    /// A connection of the campaign's own (the login role); the checks read
    /// whole organizations, which is no slow statement worth a warning.
    pub async fn admin(&self) -> anyhow::Result<PgConnection> {
        let options = sqlx::ConnectOptions::log_slow_statements(
            self.cluster.options(),
            log::LevelFilter::Off,
            Duration::from_secs(60),
        );
        PgConnection::connect_with(&options)
            .await
            .context("connecting to the campaign's PostgreSQL")
    }
}
