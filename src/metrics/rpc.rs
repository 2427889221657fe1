//! Calls and their latency by method and gRPC code: a tower layer around
//! every service the server routes (health and reflection included).
//!
//! A call ends when its response body does: a unary call's status comes in
//! the trailers after its message, an error's in the headers of an empty
//! response, and a stream's in the trailers when it ends (StartMigration's
//! when the run ends), so the latency is the whole call's. A body dropped
//! before its end is a call the client gave up on: CANCELLED.
use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http_body::{Body, Frame, SizeHint};
use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, Meter},
};
use prost::Message as _;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

/// From a health check's milliseconds to a stream's minutes, in seconds.
const CALL_SECONDS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// What a path no service defines is counted as: the path is the client's
/// to choose, and a label must not be.
const UNKNOWN: &str = "unknown";

/// gRPC status codes by number, as the gRPC specification spells them.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
const CANCELLED: usize = 1;
const UNKNOWN_CODE: usize = 2;

/// Wraps every routed service in [`RpcMetrics`].
#[derive(Clone)]
pub struct RpcMetricsLayer {
    instruments: Arc<RpcInstruments>,
}

struct RpcInstruments {
    calls: Counter<u64>,
    duration: Histogram<f64>,
    /// "/package.Service/Method" of every method served: service and method.
    methods: HashMap<String, (String, String)>,
}

impl RpcMetricsLayer {
    /// `descriptor_sets`: the encoded `FileDescriptorSet`s of the services
    /// served, whose methods are the only ones named in attributes.
    pub fn new(meter: &Meter, descriptor_sets: &[&[u8]]) -> Self {
        let calls = meter
            .u64_counter("hera_migrate.rpc.server.calls")
            .with_unit("{call}")
            .with_description("gRPC calls answered, by service, method and status code")
            .build();
        let duration = meter
            .f64_histogram("hera_migrate.rpc.server.duration")
            .with_unit("s")
            .with_description("gRPC call time, from the request to the end of the response")
            .with_boundaries(CALL_SECONDS.to_vec())
            .build();
        Self {
            instruments: Arc::new(RpcInstruments {
                calls,
                duration,
                methods: methods(descriptor_sets),
            }),
        }
    }
}

/// Every method of every service the descriptor sets define, by its path.
fn methods(descriptor_sets: &[&[u8]]) -> HashMap<String, (String, String)> {
    let mut methods = HashMap::new();
    for bytes in descriptor_sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(*bytes) else {
            continue;
        };
        for file in &set.file {
            for service in &file.service {
                let service_name = match file.package() {
                    "" => service.name().to_owned(),
                    package => format!("{package}.{}", service.name()),
                };
                for method in &service.method {
                    methods.insert(
                        format!("/{service_name}/{}", method.name()),
                        (service_name.clone(), method.name().to_owned()),
                    );
                }
            }
        }
    }
    methods
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            instruments: self.instruments.clone(),
        }
    }
}

/// A service whose calls are counted and timed.
#[derive(Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    instruments: Arc<RpcInstruments>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RpcMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: Body + Unpin,
{
    type Response = Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let mut call = Call {
            instruments: self.instruments.clone(),
            path: request.uri().path().to_owned(),
            started: Instant::now(),
            code: None,
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            match response.await {
                Ok(response) => {
                    // An error's status is in the headers (no message follows).
                    call.code = grpc_status(response.headers());
                    Ok(response.map(|inner| MeteredBody {
                        inner,
                        call: Some(call),
                    }))
                }
                Err(error) => {
                    call.finish(UNKNOWN_CODE);
                    Err(error)
                }
            }
        })
    }
}

/// One call under way.
struct Call {
    instruments: Arc<RpcInstruments>,
    path: String,
    started: Instant,
    /// The status the response's headers carried, if any.
    code: Option<usize>,
}

impl Call {
    fn finish(self, code: usize) {
        let (service, method) = match self.instruments.methods.get(&self.path) {
            Some((service, method)) => (service.clone(), method.clone()),
            None => (UNKNOWN.to_owned(), UNKNOWN.to_owned()),
        };
        let attributes = [
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", service),
            KeyValue::new("rpc.method", method),
            KeyValue::new("rpc.response.status_code", CODES[code.min(CODES.len() - 1)]),
        ];
        self.instruments.calls.add(1, &attributes);
        self.instruments
            .duration
            .record(self.started.elapsed().as_secs_f64(), &attributes);
    }
}

/// A `grpc-status` header or trailer, as an index into `CODES` (an unknown
/// number is UNKNOWN).
fn grpc_status(headers: &HeaderMap) -> Option<usize> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    let code = value.trim().parse::<usize>().unwrap_or(UNKNOWN_CODE);
    Some(if code < CODES.len() {
        code
    } else {
        UNKNOWN_CODE
    })
}

/// A response body that ends its call when it ends, or is dropped.
pub struct MeteredBody<B> {
    inner: B,
    call: Option<Call>,
}

impl<B> MeteredBody<B> {
    fn end(&mut self, code: Option<usize>) {
        if let Some(call) = self.call.take() {
            let code = code.or(call.code).unwrap_or(UNKNOWN_CODE);
            call.finish(code);
        }
    }
}

impl<B: Body + Unpin> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_status(trailers).unwrap_or(UNKNOWN_CODE);
                    self.end(Some(code));
                }
            }
            Poll::Ready(Some(Err(_))) => self.end(Some(UNKNOWN_CODE)),
            Poll::Ready(None) => self.end(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        // A response that was nothing but its headers ends with its status;
        // one cut short ends CANCELLED.
        if let Some(call) = self.call.take() {
            let code = call.code.unwrap_or(CANCELLED);
            call.finish(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_methods_served_are_named() {
        let methods = methods(&[tonic_health::pb::FILE_DESCRIPTOR_SET]);
        assert_eq!(
            methods.get("/grpc.health.v1.Health/Check"),
            Some(&("grpc.health.v1.Health".to_owned(), "Check".to_owned()))
        );
        assert!(!methods.contains_key("/grpc.health.v1.Health/Bogus"));
    }

    #[test]
    fn statuses_read_from_headers_are_bounded() {
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(grpc_status(&headers).map(|c| CODES[c]), Some("NOT_FOUND"));
        headers.insert("grpc-status", "99".parse().unwrap());
        assert_eq!(grpc_status(&headers).map(|c| CODES[c]), Some("UNKNOWN"));
        headers.insert("grpc-status", "x".parse().unwrap());
        assert_eq!(grpc_status(&headers).map(|c| CODES[c]), Some("UNKNOWN"));
    }
}
