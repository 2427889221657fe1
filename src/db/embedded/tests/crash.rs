//! What happens when the process that started PostgreSQL dies: these tests
//! run the owner in a helper process and SIGKILL it.
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use super::{nothing_left, select_one};
use crate::db::embedded::EmbeddedPostgres;
use crate::db::embedded::process::{is_postmaster_of, process_alive, wait_gone};

/// Set in the helper process the crash tests spawn: `<mode>:<data dir>`.
const HELPER_ENV: &str = "HERA_EMBEDDED_TEST_HELPER";

/// Runs in a child process spawned by the crash tests: starts the cluster,
/// reports the postmaster's pid and waits to be killed.
#[tokio::test]
#[ignore = "helper process for the crash tests"]
async fn crash_helper() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let (mode, dir) = spec.split_once(':').unwrap();
    let mut pg = EmbeddedPostgres::start(Path::new(dir)).await.unwrap();
    if mode == "orphan" {
        // Lose the guardian too, as if it had been killed along with us.
        let mut guardian = pg.guardian.take().unwrap();
        guardian.child.start_kill().unwrap();
        guardian.child.wait().await.unwrap();
    }
    println!("PGPID={}", pg.pid());
    std::future::pending::<()>().await;
}

async fn spawn_helper(mode: &str, dir: &Path) -> (Child, i32) {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "db::embedded::tests::crash::crash_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, format!("{mode}:{}", dir.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(helper.stdout.take().unwrap()).lines();
    let pid = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            // libtest prints "test <name> ... " on the same line.
            if let Some((_, pid)) = line.split_once("PGPID=") {
                return pid.trim().parse::<i32>().unwrap();
            }
        }
        panic!("the helper exited without starting PostgreSQL");
    })
    .await
    .expect("the helper did not start PostgreSQL within 60s");
    (helper, pid)
}

#[tokio::test]
async fn sigkill_of_the_owner_stops_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (mut helper, pid) = spawn_helper("crash", dir.path()).await;
    assert!(process_alive(pid));
    helper.start_kill().unwrap(); // SIGKILL
    helper.wait().await.unwrap();
    assert!(
        wait_gone(pid, Duration::from_secs(30)).await,
        "postgres {pid} outlived the process that started it"
    );
    assert!(nothing_left(dir.path()));

    // And the next run on the same directory starts normally.
    let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
    select_one(&pg, "hera").await;
    pg.stop().await.unwrap();
    assert!(nothing_left(dir.path()));
}

#[tokio::test]
async fn leftover_postgres_is_stopped_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let (mut helper, old_pid) = spawn_helper("orphan", dir.path()).await;
    helper.start_kill().unwrap();
    helper.wait().await.unwrap();
    // Without a guardian, the orphaned server keeps running.
    assert!(process_alive(old_pid));
    assert!(is_postmaster_of(old_pid, &dir.path().join("pgdata")));

    let pg = EmbeddedPostgres::start(dir.path()).await.unwrap();
    assert!(!process_alive(old_pid), "the left-over postgres still runs");
    assert_ne!(pg.pid() as i32, old_pid);
    select_one(&pg, "hera").await;
    pg.stop().await.unwrap();
    assert!(nothing_left(dir.path()));
}
