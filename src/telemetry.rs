//! Tracing and OpenTelemetry, in one place.
//!
//! Logs go to stderr as text or JSON, filtered by `RUST_LOG` (default `info`).
//! When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set, spans are also exported over OTLP/gRPC; the exporter reads the other
//! standard `OTEL_*` variables itself (`OTEL_SERVICE_NAME`, headers, timeout).
//! An unreachable collector only loses spans: export runs on its own thread and
//! runtime, never on the serving path. Metrics (`crate::metrics`) are exported
//! the same way, by each server's own meter provider.
use std::{
    future::Future,
    io::IsTerminal,
    pin::Pin,
    sync::mpsc,
    task::{Context, Poll},
    time::Duration,
};

use opentelemetry::{global, propagation::Extractor, trace::TracerProvider as _};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{SdkTracerProvider, SpanData, SpanExporter},
};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

const SERVICE_NAME: &str = "hera-migrate";
/// How long shutdown waits for the last spans to leave.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// Names the variable at fault.
    #[error("{0}")]
    Exporter(String),
    #[error("RUST_LOG: {0}")]
    Filter(String),
    #[error("telemetry: {0}")]
    Other(String),
}

/// Keeps the exporter alive; `shutdown` flushes the spans still buffered.
pub struct TelemetryGuard {
    exporter: Option<(SdkTracerProvider, tokio::runtime::Runtime)>,
}

impl TelemetryGuard {
    /// Flushes and stops the exporter, waiting at most a few seconds. Call it
    /// outside any async context (after the main runtime has finished).
    pub fn shutdown(mut self) {
        let Some((provider, runtime)) = self.exporter.take() else {
            return;
        };
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = provider.shutdown();
            let _ = done_tx.send(());
        });
        let _ = done_rx.recv_timeout(FLUSH_TIMEOUT);
        runtime.shutdown_background();
    }
}

/// Installs the global subscriber: logs, and OTLP export when configured.
pub fn init(format: LogFormat) -> Result<TelemetryGuard, TelemetryError> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    check_otlp_urls()?;
    let filter = env_filter()?;
    let fmt_layer = match format {
        // Colours for a person at a terminal; a file or a pipe gets plain text.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let exporter = otlp_endpoint_configured()
        .then(build_otlp_provider)
        .transpose()?;
    // Without a collector, spans still get trace ids (and a caller's
    // traceparent is still continued), so log lines can name their trace;
    // nothing is exported.
    let tracer = match &exporter {
        Some((provider, _)) => provider.tracer(SERVICE_NAME),
        None => SdkTracerProvider::builder().build().tracer(SERVICE_NAME),
    };
    let otel_layer = tracing_opentelemetry::layer().with_tracer(tracer);
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|e| TelemetryError::Other(e.to_string()))?;
    Ok(TelemetryGuard { exporter })
}

fn env_filter() -> Result<EnvFilter, TelemetryError> {
    match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            EnvFilter::try_new(&directives).map_err(|e| TelemetryError::Filter(e.to_string()))
        }
        _ => Ok(EnvFilter::new("info")),
    }
}

fn otlp_endpoint_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|var| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()))
}

/// A collector's URL that is not one stops the start, naming its variable
/// (the metrics' too: they are exported beside the spans).
fn check_otlp_urls() -> Result<(), TelemetryError> {
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ] {
        if let Ok(value) = std::env::var(var)
            && !value.trim().is_empty()
            && !(value.starts_with("http://") || value.starts_with("https://"))
        {
            return Err(TelemetryError::Exporter(format!(
                "{var}={value:?} is not an http:// or https:// URL"
            )));
        }
    }
    Ok(())
}

/// The SDK exports from plain threads of its own; the tonic exporter needs a
/// Tokio reactor, so it gets a small runtime of its own.
pub(crate) fn export_runtime(name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
}

fn build_otlp_provider() -> Result<(SdkTracerProvider, tokio::runtime::Runtime), TelemetryError> {
    let runtime =
        export_runtime("otel-export").map_err(|e| TelemetryError::Other(e.to_string()))?;
    let exporter = {
        let _entered = runtime.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TelemetryError::Exporter(format!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}")))?
    };
    let exporter = InRuntimeExporter {
        inner: exporter,
        handle: runtime.handle().clone(),
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name())
                .build(),
        )
        .build();
    Ok((provider, runtime))
}

pub(crate) fn service_name() -> String {
    std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| SERVICE_NAME.to_owned())
}

/// A span exporter whose futures are polled inside a given Tokio runtime.
#[derive(Debug)]
struct InRuntimeExporter<E> {
    inner: E,
    handle: tokio::runtime::Handle,
}

impl<E: SpanExporter> SpanExporter for InRuntimeExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        InRuntime {
            handle: &self.handle,
            future: Box::pin(self.inner.export(batch)),
        }
        .await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A future polled inside a given Tokio runtime (the exporters' futures run
/// on the SDK's own threads).
pub(crate) struct InRuntime<'a, F> {
    pub handle: &'a tokio::runtime::Handle,
    pub future: Pin<Box<F>>,
}

impl<F: Future> Future for InRuntime<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let _entered = self.handle.enter();
        self.future.as_mut().poll(cx)
    }
}

/// Reads W3C trace context from gRPC (HTTP/2) request headers.
pub struct HeaderExtractor<'a>(pub &'a tonic::codegen::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}

/// The span of one incoming call, a child of the caller's trace when the call
/// carries a `traceparent`.
pub fn request_span(request: &tonic::codegen::http::Request<()>) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let parent = global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    let span = tracing::info_span!("grpc.request", rpc.method = %request.uri().path());
    let _ = span.set_parent(parent);
    span
}

/// The trace id of the current span ("" outside any trace), for log lines
/// that an operator matches to spans.
pub fn current_trace_id() -> String {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    if span_context.is_valid() {
        span_context.trace_id().to_string()
    } else {
        String::new()
    }
}
