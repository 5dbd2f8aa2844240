//! Posting batches of spans to an OTLP/HTTP collector through the host's own reqwest, so no
//! second HTTP client stack is built. Headers for the collector (an API key) come from
//! `OTEL_EXPORTER_OTLP_TRACES_HEADERS` or `OTEL_EXPORTER_OTLP_HEADERS`, as OTLP exporters read
//! them.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

use super::config::{OtlpProtocol, TelemetrySettings};

/// The most of a collector's answer read (an OTLP answer is a few bytes; a partial-success
/// message a few hundred).
const MAX_ANSWER_BYTES: usize = 64 << 10;
/// The variables that would ask for compressed exports (not supported: said in the log).
const COMPRESSION_VARIABLES: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"];
/// The longest `Retry-After` taken (as opentelemetry-otlp caps it); the export timeout bounds it too.
const MAX_RETRY_AFTER_SECONDS: u64 = 600;
/// The variables collector headers are read from, the first one set winning.
const HEADER_VARIABLES: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"];

/// Retries of one post, OTLP's recommended policy (as opentelemetry-otlp has it): at most 3,
/// after 100 ms doubling to 1.6 s plus up to 100 ms of jitter, or after what a throttling
/// answer's `Retry-After` asks (in seconds); all within the export timeout.
const RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_millis(1600);
const MAX_JITTER_MS: u64 = 100;

/// Posts export bodies to one collector.
#[derive(Debug)]
pub(super) struct Collector {
    client: reqwest::Client,
    url: String,
    pub(super) protocol: OtlpProtocol,
    headers: HeaderMap,
    /// How long one export may take, its retries and the collector's answer included.
    timeout: Duration,
}

/// Why one attempt at a post failed.
enum Failure {
    /// No answer (refused, reset, timed out): worth another try.
    Network(String),
    /// An answer other than success, with the delay a `Retry-After` asks for.
    Status(StatusCode, Option<Duration>),
}

impl Failure {
    /// How long to wait before the next try, if OTLP says to try again.
    fn retry_after(&self, backoff: Duration) -> Option<Duration> {
        match self {
            Failure::Network(_) => Some(backoff),
            Failure::Status(status, asked) => match status.as_u16() {
                429 | 503 => Some(asked.unwrap_or(backoff)),
                502 | 504 => Some(backoff),
                _ => None,
            },
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Network(error) => f.write_str(error),
            Failure::Status(status, _) => write!(f, "the collector answered HTTP {status}"),
        }
    }
}

