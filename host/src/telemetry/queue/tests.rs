use std::sync::Mutex as StdMutex;

use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use prost::Message;

use super::*;
use crate::telemetry::TelemetrySettings;

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

fn start(endpoint: &str, queue: QueueSettings) -> (SdkTracerProvider, QueueHandle, Arc<Queue>) {
    let telemetry = TelemetrySettings::new(endpoint, "queue-test").expect("a collector URL");
    let collector = Collector::new(&telemetry, queue.export_timeout).expect("an HTTP client");
    let (processor, handle) = SpanQueue::start(collector, queue, &tokio::runtime::Handle::current());
    let inner = processor.queue.clone();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
    (provider, handle, inner)
}

fn end_spans(provider: &SdkTracerProvider, names: impl IntoIterator<Item = &'static str>) {
    let tracer = provider.tracer("fedmcp");
    for name in names {
        tracer.start(name).end();
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
    let (provider, handle, _) = start(&endpoint, settings(60_000, 100, 3));
    end_spans(&provider, ["a", "b", "c", "d", "e", "f", "g"]);
    let exports = wait_for(&received, 2).await;
    assert_eq!(exports, [vec!["a", "b", "c"], vec!["d", "e", "f"]]);
    // What is left goes out when the host stops (or when the delay is up).
    handle.close(Duration::from_secs(5)).await.expect("the rest is posted");
    assert_eq!(received.lock().expect("the exports").last(), Some(&vec!["g".to_owned()]));
    // A span that ends once the queue is closed is not posted.
    end_spans(&provider, ["late"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(received.lock().expect("the exports").len(), 3);
}

#[tokio::test]
async fn a_partial_batch_is_posted_after_the_schedule_delay() {
    let (endpoint, received) = collector(false).await;
    let (provider, _handle, _) = start(&endpoint, settings(100, 100, 50));
    end_spans(&provider, ["one", "two"]);
    assert_eq!(wait_for(&received, 1).await, [vec!["one", "two"]]);
}

#[tokio::test]
async fn unsampled_spans_are_not_posted() {
    let (endpoint, received) = collector(false).await;
    let telemetry = TelemetrySettings::new(&endpoint, "queue-test").expect("a collector URL");
    let collector = Collector::new(&telemetry, Duration::from_secs(5)).expect("an HTTP client");
    let (processor, handle) =
        SpanQueue::start(collector, settings(60_000, 100, 10), &tokio::runtime::Handle::current());
    let provider = SdkTracerProvider::builder().with_span_processor(processor).with_sampler(Sampler::AlwaysOff).build();
    end_spans(&provider, ["dropped"]);
    handle.close(Duration::from_secs(5)).await.expect("closed");
    assert!(received.lock().expect("the exports").is_empty());
}

#[tokio::test]
async fn a_full_queue_drops_new_spans_without_waiting() {
    // The collector takes the first batch and never answers: the queue fills behind it.
    let (endpoint, received) = collector(true).await;
    let (provider, handle, queue) = start(&endpoint, settings(60_000, 4, 2));
    end_spans(&provider, ["a", "b"]);
    wait_for(&received, 1).await;
    end_spans(&provider, ["c", "d", "e", "f", "g", "h", "i"]);
    assert_eq!(queue.pending().spans.len(), 4, "the queue holds at most max_queue_size spans");
    assert!(
        handle.close(Duration::from_millis(300)).await.is_err(),
        "a collector that never answers is not waited for past the limit"
    );
}

#[test]
fn a_flush_asked_after_the_posting_task_ended_says_so_at_once() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
    let (endpoint, _received) = runtime.block_on(collector(false));
    let (provider, _handle, queue) = runtime.block_on(async { start(&endpoint, settings(60_000, 100, 50)) });
    end_spans(&provider, ["stranded"]);
    drop(runtime);
    assert!(queue.pending().poster_gone);
    // A span that ends now is dropped (nothing would post it), not queued.
    end_spans(&provider, ["later"]);
    assert_eq!(queue.pending().spans.len(), 1);
    // Without the poster's guard this would wait the whole limit and report a timeout.
    match provider.force_flush() {
        Err(OTelSdkError::InternalFailure(why)) => assert!(why.contains("still queued"), "{why}"),
        other => panic!("expected the poster's end to be reported, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_flush_from_a_blocking_thread_waits_for_the_post() {
    let (endpoint, received) = collector(false).await;
    let (provider, _handle, _) = start(&endpoint, settings(60_000, 100, 50));
    end_spans(&provider, ["flushed"]);
    let flushing = provider.clone();
    let flushed = tokio::task::spawn_blocking(move || flushing.force_flush()).await.expect("the flush ran");
    assert!(flushed.is_ok(), "{flushed:?}");
    assert_eq!(*received.lock().expect("the exports"), [vec!["flushed"]]);
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
async fn a_flush_is_answered_once_what_was_queued_before_it_is_posted_while_more_keeps_coming() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let (endpoint, received) = gated_collector(false, gate).await;
    // A queue the producer below keeps full: were the flush to wait for an empty queue, it
    // would wait as long as spans keep ending.
    let (provider, _handle, queue) = start(&endpoint, settings(60_000, 1_000, 2));
    end_spans(&provider, ["before"]);
    let flushing = provider.clone();
    let flush = tokio::task::spawn_blocking(move || flushing.force_flush());
    // The flush waits (for "before", held at the collector's gate) before more spans end.
    for _ in 0..2_000 {
        if !queue.pending().waiting.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!queue.pending().waiting.is_empty(), "the flush did not start waiting");
    end_spans(&provider, ["after"; 1_000]);
    open.send_replace(true);
    let started = std::time::Instant::now();
    let mut ended = 0_u64;
    while !flush.is_finished() && started.elapsed() < Duration::from_secs(8) && ended < 50_000_000 {
        end_spans(&provider, ["after"]);
        ended += 1;
    }
    assert!(flush.is_finished(), "the flush was still waiting after {ended} more spans ended");
    assert!(flush.await.expect("the flush ran").is_ok());
    let names: Vec<String> = received.lock().expect("the exports").iter().flatten().cloned().collect();
    assert!(names.contains(&"before".to_owned()), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_flush_on_a_runtime_worker_does_not_starve_the_poster() {
    let (endpoint, received) = collector(false).await;
    let (provider, _handle, _) = start(&endpoint, settings(60_000, 100, 50));
    end_spans(&provider, ["from a worker"]);
    // Called on the runtime's only worker: the poster and the collector, queued behind this
    // task on that worker, must still run while it waits.
    let flushing = provider.clone();
    let flushed = tokio::spawn(async move { flushing.force_flush() }).await.expect("the flush ran");
    assert!(flushed.is_ok(), "{flushed:?}");
    assert_eq!(*received.lock().expect("the exports"), [vec!["from a worker"]]);
}

#[test]
fn callers_that_gave_up_waiting_do_not_keep_the_hosts_stop_out() {
    let mut pending = Pending { queued: 1, ..Pending::default() };
    let mut flags = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..MAX_WAITING {
        let (done, answered) = mpsc::channel();
        let gave_up = Arc::new(AtomicBool::new(false));
        assert!(pending.wait(Answer::Thread(done, gave_up.clone())).is_ok());
        flags.push(gave_up);
        receivers.push(answered);
    }
    let (stop, _stopped) = tokio::sync::oneshot::channel();
    let Err(stop) = pending.wait(Answer::Task(stop)) else { panic!("a waiter beyond the bound was taken") };
    // Their time ran out (a stuck collector): they leave, and the stop can wait.
    for gave_up in &flags {
        gave_up.store(true, Ordering::Relaxed);
    }
    assert!(pending.wait(stop).is_ok());
    assert_eq!(pending.waiting.len(), 1);
}

#[test]
fn one_with_nothing_queued_is_answered_at_once() {
    let mut pending = Pending::default();
    let (done, answered) = mpsc::channel();
    assert!(pending.wait(Answer::Thread(done, Arc::default())).is_ok());
    assert_eq!(answered.try_recv(), Ok(()));
    assert!(pending.waiting.is_empty());
}
