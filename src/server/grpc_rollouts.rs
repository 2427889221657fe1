//! The `RolloutService` adapter: decode, call the tonic-free
//! `RolloutService`, convert.
use std::pin::Pin;

use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use super::{authn, convert_rollouts, decode_rollout};
use crate::{migration::rollout::RolloutControl, proto::*, rollout_service::RolloutService};

type Answer<T> = Result<Response<T>, Status>;

pub struct GrpcRolloutService {
    service: RolloutService,
}

impl GrpcRolloutService {
    pub fn new(service: RolloutService) -> Self {
        Self { service }
    }

    async fn control(
        &self,
        caller: crate::auth::Caller,
        id: &str,
        control: RolloutControl,
    ) -> Result<Rollout, Status> {
        let id = decode_rollout::rollout_id(id)?;
        let view = self.service.control(caller, id, control).await?;
        Ok(convert_rollouts::rollout(view))
    }
}

#[tonic::async_trait]
impl rollout_service_server::RolloutService for GrpcRolloutService {
    type WatchRolloutStream =
        Pin<Box<dyn Stream<Item = Result<WatchRolloutResponse, Status>> + Send>>;

    async fn start_rollout(
        &self,
        request: Request<StartRolloutRequest>,
    ) -> Answer<StartRolloutResponse> {
        let start = decode_rollout::start(request.get_ref())?;
        let caller = authn::caller(&request)?;
        let view = self.service.start(caller, &start).await?;
        let rollout = Some(convert_rollouts::rollout(view));
        Ok(Response::new(StartRolloutResponse { rollout }))
    }

    async fn watch_rollout(
        &self,
        request: Request<WatchRolloutRequest>,
    ) -> Answer<Self::WatchRolloutStream> {
        let id = decode_rollout::rollout_id(&request.get_ref().rollout_id)?;
        let caller = authn::caller(&request)?;
        let snapshots = self.service.watch(caller, id).await?;
        let stream = ReceiverStream::new(snapshots).map(|snapshot| {
            snapshot
                .map(|view| WatchRolloutResponse {
                    rollout: Some(convert_rollouts::rollout(view)),
                })
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_rollout(&self, request: Request<GetRolloutRequest>) -> Answer<GetRolloutResponse> {
        let id = decode_rollout::rollout_id(&request.get_ref().rollout_id)?;
        let caller = authn::caller(&request)?;
        let rollout = Some(convert_rollouts::rollout(
            self.service.get(caller, id).await?,
        ));
        Ok(Response::new(GetRolloutResponse { rollout }))
    }

    async fn pause_rollout(
        &self,
        request: Request<PauseRolloutRequest>,
    ) -> Answer<PauseRolloutResponse> {
        let caller = authn::caller(&request)?;
        let rollout = Some(
            self.control(caller, &request.get_ref().rollout_id, RolloutControl::Pause)
                .await?,
        );
        Ok(Response::new(PauseRolloutResponse { rollout }))
    }

    async fn resume_rollout(
        &self,
        request: Request<ResumeRolloutRequest>,
    ) -> Answer<ResumeRolloutResponse> {
        let caller = authn::caller(&request)?;
        let rollout = Some(
            self.control(
                caller,
                &request.get_ref().rollout_id,
                RolloutControl::Resume,
            )
            .await?,
        );
        Ok(Response::new(ResumeRolloutResponse { rollout }))
    }

    async fn cancel_rollout(
        &self,
        request: Request<CancelRolloutRequest>,
    ) -> Answer<CancelRolloutResponse> {
        let caller = authn::caller(&request)?;
        let rollout = Some(
            self.control(
                caller,
                &request.get_ref().rollout_id,
                RolloutControl::Cancel,
            )
            .await?,
        );
        Ok(Response::new(CancelRolloutResponse { rollout }))
    }
}
