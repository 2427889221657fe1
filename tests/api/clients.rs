//! The clients of clients/, run from outside exactly as their READMEs say,
//! against the real server on seeded data: each example previews 2024,
//! migrates it to SUCCEEDED, replays the run's history, and decodes a bad
//! request's details as INVALID_ARGUMENT / INVALID_FIELD naming from_date.
//! Their packages come from .ci/run (pip install -r
//! clients/python/requirements.txt; npm ci in clients/typescript).
use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::support::{TestApp, TestDatabase, app::token_for, fixtures, wait};

/// The repository, where the READMEs' commands run.
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// How long one step (a generation, a build, an example) may take.
const STEP_WITHIN: Duration = Duration::from_secs(180);

/// What a finished child process said.
struct Finished {
    success: bool,
    stdout: String,
    stderr: String,
}

/// A child process whose output goes to files (no pipe to fill); killed
/// when dropped, so a failed test leaves none running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Runs `command` to its end, polling for its exit (the server it talks to
/// runs on this test's runtime, which must stay free). A program that is not
/// there panics with `missing`, the way to install it.
async fn run(what: &str, command: &mut Command, missing: &str) -> Finished {
    let output = tempfile::tempdir().unwrap();
    let (out, err) = (output.path().join("stdout"), output.path().join("stderr"));
    let spawned = command
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            panic!(
                "{what}: {:?} is not installed: {missing}",
                command.get_program()
            )
        }
        Err(error) => panic!("{what}: cannot start {command:?}: {error}"),
    };
    let mut running = Running(child);
    let status = wait::until(what, STEP_WITHIN, || {
        let exited = running.0.try_wait().unwrap();
        async move { exited }
    })
    .await;
    let read = |path: PathBuf| std::fs::read_to_string(path).unwrap();
    Finished {
        success: status.success(),
        stdout: read(out),
        stderr: read(err),
    }
}

/// Like [`run`], panicking with the output unless the command succeeded.
async fn run_ok(what: &str, command: &mut Command, missing: &str) -> Finished {
    let finished = run(what, command, missing).await;
    assert!(
        finished.success,
        "{what} failed ({missing}):\n{}\n{}",
        finished.stdout, finished.stderr
    );
    finished
}

/// A fresh database seeded with one organization's 2024, the real server
/// over it, and the example's environment for its owner.
async fn scene() -> (
    TestDatabase,
    TestApp,
    sqlx::PgPool,
    [(&'static str, String); 3],
) {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let pool = db.pool().await;
    let report = fixtures::seed_2024(&pool, 1, 300, 7).await;
    let organization = &report.organizations[0];
    let env = [
        ("HERA_ADDR", app.addr.to_string()),
        ("HERA_TOKEN", token_for(organization.users[0].id)),
        ("HERA_ORG", organization.id.to_string()),
    ];
    (db, app, pool, env)
}

/// What every example prints, checked against the database: the run it
/// streamed SUCCEEDED with every previewed candidate reversed and reposted,
/// its history replayed in full, and the bad request's details decoded.
async fn assert_example_output(pool: &sqlx::PgPool, org: &str, finished: &Finished) {
    let stdout = &finished.stdout;
    assert!(
        finished.success,
        "the example exits 0:\n{stdout}\n{}",
        finished.stderr
    );
    let after = |prefix: &str| -> String {
        let line = stdout.lines().find_map(|line| line.strip_prefix(prefix));
        line.unwrap_or_else(|| panic!("a line {prefix:?} in:\n{stdout}"))
            .to_owned()
    };
    let candidates: i64 = after("preview: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(candidates > 0, "the seeded year has candidates:\n{stdout}");
    let last = stdout.lines().rfind(|line| line.starts_with("event "));
    let last = last.unwrap_or_else(|| panic!("one line per event:\n{stdout}"));
    assert!(last.contains("MIGRATION_STATE_SUCCEEDED"), "{stdout}");
    let final_state = after("final state: ");
    assert!(
        final_state.starts_with("MIGRATION_STATE_SUCCEEDED (migration "),
        "{stdout}"
    );
    let migration_id = final_state
        .trim_start_matches("MIGRATION_STATE_SUCCEEDED (migration ")
        .trim_end_matches(')');
    let org: uuid::Uuid = org.parse().unwrap();
    assert_eq!(
        fixtures::migrated_copies(pool, org, migration_id).await,
        (candidates, candidates, candidates),
        "every previewed candidate reversed and reposted by run {migration_id}"
    );
    let events = stdout
        .lines()
        .filter(|line| line.starts_with("event "))
        .count();
    assert!(
        after("watch: ").starts_with(&format!("{events} events in the run's history")),
        "the watch replays every streamed event:\n{stdout}"
    );
    assert!(
        after("get: ").starts_with("MIGRATION_STATE_SUCCEEDED"),
        "{stdout}"
    );
    assert!(
        after("bad request: ").starts_with(
            "code=INVALID_ARGUMENT reason=INVALID_FIELD field=from_date domain=hera-migrate"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"  violation from_date: "2024-13-01" is not a date"#),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("ok"), "{stdout}");
}

#[tokio::test]
async fn the_python_example_migrates_2024_and_decodes_the_bad_requests_details() {
    const INSTALL: &str =
        "python3 -m pip install -r clients/python/requirements.txt (.ci/run does)";
    run_ok(
        "the Python client's packages",
        Command::new("python3").args(["-c", "import grpc, grpc_tools, grpc_status"]),
        INSTALL,
    )
    .await;
    run_ok(
        "python3 clients/python/generate.py",
        Command::new("python3")
            .arg("clients/python/generate.py")
            .current_dir(REPO),
        INSTALL,
    )
    .await;
    let (_db, app, pool, env) = scene().await;
    let mut example = Command::new("python3");
    example
        .arg("clients/python/example.py")
        .current_dir(REPO)
        .envs(env.clone());
    let finished = run("python3 clients/python/example.py", &mut example, INSTALL).await;
    assert_example_output(&pool, &env[2].1, &finished).await;
    app.stop().await;
}

#[tokio::test]
async fn the_typescript_example_migrates_2024_and_decodes_the_bad_requests_details() {
    const INSTALL: &str = "install Node 20 and run `npm ci` in clients/typescript (.ci/run does)";
    let client = Path::new(REPO).join("clients/typescript");
    assert!(
        client.join("node_modules/.bin/tsc").exists(),
        "the TypeScript client's packages are missing: {INSTALL}"
    );
    run_ok(
        "npm run build (in clients/typescript)",
        Command::new("npm")
            .args(["run", "build"])
            .current_dir(&client),
        INSTALL,
    )
    .await;
    let (_db, app, pool, env) = scene().await;
    let mut example = Command::new("node");
    example
        .arg("clients/typescript/dist/example.js")
        .current_dir(REPO)
        .envs(env.clone());
    let finished = run(
        "node clients/typescript/dist/example.js",
        &mut example,
        INSTALL,
    )
    .await;
    assert_example_output(&pool, &env[2].1, &finished).await;
    app.stop().await;
}
