//! The commands of fleet rollouts: start one and follow it, follow, read and
//! steer one. A line per change for people (the rollout's state and stage,
//! then each organization whose standing moved), or one JSON Rollout per
//! snapshot.
use std::collections::BTreeMap;

use clap::Args;

use super::{
    Failure, Outcome,
    args::{Connection, Output, Range},
    client::{self, RolloutClient},
    output,
};
use crate::proto::{rollout_stage::Size, *};

/// One rollout.
#[derive(Debug, Clone, Args)]
pub struct RolloutRef {
    #[command(flatten)]
    pub connection: Connection,
    #[arg(long)]
    pub rollout_id: String,
}

#[derive(Debug, Clone, Args)]
pub struct StartRollout {
    #[command(flatten)]
    pub connection: Connection,
    /// The organizations, comma-separated, in the order the stages take them.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "all_with_candidates"
    )]
    pub organizations: Vec<String>,
    /// Instead: every organization with a candidate of the migration.
    #[arg(long, conflicts_with = "organizations")]
    pub all_with_candidates: bool,
    /// The stages, comma-separated: a count ("1"), a share ("10%") or "rest";
    /// organizations no stage takes form a last stage.
    #[arg(long, value_delimiter = ',', value_parser = stage)]
    pub stages: Vec<RolloutStage>,
    #[command(flatten)]
    pub range: Range,
    /// Organizations migrated at once within a stage (0: 2).
    #[arg(long, default_value_t = 0)]
    pub max_concurrency: u32,
    /// When a stage fails, roll back that stage's runs.
    #[arg(long)]
    pub rollback_failed_stage: bool,
    /// Idempotency key: again with the same flags, the same rollout.
    #[arg(long, default_value = "")]
    pub request_id: String,
    /// Print the rollout once started and return; follow it with watch-rollout.
    #[arg(long)]
    pub detach: bool,
}

pub enum Control {
    Pause,
    Resume,
    Cancel,
}

fn stage(text: &str) -> Result<RolloutStage, String> {
    let text = text.trim();
    let size = if text.eq_ignore_ascii_case("rest") {
        Size::Rest(true)
    } else if let Some(percent) = text.strip_suffix('%') {
        Size::Percent(
            percent
                .trim()
                .parse()
                .map_err(|_| format!("{text:?}: not a share like 10%"))?,
        )
    } else {
        Size::Organizations(
            text.parse()
                .map_err(|_| format!("{text:?}: not a count, a share like 10%, or rest"))?,
        )
    };
    Ok(RolloutStage { size: Some(size) })
}

pub async fn start(a: StartRollout) -> Outcome {
    let mut client = client::connect_rollouts(&a.connection).await?;
    let migration = StartMigrationRequest {
        from_date: a.range.from.clone(),
        to_date: a.range.to.clone(),
        batch_size: a.range.batch_size,
        closed_period_policy: a.range.closed_period_policy(),
        ..Default::default()
    };
    let request = StartRolloutRequest {
        organization_ids: a.organizations.clone(),
        all_with_candidates: a.all_with_candidates,
        stages: a.stages.clone(),
        migration: Some(migration),
        max_concurrency: a.max_concurrency,
        rollback_failed_stage: a.rollback_failed_stage,
        request_id: a.request_id.clone(),
    };
    let rollout = client
        .start_rollout(request)
        .await?
        .into_inner()
        .rollout
        .unwrap_or_default();
    if a.detach {
        show(a.connection.output, &rollout, &mut BTreeMap::new());
        eprintln!(
            "started rollout {}; follow it with\n  hera-migrate watch-rollout --rollout-id {}",
            rollout.rollout_id, rollout.rollout_id
        );
        return Ok(());
    }
    follow(&mut client, a.connection.output, &rollout.rollout_id).await
}

pub async fn watch(a: RolloutRef) -> Outcome {
    let mut client = client::connect_rollouts(&a.connection).await?;
    follow(&mut client, a.connection.output, &a.rollout_id).await
}

pub async fn get(a: RolloutRef) -> Outcome {
    let mut client = client::connect_rollouts(&a.connection).await?;
    let request = GetRolloutRequest {
        rollout_id: a.rollout_id.clone(),
    };
    let rollout = client
        .get_rollout(request)
        .await?
        .into_inner()
        .rollout
        .unwrap_or_default();
    show(a.connection.output, &rollout, &mut BTreeMap::new());
    Ok(())
}

pub async fn control(a: RolloutRef, control: Control) -> Outcome {
    let mut client = client::connect_rollouts(&a.connection).await?;
    let rollout_id = a.rollout_id.clone();
    let rollout = match control {
        Control::Pause => {
            client
                .pause_rollout(PauseRolloutRequest { rollout_id })
                .await?
                .into_inner()
                .rollout
        }
        Control::Resume => {
            client
                .resume_rollout(ResumeRolloutRequest { rollout_id })
                .await?
                .into_inner()
                .rollout
        }
        Control::Cancel => {
            client
                .cancel_rollout(CancelRolloutRequest { rollout_id })
                .await?
                .into_inner()
                .rollout
        }
    };
    show(
        a.connection.output,
        &rollout.unwrap_or_default(),
        &mut BTreeMap::new(),
    );
    Ok(())
}

/// Follows a rollout to its end: exit 0 when it SUCCEEDED, 1 otherwise.
async fn follow(client: &mut RolloutClient, out: Output, rollout_id: &str) -> Outcome {
    let request = WatchRolloutRequest {
        rollout_id: rollout_id.to_owned(),
    };
    let mut stream = client.watch_rollout(request).await?.into_inner();
    let mut seen = BTreeMap::new();
    let mut last = None;
    while let Some(snapshot) = stream.message().await? {
        let rollout = snapshot.rollout.unwrap_or_default();
        show(out, &rollout, &mut seen);
        last = Some(rollout);
    }
    let last = last.ok_or_else(|| Failure::failed("the server sent no snapshot".into()))?;
    match last.state() {
        RolloutState::Succeeded => Ok(()),
        state => Err(Failure::failed(format!(
            "rollout {} ended {}: {}",
            last.rollout_id,
            state.as_str_name(),
            last.message
        ))),
    }
}

/// Prints a snapshot: JSON whole, or for people the rollout's line and a
/// line per organization whose standing changed since `seen`.
fn show(out: Output, rollout: &Rollout, seen: &mut BTreeMap<String, i32>) {
    if out == Output::Json {
        println!("{}", output::json(rollout, "hera.migration.v2.Rollout"));
        return;
    }
    println!(
        "rollout {} {} stage {}/{} {:.1}%{}",
        rollout.rollout_id,
        short(rollout.state().as_str_name(), "ROLLOUT_STATE_"),
        (rollout.current_stage + 1).min(rollout.stage_count),
        rollout.stage_count,
        rollout.percent_complete,
        if rollout.message.is_empty() {
            String::new()
        } else {
            format!(": {}", rollout.message)
        }
    );
    for org in &rollout.organizations {
        if seen.insert(org.organization_id.clone(), org.standing) == Some(org.standing) {
            continue;
        }
        println!(
            "  stage {} {} {}{}{}",
            org.stage + 1,
            org.organization_id,
            short(org.standing().as_str_name(), "ORGANIZATION_STANDING_"),
            if org.validation_overall.is_empty() {
                String::new()
            } else {
                format!(" (validation {})", org.validation_overall)
            },
            if org.message.is_empty() {
                String::new()
            } else {
                format!(": {}", org.message)
            }
        );
    }
}

fn short<'a>(name: &'a str, prefix: &str) -> &'a str {
    name.strip_prefix(prefix).unwrap_or(name)
}
