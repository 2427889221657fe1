//! The operator's commands, run as the shipped binary against a real server
//! on seeded data: their output (text, JSON, a live bar under a
//! pseudo-terminal) and their exit codes.
use std::process::Output;

use tokio::io::AsyncBufReadExt as _;

use hera_migrate::proto::*;
use serde_json::Value;
use uuid::Uuid;

use crate::support::{
    app::{TestApp, token_for},
    runs::{Seeded, seeded, trial_balance},
};

const BINARY: &str = env!("CARGO_BIN_EXE_hera-migrate");

/// `program` with the environment of an operator: `user`'s token for `app`.
fn operator(program: &str, app: &TestApp, user: Uuid) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command
        .env("HERA_SERVER", app.endpoint())
        .env("HERA_TOKEN", token_for(user))
        .env("RUST_LOG", "warn");
    command
}

/// `hera-migrate <args>` as `user`, against `app`.
async fn cli(app: &TestApp, user: Uuid, args: &[&str]) -> Output {
    operator(BINARY, app, user)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("the binary runs")
}

/// The run id in the command a detached or interrupted migrate prints to
/// re-attach.
fn reattach_id(hint: &str) -> String {
    hint.split("--migration-id ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the command to re-attach: {hint}"))
        .to_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("an exit code")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every line of stdout, as JSON.
fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// `migrate --detach` of the organization in batches of 5 at `max_tps`; the
/// run's id, read from the command it prints to re-attach.
async fn detached(s: &Seeded, max_tps: &str) -> String {
    let org = s.org.to_string();
    let mut args = vec![
        "migrate",
        "--detach",
        "--batch-size",
        "5",
        "--max-tps",
        max_tps,
    ];
    args.extend(scope(&org));
    let started = cli(&s.app, s.owner, &args).await;
    assert_eq!(code(&started), 0, "{}", stderr(&started));
    reattach_id(&stderr(&started))
}

/// The flags that name one run.
fn run_flags<'a>(org: &'a str, id: &'a str) -> [&'a str; 4] {
    ["--organization-id", org, "--migration-id", id]
}

fn scope(org: &str) -> Vec<&str> {
    vec![
        "--organization-id",
        org,
        "--from",
        "2024-01-01",
        "--to",
        "2024-12-31",
    ]
}

