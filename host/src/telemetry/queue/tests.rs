use std::sync::Mutex as StdMutex;
use std::time::{Instant, SystemTime};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message;
use tokio::sync::oneshot::error::TryRecvError;

use super::*;
use crate::telemetry::TelemetrySettings;
use crate::telemetry::otlp::{SpanFields, encode_fields};

/// The span names of each export a collector on 127.0.0.1 received, in order.
type Received = Arc<StdMutex<Vec<Vec<String>>>>;

/// A collector that decodes every export and keeps its span names; `hang` never answers.
async fn collector(hang: bool) -> (String, Received) {
    let (open, gate) = tokio::sync::watch::channel(true);
    let (endpoint, received) = gated_collector(hang, gate).await;
    drop(open);
    (endpoint, received)
}

/// [`collector`], answering each export only once `gate` is (or has been) true.
async fn gated_collector(hang: bool, gate: tokio::sync::watch::Receiver<bool>) -> (String, Received) {
    let received: Received = Arc::default();
    let kept = received.clone();
    let take = move |body: axum::body::Bytes| async move {
        let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
        let names = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|span| span.name.clone())
            .collect();
        kept.lock().expect("the exports").push(names);
        // A gate whose sender is gone stays as it was last set.
        let _ = gate.clone().wait_for(|open| *open).await;
        if hang {
            std::future::pending::<()>().await;
        }
        ""
    };
    let router = axum::Router::new().route("/v1/traces", axum::routing::post(take));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}"), received)
}

fn settings(delay_ms: u64, queue: usize, batch: usize) -> QueueSettings {
    QueueSettings {
        schedule_delay: Duration::from_millis(delay_ms),
        max_queue_size: queue,
        max_export_batch_size: batch,
        export_timeout: Duration::from_secs(5),
    }
}

fn start(endpoint: &str, queue: QueueSettings) -> (SpanQueue, QueueHandle) {
    let telemetry = TelemetrySettings::new(endpoint, "queue-test").expect("a collector URL");
    let collector = Collector::new(&telemetry, queue.export_timeout).expect("an HTTP client");
    SpanQueue::start(collector, queue, &tokio::runtime::Handle::current())
}

/// One of the host's spans named `name`, encoded as the host encodes it where it ends.
fn host_span(name: &str) -> Ended {
    let context = SpanContext::new(
        TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736_u128),
        SpanId::from(0x00f067aa0ba902b7_u64),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    let now = SystemTime::now();
    Ended::Host(encode_fields(&SpanFields {
        context: &context,
        parent_span_id: SpanId::INVALID,
        parent_is_remote: false,
        name,
        kind: &SpanKind::Server,
        start: now,
        end: now,
        attributes: &[],
        status: &Status::Unset,
    }))
}

fn push_spans(spans: &SpanQueue, names: impl IntoIterator<Item = &'static str>) {
    for name in names {
        spans.push(host_span(name));
    }
}

