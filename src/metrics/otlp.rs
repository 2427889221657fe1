//! Metrics pushed over OTLP/gRPC, as the spans are (see telemetry.rs): when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` is
//! set, every `OTEL_METRIC_EXPORT_INTERVAL` (60 s by default). The SDK's
//! periodic reader exports from a thread of its own, through a runtime of
//! its own, so that a collector that is slow or gone holds up no call and no
//! batch: it only loses metrics.
use std::time::Duration;

use opentelemetry_sdk::{
    error::OTelSdkResult,
    metrics::{PeriodicReader, Temporality, data::ResourceMetrics, exporter::PushMetricExporter},
};

use super::MetricsError;
use crate::telemetry::{InRuntime, export_runtime};

const ENDPOINTS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
];

/// Whether a collector is configured for metrics.
pub(super) fn configured() -> bool {
    ENDPOINTS
        .iter()
        .any(|var| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()))
}

/// The periodic reader exporting to the configured collector, and the
/// runtime its exporter runs on (to be shut down after the reader).
pub(super) fn reader() -> Result<
    (
        PeriodicReader<InRuntimeExporter<opentelemetry_otlp::MetricExporter>>,
        tokio::runtime::Runtime,
    ),
    MetricsError,
> {
    let runtime = export_runtime("otel-metrics").map_err(|e| MetricsError::Other(e.to_string()))?;
    let exporter = {
        // The tonic channel is built (lazily connected) inside the runtime.
        let _entered = runtime.enter();
        opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| {
                MetricsError::Exporter(format!("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: {e}"))
            })?
    };
    let exporter = InRuntimeExporter {
        inner: exporter,
        handle: runtime.handle().clone(),
    };
    Ok((PeriodicReader::builder(exporter).build(), runtime))
}

/// A metric exporter whose futures are polled inside a given Tokio runtime.
#[derive(Debug)]
pub(super) struct InRuntimeExporter<E> {
    inner: E,
    handle: tokio::runtime::Handle,
}

impl<E: PushMetricExporter> PushMetricExporter for InRuntimeExporter<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        InRuntime {
            handle: &self.handle,
            future: Box::pin(self.inner.export(metrics)),
        }
        .await
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}
