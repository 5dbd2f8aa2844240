//! The host's span queue: a span is encoded on the thread that ends it, queued as bytes, and
//! posted in batches by a task on the host's tokio runtime.
//!
//! Why not the SDK's `BatchSpanProcessor` with an exporter: it moves each ended span (~0.5 KB
//! and a dozen heap blocks) through a channel to a thread of its own, which converts and frees
//! them there, cold in cache and freed across threads. With every request traced that cost
//! 11-14% of `http_calls` throughput when the instructions it ran were ~6% of a call; a
//! processor that only dropped the spans cost 1-2% (`BENCH_ONLY=otel`). Encoded where it ends,
//! a span leaves ~300 bytes in the queue and nothing to free elsewhere, and no thread is added.
//!
//! The batch processor's settings of the OpenTelemetry specification apply, with the SDK's
//! defaults: `OTEL_BSP_SCHEDULE_DELAY` (5 s), `OTEL_BSP_MAX_QUEUE_SIZE` (2,048 spans; a span
//! that finds the queue full is dropped, never waited for, and counted), `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`
//! (512; a full batch is posted at once) and `OTEL_BSP_EXPORT_TIMEOUT` (30 s for one post,
//! its retries included; `export::Collector` retries what OTLP says to retry). One batch is
//! posted at a time. JSON (`http/json`) queues the spans themselves and encodes them when
//! posting. When the host stops ([`QueueHandle::close`]) what is queued is posted, within a
//! limit, and spans that end later are dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    OTEL_BSP_EXPORT_TIMEOUT, OTEL_BSP_EXPORT_TIMEOUT_DEFAULT, OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE_DEFAULT, OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_QUEUE_SIZE_DEFAULT,
    OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_SCHEDULE_DELAY_DEFAULT, SpanData,
};
use tokio::sync::{Notify, oneshot};

use super::export::Collector;
use super::otlp::{Batches, Scope};

const MIN_SCHEDULE_DELAY: Duration = Duration::from_millis(1);

/// When spans are posted and how many wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct QueueSettings {
    pub(super) schedule_delay: Duration,
    pub(super) max_queue_size: usize,
    pub(super) max_export_batch_size: usize,
    pub(super) export_timeout: Duration,
}

impl QueueSettings {
    /// The SDK's defaults, overridden by the `OTEL_BSP_*` variables of the OpenTelemetry
    /// specification, read as the SDK reads them (whole numbers, milliseconds for times;
    /// anything else is ignored); a batch is never larger than the queue, the delay never 0.
    pub(super) fn from_env(read: impl Fn(&str) -> Option<String>) -> Self {
        let number = |name: &str| read(name).and_then(|value| value.parse::<u64>().ok());
        let max_queue_size = number(OTEL_BSP_MAX_QUEUE_SIZE).map_or(OTEL_BSP_MAX_QUEUE_SIZE_DEFAULT, |n| n as usize);
        let max_export_batch_size =
            number(OTEL_BSP_MAX_EXPORT_BATCH_SIZE).map_or(OTEL_BSP_MAX_EXPORT_BATCH_SIZE_DEFAULT, |n| n as usize);
        Self {
            // Zero would have the poster spin on the queue's lock.
            schedule_delay: number(OTEL_BSP_SCHEDULE_DELAY)
                .map_or(OTEL_BSP_SCHEDULE_DELAY_DEFAULT, Duration::from_millis)
                .max(MIN_SCHEDULE_DELAY),
            max_queue_size,
            max_export_batch_size: max_export_batch_size.min(max_queue_size).max(1),
            export_timeout: number(OTEL_BSP_EXPORT_TIMEOUT)
                .map_or(OTEL_BSP_EXPORT_TIMEOUT_DEFAULT, Duration::from_millis),
        }
    }
}

/// A span as it ended, made ready for the queue before the queue's lock is taken, and queued
/// as it is. A queue holds one kind: its protocol's.
pub(super) enum Ended {
    /// One of the host's spans, encoded: the fields of its `Span` message (`otlp::encode_fields`).
    Host(Vec<u8>),
    /// One of the host's spans as the SDK's model has it, for OTLP JSON (encoded when posted).
    Json(Box<SpanData>),
}

/// The instrumentation scope of the host's spans, the only one they have.
pub(super) const HOST_SCOPE: &str = "fedmcp";