async fn wait_for(received: &Received, exports: usize) -> Vec<Vec<String>> {
    for _ in 0..200 {
        let now = received.lock().expect("the exports").clone();
        if now.len() >= exports {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    received.lock().expect("the exports").clone()
}

#[tokio::test]
async fn a_full_batch_is_posted_at_once_and_the_rest_on_schedule() {
    let (endpoint, received) = collector(false).await;
    // A schedule delay longer than the test waits for the full batches.
    let (spans, handle) = start(&endpoint, settings(60_000, 100, 3));
    push_spans(&spans, ["a", "b", "c", "d", "e", "f", "g"]);
    let exports = wait_for(&received, 2).await;
    assert_eq!(exports, [vec!["a", "b", "c"], vec!["d", "e", "f"]]);
    // What is left goes out when the host stops (or when the delay is up).
    handle.close(Duration::from_secs(5)).await.expect("the rest is posted");
    assert_eq!(received.lock().expect("the exports").last(), Some(&vec!["g".to_owned()]));
    // A span that ends once the queue is closed is not posted.
    push_spans(&spans, ["late"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(received.lock().expect("the exports").len(), 3);
}

#[tokio::test]
async fn a_partial_batch_is_posted_after_the_schedule_delay() {
    let (endpoint, received) = collector(false).await;
    let (spans, _handle) = start(&endpoint, settings(100, 100, 50));
    push_spans(&spans, ["one", "two"]);
    assert_eq!(wait_for(&received, 1).await, [vec!["one", "two"]]);
}

#[tokio::test]
async fn a_full_queue_drops_new_spans_without_waiting() {
    // The collector takes the first batch and never answers: the queue fills behind it.
    let (endpoint, received) = collector(true).await;
    let (spans, handle) = start(&endpoint, settings(60_000, 4, 2));
    push_spans(&spans, ["a", "b"]);
    wait_for(&received, 1).await;
    push_spans(&spans, ["c", "d", "e", "f", "g", "h", "i"]);
    {
        let pending = spans.queue.pending();
        assert_eq!(pending.spans.len(), 4, "the queue holds at most max_queue_size spans");
        // Counted as queued, a dropped span would be waited for by a close that can never end.
        assert_eq!(pending.queued, 6, "dropped spans are not counted as queued");
    }
    assert!(
        handle.close(Duration::from_millis(300)).await.is_err(),
        "a collector that never answers is not waited for past the limit"
    );
}

#[tokio::test]
async fn an_export_names_the_resource_set_and_the_hosts_scope() {
    let (endpoint, _received) = collector(false).await;
    let (mut spans, _handle) = start(&endpoint, settings(60_000, 100, 50));
    spans.set_resource(&Resource::builder_empty().with_service_name("queue-test-service").build());
    let batches = spans.queue.batches.read().expect("the batch encoder").clone();
    let body = encode(&batches, &spans.queue.host_scope, vec![host_span("named")]).expect("a protobuf body");
    let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("an OTLP protobuf export");
    let [resource_spans] = request.resource_spans.as_slice() else { panic!("one resource: {request:?}") };
    let service = resource_spans
        .resource
        .iter()
        .flat_map(|resource| &resource.attributes)
        .find(|attribute| attribute.key == "service.name")
        .and_then(|attribute| attribute.value.as_ref());
    let expected = AnyValue { value: Some(any_value::Value::StringValue("queue-test-service".to_owned())) };
    assert_eq!(service, Some(&expected));
    let [scope_spans] = resource_spans.scope_spans.as_slice() else { panic!("one scope: {request:?}") };
    assert_eq!(scope_spans.scope.as_ref().map(|scope| scope.name.as_str()), Some(HOST_SCOPE));
    let names: Vec<&str> = scope_spans.spans.iter().map(|span| span.name.as_str()).collect();
    assert_eq!(names, ["named"]);
}

#[test]
fn a_close_asked_after_the_posting_task_ended_says_so_at_once() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
    let (endpoint, _received) = runtime.block_on(collector(false));
    let (spans, handle) = runtime.block_on(async { start(&endpoint, settings(60_000, 100, 50)) });
    push_spans(&spans, ["stranded"]);
    drop(runtime);
    assert!(spans.queue.pending().poster_gone);
    // A span that ends now is dropped (nothing would post it), not queued.
    push_spans(&spans, ["later"]);
    assert_eq!(spans.queue.pending().spans.len(), 1);
    // Without the poster's guard this would wait the whole limit and report a timeout.
    let closing = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let closed = closing.block_on(handle.close(Duration::from_secs(30)));
    assert_eq!(closed, Err("the task that posts spans has ended"));
}

#[test]
fn settings_read_the_sdks_variables() {
    let defaults = QueueSettings::from_env(|_| None);
    assert_eq!(
        defaults,
        QueueSettings {
            schedule_delay: Duration::from_secs(5),
            max_queue_size: 2048,
            max_export_batch_size: 512,
            export_timeout: Duration::from_secs(30),
        }
    );
    let set = |name: &str| match name {
        "OTEL_BSP_SCHEDULE_DELAY" => Some("100".to_owned()),
        "OTEL_BSP_MAX_QUEUE_SIZE" => Some("64".to_owned()),
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" => Some("1000".to_owned()),
        "OTEL_BSP_EXPORT_TIMEOUT" => Some("soon".to_owned()),
        _ => None,
    };
    let read = QueueSettings::from_env(set);
    assert_eq!(read.schedule_delay, Duration::from_millis(100));
    assert_eq!(read.max_queue_size, 64);
    assert_eq!(read.max_export_batch_size, 64, "a batch is never larger than the queue");
    assert_eq!(read.export_timeout, Duration::from_secs(30), "a value that is no number is ignored");
    let zero = QueueSettings::from_env(|name| (name == "OTEL_BSP_MAX_EXPORT_BATCH_SIZE").then(|| "0".to_owned()));
    assert_eq!(zero.max_export_batch_size, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_answered_once_what_was_queued_before_it_is_posted_while_more_keeps_coming() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let (endpoint, received) = gated_collector(false, gate).await;
    // A queue the producer below keeps full: were the waiter to wait for an empty queue, it
    // would wait as long as spans keep ending.
    let (spans, _handle) = start(&endpoint, settings(60_000, 1_000, 2));
    push_spans(&spans, ["before"]);
    let (done, mut answered) = oneshot::channel();
    assert!(spans.queue.pending().wait(done).is_ok(), "room to wait");
    spans.queue.wake.notify_one();
    // "before" is held at the collector's gate while more spans end.
    assert_eq!(wait_for(&received, 1).await, [vec!["before"]]);
    push_spans(&spans, ["after"; 1_000]);
    open.send_replace(true);
    let started = Instant::now();
    let mut ended = 0_u64;
    let mut answer = answered.try_recv();
    while answer == Err(TryRecvError::Empty) && started.elapsed() < Duration::from_secs(8) && ended < 50_000_000 {
        push_spans(&spans, ["after"]);
        ended += 1;
        answer = answered.try_recv();
    }
    assert_eq!(answer, Ok(()), "the waiter was still waiting after {ended} more spans ended");
}

#[test]
fn callers_that_gave_up_waiting_do_not_keep_the_hosts_stop_out() {
    let mut pending = Pending { queued: 1, ..Pending::default() };
    let mut receivers = Vec::new();
    for _ in 0..MAX_WAITING {
        let (done, answered) = oneshot::channel();
        assert!(pending.wait(done).is_ok());
        receivers.push(answered);
    }
    let (stop, _stopped) = oneshot::channel();
    let Err(stop) = pending.wait(stop) else { panic!("a waiter beyond the bound was taken") };
    // Their limit ran out (a stuck collector) and they stopped listening: they leave, and the
    // stop can wait.
    drop(receivers);
    assert!(pending.wait(stop).is_ok());
    assert_eq!(pending.waiting.len(), 1);
}

#[test]
fn one_with_nothing_queued_is_answered_at_once() {
    let mut pending = Pending::default();
    let (done, mut answered) = oneshot::channel();
    assert!(pending.wait(done).is_ok());
    assert_eq!(answered.try_recv(), Ok(()));
    assert!(pending.waiting.is_empty());
}
