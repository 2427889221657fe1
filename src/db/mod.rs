//! The database: a pool over PostgreSQL, given by URL or started as the
//! embedded private cluster, with the schema and functions installed.
pub mod contract;
pub mod embedded;
pub mod schema;

use std::time::Duration;

use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::config::DatabaseSettings;
use embedded::{EmbeddedError, EmbeddedPostgres};
use schema::{SchemaError, SchemaInfo};

/// The database the embedded cluster keeps our data in.
pub const EMBEDDED_DATABASE: &str = "hera";
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error("DATABASE_URL: cannot connect ({0})")]
    Connect(sqlx::Error),
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// An open database: its pool, what the install found, and the embedded
/// cluster when we started one (stopped by `close`).
pub struct Database {
    pool: PgPool,
    schema: SchemaInfo,
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// Connects (starting the embedded cluster when no URL is given) and
    /// installs the schema.
    pub async fn open(settings: &DatabaseSettings) -> Result<Self, DbError> {
        let (options, embedded) = match &settings.database_url {
            Some(options) => (options.clone(), None),
            None => {
                let dir = settings
                    .data_dir
                    .clone()
                    .unwrap_or_else(EmbeddedPostgres::default_data_dir);
                let cluster = EmbeddedPostgres::start(&dir).await?;
                tracing::info!(data_dir = %cluster.data_dir().display(), "embedded PostgreSQL started");
                (cluster.connect_options(EMBEDDED_DATABASE), Some(cluster))
            }
        };
        match Self::connect_and_install(options, settings.pool_size).await {
            Ok((pool, schema)) => Ok(Self {
                pool,
                schema,
                embedded,
            }),
            Err(error) => {
                if let Some(cluster) = embedded {
                    let _ = cluster.stop().await;
                }
                Err(error)
            }
        }
    }

    async fn connect_and_install(
        options: sqlx::postgres::PgConnectOptions,
        pool_size: u32,
    ) -> Result<(PgPool, SchemaInfo), DbError> {
        // One direct connection first: a refused or rejected connection is
        // reported as such, not as a pool timeout.
        let probe = sqlx::ConnectOptions::connect(&options)
            .await
            .map_err(DbError::Connect)?;
        let _ = sqlx::Connection::close(probe).await;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(DbError::Connect)?;
        let schema = schema::install(&pool).await?;
        Ok((pool, schema))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn schema(&self) -> &SchemaInfo {
        &self.schema
    }

    /// Closes the pool, then stops the embedded cluster if we started it.
    pub async fn close(self) {
        self.pool.close().await;
        if let Some(cluster) = self.embedded
            && let Err(error) = cluster.stop().await
        {
            tracing::warn!(%error, "stopping the embedded PostgreSQL failed");
        }
    }
}
