//! Overseeing an organization's runs: all of them live (`start-monitoring`),
//! and what needs a person (`recover-system`).
use std::{collections::BTreeMap, io::IsTerminal, time::Duration};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::{
    Outcome,
    args::{self, Output},
    client, output,
    runs::listed,
};
use crate::proto::*;

/// Every run of the organization, refreshed live: one bar per run on a
/// terminal, else a line whenever a run's latest event changes.
pub async fn monitoring(a: args::Monitoring) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let org = a.org.organization_id.clone();
    let terminal = a.connection.output == Output::Text && std::io::stderr().is_terminal();
    let bars = MultiProgress::new();
    let mut shown: BTreeMap<String, (u64, Option<ProgressBar>)> = BTreeMap::new();
    loop {
        let runs = listed(&mut client, &org, &[]).await?;
        let mut active = 0;
        for run in runs.iter().take(20) {
            let Some(event) = &run.progress else { continue };
            active += usize::from(matches!(
                run.state(),
                MigrationState::Running | MigrationState::Paused
            ));
            let seen = shown.entry(run.migration_id.clone()).or_insert_with(|| {
                let bar = terminal.then(|| {
                    let bar = bars.add(ProgressBar::new(10_000));
                    bar.set_style(
                        ProgressStyle::with_template("{prefix} [{bar:25}] {percent:>3}% {msg}")
                            .expect("a template"),
                    );
                    bar.set_prefix(run.migration_id[..8].to_owned());
                    bar
                });
                (0, bar)
            });
            if seen.0 == event.sequence {
                continue;
            }
            seen.0 = event.sequence;
            match &seen.1 {
                Some(bar) => {
                    bar.set_position((event.progress_percentage * 100.0) as u64);
                    bar.set_message(output::line(event));
                }
                None => match a.connection.output {
                    Output::Json => println!(
                        "{}",
                        output::json(event, "hera.migration.v2.MigrationProgress")
                    ),
                    Output::Text => println!("{} {}", run.migration_id, output::line(event)),
                },
            }
        }
        if a.until_idle && active == 0 {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(a.interval_ms.max(100))) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Lists what needs a person (paused, failed, running) and, with --resume,
/// resumes the paused runs.
pub async fn recover(a: args::Recover) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let org = a.org.organization_id.clone();
    let wanted = [
        MigrationState::Running,
        MigrationState::Paused,
        MigrationState::Failed,
    ];
    let runs = listed(&mut client, &org, &wanted).await?;
    if runs.is_empty() {
        println!("nothing to recover: no running, paused or failed run in organization {org}");
    }
    for run in runs {
        let id = run.migration_id.clone();
        let action = match run.state() {
            MigrationState::Paused if a.resume => {
                let request = ResumeMigrationRequest {
                    organization_id: org.clone(),
                    migration_id: id.clone(),
                    ..Default::default()
                };
                client.resume_migration(request).await?;
                "resumed".to_owned()
            }
            MigrationState::Paused => format!(
                "paused: resume it with --resume, or hera-migrate resume --organization-id {org} --migration-id {id}"
            ),
            MigrationState::Failed => format!(
                "failed: see hera-migrate assess-failure --organization-id {org} --migration-id {id}"
            ),
            _ => "running: a server executes it (an interrupted one is resumed by the next server)"
                .to_owned(),
        };
        match a.connection.output {
            Output::Json => println!(
                "{}",
                serde_json::json!({"migration_id": id, "state": run.state().as_str_name(), "action": action})
            ),
            Output::Text => println!("{} {}: {action}", id, run.state().short_name()),
        }
    }
    Ok(())
}

/// Recomputes the organization's audit chain (`verify-audit-chain`): the
/// head to keep as an anchor, or the first entry that no longer verifies
/// (exit 1).
pub async fn verify_audit_chain(a: args::Checked) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let request = VerifyAuditChainRequest {
        organization_id: a.org.organization_id,
    };
    let verdict = client.verify_audit_chain(request).await?.into_inner();
    output::result(
        a.connection.output,
        &verdict,
        "hera.migration.v2.VerifyAuditChainResponse",
        chain_text,
    );
    match &verdict.first_broken {
        Some(broken) => Err(super::Failure::failed(format!(
            "the audit chain is broken at entry {}: {}",
            broken.seq, broken.reason
        ))),
        None => Ok(()),
    }
}

fn chain_text(verdict: &VerifyAuditChainResponse) -> String {
    let head = verdict.head.clone().unwrap_or_default();
    match &verdict.first_broken {
        None => format!(
            "verified: {} entries, each linked to the one before it\nhead (keep as an anchor): seq {} hash {}",
            verdict.entries, head.seq, head.hash
        ),
        Some(b) => format!(
            "BROKEN at entry {} of {}: {} {} {}\n  {}\n({} entries recomputed)",
            b.seq,
            verdict.entries,
            b.kind,
            if b.transaction_type.is_empty() {
                "?"
            } else {
                &b.transaction_type
            },
            b.entry_id,
            b.reason,
            verdict.checked
        ),
    }
}
