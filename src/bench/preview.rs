//! Figure e: PreviewCandidates over gRPC on the big organization, wall time
//! from the client (its calibration batch included, as an operator waits for it).
use std::time::Instant;

use super::client::{Client, Owner};
use crate::proto::{ClosedPeriodPolicy, PreviewCandidatesRequest};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Preview {
    pub wall_ms: f64,
    pub candidates: i64,
    /// The preview's own estimate of the run, and how it was made.
    pub estimated_processing_ms: i64,
    pub estimate_basis: String,
}

pub async fn measure(client: &Client, owner: &Owner) -> anyhow::Result<Preview> {
    let mut client = client.clone();
    let request = PreviewCandidatesRequest {
        organization_id: owner.org.to_string(),
        from_date: "2024-01-01".into(),
        to_date: "2024-12-31".into(),
        closed_period_policy: ClosedPeriodPolicy::PostToOpenPeriod.into(),
        ..Default::default()
    };
    let started = Instant::now();
    let answer = client
        .preview_candidates(owner.request(request))
        .await?
        .into_inner();
    Ok(Preview {
        wall_ms: started.elapsed().as_secs_f64() * 1000.0,
        candidates: answer.total_candidates,
        estimated_processing_ms: answer.estimated_processing_time_ms,
        estimate_basis: answer.estimate_basis,
    })
}
