//! The campaign's own PostgreSQL: a private cluster (the embedded default's
//! code, in a directory of the campaign's) that it may stop and start again
//! under a running server, which a shared server would not allow.
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sqlx::postgres::PgConnectOptions;

use crate::db::embedded::EmbeddedPostgres;

pub struct Cluster {
    dir: PathBuf,
    postgres: Option<EmbeddedPostgres>,
}

impl Cluster {
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let postgres = EmbeddedPostgres::start(dir)
            .await
            .context("starting the campaign's PostgreSQL")?;
        Ok(Self {
            dir: dir.to_owned(),
            postgres: Some(postgres),
        })
    }

    fn running(&self) -> &EmbeddedPostgres {
        self.postgres.as_ref().expect("the cluster runs")
    }

    /// Its database `hera`, as the superuser.
    pub fn options(&self) -> PgConnectOptions {
        self.running().connect_options("hera")
    }

    /// A server's DATABASE_URL: the unix socket, which outlives restarts.
    pub fn url(&self) -> String {
        let options = self.options();
        format!(
            "postgres://{}@localhost:{}/hera?host={}",
            options.get_username(),
            options.get_port(),
            self.running().socket_dir().display()
        )
    }

    /// A fast shutdown and a start on the same directory and socket: every
    /// session ends, as in a restart or a failover.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(postgres) = self.postgres.take() {
            postgres.stop().await.context("stopping PostgreSQL")?;
        }
        self.postgres = Some(
            EmbeddedPostgres::start(&self.dir)
                .await
                .context("starting PostgreSQL again")?,
        );
        Ok(())
    }

    pub async fn stop(mut self) {
        if let Some(postgres) = self.postgres.take() {
            let _ = postgres.stop().await;
        }
    }
}