/// The most waiting at once for the queue to be posted; one more is refused.
const MAX_WAITING: usize = 64;

/// Someone waiting until the spans queued before they asked have been posted (the host
/// stopping, [`QueueHandle::close`]).
struct Waiter {
    /// [`Pending::queued`] when they asked.
    until: u64,
    done: oneshot::Sender<()>,
}

impl Waiter {
    fn answer(self) {
        // One that stopped waiting (its limit ran out) is fine to miss.
        let _ = self.done.send(());
    }
}

#[derive(Default)]
struct Pending {
    spans: VecDeque<Ended>,
    /// Spans queued since the start, and spans taken out and posted (or tried): a waiter is
    /// answered once `posted` reaches the `queued` it saw.
    queued: u64,
    posted: u64,
    waiting: Vec<Waiter>,
    /// The host is stopping: what is queued goes out, nothing more is queued.
    stopping: bool,
    /// The poster's task has ended (its runtime shut down): nothing more will be posted.
    poster_gone: bool,
}

impl Pending {
    /// Have `done` told once what is queued now is posted; `Err` if too many wait already.
    fn wait(&mut self, done: oneshot::Sender<()>) -> Result<(), oneshot::Sender<()>> {
        // One that stopped waiting leaves, so a close that gave up on a stuck collector does
        // not keep a later one out.
        self.waiting.retain(|waiter| !waiter.done.is_closed());
        if self.all_posted() {
            let _ = done.send(());
            return Ok(());
        }
        if self.waiting.len() >= MAX_WAITING {
            return Err(done);
        }
        self.waiting.push(Waiter { until: self.queued, done });
        Ok(())
    }

    /// Whether every span queued so far has been posted (or tried); a batch being posted
    /// has left `spans` but is not posted yet.
    fn all_posted(&self) -> bool {
        self.posted == self.queued
    }

    /// Answer everyone whose spans have been posted.
    fn answer_posted(&mut self) {
        let posted = self.posted;
        for waiter in self.waiting.extract_if(.., |waiter| waiter.until <= posted) {
            waiter.answer();
        }
    }
}

struct Queue {
    pending: Mutex<Pending>,
    /// Wakes the poster: a batch is full, someone waits, or the host stops.
    wake: Notify,
    settings: QueueSettings,
    /// The scope every protobuf batch names its spans under ([`HOST_SCOPE`]).
    host_scope: Scope,
    batches: RwLock<Arc<Batches>>,
    /// Whether a span has been dropped for a full queue yet (said once).
    overflowed: AtomicBool,
}

impl Queue {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        // A panic while the lock was held leaves whole spans or none: the queue stays usable.
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// Where the host's ended spans go (see the module's documentation).
#[derive(Debug)]
pub(super) struct SpanQueue {
    queue: Arc<Queue>,
}

/// The host's hold on the queue, to post what is left when it stops.
#[derive(Debug, Clone)]
pub(super) struct QueueHandle {
    queue: Arc<Queue>,
}

impl QueueHandle {
    /// Post everything queued and stop posting; wait for it at most `limit`. Spans that end
    /// later are dropped.
    pub(super) async fn close(&self, limit: Duration) -> Result<(), &'static str> {
        let (done, posted) = oneshot::channel();
        {
            let mut pending = self.queue.pending();
            pending.stopping = true;
            if pending.poster_gone {
                return if pending.all_posted() { Ok(()) } else { Err("the task that posts spans has ended") };
            }
            if pending.wait(done).is_err() {
                return Err("too many are waiting for the queue already");
            }
        }
        self.queue.wake.notify_one();
        match tokio::time::timeout(limit, posted).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("the task that posts spans has ended"),
            Err(_) => Err("the collector did not take them in time"),
        }
    }
}

impl SpanQueue {
    /// Queue spans for `collector`, posting them from a task on `runtime`.
    pub(super) fn start(
        collector: Collector,
        settings: QueueSettings,
        runtime: &tokio::runtime::Handle,
    ) -> (Self, QueueHandle) {
        let queue = Arc::new(Queue {
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            settings,
            host_scope: Scope::new(InstrumentationScope::builder(HOST_SCOPE).build()),
            batches: RwLock::new(Arc::new(Batches::new(&Resource::builder_empty().build()))),
            overflowed: AtomicBool::new(false),
        });
        runtime.spawn(post_batches(PosterAlive(queue.clone()), collector));
        (Self { queue: queue.clone() }, QueueHandle { queue })
    }

