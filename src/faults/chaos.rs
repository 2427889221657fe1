//! The faults, injected at seeded random moments into one phase of a run
//! until it ends: SIGKILL of the server (a new one is started at once, and
//! takes the run over), `pg_terminate_backend` of the batch in flight, a
//! restart of PostgreSQL under the running server, and a storm of pause,
//! resume and update calls from concurrent callers.
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rand::{Rng, rngs::StdRng};
use sqlx::{Connection, PgConnection};
use tokio::task::JoinSet;

use super::cluster::Cluster;
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
/// Backends executing a batch of any phase.
const BATCH_BACKENDS: &str = "state = 'active' AND pid <> pg_backend_pid()
    AND (query LIKE 'SELECT hera_migration_execute_batch_v2%'
      OR query LIKE 'SELECT hera_migration_rollback_batch_v2%'
      OR query LIKE 'SELECT hera_migration_alias_batch_v2%')";

/// What was done to one phase.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Tally {
    pub kills: u32,
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
    pub server: Option<ServerChild>,
    /// The phases' pace (transactions a second), which storms' updates keep,
    /// and batch size, which they change only downwards (a larger batch would
    /// end the phase before its faults).
    pub pace: f64,
    pub batch_size: u32,
}

impl Chaos<'_> {
    /// A client of the running server, starting one when none runs.
    pub async fn client(&mut self) -> anyhow::Result<Client> {
        if self.server.is_none() {
            self.server = Some(ServerChild::spawn(&self.cluster.url(), &self.secret).await?);
        }
        let server = self.server.as_ref().expect("a server");
        client::connect(&server.endpoint()).await
    }

    /// Faults into the phase of run `id` until it ends: `kills` SIGKILLs,
    /// between them (seeded) terminated batches, a database restart and a
    /// storm. Returns the run as it ended and what was done.
    pub async fn drive(&mut self, id: &str, kills: u32) -> anyhow::Result<(Migration, Tally)> {
        let mut tally = Tally::default();
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
                0..75 => self.kill(&mut tally).await?,
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
                Ok(run) => return Ok(run.into_inner()),
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

    async fn kill(&mut self, tally: &mut Tally) -> anyhow::Result<()> {
        if self.server.is_none() {
            return Ok(());
        }
        // Half the kills wait (a little) for a batch to be executing, so that
        // some land inside a batch's database transaction.
        let aim = self.rng.random_bool(0.5);
        let inside = self.batch_executing(aim).await?;
        let server = self.server.take().expect("a server");
        if inside {
            tally.kills_inside_a_batch += 1;
        }
        server.kill().await;
        tally.kills += 1;
        Ok(())
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
