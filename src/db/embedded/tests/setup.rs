//! The data directory, the socket directory and the cluster: how they are
//! prepared, and the errors that explain what is wrong with them.
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::{nothing_left, select_one};
use crate::db::embedded::binaries::find_binaries;
use crate::db::embedded::cluster::run_initdb;
use crate::db::embedded::layout::socket_dir_for;
use crate::db::embedded::run_as::RunAs;
use crate::db::embedded::{EmbeddedError, EmbeddedPostgres};

#[tokio::test]
async fn long_data_dir_gets_a_short_socket_dir() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = dir.path().join("d".repeat(60)).join("e".repeat(60));
    let pg = EmbeddedPostgres::start(&data_dir).await.unwrap();
    let socket_dir = pg.socket_dir().to_path_buf();
    assert!(
        socket_dir.starts_with("/tmp") && socket_dir.to_string_lossy().contains("hera-migrate-"),
        "{}",
        socket_dir.display()
    );
    assert_eq!(socket_dir, socket_dir_for(&data_dir));
    select_one(&pg, "hera").await;
    pg.stop().await.unwrap();
    let _ = fs::remove_dir_all(&socket_dir);
}

#[tokio::test]
async fn root_keeps_the_data_dir_and_its_files() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // As a server's own files would be: root's alone.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let secret = dir.path().join("secret");
    fs::write(&secret, "root only").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
    let run_as = RunAs::current().unwrap();
    let meta = fs::metadata(dir.path()).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, run_as.gid));
    assert_eq!(meta.mode() & 0o777, 0o710);
    assert_eq!(fs::metadata(&secret).unwrap().uid(), 0);
    for owned in ["pgdata", "run"] {
        let meta = fs::metadata(dir.path().join(owned)).unwrap();
        assert_eq!(meta.uid(), run_as.uid, "{owned}");
        assert_eq!(meta.mode() & 0o777, 0o700, "{owned}");
    }
    select_one(&pg, "hera").await;
    pg.stop().await.unwrap();
}

#[tokio::test]
async fn unreachable_data_dir_is_reported_when_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let err = EmbeddedPostgres::start(&dir.path().join("inner"))
        .await
        .unwrap_err();
    assert!(matches!(err, EmbeddedError::Unreachable { .. }), "{err}");
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
}

#[tokio::test]
async fn non_empty_pgdata_without_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pgdata = dir.path().join("pgdata");
    fs::create_dir(&pgdata).unwrap();
    fs::write(pgdata.join("junk"), "not a cluster").unwrap();
    let err = EmbeddedPostgres::start(dir.path()).await.unwrap_err();
    assert!(matches!(err, EmbeddedError::NotACluster { .. }), "{err}");
    assert!(pgdata.join("junk").exists(), "nothing is deleted");
}

#[tokio::test]
async fn interrupted_initdb_is_redone() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("pgdata.initdb");
    fs::create_dir(&staging).unwrap();
    fs::write(staging.join("PG_VERSION"), "15\n").unwrap();
    fs::create_dir(dir.path().join("pgdata")).unwrap();
    let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
    assert!(!staging.exists());
    select_one(&pg, "hera").await;
    pg.stop().await.unwrap();
}

#[tokio::test]
async fn initdb_failure_quotes_its_errors() {
    let bins = find_binaries(None).await.unwrap();
    let run_as = RunAs::current().unwrap();
    let err = run_initdb(
        &bins,
        Path::new("/proc/hera-no-such-dir/pgdata"),
        Path::new("/"),
        &run_as,
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EmbeddedError::Initdb { .. }), "{msg}");
    assert!(msg.contains("initdb: error"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[tokio::test]
async fn startup_failure_quotes_the_server_log() {
    let dir = tempfile::tempdir().unwrap();
    EmbeddedPostgres::start(dir.path())
        .await
        .unwrap()
        .stop()
        .await
        .unwrap();
    let conf = dir.path().join("pgdata/postgresql.conf");
    let mut text = fs::read_to_string(&conf).unwrap();
    text.push_str("\nhera_bogus_setting_xyz = 1\n");
    fs::write(&conf, text).unwrap();
    let err = EmbeddedPostgres::start(dir.path()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EmbeddedError::Exited { .. }), "{msg}");
    assert!(msg.contains("hera_bogus_setting_xyz"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    assert!(nothing_left(dir.path()));
}
