//! A fresh database per test, created on the server named by `DATABASE_URL`
//! or, without it, on one embedded cluster shared by the whole test binary.
use std::{str::FromStr, sync::OnceLock};

use hera_migrate::db::embedded::EmbeddedPostgres;
use sqlx::{Connection, Executor, PgConnection, PgPool, postgres::PgConnectOptions};

/// Where test databases are created: administrative options (any database).
fn server() -> &'static PgConnectOptions {
    static SERVER: OnceLock<PgConnectOptions> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            PgConnectOptions::from_str(&url).expect("DATABASE_URL is a PostgreSQL URL")
        }
        _ => start_shared_cluster(),
    })
}

/// Starts the embedded cluster on a thread whose runtime lives as long as the
/// test binary; its guardian stops PostgreSQL when the binary exits.
fn start_shared_cluster() -> PgConnectOptions {
    remove_clusters_of_finished_runs();
    let data_dir = std::env::temp_dir().join(format!("{CLUSTER_PREFIX}{}", std::process::id()));
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the shared cluster");
        runtime.block_on(async move {
            let cluster = EmbeddedPostgres::start(&data_dir)
                .await
                .expect("the embedded PostgreSQL starts");
            sender
                .send(cluster.connect_options("postgres"))
                .expect("the harness waits for the cluster");
            // Keep the cluster (and this runtime) for the rest of the run.
            std::future::pending::<()>().await;
        });
    });
    receiver.recv().expect("the shared cluster started")
}

const CLUSTER_PREFIX: &str = "hera-migrate-tests-";

/// Each run's cluster lives in a folder named after its process; a folder whose
/// process is gone is a leftover.
fn remove_clusters_of_finished_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(CLUSTER_PREFIX)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub struct TestDatabase {
    name: String,
    options: PgConnectOptions,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let name = format!("hera_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect_with(server())
            .await
            .expect("connect to the test server");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let options = server().clone().database(&name);
        Self { name, options }
    }

    pub fn options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    pub async fn pool(&self) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect_with(self.options())
            .await
            .expect("connect to the test database")
    }

    /// The address a TCP proxy should forward to.
    pub fn upstream(&self) -> super::proxy::Upstream {
        let options = server();
        let unix = options.get_socket().cloned().or_else(|| {
            options
                .get_host()
                .starts_with('/')
                .then(|| options.get_host().into())
        });
        match unix {
            Some(dir) => {
                super::proxy::Upstream::Unix(dir.join(format!(".s.PGSQL.{}", options.get_port())))
            }
            None => super::proxy::Upstream::Tcp(format!(
                "{}:{}",
                options.get_host(),
                options.get_port()
            )),
        }
    }

    /// Options reaching this database through a TCP proxy on 127.0.0.1:`port`.
    pub fn options_via(&self, port: u16) -> PgConnectOptions {
        if server().get_socket().is_some() || server().get_host().starts_with('/') {
            PgConnectOptions::new_without_pgpass()
                .host("127.0.0.1")
                .port(port)
                .username(server().get_username())
                .database(&self.name)
        } else {
            self.options().host("127.0.0.1").port(port)
        }
    }

    /// A `postgres://` URL for child processes (the binary under test).
    pub fn url(&self) -> String {
        let options = server();
        let user = options.get_username();
        match options.get_socket().cloned().or_else(|| {
            options
                .get_host()
                .starts_with('/')
                .then(|| options.get_host().into())
        }) {
            Some(dir) => format!(
                "postgres://{user}@localhost:{}/{}?host={}",
                options.get_port(),
                self.name,
                dir.display()
            ),
            None => match std::env::var("DATABASE_URL") {
                Ok(url) => {
                    let mut url = url;
                    let base_end = url.find('?').unwrap_or(url.len());
                    let path_start = url[..base_end].rfind('/').expect("a URL with a path");
                    url.replace_range(path_start + 1..base_end, &self.name);
                    url
                }
                Err(_) => unreachable!("a TCP test server comes from DATABASE_URL"),
            },
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: do the async work elsewhere.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database")
                .block_on(async move {
                    let mut admin = PgConnection::connect_with(server()).await?;
                    admin
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await?;
                    admin.close().await
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}
