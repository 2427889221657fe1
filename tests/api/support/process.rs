//! The shipped binary as a child process: `hera-migrate serve` on
//! 127.0.0.1:0 with JSON logs, its port learnt from its "listening" log line.
//! A failed test never leaves it running.
use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::wait;

pub const BINARY: &str = env!("CARGO_BIN_EXE_hera-migrate");

/// How long the binary may take to log that it listens (the embedded default
/// may first create its cluster).
const LISTENING_WITHIN: Duration = Duration::from_secs(60);

/// `hera-migrate serve` on any free port, JSON logs at `info`, and no
/// OpenTelemetry setting inherited from the caller's environment: the test
/// adds the rest (the database, secrets, telemetry).
pub fn serve_command() -> Command {
    let mut command = Command::new(BINARY);
    command
        .arg("serve")
        .env("HERA_LISTEN_ADDR", "127.0.0.1:0")
        .env("HERA_LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    command
}

pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// What the server printed on stdout (the demo owner's `export` lines).
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// Its log lines, for a failing test's message.
    pub stderr: Arc<Mutex<Vec<String>>>,
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

impl ServerProcess {
    /// Starts `command` (see [`serve_command`]) and waits for its
    /// "listening" log line to learn the port.
    pub fn spawn(mut command: Command) -> Self {
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary");
        let mut server = ServerProcess {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            stdout: Default::default(),
            stderr: Default::default(),
        };
        let stdout = server.child.stdout.take().unwrap();
        let printed = server.stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                printed.lock().unwrap().push(line);
            }
        });
        // Keep draining stderr until the server exits, so it never blocks on
        // a full pipe; the lines before "listening" also come here.
        let stderr = server.child.stderr.take().unwrap();
        let logged = server.stderr.clone();
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                logged.lock().unwrap().push(line.clone());
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + LISTENING_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = received.recv_timeout(left) else {
                panic!(
                    "the server logs that it listens within {LISTENING_WITHIN:?}; it logged:\n{}",
                    server.logs()
                );
            };
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if event["fields"]["message"] == "hera-migrate listening" {
                server.addr = event["fields"]["local_addr"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                return server;
            }
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends `signal` (`libc::SIGTERM`, ...) to the server.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Polls until the server has exited, panicking after `deadline`.
    pub async fn exit_within(&mut self, deadline: Duration) -> ExitStatus {
        wait::until("the server to exit", deadline, || {
            let exited = self.child.try_wait().unwrap();
            async move { exited }
        })
        .await
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

/// The server's overall health, or `None` while it does not answer.
pub async fn health(addr: SocketAddr) -> Option<ServingStatus> {
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

pub async fn wait_serving(addr: SocketAddr) {
    wait::until("SERVING", Duration::from_secs(15), || async {
        (health(addr).await == Some(ServingStatus::Serving)).then_some(())
    })
    .await;
}

/// The shipped binary on a test's database, taking over orphaned runs quickly.
pub fn server_on(db: &super::TestDatabase) -> ServerProcess {
    let mut command = serve_command();
    command
        .env("DATABASE_URL", db.url())
        .env("HERA_JWT_SECRET", super::app::TEST_SECRET)
        .env("HERA_LEASE_CHECK_INTERVAL_MS", "200");
    ServerProcess::spawn(command)
}

/// A client of `server`, once it serves.
pub async fn client_of(server: &ServerProcess) -> super::runs::Client {
    wait_serving(server.addr).await;
    super::runs::Client::connect(server.endpoint())
        .await
        .unwrap()
}
