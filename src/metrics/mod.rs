//! OpenTelemetry metrics, beside the spans: one meter provider per server,
//! read by Prometheus at `GET /metrics` on `HERA_METRICS_ADDR` when set, and
//! pushed over OTLP/gRPC when a collector is configured (otlp.rs). With
//! neither, instruments are no-ops and nothing listens.
//!
//! The provider is the server's own rather than the process's global one: a
//! process may hold several servers (the tests do), each answering for its
//! own runs, calls and pools. The engine records through [`Recorder`] and
//! knows nothing of readers and exporters; calls are measured by the tower
//! layer of rpc.rs.
mod otlp;
pub mod prometheus;
mod recorder;
pub mod rpc;

use std::{net::SocketAddr, time::Duration};

use opentelemetry::{
    KeyValue,
    metrics::{Meter, MeterProvider as _, ObservableGauge},
};
use opentelemetry_sdk::{Resource, metrics::SdkMeterProvider};
use sqlx::PgPool;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub use recorder::{BatchFigures, Recorder, RunMeter};

/// The instrumentation scope of every instrument.
const METER: &str = "hera-migrate";
/// How long stopping waits for the last export to a collector.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("HERA_METRICS_ADDR: cannot listen on {addr} ({source})")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Names the variable at fault.
    #[error("{0}")]
    Exporter(String),
    #[error("metrics: {0}")]
    Other(String),
}

/// A server's metrics: its provider, readers and scrape endpoint.
pub struct Metrics {
    /// None when nothing reads the metrics (or once shut down).
    provider: Option<SdkMeterProvider>,
    meter: Meter,
    recorder: Recorder,
    scrape: Option<Scrape>,
    /// The OTLP exporter's runtime, shut down after the provider.
    otlp: Option<tokio::runtime::Runtime>,
    /// Kept for the life of the provider, which calls them at each collection.
    observers: Vec<ObservableGauge<u64>>,
}

struct Scrape {
    /// Taken when serving starts.
    listener: Option<TcpListener>,
    addr: SocketAddr,
    registry: ::prometheus::Registry,
}

impl Metrics {
    /// Binds the scrape endpoint when `scrape_addr` is given and connects
    /// (lazily) to a collector when one is configured; nothing is served yet.
    pub async fn build(scrape_addr: Option<SocketAddr>) -> Result<Self, MetricsError> {
        let scrape = match scrape_addr {
            Some(addr) => {
                let listener = prometheus::bind(addr).await?;
                let addr = listener
                    .local_addr()
                    .map_err(|source| MetricsError::Bind { addr, source })?;
                Some(Scrape {
                    listener: Some(listener),
                    addr,
                    registry: ::prometheus::Registry::new(),
                })
            }
            None => None,
        };
        let otlp = otlp::configured().then(otlp::reader).transpose()?;
        if scrape.is_none() && otlp.is_none() {
            return Ok(Self::disabled());
        }
        let resource = Resource::builder()
            .with_service_name(crate::telemetry::service_name())
            .build();
        let mut builder = SdkMeterProvider::builder().with_resource(resource);
        if let Some(scrape) = &scrape {
            builder = builder.with_reader(prometheus::exporter(&scrape.registry)?);
        }
        let otlp = match otlp {
            Some((reader, runtime)) => {
                builder = builder.with_reader(reader);
                Some(runtime)
            }
            None => None,
        };
        let provider = builder.build();
        let meter = provider.meter(METER);
        Ok(Self {
            recorder: Recorder::new(&meter),
            meter,
            provider: Some(provider),
            scrape,
            otlp,
            observers: Vec::new(),
        })
    }

    /// Measures nothing.
    pub fn disabled() -> Self {
        let meter = opentelemetry::metrics::noop::NoopMeterProvider::new().meter(METER);
        Self {
            recorder: Recorder::new(&meter),
            meter,
            provider: None,
            scrape: None,
            otlp: None,
            observers: Vec::new(),
        }
    }

    /// What the engine records through.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The meter of instruments outside the engine (the RPC layer's).
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// Where the scrape endpoint listens (port 0 resolved), when it does.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.scrape.as_ref().map(|scrape| scrape.addr)
    }

    /// Pool usage, read at each collection: size, idle and maximum
    /// connections of each named pool.
    pub fn observe_pools(&mut self, pools: &[(&'static str, PgPool)]) {
        type Reading = fn(&PgPool) -> u64;
        let gauges: [(&'static str, &'static str, Reading); 3] = [
            (
                "hera_migrate.db.pool.size",
                "Connections the pool holds open, idle or in use",
                |pool| u64::from(pool.size()),
            ),
            (
                "hera_migrate.db.pool.idle",
                "Connections of the pool idle, ready for a query",
                |pool| pool.num_idle() as u64,
            ),
            (
                "hera_migrate.db.pool.max",
                "Connections the pool may open (HERA_DB_POOL_SIZE for the service's)",
                |pool| u64::from(pool.options().get_max_connections()),
            ),
        ];
        for (name, description, read) in gauges {
            let pools = pools.to_vec();
            let gauge = self
                .meter
                .u64_observable_gauge(name)
                .with_unit("{connection}")
                .with_description(description)
                .with_callback(move |observer| {
                    for (pool_name, pool) in &pools {
                        observer.observe(read(pool), &[KeyValue::new("pool", *pool_name)]);
                    }
                })
                .build();
            self.observers.push(gauge);
        }
    }

    /// Starts answering scrapes until `stop`, when there is an endpoint.
    pub fn serve(&mut self, stop: CancellationToken) -> Option<JoinHandle<()>> {
        let scrape = self.scrape.as_mut()?;
        let listener = scrape.listener.take()?;
        let addr = scrape.addr;
        tracing::info!(metrics_addr = %addr, "metrics at http://{addr}/metrics");
        Some(tokio::spawn(prometheus::serve(
            listener,
            scrape.registry.clone(),
            stop,
        )))
    }

    /// Stops the readers: a last export to the collector, waited for at most
    /// `FLUSH_TIMEOUT` (a collector that does not answer delays no stop).
    pub async fn shutdown(mut self) {
        if let Some(flushed) = self.release() {
            let _ = tokio::time::timeout(FLUSH_TIMEOUT, flushed).await;
        }
    }

    /// Shuts the provider down off the caller's thread when a collector is
    /// involved (its last export blocks); resolves once it has.
    fn release(&mut self) -> Option<oneshot::Receiver<()>> {
        let provider = self.provider.take()?;
        self.observers.clear();
        let Some(runtime) = self.otlp.take() else {
            let _ = provider.shutdown();
            return None;
        };
        let (done, flushed) = oneshot::channel();
        std::thread::spawn(move || {
            let _ = provider.shutdown();
            let _ = done.send(());
            runtime.shutdown_background();
        });
        Some(flushed)
    }
}

impl Drop for Metrics {
    /// A server built and never run still lets go of its exporter without
    /// blocking whoever drops it.
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests;
