//! OpenTelemetry with the shipped binary and a real OTLP/gRPC collector run by
//! the test: a caller's W3C trace continues into the request span, the spans
//! leave at shutdown, and a collector that cannot be reached never touches
//! serving or stopping.
use std::{
    net::SocketAddr,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hera_migrate::proto::{
    CheckSecurityRequest, Operation, migration_service_client::MigrationServiceClient,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::Span,
};
use tokio::{net::TcpListener, time::timeout};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, metadata::MetadataValue, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use uuid::Uuid;

use crate::support::{
    TestDatabase,
    app::TEST_SECRET,
    as_user,
    fixtures::{self, Organization},
    process::{ServerProcess, serve_command, wait_serving},
    wait,
};

/// SIGTERM must end the server within this, exporter or not.
const STOPS_WITHIN: Duration = Duration::from_secs(10);
/// Serving is unaffected: every call is answered within this.
const CALL_WITHIN: Duration = Duration::from_secs(5);

/// A minimal OTLP trace collector: it keeps every export it receives.
#[derive(Clone, Default)]
struct Collector {
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.received.lock().unwrap().push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serves on 127.0.0.1:0 for the rest of the test (its runtime's life).
    async fn start() -> (Self, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let collector = Self::default();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(server);
        (collector, addr)
    }

    /// Every span received so far, each with its resource's `service.name`.
    fn spans(&self) -> Vec<(Option<String>, Span)> {
        let received = self.received.lock().unwrap();
        let mut spans = Vec::new();
        for resource_spans in received.iter().flat_map(|r| &r.resource_spans) {
            let service_name = resource_spans
                .resource
                .as_ref()
                .and_then(|resource| string_attribute(&resource.attributes, "service.name"));
            for scope_spans in &resource_spans.scope_spans {
                for span in &scope_spans.spans {
                    spans.push((service_name.clone(), span.clone()));
                }
            }
        }
        spans
    }
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|value: &AnyValue| match &value.value {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A caller's trace context: a random trace id and parent span id, sampled.
struct TraceParent {
    trace_id: String,
    parent_span_id: String,
}

impl TraceParent {
    fn random() -> Self {
        Self {
            trace_id: Uuid::new_v4().simple().to_string(),
            parent_span_id: Uuid::new_v4().simple().to_string()[..16].to_owned(),
        }
    }

    fn header(&self) -> MetadataValue<tonic::metadata::Ascii> {
        format!("00-{}-{}-01", self.trace_id, self.parent_span_id)
            .parse()
            .unwrap()
    }

    fn attach<T>(&self, mut request: Request<T>) -> Request<T> {
        request.metadata_mut().insert("traceparent", self.header());
        request
    }
}

/// `hera-migrate serve` over a test database, exporting spans to `endpoint`.
fn exporting_to(db: &TestDatabase, endpoint: &str) -> Command {
    let mut command = serve_command();
    command
        .env("DATABASE_URL", db.url())
        .env("HERA_JWT_SECRET", TEST_SECRET)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_SERVICE_NAME", "hera-migrate-test");
    command
}

async fn channel(server: &ServerProcess) -> Channel {
    Channel::from_shared(server.endpoint())
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect to the server")
}

fn check_security(organization: Uuid, user: Uuid) -> Request<CheckSecurityRequest> {
    as_user(
        CheckSecurityRequest {
            organization_id: organization.to_string(),
            operation: Operation::Unspecified.into(),
        },
        user,
    )
}

#[tokio::test]
async fn a_callers_trace_continues_into_the_request_span_and_spans_leave_at_shutdown() {
    let (collector, collector_addr) = Collector::start().await;
    let db = TestDatabase::create().await;
    let mut command = exporting_to(&db, &format!("http://{collector_addr}"));
    // No scheduled export while the test runs: whatever the collector gets,
    // the flush at shutdown sent.
    command.env("OTEL_BSP_SCHEDULE_DELAY", "600000");
    let mut server = ServerProcess::spawn(command);
    wait_serving(server.addr).await;
    let org = fixtures::organization(&db.pool().await).await;

    let caller = TraceParent::random();
    let mut client = MigrationServiceClient::new(channel(&server).await);
    let answer = client
        .check_security(caller.attach(check_security(org.id, org.owner)))
        .await
        .expect("CheckSecurity answers")
        .into_inner();
    assert!(answer.migration_allowed, "{answer:?}");
    drop(client);
    assert!(
        collector.spans().is_empty(),
        "nothing is exported before shutdown with a 10 min schedule"
    );

    server.signal(libc::SIGTERM);
    let status = server.exit_within(STOPS_WITHIN).await;
    assert!(
        status.success(),
        "clean exit: {status:?}\n{}",
        server.logs()
    );

    // The process is gone: what the shutdown flushed has arrived.
    let spans = collector.spans();
    let ours: Vec<_> = spans
        .iter()
        .filter(|(_, span)| span.name == "grpc.request" && hex(&span.trace_id) == caller.trace_id)
        .collect();
    let names: Vec<_> = spans
        .iter()
        .map(|(_, span)| (span.name.as_str(), hex(&span.trace_id)))
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "one grpc.request span in trace {}; received {names:?}\n{}",
        caller.trace_id,
        server.logs()
    );
    let (service_name, span) = ours[0];
    assert_eq!(
        hex(&span.parent_span_id),
        caller.parent_span_id,
        "the caller's span is the request span's parent"
    );
    assert_eq!(service_name.as_deref(), Some("hera-migrate-test"));
    assert_eq!(
        string_attribute(&span.attributes, "rpc.method").as_deref(),
        Some("/hera.migration.v2.MigrationService/CheckSecurity")
    );
}

/// A "collector" that takes connections and never says a word: every export
/// to it hangs until the exporter gives up.
struct SilentCollector {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl SilentCollector {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Self { addr, accepted }
    }
}

/// A few health checks and CheckSecurity calls, each with a traceparent (so
/// each makes spans to export), each answered in time.
async fn calls_succeed(server: &ServerProcess, org: &Organization) {
    let channel = channel(server).await;
    let mut health = HealthClient::new(channel.clone());
    let mut client = MigrationServiceClient::new(channel);
    for _ in 0..3 {
        let caller = TraceParent::random();
        let status = timeout(
            CALL_WITHIN,
            health.check(caller.attach(Request::new(HealthCheckRequest {
                service: String::new(),
            }))),
        )
        .await
        .expect("health answers in time")
        .expect("health answers")
        .into_inner()
        .status();
        assert_eq!(status, ServingStatus::Serving);
        let answer = timeout(
            CALL_WITHIN,
            client.check_security(caller.attach(check_security(org.id, org.owner))),
        )
        .await
        .expect("CheckSecurity answers in time")
        .expect("CheckSecurity answers")
        .into_inner();
        assert!(answer.migration_allowed, "{answer:?}");
    }
}

/// Serves, exporting every 50 ms to `endpoint`; stops on SIGTERM with exit 0.
async fn serves_and_stops_while_exporting_to(
    endpoint: &str,
    while_serving: impl AsyncFnOnce(&ServerProcess, &Organization),
) {
    let db = TestDatabase::create().await;
    let mut command = exporting_to(&db, endpoint);
    command.env("OTEL_BSP_SCHEDULE_DELAY", "50");
    let mut server = ServerProcess::spawn(command);
    wait_serving(server.addr).await;
    let org = fixtures::organization(&db.pool().await).await;

    while_serving(&server, &org).await;

    server.signal(libc::SIGTERM);
    let status = server.exit_within(STOPS_WITHIN).await;
    assert_eq!(status.code(), Some(0), "{}", server.logs());
}

#[tokio::test]
async fn a_collector_port_nobody_listens_on_never_affects_serving_or_stopping() {
    // A port that was free a moment ago: nothing listens there.
    let nowhere = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    serves_and_stops_while_exporting_to(&format!("http://{nowhere}"), calls_succeed).await;
}

#[tokio::test]
async fn a_collector_that_never_answers_never_affects_serving_or_stopping() {
    let silent = SilentCollector::start().await;
    serves_and_stops_while_exporting_to(&format!("http://{}", silent.addr), async |server, org| {
        calls_succeed(server, org).await;
        wait::until(
            "the exporter to try the collector",
            Duration::from_secs(10),
            || async { (silent.accepted.load(Ordering::SeqCst) > 0).then_some(()) },
        )
        .await;
        // An export now hangs: serving goes on regardless.
        calls_succeed(server, org).await;
    })
    .await;
}
