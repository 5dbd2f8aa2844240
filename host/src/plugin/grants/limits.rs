//! `capabilities.memory_mb`, `timeout_ms`, `max_response_kb`, `max_events` and
//! `max_event_kb`: what a manifest asks of the host's limits, how the host's defaults and
//! ceilings (`plugins.*` in `config/host.toml`) turn that into the limits of every call, and
//! how a call's store enforces them (memory limiter, epoch deadline, event budget, response
//! cap).

use std::time::{Duration, Instant};

use wasmtime::{Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};

use crate::call::{CallError, EventBudget, InputRequest, InputRequired};
use crate::plugin::RuntimeOptions;

/// The limits a manifest asks for; `None` takes the host's default.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct LimitRequests {
    pub memory_mb: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub max_response_kb: Option<u64>,
    /// Lower the host's per-call budget of log and progress messages (count, and KiB of text).
    pub max_events: Option<u64>,
    pub max_event_kb: Option<u64>,
}

impl LimitRequests {
    /// Refuse a zero limit, which would make every call fail.
    pub(super) fn parse(
        memory_mb: Option<u64>,
        timeout_ms: Option<u64>,
        max_response_kb: Option<u64>,
        max_events: Option<u64>,
        max_event_kb: Option<u64>,
    ) -> Result<Self, String> {
        for (field, value) in [
            ("memory_mb", memory_mb),
            ("timeout_ms", timeout_ms),
            ("max_response_kb", max_response_kb),
            ("max_events", max_events),
            ("max_event_kb", max_event_kb),
        ] {
            if value == Some(0) {
                return Err(format!("capabilities.{field}: must be at least 1"));
            }
        }
        Ok(Self { memory_mb, timeout_ms, max_response_kb, max_events, max_event_kb })
    }
}

/// The resource limits of one call.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub memory_bytes: u64,
    pub timeout: Duration,
    pub max_response_bytes: usize,
    /// The call's budget of log and progress messages: how many, and their text in bytes.
    pub max_events: u64,
    pub max_event_bytes: usize,
}

fn kib_to_bytes(kib: u64) -> usize {
    usize::try_from(kib.saturating_mul(1024)).unwrap_or(usize::MAX)
}

impl Limits {
    /// What the manifest asks for, defaulted and capped by the host. Memory and time are
    /// clamped to the host's maximum; the event budget is the host's ceiling, which a manifest
    /// may only lower; the response cap has no host maximum.
    pub(crate) fn resolve(requests: &LimitRequests, options: &RuntimeOptions) -> Self {
        Self {
            memory_bytes: requests
                .memory_mb
                .unwrap_or(options.default_memory_mb)
                .min(options.max_memory_mb)
                .saturating_mul(1 << 20),
            timeout: Duration::from_millis(
                requests.timeout_ms.unwrap_or(options.default_timeout_ms).min(options.max_timeout_ms),
            ),
            max_response_bytes: kib_to_bytes(requests.max_response_kb.unwrap_or(options.default_max_response_kb)),
            max_events: requests.max_events.unwrap_or(options.max_events).min(options.max_events),
            max_event_bytes: kib_to_bytes(
                requests.max_event_kb.unwrap_or(options.max_event_kb).min(options.max_event_kb),
            ),
        }
    }

    /// The store limiter's settings: a guest growing memory past its limit traps.
    pub(in crate::plugin) fn store_limits(&self) -> StoreLimits {
        let memory = usize::try_from(self.memory_bytes).unwrap_or(usize::MAX);
        StoreLimitsBuilder::new().memory_size(memory).trap_on_grow_failure(true).build()
    }

    /// A fresh budget of log and progress messages for one call.
    pub(in crate::plugin) fn event_budget(&self) -> EventBudget {
        EventBudget::new(self.max_events, self.max_event_bytes)
    }

    /// Stop the guest at the first epoch tick past its time limit, after `timed_out` marks
    /// the store so the caller's error says why.
    pub(in crate::plugin) fn arm_deadline<T: 'static>(
        &self,
        store: &mut Store<T>,
        plugin: &str,
        timed_out: fn(&mut T),
    ) {
        let started = Instant::now();
        let timeout = self.timeout;
        let plugin = plugin.to_owned();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut store| {
            if started.elapsed() >= timeout {
                tracing::warn!(plugin = %plugin, limit_ms = timeout.as_millis() as u64, "plugin call stopped at its time limit");
                timed_out(store.data_mut());
                return Ok(UpdateDeadline::Interrupt);
            }
            // Yield so a busy guest shares the runtime thread with the host's other tasks.
            Ok(UpdateDeadline::Yield(1))
        });
    }

    /// A trap's reason, naming the memory limit when that is what stopped the guest.
    pub(in crate::plugin) fn trap_reason(&self, reason: String) -> String {
        if reason.contains("forcing a memory growth failure") || reason.contains("memory minimum size") {
            format!("memory limit of {} MiB exceeded ({reason})", self.memory_bytes >> 20)
        } else {
            reason
        }
    }

    /// Refuse a response of `size` bytes over the cap.
    pub(in crate::plugin) fn check_response_size(&self, plugin: &str, size: usize) -> Result<(), CallError> {
        if size > self.max_response_bytes {
            return Err(CallError::ResponseTooLarge {
                plugin: plugin.to_owned(),
                size,
                limit: self.max_response_bytes,
            });
        }
        Ok(())
    }
}

