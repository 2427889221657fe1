//! The embedded default database: a private PostgreSQL cluster started from the
//! locally installed server binaries when no DATABASE_URL is given.
//! (Stub: being written.)
use std::path::{Path, PathBuf};

use sqlx::postgres::PgConnectOptions;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("{0}")]
    Other(String),
}

pub struct EmbeddedPostgres {
    data_dir: PathBuf,
}

impl EmbeddedPostgres {
    /// The documented default data directory.
    pub fn default_data_dir() -> PathBuf {
        PathBuf::from("/var/lib/hera-migrate")
    }

    pub async fn start(data_dir: &Path) -> Result<Self, EmbeddedError> {
        Err(EmbeddedError::Other(format!(
            "embedded PostgreSQL not built yet ({})",
            data_dir.display()
        )))
    }

    /// Connection options for `database` over the cluster's unix socket.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new().database(database)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub async fn stop(self) -> Result<(), EmbeddedError> {
        Ok(())
    }
}