impl Collector {
    /// The collector `settings` names; one export may take `timeout`, retries and answer included.
    pub(super) fn new(settings: &TelemetrySettings, timeout: Duration) -> anyhow::Result<Self> {
        crate::tls::install_default_provider();
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .map_err(|e| anyhow::anyhow!("telemetry: cannot make an HTTP client for the collector: {e}"))?;
        let variable = HEADER_VARIABLES.iter().find_map(|name| std::env::var(name).ok().map(|value| (*name, value)));
        let mut headers = match variable {
            Some((name, value)) => collector_headers(name, &value),
            None => HeaderMap::new(),
        };
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, HeaderValue::from_static(concat!("fedmcp/", env!("CARGO_PKG_VERSION"))));
        }
        let content_type = match settings.protocol {
            OtlpProtocol::HttpProtobuf => "application/x-protobuf",
            OtlpProtocol::HttpJson => "application/json",
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        for variable in COMPRESSION_VARIABLES {
            if std::env::var(variable).is_ok_and(|value| !value.is_empty() && value != "none") {
                tracing::warn!(variable, "compression of trace exports is not supported; spans are sent uncompressed");
            }
        }
        Ok(Self { client, url: settings.traces_url.clone(), protocol: settings.protocol, headers, timeout })
    }

    /// Post one export body, retrying as OTLP says. The SDK is built without its own logging:
    /// this says when exporting starts failing and when it works again (not once per batch).
    pub(super) async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let body = Bytes::from(body);
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut retries = 0;
        let answered = loop {
            let left = self.timeout.saturating_sub(started.elapsed());
            let failure = match self.send(body.clone(), left).await {
                Ok(answer) => break Ok(answer),
                Err(failure) => failure,
            };
            let wait = match failure.retry_after(backoff) {
                Some(wait) if retries < RETRIES => wait,
                _ => break Err(failure.to_string()),
            };
            let wait = if wait == backoff { (wait + jitter()).min(MAX_BACKOFF) } else { wait };
            if started.elapsed() + wait >= self.timeout {
                break Err(format!("{failure} (no time left to try again)"));
            }
            tracing::debug!(%failure, ?wait, "posting spans failed; trying again");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            retries += 1;
        };
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

    /// One attempt, given `left` of the export's time.
    async fn send(&self, body: Bytes, left: Duration) -> Result<Vec<u8>, Failure> {
        let request = self.client.post(&self.url).headers(self.headers.clone()).timeout(left).body(body);
        let response = request.send().await.map_err(|e| Failure::Network(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let asked = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(|seconds| Duration::from_secs(seconds.min(MAX_RETRY_AFTER_SECONDS)));
            return Err(Failure::Status(status, asked));
        }
        let mut body = response.bytes_stream();
        let mut answer = Vec::new();
        while let Some(chunk) = body.next().await {
            // The collector took the batch (its status says so): an answer cut short only
            // loses its partial-success details, and a retry would send the spans twice.
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    tracing::debug!(%error, "the collector's answer was cut short; its spans were taken");
                    break;
                }
            };
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

/// Up to [`MAX_JITTER_MS`] milliseconds, so hosts that failed together do not retry together.
fn jitter() -> Duration {
    let mut bytes = [0; 8];
    // Without a random source the retry is simply not spread.
    let _ = getrandom::fill(&mut bytes);
    Duration::from_millis(u64::from_le_bytes(bytes) % (MAX_JITTER_MS + 1))
}

/// `key=value` pairs separated by commas, values percent-encoded (the OTLP exporter
/// specification's format). A pair that is no valid HTTP header is left out and said so.
fn collector_headers(variable: &str, value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for pair in value.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
        let parsed = pair.split_once('=').and_then(|(name, value)| {
            let value = value.trim();
            if value.is_empty() {
                return None;
            }
            let value = percent_encoding::percent_decode_str(value).decode_utf8().unwrap_or(Cow::Borrowed(value));
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
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A collector on 127.0.0.1 answering each post with the next of `statuses` (then 200),
    /// with `Retry-After: 0` on the throttling ones; the collector and how many posts came.
    async fn answering(statuses: &'static [u16]) -> (Collector, Arc<AtomicUsize>) {
        let posts = Arc::new(AtomicUsize::new(0));
        let counted = posts.clone();
        let answer = move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let status = statuses.get(n).copied().unwrap_or(200);
            async move {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                (status, [(RETRY_AFTER, "0")], "")
            }
        };
        let router = axum::Router::new().route("/v1/traces", axum::routing::post(answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let address = listener.local_addr().expect("local address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        let settings = TelemetrySettings::new(&format!("http://{address}"), "retry-test").expect("a collector URL");
        (Collector::new(&settings, Duration::from_secs(10)).expect("a client"), posts)
    }

    #[tokio::test]
    async fn what_otlp_calls_transient_is_tried_again_and_the_rest_is_not() {
        let (collector, posts) = answering(&[503, 502, 429]).await;
        assert_eq!(collector.post(vec![1, 2, 3]).await, Ok(()));
        assert_eq!(posts.load(Ordering::SeqCst), 4, "three retries, then the post that worked");

        let (collector, posts) = answering(&[400]).await;
        let refused = collector.post(vec![1]).await.expect_err("a bad request is not tried again");
        assert!(refused.contains("400"), "{refused}");
        assert_eq!(posts.load(Ordering::SeqCst), 1);

        let (collector, posts) = answering(&[503, 503, 503, 503, 503]).await;
        assert!(collector.post(vec![1]).await.is_err(), "at most three retries");
        assert_eq!(posts.load(Ordering::SeqCst), 4);
    }

    /// A collector that takes each post with 200 and closes the connection in the middle of
    /// its answer's body; how many posts it took.
    async fn cut_short() -> (Collector, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let address = listener.local_addr().expect("local address");
        let posts = Arc::new(AtomicUsize::new(0));
        let counted = posts.clone();
        tokio::spawn(async move {
            while let Ok((mut connection, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut chunk = [0; 4096];
                // Headers, then the body its Content-Length announces.
                while let Ok(n) = connection.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                    let Some(end) = text.find("\r\n\r\n") else { continue };
                    let length = text
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .and_then(|value| value.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = connection.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc").await;
                drop(connection);
            }
        });
        let settings = TelemetrySettings::new(&format!("http://{address}"), "cut-test").expect("a collector URL");
        (Collector::new(&settings, Duration::from_secs(10)).expect("a client"), posts)
    }

    #[tokio::test]
    async fn a_batch_the_collector_took_is_not_sent_again_when_its_answer_is_cut_short() {
        let (collector, posts) = cut_short().await;
        assert_eq!(collector.post(vec![1, 2, 3]).await, Ok(()));
        assert_eq!(posts.load(Ordering::SeqCst), 1, "a 2xx status means the spans were taken");
    }

    #[test]
    fn collector_headers_read_as_otlp_exporters_read_them() {
        let headers =
            collector_headers("V", " api-key = se%20cret ,x-team=a=b,, broken, bad name=1,x-raw=%zz,x-empty= ");
        assert_eq!(headers.get("api-key").map(HeaderValue::as_bytes), Some(&b"se cret"[..]));
        assert_eq!(headers.get("x-team").map(HeaderValue::as_bytes), Some(&b"a=b"[..]));
        assert_eq!(headers.get("x-raw").map(HeaderValue::as_bytes), Some(&b"%zz"[..]));
        assert_eq!(headers.len(), 3, "{headers:?}");
    }
}
