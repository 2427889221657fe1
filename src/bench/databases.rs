//! The bench's own databases: `hera_bench_<tag>_<what>`, created on the
//! PostgreSQL of DATABASE_URL (or on the embedded default cluster, started the
//! way `serve` starts it), seeded with seed-demo, and dropped at the end. A
//! database, never a table: the project creates no table, not even here.
use std::{path::PathBuf, str::FromStr};

use anyhow::Context as _;
use sqlx::{Connection, Executor, PgConnection, postgres::PgConnectOptions};

use crate::{
    config::DatabaseSettings,
    db::{Database, embedded::EmbeddedPostgres},
    seed::{self, SeedParams, SeedReport},
};

/// Where the bench's databases live, and how a child server reaches them.
pub struct Cluster {
    /// Administrative options: any database of the cluster.
    admin: PgConnectOptions,
    urls: UrlShape,
    /// The embedded default, when the bench started (or shares) it.
    embedded: Option<EmbeddedPostgres>,
    /// This run's tag, in every database name.
    pub tag: String,
}

/// How to write a child server's DATABASE_URL for one of our databases.
enum UrlShape {
    /// The operator's URL with its database swapped (credentials and
    /// parameters kept).
    Given(String),
    /// The embedded cluster's unix socket.
    Socket {
        user: String,
        port: u16,
        dir: PathBuf,
    },
}

/// One bench database.
pub struct BenchDatabase {
    pub name: String,
    /// A `postgres://` URL for the servers the bench spawns.
    pub url: String,
    pub options: PgConnectOptions,
}

impl Cluster {
    /// The operator's PostgreSQL, or the embedded default (`data_dir`, else
    /// its default directory).
    pub async fn open(url: Option<&str>, data_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        if let Some(url) = url {
            let admin = PgConnectOptions::from_str(url).context("DATABASE_URL")?;
            return Ok(Self {
                admin,
                urls: UrlShape::Given(url.to_owned()),
                embedded: None,
                tag,
            });
        }
        let dir = data_dir.unwrap_or_else(EmbeddedPostgres::default_data_dir);
        let cluster = EmbeddedPostgres::start(&dir)
            .await
            .context("starting the embedded default cluster")?;
        let admin = cluster.connect_options("postgres");
        let urls = UrlShape::Socket {
            user: admin.get_username().to_owned(),
            port: admin.get_port(),
            dir: cluster.socket_dir().to_owned(),
        };
        Ok(Self {
            admin,
            urls,
            embedded: Some(cluster),
            tag,
        })
    }

    /// Creates `hera_bench_<tag>_<what>`.
    pub async fn create(&self, what: &str) -> anyhow::Result<BenchDatabase> {
        let name = format!("hera_bench_{}_{what}", self.tag);
        let mut admin = self.admin_connection().await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        let _ = admin.close().await;
        Ok(BenchDatabase {
            url: self.url_of(&name),
            options: self.admin.clone().database(&name),
            name,
        })
    }

    /// Drops a bench database, whoever is still connected.
    pub async fn drop_database(&self, name: &str) -> anyhow::Result<()> {
        let mut admin = self.admin_connection().await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .await
            .with_context(|| format!("DROP DATABASE {name}"))?;
        let _ = admin.close().await;
        Ok(())
    }

    /// `SHOW server_version`, for the report's machine.
    pub async fn server_version(&self) -> anyhow::Result<String> {
        let mut admin = self.admin_connection().await?;
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut admin)
            .await?;
        let _ = admin.close().await;
        Ok(version)
    }

    /// Stops the embedded cluster if the bench started it.
    pub async fn close(self) {
        if let Some(cluster) = self.embedded {
            let _ = cluster.stop().await;
        }
    }

    async fn admin_connection(&self) -> anyhow::Result<PgConnection> {
        PgConnection::connect_with(&self.admin)
            .await
            .context("connecting to the bench's PostgreSQL")
    }

    fn url_of(&self, database: &str) -> String {
        match &self.urls {
            UrlShape::Given(url) => with_database(url, database),
            UrlShape::Socket { user, port, dir } => format!(
                "postgres://{user}@localhost:{port}/{database}?host={}",
                dir.display()
            ),
        }
    }
}

impl BenchDatabase {
    /// seed-demo's organizations (dates of 2024, three lines each, seed 42),
    /// the schema installed first as `serve` installs it.
    pub async fn seed(&self, organizations: u32, transactions: u64) -> anyhow::Result<SeedReport> {
        let database = Database::open(&DatabaseSettings {
            database_url: Some(self.options.clone()),
            data_dir: None,
            pool_size: 2,
        })
        .await
        .with_context(|| format!("installing the schema in {}", self.name))?;
        let params = SeedParams {
            organizations,
            transactions,
            lines: 3,
            from: chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("a date"),
            to: chrono::NaiveDate::from_ymd_opt(2024, 12, 31).expect("a date"),
            seed: 42,
        };
        let seeded = seed::seed_demo(database.admin_pool(), &params).await;
        database.close().await;
        // seed-demo leaves its ledger vacuumed and analyzed, so autovacuum's
        // first pass does not fall into a measurement.
        seeded.with_context(|| format!("seeding {}", self.name))
    }

    /// A connection of its own, as the login role (the bench's own SQL).
    pub async fn connect(&self) -> anyhow::Result<PgConnection> {
        PgConnection::connect_with(&self.options)
            .await
            .with_context(|| format!("connecting to {}", self.name))
    }
}

/// `url` naming `database` instead of its own (or none).
fn with_database(url: &str, database: &str) -> String {
    let query_at = url.find('?').unwrap_or(url.len());
    let (base, query) = url.split_at(query_at);
    let authority_at = base.find("://").map_or(0, |at| at + 3);
    let path_at = base[authority_at..]
        .find('/')
        .map_or(base.len(), |at| authority_at + at);
    format!("{}/{database}{query}", &base[..path_at])
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn a_url_names_the_bench_database_and_keeps_the_rest() {
        assert_eq!(
            with_database("postgres://root@127.0.0.1:5432/postgres", "b"),
            "postgres://root@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "b"),
            "postgres://u:p@h/b?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "b"),
            "postgres://h:5432/b"
        );
    }
}
