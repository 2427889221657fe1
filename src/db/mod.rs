//! The database: a pool over PostgreSQL, given by URL or started as the
//! embedded private cluster, with the schema and functions installed.
pub mod adapt;
pub mod advice;
pub mod collisions;
pub mod contract;
pub mod embedded;
pub mod schema;
pub mod scope;

use std::time::Duration;

use sqlx::{
    Executor, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::DatabaseSettings;
use embedded::{EmbeddedError, EmbeddedPostgres};
use schema::{SchemaError, SchemaInfo, SchemaMode};

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

/// An open database: the service's pool, a small administrative pool, what
/// the install found, and the embedded cluster when we started one.
pub struct Database {
    pool: PgPool,
    admin: PgPool,
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
            Ok((pool, admin, schema)) => Ok(Self {
                pool,
                admin,
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

    /// Installs on a connection of its own (as the login role), then opens the
    /// service pool: in an owned schema its connections work as the service
    /// role, which row-level security confines to one organization.
    async fn connect_and_install(
        options: PgConnectOptions,
        pool_size: u32,
    ) -> Result<(PgPool, PgPool, SchemaInfo), DbError> {
        // Batches and seed chunks take seconds by design: sqlx's slow-statement
        // warning (with the whole SQL text) would only be noise; our own spans
        // and logs time them.
        let options = sqlx::ConnectOptions::log_slow_statements(
            options,
            log::LevelFilter::Debug,
            Duration::from_secs(1),
        );
        // A refused or rejected connection is reported as such, not as a pool timeout.
        let mut installer = sqlx::ConnectOptions::connect(&options)
            .await
            .map_err(DbError::Connect)?;
        let installed = schema::install_on(&mut installer).await;
        let _ = sqlx::Connection::close(installer).await;
        let schema = installed?;

        let confine = schema.mode == SchemaMode::Owned;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if confine {
                        conn.execute(sqlx::AssertSqlSafe(format!(
                            "SET ROLE {}",
                            schema::SERVICE_ROLE
                        )))
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(DbError::Connect)?;
        // Cross-organization work (seeding, recovery scans) runs as the login role.
        let admin = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok((pool, admin, schema))
    }

    /// The service's pool: scope every transaction with `scope::begin`.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The login role's pool, for work that spans organizations by design.
    pub fn admin_pool(&self) -> &PgPool {
        &self.admin
    }

    /// The embedded cluster's directory, when we started one.
    pub fn embedded_data_dir(&self) -> Option<&std::path::Path> {
        self.embedded.as_ref().map(EmbeddedPostgres::data_dir)
    }

    pub fn schema(&self) -> &SchemaInfo {
        &self.schema
    }

    /// Closes the pool, then stops the embedded cluster if we started it.
    pub async fn close(self) {
        self.pool.close().await;
        self.admin.close().await;
        if let Some(cluster) = self.embedded
            && let Err(error) = cluster.stop().await
        {
            tracing::warn!(%error, "stopping the embedded PostgreSQL failed");
        }
    }
}
