//! The Prometheus scrape endpoint: `GET /metrics` on `HERA_METRICS_ADDR`, in
//! the text exposition format. opentelemetry-prometheus reads the server's
//! meter provider (the one OTLP pushes from) into a registry at each scrape;
//! a plain HTTP/1.1 server on hyper (already under tonic) answers.
use std::{convert::Infallible, net::SocketAddr, time::Duration};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header,
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use opentelemetry_prometheus::PrometheusExporter;
use prometheus::{Encoder as _, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::MetricsError;

/// A scraper that does not finish sending its request by then is cut off.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed accept (out of file descriptors, say), before the next.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The reader Prometheus scrapes through: it collects the provider's
/// metrics into `registry` whenever the registry is gathered.
pub(super) fn exporter(registry: &Registry) -> Result<PrometheusExporter, MetricsError> {
    opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        // Scope labels would repeat "hera-migrate" on every series.
        .scope_info_enabled(false)
        .build()
        .map_err(|e| MetricsError::Other(format!("the Prometheus exporter: {e}")))
}

/// Binds the endpoint (port 0: any free port), so that a busy port stops
/// the start before the database is opened.
pub(super) async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    let bind_error = |source| MetricsError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    Ok(listener)
}

/// Every metric of `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> Result<String, MetricsError> {
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .map_err(|e| MetricsError::Other(format!("encoding metrics: {e}")))?;
    String::from_utf8(text).map_err(|e| MetricsError::Other(e.to_string()))
}

/// Answers scrapes until `stop`; open connections are dropped then.
pub(super) async fn serve(listener: TcpListener, registry: Registry, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "the metrics endpoint could not accept a connection");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
        };
        let (registry, stop) = (registry.clone(), stop.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = respond(&request, &registry);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

fn respond(request: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match render(registry) {
        Ok(text) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        Err(error) => {
            tracing::warn!(%error, "rendering metrics failed");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering metrics failed\n",
            )
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
