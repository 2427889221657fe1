//! Starting, serving, stopping; the guardian; sharing a running cluster.
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use super::{nothing_left, select_one};
use crate::db::embedded::EmbeddedPostgres;
use crate::db::embedded::process::{cluster_processes, is_postmaster_of, process_alive, wait_gone};

#[tokio::test]
async fn starts_serves_stops_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
    let pid = pg.pid() as i32;
    assert!(process_alive(pid));
    let running = cluster_processes(&dir.path().join("pgdata"));
    assert!(running.contains(&pid) && running.len() > 1, "{running:?}");
    assert_eq!(pg.data_dir(), dir.path());
    assert_eq!(pg.socket_dir(), dir.path().join("run"));
    assert!(dir.path().join("run/.s.PGSQL.5432").exists());
    let version_file = dir.path().join("pgdata/PG_VERSION");
    let first_init = fs::metadata(&version_file).unwrap();

    select_one(&pg, "hera").await;
    let mut conn = PgConnection::connect_with(&pg.connect_options("hera"))
        .await
        .unwrap();
    let (user, db): (String, String) =
        sqlx::query_as("SELECT current_user::text, current_database()::text")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((user.as_str(), db.as_str()), ("hera", "hera"));
    let listen: String = sqlx::query_scalar("SHOW listen_addresses")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(listen, "", "no TCP listener");
    let max_connections: String = sqlx::query_scalar("SHOW max_connections")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(max_connections, "200");
    sqlx::query("CREATE DATABASE persisted_marker")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    pg.stop().await.unwrap();
    assert!(!process_alive(pid), "postgres {pid} survived stop()");
    assert!(
        nothing_left(dir.path()),
        "a postgres process of the cluster survived stop()"
    );
    assert!(!dir.path().join("pgdata/postmaster.pid").exists());
    let log = fs::read_to_string(dir.path().join("postgres.log")).unwrap();
    assert!(log.contains("database system is ready"), "{log}");

    // Second run on the same directory: no initdb, the data is still there.
    let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
    let second_init = fs::metadata(&version_file).unwrap();
    assert_eq!(first_init.ino(), second_init.ino());
    assert_eq!(first_init.mtime(), second_init.mtime());
    let mut conn = PgConnection::connect_with(&pg.connect_options("postgres"))
        .await
        .unwrap();
    let kept: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'persisted_marker')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(kept, "the database created in the first run is gone");
    conn.close().await.unwrap();
    let pid = pg.pid() as i32;
    pg.stop().await.unwrap();
    assert!(!process_alive(pid));
    assert!(nothing_left(dir.path()));
}

#[tokio::test]
async fn guardian_stops_postgres_when_its_owner_vanishes() {
    let dir = tempfile::tempdir().unwrap();
    let mut pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
    let pid = pg.pid() as i32;
    let mut child = pg.child.take().unwrap();
    let mut guardian = pg.guardian.take().unwrap();
    // A crash: no stop(), no Drop.
    std::mem::forget(pg);
    assert!(process_alive(pid));

    // What the kernel does when this process dies: the guardian's pipe closes.
    drop(guardian.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("postgres still running 30s after its guardian's pipe closed")
        .unwrap();
    assert!(status.success(), "fast shutdown exits cleanly: {status}");
    assert!(nothing_left(dir.path()));
    let guardian_status = tokio::time::timeout(Duration::from_secs(10), guardian.child.wait())
        .await
        .expect("guardian still running")
        .unwrap();
    assert!(guardian_status.success());
}

#[tokio::test]
async fn drop_without_stop_shuts_postgres_down() {
    let dir = tempfile::tempdir().unwrap();
    let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
    let pid = pg.pid() as i32;
    drop(pg);
    assert!(wait_gone(pid, Duration::from_secs(30)).await);
    // The postmaster exits last, after all its children.
    assert!(nothing_left(dir.path()));
}

#[tokio::test]
async fn a_second_start_shares_the_running_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let owner = EmbeddedPostgres::start(dir.path()).await.unwrap();
    let pid = owner.pid() as i32;

    let sharer = EmbeddedPostgres::start(dir.path()).await.unwrap();
    assert_eq!(sharer.pid() as i32, pid, "the same postmaster");
    assert!(sharer.child.is_none() && sharer.guardian.is_none());
    select_one(&sharer, "hera").await;
    sharer.stop().await.unwrap();

    assert!(
        process_alive(pid),
        "the sharer stopped its owner's postgres"
    );
    select_one(&owner, "hera").await;
    owner.stop().await.unwrap();
    assert!(
        !process_alive(pid),
        "postgres {pid} survived its owner's stop()"
    );
    assert!(nothing_left(dir.path()));
}

#[tokio::test]
async fn a_server_without_its_guardian_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut orphaned = EmbeddedPostgres::start(dir.path()).await.unwrap();
    let old_pid = orphaned.pid() as i32;
    let mut guardian = orphaned.guardian.take().unwrap();
    guardian.child.start_kill().unwrap(); // SIGKILL
    guardian.child.wait().await.unwrap();
    // A crash of the owner that took its guardian along: no stop(), no Drop.
    std::mem::forget(orphaned);
    assert!(is_postmaster_of(old_pid, &dir.path().join("pgdata")));

    let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
    assert!(!process_alive(old_pid), "the orphaned postgres still runs");
    assert_ne!(pg.pid() as i32, old_pid);
    assert!(pg.child.is_some(), "the new server is owned");
    select_one(&pg, "hera").await;
    pg.stop().await.unwrap();
    assert!(nothing_left(dir.path()));
}
