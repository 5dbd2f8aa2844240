//! The audit log: one JSON line per request that touches a tool, resource or prompt, saying who
//! asked (and for whom), what, the decision and why, how it ended and how long it took.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::Identity;

/// Where audit lines go; `None` keeps no log.
pub struct AuditLog {
    sink: Option<Mutex<Box<dyn Write + Send>>>,
}

/// What the host decided about a request.
#[derive(Debug, Clone)]
pub(crate) enum Decision {
    Allowed,
    Denied(String),
    /// A consent question was put to the caller; `accepted` is its answer.
    Asked {
        accepted: bool,
    },
}

/// One audited request.
pub(crate) struct Record<'a> {
    /// `None`: the caller could not be identified (a refused token).
    pub identity: Option<&'a Identity>,
    pub method: &'a str,
    pub entry: &'a str,
    pub decision: Decision,
    /// `ok`, `error: ...`, `tool error`, `input required`, or nothing when not run.
    pub outcome: Option<String>,
    pub duration: Option<Duration>,
}

impl AuditLog {
    pub(crate) fn disabled() -> Self {
        Self { sink: None }
    }

    /// `-` or `stderr` for standard error; anything else is a file, appended to.
    pub(crate) fn open(target: &Path) -> std::io::Result<Self> {
        let sink: Box<dyn Write + Send> = if target == Path::new("-") || target == Path::new("stderr") {
            Box::new(std::io::stderr())
        } else {
            if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            Box::new(std::fs::OpenOptions::new().create(true).append(true).open(target)?)
        };
        Ok(Self { sink: Some(Mutex::new(sink)) })
    }

    /// Audit lines written to `sink` (tests read them back from memory).
    pub fn to_writer(sink: Box<dyn Write + Send>) -> Self {
        Self { sink: Some(Mutex::new(sink)) }
    }

    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    pub(crate) fn record(&self, record: Record<'_>) {
        let Some(sink) = &self.sink else { return };
        let line = render(&record);
        // One write per line, under the lock, so concurrent records never interleave.
        let Ok(mut sink) = sink.lock() else { return };
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        if let Err(error) = sink.write_all(&bytes).and_then(|()| sink.flush()) {
            tracing::error!(%error, "cannot write the audit log");
        }
    }
}

fn render(record: &Record<'_>) -> Value {
    let time = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let identity = record.identity.map(|identity| {
        json!({
            "sub": identity.subject,
            "iss": identity.issuer,
            "act": identity.actor,
        })
    });
    let (decision, reason, accepted) = match &record.decision {
        Decision::Allowed => ("allowed", None, None),
        Decision::Denied(reason) => ("denied", Some(reason.as_str()), None),
        Decision::Asked { accepted } => ("asked", None, Some(*accepted)),
    };
    json!({
        "time": format_rfc3339(time),
        "identity": identity,
        "method": record.method,
        "entry": record.entry,
        "decision": decision,
        "reason": reason,
        "accepted": accepted,
        "outcome": record.outcome,
        "duration_ms": record.duration.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
    })
}

/// UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn format_rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for any date after 1970.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_rfc3339() {
        assert_eq!(format_rfc3339(Duration::from_millis(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(Duration::from_millis(1_795_615_200_123)), "2026-11-25T14:00:00.123Z");
        assert_eq!(format_rfc3339(Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn a_file_log_gets_one_json_line_per_record() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit/log.jsonl");
        let log = AuditLog::open(&path).expect("open");
        let identity = Identity::local();
        for decision in [Decision::Allowed, Decision::Denied("no scope".into())] {
            log.record(Record {
                identity: Some(&identity),
                method: "tools/call",
                entry: "text__upper",
                decision,
                outcome: None,
                duration: None,
            });
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["decision"], "allowed");
        assert_eq!(lines[1]["reason"], "no scope");
        assert_eq!(lines[1]["identity"]["sub"], "local");
    }
}
