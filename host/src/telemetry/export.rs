//! The OTLP/HTTP span exporter, posting through the host's own reqwest on the host's tokio
//! runtime rather than an HTTP client of the exporter's (which would add a second client
//! stack to the build, or a blocking client with a runtime of its own).
//!
//! The SDK's batch processor runs exports on a thread of its own and waits for each with a
//! plain executor; [`HostHttp`] hands the POST to the runtime the host started on and waits
//! for the task's result, so no tokio context is needed on that thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};

use super::config::{OtlpProtocol, TelemetrySettings};

/// How long one export may take, the collector's answer included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a collector's answer read (an OTLP answer is a few bytes; a partial-success
/// message a few hundred).
const MAX_ANSWER_BYTES: usize = 64 << 10;

/// The span exporter for `settings`, posting through the current tokio runtime.
pub(super) fn exporter(settings: &TelemetrySettings) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| anyhow::anyhow!("telemetry: traces are exported through a tokio runtime, and none is running"))?;
    crate::tls::install_default_provider();
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| anyhow::anyhow!("telemetry: cannot make an HTTP client for the collector: {e}"))?;
    let protocol = match settings.protocol {
        OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        OtlpProtocol::HttpJson => Protocol::HttpJson,
    };
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(HostHttp { client, runtime })
        .with_endpoint(settings.traces_url.clone())
        .with_protocol(protocol)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| anyhow::anyhow!("telemetry: cannot export to {}: {e}", settings.traces_url))
}

/// The host's HTTP client, driven by the host's runtime.
#[derive(Debug)]
struct HostHttp {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for HostHttp {
    async fn send_bytes(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = self.client.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body);
        // Spawned on the host's runtime: this future is polled on the SDK's export thread.
        let posted = self.runtime.spawn(async move {
            let response = request.send().await?;
            let mut answer = http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                headers.extend(response.headers().iter().map(|(name, value)| (name.clone(), value.clone())));
            }
            let mut body = response.bytes_stream();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                let room = MAX_ANSWER_BYTES.saturating_sub(bytes.len());
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if room <= chunk.len() {
                    break;
                }
            }
            Ok::<_, HttpError>(answer.body(Bytes::from(bytes))?)
        });
        let answered = posted.await.map_err(|e| -> HttpError { format!("the export task ended: {e}").into() })?;
        // The SDK is built without its own logging: say when exporting starts failing and when
        // it works again (not once per batch).
        let failure = match &answered {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("the collector answered HTTP {}", response.status())),
            Err(error) => Some(error.to_string()),
        };
        match failure {
            Some(why) if !EXPORT_FAILING.swap(true, Ordering::Relaxed) => {
                tracing::warn!(%why, "exporting traces failed; spans are dropped until the collector answers");
            }
            None if EXPORT_FAILING.swap(false, Ordering::Relaxed) => tracing::info!("exporting traces works again"),
            _ => {}
        }
        answered
    }
}

/// Whether the last export failed (see [`HostHttp::send_bytes`]).
static EXPORT_FAILING: AtomicBool = AtomicBool::new(false);