    /// Name `resource` (the host's service) in every export from now on, spans already queued
    /// included.
    pub(super) fn set_resource(&mut self, resource: &Resource) {
        let batches = Arc::new(Batches::new(resource));
        *self.queue.batches.write().unwrap_or_else(std::sync::PoisonError::into_inner) = batches;
    }

    /// Queue one ended span, unless the queue is full (the span is dropped and counted) or the
    /// host is stopping.
    pub(super) fn push(&self, ended: Ended) {
        let settings = &self.queue.settings;
        let mut pending = self.queue.pending();
        if pending.stopping || pending.poster_gone {
            drop(pending);
            crate::metrics::span_dropped("stopped");
            return;
        }
        if pending.spans.len() >= settings.max_queue_size {
            drop(pending);
            crate::metrics::span_dropped("queue_full");
            if !self.queue.overflowed.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_queue_size = settings.max_queue_size,
                    "the span queue is full: spans are dropped until the collector takes them (said once; counted in fedmcp_spans_dropped_total)"
                );
            }
            return;
        }
        pending.spans.push_back(ended);
        pending.queued += 1;
        let full = pending.spans.len() >= settings.max_export_batch_size;
        drop(pending);
        if full {
            self.queue.wake.notify_one();
        }
    }
}

/// The poster's hold on the queue: when its task ends, however it ends (its runtime shutting
/// down drops it), those waiting for it are told at once rather than at their time limit.
struct PosterAlive(Arc<Queue>);

impl Drop for PosterAlive {
    fn drop(&mut self) {
        let mut pending = self.0.pending();
        pending.poster_gone = true;
        // A safety net: the poster answers after each post and `wait` answers at once when
        // nothing is pending, so normally none here has had its spans posted.
        pending.answer_posted();
        pending.waiting.clear();
    }
}

/// The poster: waits for a full batch, someone waiting or the schedule delay, then posts what
/// is queued a batch at a time while a batch is full, someone waits or the host stops; answers
/// each waiter once the spans queued before it are posted; ends once asked to stop and
/// everything is posted.
async fn post_batches(alive: PosterAlive, collector: Collector) {
    let queue = &*alive.0;
    let settings = queue.settings;
    loop {
        let _ = tokio::time::timeout(settings.schedule_delay, queue.wake.notified()).await;
        loop {
            let batch: Vec<Ended> = {
                let mut pending = queue.pending();
                let take = pending.spans.len().min(settings.max_export_batch_size);
                pending.spans.drain(..take).collect()
            };
            let taken = batch.len() as u64;
            if taken > 0 {
                let batches = queue.batches.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                if let Some(body) = encode(&batches, &queue.host_scope, batch) {
                    // A failure is logged by the collector (which retries what OTLP says to retry).
                    let _ = collector.post(body).await;
                }
            }
            let mut pending = queue.pending();
            pending.posted += taken;
            pending.answer_posted();
            if pending.stopping && pending.all_posted() {
                return;
            }
            let more = pending.spans.len() >= settings.max_export_batch_size
                || (!pending.spans.is_empty() && (!pending.waiting.is_empty() || pending.stopping));
            if !more {
                break;
            }
        }
    }
}

/// One batch as an export body; `None` if it cannot be encoded (said in the log).
fn encode(batches: &Batches, host_scope: &Scope, batch: Vec<Ended>) -> Option<Vec<u8>> {
    let mut encoded = Vec::with_capacity(batch.len());
    let mut json = Vec::new();
    for ended in batch {
        match ended {
            // The host's scope is the only one: index 0 of those passed below.
            Ended::Host(fields) => encoded.push((0, fields)),
            Ended::Json(span) => json.push(*span),
        }
    }
    if json.is_empty() {
        return Some(batches.protobuf(std::slice::from_ref(host_scope), &encoded));
    }
    match batches.json(json) {
        Ok(body) => Some(body),
        Err(error) => {
            tracing::warn!(%error, "spans do not encode as OTLP JSON; the batch is dropped");
            None
        }
    }
}

#[cfg(test)]
mod tests;
