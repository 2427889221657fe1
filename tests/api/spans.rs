//! OpenTelemetry spans of a run, caught by an in-memory exporter: one span for
//! the phase and a child per batch, in the trace of the call that started it;
//! a rollout's span, a child per organization, and their runs under them.
use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use hera_migrate::proto::{rollout_service_client::RolloutServiceClient, *};
use opentelemetry::{
    Value, global,
    trace::{SpanId, TraceId, TracerProvider as _},
};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{SdkTracerProvider, SpanData, SpanExporter},
};
use tonic::metadata::MetadataValue;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use uuid::Uuid;

use crate::support::{
    TestApp, TestDatabase, as_user, fixtures,
    runs::{collect, rollout, seeded, start},
    wait,
};

/// Every span the test binary's servers end, kept in memory.
#[derive(Clone, Debug, Default)]
struct Memory(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Memory {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

/// Installs, once for the test binary, a subscriber exporting the service's
/// spans to memory (other tests' spans land there too; each test picks its
/// own by migration id).
fn exported() -> &'static Memory {
    static MEMORY: OnceLock<Memory> = OnceLock::new();
    MEMORY.get_or_init(|| {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let memory = Memory::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(memory.clone())
            .build();
        tracing_subscriber::registry()
            .with(EnvFilter::new("hera_migrate=info"))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tests")))
            .try_init()
            .expect("no other global subscriber in the test binary");
        memory
    })
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

#[tokio::test]
async fn a_run_has_an_execution_span_with_a_child_per_batch_in_the_callers_trace() {
    let memory = exported();
    let s = seeded(60).await;
    let mut client = s.app.client().await;
    let trace_id = TraceId::from_bytes(uuid::Uuid::new_v4().into_bytes());
    let caller_span = SpanId::from_bytes(*b"\x01\x02\x03\x04\x05\x06\x07\x08");
    let mut request = as_user(
        StartMigrationRequest {
            batch_size: 20,
            ..start(s.org)
        },
        s.owner,
    );
    request.metadata_mut().insert(
        "traceparent",
        MetadataValue::try_from(format!("00-{trace_id}-{caller_span}-01")).unwrap(),
    );
    let events = collect(client.start_migration(request).await.unwrap().into_inner()).await;
    let last = events.last().unwrap();
    assert_eq!(last.state(), MigrationState::Succeeded);
    let id = last.migration_id.clone();

    let execution = wait::until("the execution span", Duration::from_secs(10), || {
        let spans = memory.0.lock().unwrap();
        let found = spans
            .iter()
            .find(|span| {
                span.name == "migration.execution"
                    && attribute(span, "migration_id") == Some(&Value::from(id.clone()))
            })
            .cloned();
        async move { found }
    })
    .await;
    assert_eq!(
        execution.span_context.trace_id(),
        trace_id,
        "in the caller's trace"
    );
    // What a trace search filters by: the run, its phase, dry run, outcome.
    for (key, value) in [
        ("organization_id", Value::from(s.org.to_string())),
        ("migration.phase", Value::from("EXECUTION")),
        ("dry_run", Value::Bool(false)),
        ("outcome", Value::from("SUCCEEDED")),
    ] {
        assert_eq!(attribute(&execution, key), Some(&value), "{key}");
    }

    let batches: Vec<SpanData> = memory
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|span| {
            span.name == "migration.batch"
                && span.parent_span_id == execution.span_context.span_id()
        })
        .cloned()
        .collect();
    assert_eq!(
        batches.len() as i64,
        last.batch_number,
        "one span per batch: {batches:#?}"
    );
    let mut numbers: Vec<i64> = Vec::new();
    for batch in &batches {
        assert_eq!(batch.span_context.trace_id(), trace_id);
        for key in [
            "batch.size",
            "batch.duration_ms",
            "batch.transactions_per_second",
        ] {
            assert!(attribute(batch, key).is_some(), "{key} on {batch:#?}");
        }
        assert_eq!(attribute(batch, "batch.balanced"), Some(&Value::Bool(true)));
        assert_eq!(
            attribute(batch, "migration_id"),
            Some(&Value::from(id.clone()))
        );
        let outcome = attribute(batch, "batch.outcome");
        assert_eq!(outcome, Some(&Value::from("committed")), "{batch:#?}");
        if let Some(Value::I64(number)) = attribute(batch, "batch.number") {
            numbers.push(*number);
        }
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=last.batch_number).collect::<Vec<_>>());
    s.app.stop().await;
}

/// A rollout's span, with a child per organization and each organization's
/// run under its own: the whole rollout is one trace.
#[tokio::test]
async fn a_rollout_has_a_span_with_a_child_per_organization_and_its_run_under_it() {
    let memory = exported();
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let pool = db.pool().await;
    let report = fixtures::seed_2024(&pool, 2, 30, 17).await;
    let operator = fixtures::platform_operator(&pool, &report.platform).await;
    let ids: Vec<Uuid> = report.organizations.iter().map(|org| org.id).collect();
    let orgs: BTreeSet<String> = ids.iter().map(Uuid::to_string).collect();
    let request = rollout(&ids, &[rollout_stage::Size::Rest(true)]);
    let mut client = RolloutServiceClient::new(app.channel().await);
    let started = client
        .start_rollout(as_user(request, operator))
        .await
        .unwrap()
        .into_inner();
    let id = started.rollout.unwrap().rollout_id;

    let rollout = wait::until("the rollout's span", Duration::from_secs(60), || {
        let spans = memory.0.lock().unwrap();
        let found = spans
            .iter()
            .find(|span| {
                span.name == "migration.rollout"
                    && attribute(span, "rollout_id") == Some(&Value::from(id.clone()))
            })
            .cloned();
        async move { found }
    })
    .await;
    assert_eq!(
        attribute(&rollout, "outcome"),
        Some(&Value::from("SUCCEEDED"))
    );
    let spans = memory.0.lock().unwrap().clone();
    let organizations: Vec<&SpanData> = spans
        .iter()
        .filter(|span| {
            span.name == "migration.rollout.organization"
                && span.parent_span_id == rollout.span_context.span_id()
        })
        .collect();
    let named: BTreeSet<String> = organizations
        .iter()
        .filter_map(|span| match attribute(span, "organization_id") {
            Some(Value::String(org)) => Some(org.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(named, orgs, "a child span per organization");
    for org in &orgs {
        let run = spans.iter().find(|span| {
            span.name == "migration.execution"
                && attribute(span, "organization_id") == Some(&Value::from(org.clone()))
                && organizations
                    .iter()
                    .any(|parent| parent.span_context.span_id() == span.parent_span_id)
        });
        let run = run.unwrap_or_else(|| panic!("organization {org}'s run under its span"));
        assert_eq!(
            run.span_context.trace_id(),
            rollout.span_context.trace_id(),
            "in the rollout's trace"
        );
    }
    app.stop().await;
}