/// The size an input request counts for against the response cap: its requests and opaque
/// state travel to the client and back (sealed, a third larger) like a result does.
pub(in crate::plugin) fn input_required_size(input: &InputRequired) -> usize {
    input.state.as_ref().map_or(0, String::len)
        + input
            .requests
            .iter()
            .map(|(key, request)| {
                key.len()
                    + match request {
                        InputRequest::Sampling(params) | InputRequest::Elicitation(params) => {
                            crate::call::json_len(params)
                        }
                        InputRequest::Roots => 0,
                    }
            })
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{LimitRequests, Limits, input_required_size};
    use crate::call::json_len;
    use crate::call::{CallError, InputRequest, InputRequired};
    use crate::plugin::RuntimeOptions;

    #[test]
    fn json_len_is_the_length_of_the_compact_text() {
        let value = serde_json::json!({ "text": "héllo \"quoted\"\n", "n": [1, 2.5, null] });
        let text = serde_json::to_vec(&value).expect("serialisable");
        assert_eq!(json_len(&value), text.len());
    }

    #[test]
    fn the_hosts_maximum_clamps_what_a_manifest_asks() {
        let options = RuntimeOptions::default();
        let greedy = LimitRequests {
            memory_mb: Some(options.max_memory_mb * 4),
            timeout_ms: Some(options.max_timeout_ms * 4),
            max_response_kb: None,
            max_events: Some(options.max_events * 4),
            max_event_kb: Some(options.max_event_kb * 4),
        };
        let limits = Limits::resolve(&greedy, &options);
        assert_eq!(limits.memory_bytes, options.max_memory_mb << 20);
        assert_eq!(limits.timeout, Duration::from_millis(options.max_timeout_ms));
        assert_eq!(limits.max_events, options.max_events);
        assert_eq!(limits.max_event_bytes as u64, options.max_event_kb * 1024);
        assert_eq!(limits.max_response_bytes as u64, options.default_max_response_kb * 1024);
        // Asking for less is granted as asked.
        let modest = LimitRequests {
            memory_mb: Some(8),
            timeout_ms: Some(50),
            max_response_kb: Some(2),
            max_events: Some(3),
            max_event_kb: Some(1),
        };
        let limits = Limits::resolve(&modest, &options);
        assert_eq!((limits.memory_bytes, limits.timeout), (8 << 20, Duration::from_millis(50)));
        assert_eq!((limits.max_response_bytes, limits.max_events, limits.max_event_bytes), (2048, 3, 1024));
        // Nothing asked: the host's defaults.
        let limits = Limits::resolve(&LimitRequests::default(), &options);
        assert_eq!(limits.memory_bytes, options.default_memory_mb << 20);
        assert_eq!(limits.timeout, Duration::from_millis(options.default_timeout_ms));
    }

    #[test]
    fn a_zero_limit_is_refused() {
        assert_eq!(
            LimitRequests::parse(None, None, None, Some(0), None),
            Err("capabilities.max_events: must be at least 1".to_owned())
        );
        assert!(LimitRequests::parse(Some(1), Some(1), Some(1), Some(1), Some(1)).is_ok());
    }

    #[test]
    fn responses_and_input_requests_count_against_the_cap() {
        let limits = Limits::resolve(
            &LimitRequests { max_response_kb: Some(1), ..LimitRequests::default() },
            &RuntimeOptions::default(),
        );
        assert!(limits.check_response_size("p", 1024).is_ok());
        assert!(matches!(limits.check_response_size("p", 1025), Err(CallError::ResponseTooLarge { limit: 1024, .. })));
        let input = InputRequired {
            requests: vec![
                ("ab".to_owned(), InputRequest::Sampling(serde_json::json!("xyz"))),
                ("c".to_owned(), InputRequest::Roots),
            ],
            state: Some("state".to_owned()),
        };
        assert_eq!(input_required_size(&input), 5 + 2 + 5 + 1);
        assert!(limits.trap_reason("forcing a memory growth failure".to_owned()).starts_with("memory limit of"));
    }
}
