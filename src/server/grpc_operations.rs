//! The operations RPCs of the `MigrationService` adapter (the checks around
//! a production migration, incidents, the audit chain): decode, call the
//! service, convert; `grpc.rs` delegates to these.
use tonic::{Request, Response, Status};

use super::{
    authn, convert, convert_incidents, convert_operations,
    decode::{self, Decoded},
};
use crate::{proto::*, service::MigrationService};

type Answer<T> = Result<Response<T>, Status>;

pub async fn check_environment(
    service: &MigrationService,
    request: Request<CheckEnvironmentRequest>,
) -> Answer<CheckEnvironmentResponse> {
    let organization_id = decode::organization(&request.get_ref().organization_id)?;
    let caller = authn::caller(&request)?;
    let environment = service.check_environment(caller, organization_id).await?;
    Ok(Response::new(convert_operations::environment(environment)))
}

pub async fn measure_performance(
    service: &MigrationService,
    request: Request<MeasurePerformanceRequest>,
) -> Answer<MeasurePerformanceResponse> {
    let Decoded {
        organization_id,
        request: measure,
    } = decode::performance(request.get_ref())?;
    let caller = authn::caller(&request)?;
    let report = service
        .measure_performance(caller, organization_id, &measure)
        .await?;
    Ok(Response::new(convert_operations::performance(report)))
}

pub async fn assess_failure(
    service: &MigrationService,
    request: Request<AssessFailureRequest>,
) -> Answer<AssessFailureResponse> {
    let message = request.get_ref();
    let (organization_id, id) = decode::run(&message.organization_id, &message.migration_id)?;
    let caller = authn::caller(&request)?;
    let assessment = service.assess_failure(caller, organization_id, id).await?;
    Ok(Response::new(convert_incidents::assessment(assessment)))
}

pub async fn document_incident(
    service: &MigrationService,
    request: Request<DocumentIncidentRequest>,
) -> Answer<DocumentIncidentResponse> {
    let Decoded {
        organization_id,
        request: incident,
    } = decode::incident(request.get_ref())?;
    let caller = authn::caller(&request)?;
    let recorded = service
        .document_incident(caller, organization_id, &incident)
        .await?;
    Ok(Response::new(convert_incidents::incident(recorded)))
}

pub async fn verify_audit_chain(
    service: &MigrationService,
    request: Request<VerifyAuditChainRequest>,
) -> Answer<VerifyAuditChainResponse> {
    let organization_id = decode::organization(&request.get_ref().organization_id)?;
    let caller = authn::caller(&request)?;
    let verdict = service.verify_audit_chain(caller, organization_id).await?;
    Ok(Response::new(convert::audit_chain(verdict)))
}
