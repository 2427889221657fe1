//! Tests of the embedded cluster. Most start a real PostgreSQL from the local
//! binaries in a temporary data directory; run as root, they cover the
//! run-as-`postgres` path too.
mod crash;
mod lifecycle;
mod setup;
mod units;

use std::path::Path;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use super::EmbeddedPostgres;
use super::process::cluster_processes;

pub(super) fn nothing_left(data_dir: &Path) -> bool {
    cluster_processes(&data_dir.join("pgdata")).is_empty()
}

pub(super) async fn select_one(pg: &EmbeddedPostgres, database: &str) {
    let mut conn = PgConnection::connect_with(&pg.connect_options(database))
        .await
        .expect("connect over the unix socket");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    conn.close().await.unwrap();
}
