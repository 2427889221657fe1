//! Figure g: RollbackMigration of the base run, its restores timed like the
//! migration's batches (between BATCH events, per 1,000 restored, the first
//! batch excluded), against the migration's own steady rate.
use super::{
    client::{Client, Owner},
    engine::RunSummary,
    progress, runs,
};

pub async fn measure(
    client: &Client,
    owner: &Owner,
    migration_id: &str,
) -> anyhow::Result<RunSummary> {
    let timeline = runs::roll_back(client, owner, migration_id, "g. rollback").await?;
    let summary = RunSummary::of(&timeline);
    progress!(
        "g. rollback: {} restored in {:.1} s",
        summary.moved,
        summary.wall_s
    );
    Ok(summary)
}
