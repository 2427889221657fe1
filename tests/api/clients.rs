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

const PYTHON_INSTALL: &str =
    "python3 -m pip install -r clients/python/requirements.txt (.ci/run does)";

/// The Python client's packages checked and its stubs generated, once for
/// every test of this binary (two generating at once would write the same
/// files under each other).
async fn python_stubs() {
    static GENERATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    GENERATED
        .get_or_init(|| async {
            run_ok(
                "the Python client's packages",
                Command::new("python3").args(["-c", "import grpc, grpc_tools, grpc_status"]),
                PYTHON_INSTALL,
            )
            .await;
            run_ok(
                "python3 clients/python/generate.py",
                Command::new("python3")
                    .arg("clients/python/generate.py")
                    .current_dir(REPO),
                PYTHON_INSTALL,
            )
            .await;
        })
        .await;
}

#[tokio::test]
async fn the_python_example_migrates_2024_and_decodes_the_bad_requests_details() {
    python_stubs().await;
    let script = "clients/python/example.py";
    run_example(Example::Migration, "python3", script, PYTHON_INSTALL).await;
}

const TYPESCRIPT_INSTALL: &str =
    "install Node 20 and run `npm ci` in clients/typescript (.ci/run does)";

/// The TypeScript client generated and built, once for every test of this
/// binary (two builds at once would write the same files under each other).
async fn typescript_built() {
    static BUILT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let client = Path::new(REPO).join("clients/typescript");
            assert!(
                client.join("node_modules/.bin/tsc").exists(),
                "the TypeScript client's packages are missing: {TYPESCRIPT_INSTALL}"
            );
            run_ok(
                "npm run build (in clients/typescript)",
                Command::new("npm")
                    .args(["run", "build"])
                    .current_dir(&client),
                TYPESCRIPT_INSTALL,
            )
            .await;
        })
        .await;
}

#[tokio::test]
async fn the_typescript_example_migrates_2024_and_decodes_the_bad_requests_details() {
    typescript_built().await;
    let script = "clients/typescript/dist/example.js";
    run_example(Example::Migration, "node", script, TYPESCRIPT_INSTALL).await;
}

/// Three seeded organizations, the real server over them, and a platform
/// operator: the rollout examples' environment.
async fn rollout_scene() -> (
    TestDatabase,
    TestApp,
    sqlx::PgPool,
    [(&'static str, String); 3],
) {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let pool = db.pool().await;
    let report = fixtures::seed_2024(&pool, 3, 60, 13).await;
    let operator = fixtures::platform_operator(&pool, &report.platform).await;
    let orgs: Vec<String> = report
        .organizations
        .iter()
        .map(|org| org.id.to_string())
        .collect();
    let env = [
        ("HERA_ADDR", app.addr.to_string()),
        ("HERA_TOKEN", token_for(operator)),
        ("HERA_ORGS", orgs.join(",")),
    ];
    (db, app, pool, env)
}

/// What both rollout examples print, checked against the database: one stage
/// of one organization, then the rest, every organization PASSED with its
/// run's copies in the ledger, and the bad stage's details decoded.
async fn assert_rollout_output(pool: &sqlx::PgPool, orgs: &str, finished: &Finished) {
    let stdout = &finished.stdout;
    assert!(finished.success, "{stdout}\n{}", finished.stderr);
    assert!(
        stdout.contains("final state: ROLLOUT_STATE_SUCCEEDED"),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|line| line.starts_with("snapshot ")),
        "{stdout}"
    );
    for org in orgs.split(',') {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("organization {org} ")))
            .unwrap_or_else(|| panic!("a line for {org}:\n{stdout}"));
        assert!(
            line.contains(" ORGANIZATION_STANDING_PASSED validation PASS migration ")
                || line.contains(" ORGANIZATION_STANDING_PASSED validation WARN migration "),
            "{line}"
        );
        let migration_id = line.rsplit(' ').next().unwrap();
        let (reversals, reposts, reversed) =
            fixtures::migrated_copies(pool, org.parse().unwrap(), migration_id).await;
        assert!(
            reversals > 0 && reversals == reposts && reposts == reversed,
            "{line}: {reversals} {reposts} {reversed}"
        );
    }
    assert!(
        stdout.contains(
            "bad request: code=INVALID_ARGUMENT reason=INVALID_FIELD field=stages[0].percent domain=hera-migrate"
        ),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("ok"), "{stdout}");
}

/// What an example does: migrate one organization's 2024, or roll it out
/// over three organizations.
#[derive(Clone, Copy)]
enum Example {
    Migration,
    Rollout,
}

/// Runs an example (`program script`, as its README says) in its scene, and
/// checks what it printed against the database.
async fn run_example(example: Example, program: &str, script: &str, install: &str) {
    let (_db, app, pool, env) = match example {
        Example::Migration => scene().await,
        Example::Rollout => rollout_scene().await,
    };
    let mut command = Command::new(program);
    command.arg(script).current_dir(REPO).envs(env.clone());
    let finished = run(&format!("{program} {script}"), &mut command, install).await;
    match example {
        Example::Migration => assert_example_output(&pool, &env[2].1, &finished).await,
        Example::Rollout => assert_rollout_output(&pool, &env[2].1, &finished).await,
    }
    app.stop().await;
}

/// The Python rollout example, as clients/python/README.md runs it.
#[tokio::test]
async fn the_python_rollout_example_rolls_out_in_stages_and_decodes_the_bad_requests_details() {
    python_stubs().await;
    let script = "clients/python/rollout_example.py";
    run_example(Example::Rollout, "python3", script, PYTHON_INSTALL).await;
}

/// The TypeScript rollout example, as clients/typescript/README.md runs it.
#[tokio::test]
async fn the_typescript_rollout_example_rolls_out_in_stages_and_decodes_the_bad_requests_details() {
    typescript_built().await;
    let script = "clients/typescript/dist/rollout_example.js";
    run_example(Example::Rollout, "node", script, TYPESCRIPT_INSTALL).await;
}
