//! The shipped binary with the embedded default database (no DATABASE_URL):
//! it comes up, answers, and stops with its private PostgreSQL on SIGTERM; a
//! SIGKILL leaves no PostgreSQL behind either, and the next start recovers.
use std::{path::Path, process::Command, time::Duration};

use crate::support::{
    process::{ServerProcess, serve_command, wait_serving},
    wait,
};

/// Starts `hera-migrate serve` on the embedded default.
fn spawn_embedded(data_dir: &Path) -> ServerProcess {
    let mut command = serve_command();
    command
        .env_remove("DATABASE_URL")
        .env("HERA_DATA_DIR", data_dir);
    ServerProcess::spawn(command)
}

fn postmaster_pid(data_dir: &Path) -> i32 {
    let pid_file = std::fs::read_to_string(data_dir.join("pgdata/postmaster.pid"))
        .expect("postmaster.pid while the cluster runs");
    pid_file.lines().next().unwrap().trim().parse().unwrap()
}

/// Gone, or a zombie nobody has reaped yet (it no longer runs).
fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hera-embedded-")
        .tempdir_in("/tmp")
        .unwrap()
}

#[tokio::test]
async fn sigterm_stops_the_server_and_its_private_postgres_within_ten_seconds() {
    let dir = data_dir();
    let mut server = spawn_embedded(dir.path());
    wait_serving(server.addr).await;
    let postgres = postmaster_pid(dir.path());

    server.signal(libc::SIGTERM);
    let status = server.exit_within(Duration::from_secs(10)).await;
    assert!(status.success(), "clean exit: {status:?}");
    assert!(
        process_gone(postgres),
        "PostgreSQL {postgres} stopped with the server"
    );
}

#[tokio::test]
async fn after_sigkill_no_postgres_is_left_and_the_next_start_recovers() {
    let dir = data_dir();
    let mut server = spawn_embedded(dir.path());
    wait_serving(server.addr).await;
    let postgres = postmaster_pid(dir.path());

    server.signal(libc::SIGKILL);
    server.child.wait().unwrap();
    wait::until(
        "the orphaned PostgreSQL to stop",
        Duration::from_secs(15),
        || async { process_gone(postgres).then_some(()) },
    )
    .await;

    let mut restarted = spawn_embedded(dir.path());
    wait_serving(restarted.addr).await;
    restarted.signal(libc::SIGTERM);
    let status = restarted.exit_within(Duration::from_secs(10)).await;
    assert!(status.success());
}

/// The `export NAME=value` lines the server printed.
fn exports(server: &ServerProcess) -> Vec<(String, String)> {
    server
        .stdout
        .lock()
        .unwrap()
        .iter()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// The grpcurl lines of the README's examples block.
fn readme_examples() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let block = readme
        .split("<!-- examples:begin")
        .nth(1)
        .and_then(|rest| rest.split("<!-- examples:end -->").next())
        .expect("the README has an examples block");
    block
        .lines()
        .filter(|line| line.starts_with("grpcurl "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_readme_examples_work_as_printed_against_the_embedded_default() {
    let dir = data_dir();
    let server = spawn_embedded(dir.path());
    wait_serving(server.addr).await;
    let exports = exports(&server);
    let names: Vec<&str> = exports.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        ["HERA_ORG", "HERA_TOKEN"],
        "the demo owner's token is printed"
    );

    let examples = readme_examples();
    assert!(examples.len() >= 6, "{examples:?}");
    for example in examples {
        let command = example.replace("127.0.0.1:50051", &server.addr.to_string());
        let exports = exports.clone();
        let output = tokio::task::spawn_blocking(move || {
            Command::new("sh")
                .arg("-c")
                .arg(&command)
                .envs(exports)
                .output()
        })
        .await
        .unwrap()
        .expect("run sh");
        assert!(
            output.status.success(),
            "{example}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if example.contains("CheckSecurity") {
            let answer = String::from_utf8_lossy(&output.stdout);
            assert!(answer.contains("\"migrationAllowed\": true"), "{answer}");
            assert!(answer.contains("ORG_OWNER"), "{answer}");
        }
    }
}

#[tokio::test]
async fn sigterm_during_startup_still_stops_cleanly_with_nothing_left() {
    let dir = data_dir();
    let mut command = serve_command();
    command
        .env_remove("DATABASE_URL")
        .env("HERA_DATA_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = command.spawn().expect("start the binary");
    // The generated token secret appears once startup is under way (after the
    // signal handlers, before the cluster).
    let secret = dir.path().join("jwt-secret");
    wait::until("startup to begin", Duration::from_secs(30), || {
        let begun = secret.exists();
        async move { begun.then_some(()) }
    })
    .await;
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait::until("the server to exit", Duration::from_secs(30), || {
        let exited = child.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert!(
        status.success(),
        "a clean stop, not death by signal: {status:?}"
    );
    let leftovers = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .filter(|cmdline| String::from_utf8_lossy(cmdline).contains(&*dir.path().to_string_lossy()))
        .count();
    assert_eq!(leftovers, 0, "no process of this data directory is left");
}
