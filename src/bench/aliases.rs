//! Figure f: ApplyReportingAliases organization-wide (every v1 transaction
//! gets its v2 reporting alias, metadata only), wall time from the client.
use std::time::Instant;

use super::client::{Client, Owner};
use crate::proto::ApplyReportingAliasesRequest;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Aliases {
    pub wall_ms: f64,
    pub aliased: i64,
    pub refused: usize,
}

impl Aliases {
    pub fn per_second(&self) -> f64 {
        if self.wall_ms > 0.0 {
            self.aliased as f64 / self.wall_ms * 1000.0
        } else {
            0.0
        }
    }
}

pub async fn measure(client: &Client, owner: &Owner, batch: u32) -> anyhow::Result<Aliases> {
    let mut client = client.clone();
    let request = ApplyReportingAliasesRequest {
        organization_id: owner.org.to_string(),
        request_id: uuid::Uuid::new_v4().to_string(),
        batch_size: i32::try_from(batch)?,
        ..Default::default()
    };
    let started = Instant::now();
    let answer = client
        .apply_reporting_aliases(owner.request(request))
        .await?
        .into_inner();
    Ok(Aliases {
        wall_ms: started.elapsed().as_secs_f64() * 1000.0,
        aliased: answer.total_aliased,
        refused: answer.refused.len(),
    })
}
