//! The shipped binary with the embedded default database (no DATABASE_URL):
//! it comes up, answers, and stops with its private PostgreSQL on SIGTERM; a
//! SIGKILL leaves no PostgreSQL behind either, and the next start recovers.
use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::support::wait;

const BINARY: &str = env!("CARGO_BIN_EXE_hera-migrate");

struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    /// What the server printed on stdout (the demo owner's `export` lines).
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for ServerProcess {
    /// A failed test never leaves its server running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Starts `hera-migrate serve` on the embedded default and waits for its
/// "listening" log line (JSON logs) to learn the port.
fn spawn_embedded(data_dir: &Path) -> ServerProcess {
    let child = Command::new(BINARY)
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("HERA_DATA_DIR", data_dir)
        .env("HERA_LISTEN_ADDR", "127.0.0.1:0")
        .env("HERA_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let mut server = ServerProcess {
        child,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        stdout: Default::default(),
    };
    let stdout = server.child.stdout.take().unwrap();
    let printed = server.stdout.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            printed.lock().unwrap().push(line);
        }
    });
    let stderr = server.child.stderr.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = received
            .recv_timeout(left)
            .expect("the server logs that it listens within 60 s");
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if event["fields"]["message"] == "hera-migrate listening" {
            server.addr = event["fields"]["local_addr"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            // Keep draining stderr so the server never blocks on a full pipe.
            std::thread::spawn(move || while received.recv().is_ok() {});
            return server;
        }
    }
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

fn signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

async fn health(addr: SocketAddr) -> Option<ServingStatus> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    let mut client = HealthClient::new(channel);
    let response = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    Some(response.into_inner().status())
}

async fn wait_serving(addr: SocketAddr) {
    wait::until("SERVING", Duration::from_secs(15), || async {
        (health(addr).await == Some(ServingStatus::Serving)).then_some(())
    })
    .await;
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

    signal(&server.child, libc::SIGTERM);
    let status = wait::until("the server to exit", Duration::from_secs(10), || {
        let exited = server.child.try_wait().unwrap();
        async move { exited }
    })
    .await;
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

    signal(&server.child, libc::SIGKILL);
    server.child.wait().unwrap();
    wait::until(
        "the orphaned PostgreSQL to stop",
        Duration::from_secs(15),
        || async { process_gone(postgres).then_some(()) },
    )
    .await;

    let mut restarted = spawn_embedded(dir.path());
    wait_serving(restarted.addr).await;
    signal(&restarted.child, libc::SIGTERM);
    let status = wait::until(
        "the restarted server to exit",
        Duration::from_secs(10),
        || {
            let exited = restarted.child.try_wait().unwrap();
            async move { exited }
        },
    )
    .await;
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
