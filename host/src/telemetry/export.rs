//! Posting batches of spans to an OTLP/HTTP collector through the host's own reqwest, so no
//! second HTTP client stack is built. Headers for the collector (an API key) come from
//! `OTEL_EXPORTER_OTLP_TRACES_HEADERS` or `OTEL_EXPORTER_OTLP_HEADERS`, as OTLP exporters read
//! them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

use super::config::{OtlpProtocol, TelemetrySettings};

/// The most of a collector's answer read (an OTLP answer is a few bytes; a partial-success
/// message a few hundred).
const MAX_ANSWER_BYTES: usize = 64 << 10;
/// The variables collector headers are read from, the first one set winning.
const HEADER_VARIABLES: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"];

/// Posts export bodies to one collector.
#[derive(Debug)]
pub(super) struct Collector {
    client: reqwest::Client,
    url: String,
    pub(super) protocol: OtlpProtocol,
    headers: HeaderMap,
}

impl Collector {
    /// The collector `settings` names; one export may take `timeout`, its answer included.
    pub(super) fn new(settings: &TelemetrySettings, timeout: Duration) -> anyhow::Result<Self> {
        crate::tls::install_default_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| anyhow::anyhow!("telemetry: cannot make an HTTP client for the collector: {e}"))?;
        let variable = HEADER_VARIABLES.iter().find_map(|name| std::env::var(name).ok().map(|value| (*name, value)));
        let mut headers = match variable {
            Some((name, value)) => collector_headers(name, &value),
            None => HeaderMap::new(),
        };
        headers.insert(USER_AGENT, HeaderValue::from_static(concat!("fedmcp/", env!("CARGO_PKG_VERSION"))));
        let content_type = match settings.protocol {
            OtlpProtocol::HttpProtobuf => "application/x-protobuf",
            OtlpProtocol::HttpJson => "application/json",
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        Ok(Self { client, url: settings.traces_url.clone(), protocol: settings.protocol, headers })
    }

    /// Post one export body. The SDK is built without its own logging: this says when exporting
    /// starts failing and when it works again (not once per batch).
    pub(super) async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let answered = self.send(body).await;
        match answered {
            Ok(answer) => {
                if EXPORT_FAILING.swap(false, Ordering::Relaxed) {
                    tracing::info!("exporting traces works again");
                }
                self.partial_success(&answer);
                Ok(())
            }
            Err(why) => {
                if !EXPORT_FAILING.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%why, "exporting traces failed; spans are dropped until the collector answers");
                }
                Err(why)
            }
        }
    }

    async fn send(&self, body: Vec<u8>) -> Result<Vec<u8>, String> {
        let request = self.client.post(&self.url).headers(self.headers.clone()).body(body);
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the collector answered HTTP {status}"));
        }
        let mut body = response.bytes_stream();
        let mut answer = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let room = MAX_ANSWER_BYTES.saturating_sub(answer.len());
            answer.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        Ok(answer)
    }

    /// A collector that took the batch but rejected some spans says so in its answer.
    fn partial_success(&self, answer: &[u8]) {
        let response = match self.protocol {
            OtlpProtocol::HttpProtobuf => ExportTraceServiceResponse::decode(answer).ok(),
            OtlpProtocol::HttpJson => serde_json::from_slice::<ExportTraceServiceResponse>(answer).ok(),
        };
        let Some(partial) = response.and_then(|r| r.partial_success) else { return };
        if partial.rejected_spans > 0 || !partial.error_message.is_empty() {
            let message = crate::text::clip(partial.error_message, 512);
            tracing::debug!(rejected = partial.rejected_spans, %message, "the collector rejected spans");
            if !PARTIAL_SEEN.swap(true, Ordering::Relaxed) {
                tracing::warn!(rejected = partial.rejected_spans, %message, "the collector rejected spans (said once; more at debug level)");
            }
        }
    }
}

/// `key=value` pairs separated by commas, values percent-encoded (the OTLP exporter
/// specification's format). A pair that is no valid HTTP header is left out and said so.
fn collector_headers(variable: &str, value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for pair in value.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
        let parsed = pair.split_once('=').and_then(|(name, value)| {
            let value = value.trim();
            let value = percent_encoding::percent_decode_str(value).decode_utf8().map_or(value.into(), |v| v);
            Some((HeaderName::try_from(name.trim()).ok()?, HeaderValue::try_from(value.as_ref()).ok()?))
        });
        match parsed {
            Some((name, value)) => {
                headers.insert(name, value);
            }
            // The pair may hold a secret: name only the variable.
            None => {
                tracing::warn!(variable, "a collector header is not `name=value` with a valid name and value; left out")
            }
        }
    }
    headers
}

/// Whether the last export failed (see [`Collector::post`]).
static EXPORT_FAILING: AtomicBool = AtomicBool::new(false);
/// Whether a collector has rejected spans yet.
static PARTIAL_SEEN: AtomicBool = AtomicBool::new(false);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_headers_read_as_otlp_exporters_read_them() {
        let headers = collector_headers("V", " api-key = se%20cret ,x-team=a=b,, broken, bad name=1,x-raw=%zz ");
        assert_eq!(headers.get("api-key").map(HeaderValue::as_bytes), Some(&b"se cret"[..]));
        assert_eq!(headers.get("x-team").map(HeaderValue::as_bytes), Some(&b"a=b"[..]));
        assert_eq!(headers.get("x-raw").map(HeaderValue::as_bytes), Some(&b"%zz"[..]));
        assert_eq!(headers.len(), 3, "{headers:?}");
    }
}
