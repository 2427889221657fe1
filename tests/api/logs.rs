//! Logs an operator can read, from the shipped binary with its stderr going
//! to a file (as under systemd or `2> server.log`): plain text without
//! terminal colour codes, no PostgreSQL notices from the idempotent schema
//! install on a restart, one line per denial naming the organization, the
//! user, the operation and the reason, and one line per validation.
use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use hera_migrate::proto::*;
use tonic::Code;
use uuid::Uuid;

use crate::support::{
    TestDatabase,
    app::TEST_SECRET,
    as_user, fixtures,
    process::{BINARY, wait_serving},
    runs::{self, Client},
    wait,
};

const LISTENING_WITHIN: Duration = Duration::from_secs(60);
const LOGGED_WITHIN: Duration = Duration::from_secs(10);
const STOPS_WITHIN: Duration = Duration::from_secs(10);

/// `hera-migrate serve` with text logs written to a file.
struct LoggedServer {
    child: Child,
    log: PathBuf,
    addr: SocketAddr,
}

impl Drop for LoggedServer {
    /// A failed test never leaves its server running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The text of `line` without any terminal escape sequence (so that a port
/// is learnt even from a coloured log, which the test then refuses).
fn plain(line: &str) -> String {
    let mut text = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            text.push(c);
        }
    }
    text
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

impl LoggedServer {
    async fn start(db: &TestDatabase, log: PathBuf) -> Self {
        let mut command = Command::new(BINARY);
        command
            .arg("serve")
            .env("DATABASE_URL", db.url())
            .env("HERA_JWT_SECRET", TEST_SECRET)
            .env("HERA_LISTEN_ADDR", "127.0.0.1:0")
            .env("HERA_LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("OTEL_") {
                command.env_remove(name);
            }
        }
        let child = command.spawn().expect("start the binary");
        let mut server = Self {
            child,
            log,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let log = server.log.clone();
        server.addr = wait::until(
            "the server to log that it listens",
            LISTENING_WITHIN,
            || {
                let text = read(&log);
                async move {
                    text.lines().map(plain).find_map(|line| {
                        let (_, after) = line.split_once("hera-migrate listening local_addr=")?;
                        after.split_whitespace().next()?.parse().ok()
                    })
                }
            },
        )
        .await;
        wait_serving(server.addr).await;
        server
    }

    async fn client(&self) -> Client {
        Client::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// What the server logged so far.
    fn logged(&self) -> String {
        read(&self.log)
    }

    /// The first log line containing every one of `words`, once logged.
    async fn line_with(&self, words: &[&str]) -> String {
        wait::until(&format!("a log line with {words:?}"), LOGGED_WITHIN, || {
            let text = self.logged();
            async move {
                text.lines()
                    .find(|line| words.iter().all(|word| line.contains(word)))
                    .map(str::to_owned)
            }
        })
        .await
    }

    /// SIGTERM, then the whole log once it has stopped.
    async fn stop(mut self) -> String {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let child = &mut self.child;
        wait::until("the server to exit", STOPS_WITHIN, || {
            let exited = child.try_wait().unwrap();
            async move { exited }
        })
        .await;
        self.logged()
    }
}

#[tokio::test]
async fn a_server_logging_to_a_file_writes_plain_lines_no_notices_and_one_line_per_denial() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();

    // The first start installs the schema (owned: the six tables and ours).
    let first = LoggedServer::start(&db, dir.path().join("first.log")).await;
    let first_log = first.stop().await;
    assert!(first_log.contains("schema ready"), "{first_log}");
    assert!(
        !first_log.contains("\u{1b}["),
        "a log written to a file has no ANSI escape codes:\n{first_log}"
    );

    let pool = db.pool().await;
    let seeded = fixtures::seed_2024(&pool, 1, 30, 5).await;
    let org = &seeded.organizations[0];
    let (org_id, owner) = (org.id, org.users[0].id);

    // The second finds everything in place: an idempotent install says nothing.
    let server = LoggedServer::start(&db, dir.path().join("second.log")).await;
    let mut client = server.client().await;

    let stranger = Uuid::new_v4();
    let denied = client
        .preview_candidates(as_user(runs::preview_2024(org_id), stranger))
        .await
        .expect_err("not a member");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let denial = server
        .line_with(&["permission denied", &org_id.to_string()])
        .await;
    assert!(denial.contains(" INFO "), "{denial}");
    for named in [
        format!("user_id={stranger}"),
        "operation=PreviewCandidates".to_owned(),
        "not an active member".to_owned(),
    ] {
        assert!(denial.contains(&named), "{named} in {denial}");
    }

    // One line per validation: the run, its organization, the overall result
    // and the checks that did not pass (the seed's closed periods are skipped).
    let id = runs::started(
        &mut client,
        StartMigrationRequest {
            closed_period_policy: ClosedPeriodPolicy::Skip.into(),
            ..runs::start(org_id)
        },
        owner,
    )
    .await
    .last()
    .unwrap()
    .migration_id
    .clone();
    let report = runs::validate(&mut client, org_id, owner, &id).await;
    assert_eq!(report.overall(), CheckResult::Warn, "{report:#?}");
    let validated = server.line_with(&["migration validated", &id]).await;
    for named in [
        format!("organization_id={org_id}"),
        "overall=WARN".to_owned(),
        "warned=completeness".to_owned(),
    ] {
        assert!(validated.contains(&named), "{named} in {validated}");
    }

    let second_log = server.stop().await;
    assert!(
        !second_log.contains("\u{1b}["),
        "a log written to a file has no ANSI escape codes:\n{second_log}"
    );
    assert!(
        !second_log.contains("already exists, skipping"),
        "no PostgreSQL notice on a restart:\n{second_log}"
    );
    assert_eq!(
        second_log
            .lines()
            .filter(|line| line.contains("permission denied"))
            .count(),
        1,
        "one line per denial:\n{second_log}"
    );
    assert_eq!(
        second_log
            .lines()
            .filter(|line| line.contains("migration validated"))
            .count(),
        1,
        "one line per validation:\n{second_log}"
    );
}