#[tokio::test]
async fn migrate_streams_json_to_success_and_emergency_rollback_restores_the_ledger() {
    let s = seeded(60).await;
    let org = s.org.to_string();
    let before = trial_balance(&s.pool, s.org).await;

    let mut args = vec!["migrate", "--output", "json", "--batch-size", "20"];
    args.extend(scope(&org));
    let migrated = cli(&s.app, s.owner, &args).await;
    assert_eq!(code(&migrated), 0, "{}", stderr(&migrated));
    let events = json_lines(&migrated);
    let last = events.last().unwrap();
    assert_eq!(last["state"], "MIGRATION_STATE_SUCCEEDED", "{last}");
    assert_eq!(last["kind"], "MIGRATION_EVENT_KIND_ENDED");
    let id = last["migrationId"].as_str().unwrap().to_owned();

    // What the rollback would change, read-only, for a script.
    let preview = [
        "preview-rollback",
        "--organization-id",
        &org,
        "--migration-id",
        &id,
        "--output",
        "json",
    ];
    let previewed = cli(&s.app, s.owner, &preview).await;
    assert_eq!(code(&previewed), 0, "{}", stderr(&previewed));
    let plan = &json_lines(&previewed)[0];
    assert_eq!(
        plan["originalsToRestore"], last["transactionsMigrated"],
        "{plan}"
    );

    let rollback = [
        "emergency-rollback",
        "--organization-id",
        &org,
        "--migration-id",
        &id,
        "--reason",
        "drill",
        "--yes",
    ];
    let rolled_back = cli(&s.app, s.owner, &rollback).await;
    assert_eq!(code(&rolled_back), 0, "{}", stderr(&rolled_back));
    assert!(
        stderr(&rolled_back).contains(&format!("rollback of {id} (SUCCEEDED): restores ")),
        "it shows what it will change first: {}",
        stderr(&rolled_back)
    );
    assert!(
        stdout(&rolled_back).contains("ROLLED_BACK"),
        "{}",
        stdout(&rolled_back)
    );
    assert_eq!(
        trial_balance(&s.pool, s.org).await,
        before,
        "the ledger is back"
    );

    // Without --yes and without a terminal to ask on: refused, nothing done.
    let unconfirmed = cli(&s.app, s.owner, &rollback[..rollback.len() - 1]).await;
    assert_eq!(code(&unconfirmed), 2, "{}", stderr(&unconfirmed));

    // A bad organization id is bad usage; a missing flag too.
    let mut bad = vec!["migrate"];
    bad.extend(scope("not-a-uuid"));
    let refused = cli(&s.app, s.owner, &bad).await;
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("organization_id"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        stderr(&refused).lines().count(),
        1,
        "one line: {}",
        stderr(&refused)
    );
    assert_eq!(
        code(&cli(&s.app, s.owner, &["migrate", "--organization-id", &org]).await),
        2
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_detached_migration_is_followed_again_and_controls_answer_with_exit_codes() {
    let s = seeded(60).await;
    let org = s.org.to_string();
    let id = detached(&s, "40").await;
    let run = run_flags(&org, &id);
    let update = [
        &["update", "--max-tps", "0", "--output", "json"][..],
        &run[..],
    ]
    .concat();
    let updated = cli(&s.app, s.owner, &update).await;
    assert_eq!(code(&updated), 0, "{}", stderr(&updated));
    assert_eq!(json_lines(&updated)[0]["migrationId"], id);

    let watch = [
        &[
            "monitor-progress",
            "--after-sequence",
            "0",
            "--output",
            "json",
        ][..],
        &run[..],
    ]
    .concat();
    let followed = cli(&s.app, s.owner, &watch).await;
    assert_eq!(code(&followed), 0, "{}", stderr(&followed));
    let events = json_lines(&followed);
    assert_eq!(
        events[0]["kind"], "MIGRATION_EVENT_KIND_STARTED",
        "the whole history"
    );
    assert_eq!(events.last().unwrap()["state"], "MIGRATION_STATE_SUCCEEDED");

    // A finished run: pausing it is a failed operation (exit 1).
    let pause = [&["pause"][..], &run[..]].concat();
    let paused = cli(&s.app, s.owner, &pause).await;
    assert_eq!(code(&paused), 1, "{}", stderr(&paused));
    assert!(
        stderr(&paused).contains("FailedPrecondition"),
        "{}",
        stderr(&paused)
    );

    let list = cli(
        &s.app,
        s.owner,
        &["list", "--organization-id", &org, "--output", "json"],
    )
    .await;
    assert_eq!(code(&list), 0);
    assert_eq!(json_lines(&list)[0]["migrationId"], id);

    let validate = [&["validate-migration"][..], &run[..]].concat();
    let validated = cli(&s.app, s.owner, &validate).await;
    assert_eq!(
        code(&validated),
        0,
        "{}{}",
        stdout(&validated),
        stderr(&validated)
    );
    assert!(
        stdout(&validated).contains("completeness"),
        "{}",
        stdout(&validated)
    );

    // Someone who is not a member: refused, exit 3.
    let stranger = cli(&s.app, Uuid::new_v4(), &["list", "--organization-id", &org]).await;
    assert_eq!(code(&stranger), 3, "{}", stderr(&stranger));
    s.app.stop().await;
}

#[tokio::test]
async fn a_cancelled_run_exits_1_and_recover_system_resumes_a_paused_one() {
    let s = seeded(80).await;
    let org = s.org.to_string();
    let id = detached(&s, "20").await;
    let run = run_flags(&org, &id);

    assert_eq!(
        code(&cli(&s.app, s.owner, &[&["pause"][..], &run[..]].concat()).await),
        0
    );
    let recover = cli(
        &s.app,
        s.owner,
        &["recover-system", "--organization-id", &org],
    )
    .await;
    assert!(stdout(&recover).contains("paused"), "{}", stdout(&recover));
    let resumed = cli(
        &s.app,
        s.owner,
        &["recover-system", "--organization-id", &org, "--resume"],
    )
    .await;
    assert_eq!(code(&resumed), 0, "{}", stderr(&resumed));
    assert!(stdout(&resumed).contains("resumed"), "{}", stdout(&resumed));

    assert_eq!(
        code(&cli(&s.app, s.owner, &[&["cancel"][..], &run[..]].concat()).await),
        0
    );
    let watch = [&["monitor-progress"][..], &run[..]].concat();
    let followed = cli(&s.app, s.owner, &watch).await;
    assert_eq!(code(&followed), 1, "a cancelled run: {}", stdout(&followed));
    assert!(
        stderr(&followed).contains("CANCELLED"),
        "{}",
        stderr(&followed)
    );
    s.app.stop().await;
}

#[tokio::test]
async fn under_a_terminal_migrate_draws_a_live_progress_bar() {
    let s = seeded(40).await;
    let org = s.org.to_string();
    let command = format!(
        "{BINARY} migrate --organization-id {org} --from 2024-01-01 --to 2024-12-31 --batch-size 5 --max-tps 100"
    );
    let output = operator("script", &s.app, s.owner)
        .args(["-qec", &command, "/dev/null"])
        .output()
        .await
        .expect("script(1) runs");
    let screen = String::from_utf8_lossy(&output.stdout);
    assert_eq!(code(&output), 0, "{screen}");
    assert!(
        screen.contains("\u{1b}["),
        "drawn with terminal codes: {screen}"
    );
    assert!(
        screen.contains("100%") && screen.contains("tx/s"),
        "{screen}"
    );
    assert!(screen.contains("SUCCEEDED"), "{screen}");
    s.app.stop().await;
}

#[tokio::test]
async fn the_help_lists_every_command_of_the_guide_and_a_dry_run_acceptance_gives_a_verdict() {
    let help = std::process::Command::new(BINARY)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for command in [
        "validate-environment",
        "verify-backups",
        "baseline-performance",
        "validate-security",
        "start-monitoring",
        "migrate",
        "monitor-progress",
        "validate-migration",
        "test-performance",
        "user-acceptance-test",
        "assess-failure",
        "emergency-rollback",
        "preview-rollback",
        "recover-system",
        "document-incident",
    ] {
        assert!(help.contains(command), "{command} in: {help}");
    }

    let s = seeded(30).await;
    let org = s.org.to_string();
    let mut args = vec!["user-acceptance-test"];
    args.extend(scope(&org));
    let accepted = cli(&s.app, s.owner, &args).await;
    assert_eq!(
        code(&accepted),
        0,
        "{}{}",
        stdout(&accepted),
        stderr(&accepted)
    );
    assert!(
        stdout(&accepted).contains("verdict: ACCEPTED"),
        "{}",
        stdout(&accepted)
    );

    let security = cli(
        &s.app,
        s.owner,
        &[
            "validate-security",
            "--organization-id",
            &org,
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(code(&security), 0, "{}", stderr(&security));
    assert_eq!(json_lines(&security)[0]["migrationAllowed"], true);

    let monitoring = cli(
        &s.app,
        s.owner,
        &[
            "start-monitoring",
            "--organization-id",
            &org,
            "--until-idle",
        ],
    )
    .await;
    assert_eq!(code(&monitoring), 0, "{}", stderr(&monitoring));
    assert!(
        stdout(&monitoring).contains("SUCCEEDED"),
        "the dry run is listed: {}",
        stdout(&monitoring)
    );

    let preview = cli(
        &s.app,
        s.owner,
        &[&["preview", "--output", "json"][..], &scope(&org)[..]].concat(),
    )
    .await;
    assert_eq!(code(&preview), 0, "{}", stderr(&preview));
    assert!(
        json_lines(&preview)[0]["totalCandidates"].is_string(),
        "int64 as the JSON mapping spells it"
    );
    let _ = MigrationState::Succeeded; // the proto's names are what the JSON says
    s.app.stop().await;
}

#[tokio::test]
async fn the_checks_measurements_assessment_and_incident_report_answer_from_the_terminal() {
    let s = seeded(40).await;
    let org = s.org.to_string();
    let environment = cli(
        &s.app,
        s.owner,
        &[
            "validate-environment",
            "--organization-id",
            &org,
            "--output",
            "json",
        ],
    )
    .await;
    assert_ne!(code(&environment), 2, "{}", stderr(&environment));
    let checks = &json_lines(&environment)[0]["checks"];
    assert!(checks.as_array().unwrap().len() > 10, "{checks}");
    let backups = cli(
        &s.app,
        s.owner,
        &["verify-backups", "--organization-id", &org],
    )
    .await;
    let text = stdout(&backups);
    assert!(
        text.contains("backup_wal_archiving") && !text.contains("index_"),
        "{text}"
    );
    assert!(
        !text.contains("PASS    backup_base_backup"),
        "never a made-up PASS: {text}"
    );

    let early = cli(
        &s.app,
        s.owner,
        &[
            "test-performance",
            "--organization-id",
            &org,
            "--samples",
            "3",
        ],
    )
    .await;
    assert_eq!(code(&early), 1, "no baseline yet: {}", stderr(&early));
    assert!(stderr(&early).contains("baseline"), "{}", stderr(&early));
    let baseline = cli(
        &s.app,
        s.owner,
        &[
            "baseline-performance",
            "--organization-id",
            &org,
            "--samples",
            "3",
        ],
    )
    .await;
    assert!(
        stdout(&baseline).contains("p95"),
        "{}{}",
        stdout(&baseline),
        stderr(&baseline)
    );
    let test = cli(
        &s.app,
        s.owner,
        &[
            "test-performance",
            "--organization-id",
            &org,
            "--samples",
            "3",
            "--regression-threshold",
            "100",
        ],
    )
    .await;
    assert_eq!(code(&test), 0, "{}{}", stdout(&test), stderr(&test));
    assert!(
        stdout(&test).contains("x baseline"),
        "ratios: {}",
        stdout(&test)
    );

    let mut args = vec!["migrate", "--batch-size", "10"];
    args.extend(scope(&org));
    assert_eq!(code(&cli(&s.app, s.owner, &args).await), 0);
    let listed = cli(
        &s.app,
        s.owner,
        &["list", "--organization-id", &org, "--output", "json"],
    )
    .await;
    let id = json_lines(&listed)[0]["migrationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = run_flags(&org, &id);

    let assessed = cli(
        &s.app,
        s.owner,
        &[&["assess-failure"][..], &run[..]].concat(),
    )
    .await;
    assert_eq!(code(&assessed), 0, "{}", stderr(&assessed));
    assert!(
        stdout(&assessed).contains("next: "),
        "{}",
        stdout(&assessed)
    );

    let path = std::env::temp_dir().join(format!("incident-{id}.md"));
    let path_text = path.display().to_string();
    let incident = [
        &[
            "document-incident",
            "--title",
            "drill",
            "--severity",
            "SEV4",
            "--out",
            path_text.as_str(),
        ][..],
        &run[..],
    ]
    .concat();
    let documented = cli(&s.app, s.owner, &incident).await;
    assert_eq!(code(&documented), 0, "{}", stderr(&documented));
    let report = std::fs::read_to_string(&path).unwrap();
    let batches = runs_batches(&s, &id).await;
    assert!(!batches.is_empty());
    for (number, _) in batches {
        assert!(
            report.contains(&format!("{number}")),
            "batch {number} in the report"
        );
    }
    let _ = std::fs::remove_file(path);
    let unknown = cli(
        &s.app,
        s.owner,
        &[
            "assess-failure",
            "--organization-id",
            &org,
            "--migration-id",
            &Uuid::new_v4().to_string(),
        ],
    )
    .await;
    assert_eq!(code(&unknown), 1, "NOT_FOUND: {}", stderr(&unknown));
    s.app.stop().await;
}

async fn runs_batches(s: &Seeded, id: &str) -> Vec<(i64, i64)> {
    crate::support::runs::batches(&s.pool, id)
        .await
        .into_iter()
        .filter(|(_, transactions)| *transactions > 0)
        .collect()
}

/// Ctrl-C while following detaches: the command exits 0 naming the command
/// to re-attach, and the run goes on (it belongs to the server).
#[tokio::test]
async fn ctrl_c_detaches_from_a_migration_which_goes_on() {
    let s = seeded(60).await;
    let org = s.org.to_string();
    let mut args = vec!["migrate", "--batch-size", "5", "--max-tps", "20"];
    args.extend(scope(&org));
    let child = operator(BINARY, &s.app, s.owner)
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = child;
    let pid = child.id().unwrap() as i32;
    // Interrupted once it follows the run: it has shown an event (so its
    // Ctrl-C handler is in place; a SIGINT before that would kill it), and
    // the run has committed a batch.
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("an event within 30 s")
        .unwrap();
    assert!(first.is_some(), "it printed an event");
    crate::support::wait::until("a committed batch", std::time::Duration::from_secs(30), || {
        let pool = s.pool.clone();
        async move {
            let batches: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM universal_transactions WHERE transaction_type = 'MIGRATION_OPERATION'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            (batches > 0).then_some(())
        }
    })
    .await;
    // Its further lines are not read: keep the pipe drained meanwhile.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    unsafe { libc::kill(pid, libc::SIGINT) };
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let hint = stderr(&output);
    assert!(
        hint.contains("detached") && hint.contains("monitor-progress"),
        "{hint}"
    );
    let id = reattach_id(&hint);

    // The run went on; pause and resume it from the terminal, then follow it.
    let run = run_flags(&org, &id);
    assert_eq!(
        code(&cli(&s.app, s.owner, &[&["pause"][..], &run[..]].concat()).await),
        0
    );
    let resumed = cli(
        &s.app,
        s.owner,
        &[&["resume", "--output", "json"][..], &run[..]].concat(),
    )
    .await;
    assert_eq!(code(&resumed), 0, "{}", stderr(&resumed));
    assert_eq!(json_lines(&resumed)[0]["state"], "MIGRATION_STATE_RUNNING");
    let lift = [&["update", "--max-tps", "0"][..], &run[..]].concat();
    assert_eq!(code(&cli(&s.app, s.owner, &lift).await), 0);
    let followed = cli(
        &s.app,
        s.owner,
        &[&["monitor-progress"][..], &run[..]].concat(),
    )
    .await;
    assert_eq!(code(&followed), 0, "{}", stderr(&followed));
    assert!(
        stdout(&followed).contains("SUCCEEDED"),
        "{}",
        stdout(&followed)
    );
    s.app.stop().await;
}

#[tokio::test]
async fn verify_audit_chain_prints_the_head_to_keep_and_exits_1_naming_a_broken_entry() {
    let s = seeded(40).await;
    let org = s.org.to_string();
    detached(&s, "20").await;
    let args = ["verify-audit-chain", "--organization-id", org.as_str()];
    // Its STARTED event is an entry already; the chain verifies with the
    // run in flight too.
    let verified = cli(&s.app, s.owner, &args).await;
    assert_eq!(
        code(&verified),
        0,
        "{}{}",
        stdout(&verified),
        stderr(&verified)
    );
    assert!(
        stdout(&verified).contains("head (keep as an anchor): seq"),
        "{}",
        stdout(&verified)
    );

    // The run's first event rewritten by hand.
    sqlx::query(
        "UPDATE universal_transaction_lines SET line_data = line_data || '{\"edited\": true}'
          WHERE organization_id = $1 AND line_number = 1 AND line_data ? 'audit_chain'",
    )
    .bind(s.org)
    .execute(&s.pool)
    .await
    .unwrap();
    let broken = cli(&s.app, s.owner, &args).await;
    assert_eq!(code(&broken), 1, "{}", stdout(&broken));
    assert!(
        stdout(&broken).contains("BROKEN at entry"),
        "{}",
        stdout(&broken)
    );
    assert!(
        stderr(&broken).contains("the audit chain is broken"),
        "{}",
        stderr(&broken)
    );
}
