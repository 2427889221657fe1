//! The parts that need no running server.
use std::path::{Path, PathBuf};

use crate::db::embedded::binaries::{find_binaries, is_executable};
use crate::db::embedded::layout::{
    MAX_SOCKET_PATH, fnv1a, socket_dir_for, socket_path_len, tail_lines,
};
use crate::db::embedded::{EmbeddedError, EmbeddedPostgres};

#[test]
fn socket_dir_stays_inside_short_data_dirs() {
    assert_eq!(
        socket_dir_for(Path::new("/var/lib/hera-migrate")),
        PathBuf::from("/var/lib/hera-migrate/run")
    );
    let long = PathBuf::from(format!("/srv/{}", "x".repeat(100)));
    let short = socket_dir_for(&long);
    assert!(short.starts_with("/tmp"));
    assert!(socket_path_len(&short) <= MAX_SOCKET_PATH);
    assert_eq!(short, socket_dir_for(&long), "stable across calls");
    assert_ne!(short, socket_dir_for(&long.join("y")));
}

#[test]
fn fnv1a_is_the_reference_hash() {
    assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
}

#[test]
fn tails_are_one_line() {
    assert_eq!(tail_lines(""), "(no output)");
    let text = (1..=10).map(|i| format!("line {i}\n")).collect::<String>();
    assert_eq!(
        tail_lines(&text),
        "line 5 | line 6 | line 7 | line 8 | line 9 | line 10"
    );
}

#[test]
fn default_data_dir_follows_the_documented_rule() {
    let dir = EmbeddedPostgres::default_data_dir();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(dir, PathBuf::from("/var/lib/hera-migrate"));
    } else {
        assert!(dir.ends_with("hera-migrate"), "{}", dir.display());
    }
}

#[tokio::test]
async fn finds_the_local_server_binaries() {
    let bins = find_binaries(None).await.unwrap();
    assert!(is_executable(&bins.initdb) && is_executable(&bins.postgres));
    let version = bins.major_version().await.expect("postgres --version");
    let same = find_binaries(Some(&version)).await.unwrap();
    assert_eq!(
        same.major_version().await.as_deref(),
        Some(version.as_str())
    );
}

#[test]
fn errors_are_one_line() {
    for err in [
        EmbeddedError::BinariesNotFound,
        EmbeddedError::NoUnprivilegedUser,
        EmbeddedError::Leftover {
            pid: 42,
            pgdata: PathBuf::from("/x/pgdata"),
        },
    ] {
        assert!(!err.to_string().contains('\n'), "{err}");
    }
    assert!(
        EmbeddedError::BinariesNotFound
            .to_string()
            .contains("apt-get install postgresql")
    );
}
