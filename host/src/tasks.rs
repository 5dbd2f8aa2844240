//! MCP tasks (SEP-2663, `io.modelcontextprotocol/tasks`): the store of the tasks this host
//! runs, each owned by the identity that created it, bounded per identity and in all, and kept
//! for its TTL. The session runs a task's plugin calls (`session/tasks.rs`); this module keeps
//! what a client can see of them: status, the questions a task waits on, and its result.
//!
//! A task is only ever visible to its owner: another identity's `tasks/get`, `tasks/update` or
//! `tasks/cancel` of it is answered exactly as one of an unknown id.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{DetailedTask, InputRequest as McpInputRequest, JsonObject, Task, TaskPayload, TaskStatus};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::federation::Peer;

/// How long a task and its result are kept, and how many tasks there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLimits {
    /// From its creation: a task still running then fails ("expired"); a finished one is
    /// forgotten (but never sooner than [`RESULT_GRACE`] after it finished).
    pub ttl: Duration,
    /// Tasks one identity may hold (running, or finished and kept).
    pub per_identity: usize,
    /// Tasks the host holds for everyone.
    pub total: usize,
}

impl Default for TaskLimits {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(300), per_identity: 64, total: 256 }
    }
}

/// The longest task id of a peer's that is passed on (ids are opaque, but a peer's must not
/// cost this host more than an id should).
const MAX_PEER_TASK_ID: usize = 128;

/// Whether a peer's task id is one this host keeps and sends back: not empty, not long,
/// printable ASCII.
fn passable_peer_task_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_PEER_TASK_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

/// How long a result stays readable after its task finished, even past the task's TTL.
pub(crate) const RESULT_GRACE: Duration = Duration::from_secs(30);

/// The poll interval a task suggests to its client.
/// Each poll is a use the gate counts against the caller's rate limit, like any request.
const POLL_INTERVAL_MS: u64 = 1_000;

/// Why a task could not be created.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CreateError {
    #[error(
        "too many tasks: this caller holds {held} (the most is {limit}, plugins.max_tasks_per_identity); a finished \
         task is forgotten {ttl_secs} s after it was created"
    )]
    PerIdentity { held: usize, limit: usize, ttl_secs: u64 },
    #[error("too many tasks: the host holds {limit} (plugins.max_tasks); try again later")]
    Total { limit: usize },
    #[error("no random task id: {0}")]
    NoRandom(String),
    #[error(
        "the peer answered with a task id this host does not pass on (empty, longer than {MAX_PEER_TASK_ID} bytes, or not printable ASCII)"
    )]
    BadPeerId,
}

/// A task id no other caller knows of, or that is not the caller's.
#[derive(Debug, thiserror::Error)]
#[error("unknown task: {0}")]
pub(crate) struct UnknownTask(pub String);

struct Entry {
    /// The identity that created the task ([`crate::auth::Identity::limit_key`]).
    owner: String,
    /// The tool the task runs, as its caller named it (what grants and the audit name).
    tool: String,
    task: Task,
    created: Instant,
    /// Set once the task has finished: its payload and when.
    terminal: Option<(TaskPayload, Instant)>,
    /// The questions the task waits on, by the keys its client answers with.
    pending: BTreeMap<String, McpInputRequest>,
    /// Answers given so far to this round's questions.
    answered: Vec<(String, Value)>,
    /// Where the round's answers go once every question has one.
    answers: Option<oneshot::Sender<Vec<(String, Value)>>>,
    /// Every key a question has had, so a key is never reused within the task.
    used_keys: HashSet<String>,
    /// This round's keys on the wire, and the plugin's key of each.
    plugin_keys: HashMap<String, String>,
    /// Stops the task's run (`tasks/cancel`, expiry).
    stop: CancellationToken,
    /// Kept this long from its creation (a peer's task: no longer than the peer keeps it).
    ttl: Duration,
    /// A task a peer runs, which this host passes requests on to.
    delegated: Option<Delegated>,
}

/// A task that a peer created for a `tools/call` this host forwarded: its `tasks/*` requests
/// go on to the peer, for the task's id there. This host keeps whose it is, and its TTL.
#[derive(Clone)]
pub(crate) struct Delegated {
    pub(crate) peer: Arc<Peer>,
    pub(crate) remote_id: String,
    /// Who the task is for, as the peer was told (the caller `_meta` of the request that
    /// created it), so that a cancel this host sends on its own is the same caller's.
    pub(crate) caller: Value,
    /// How long this host keeps it, in ms from its creation (what its `ttlMs` says here).
    pub(crate) ttl_ms: u64,
}

/// What a `tasks/*` request of a caller's task is a use of, and where it goes.
pub(crate) struct TaskRef {
    /// The tool the task runs, as its caller named it.
    pub(crate) tool: String,
    /// `Some`: the task runs on a peer.
    pub(crate) delegated: Option<Delegated>,
}

impl Entry {
    fn status(&self) -> TaskStatus {
        match &self.terminal {
            Some((payload, _)) => payload.status(),
            None if !self.pending.is_empty() => TaskStatus::InputRequired,
            None => TaskStatus::Working,
        }
    }

    fn detailed(&self) -> DetailedTask {
        let payload = match &self.terminal {
            Some((payload, _)) => payload.clone(),
            None if !self.pending.is_empty() => TaskPayload::InputRequired {
                input_requests: self.pending.iter().map(|(key, request)| (key.clone(), request.clone())).collect(),
            },
            None => TaskPayload::Working,
        };
        let mut task = self.task.clone();
        task.status = self.status();
        DetailedTask::new(task, payload)
    }

    fn touch(&mut self) {
        self.task.last_updated_at = timestamp();
    }

    /// Finish the task (if it has not finished): it keeps the first way it ended.
    fn settle(&mut self, payload: TaskPayload) -> bool {
        if self.terminal.is_some() {
            return false;
        }
        self.terminal = Some((payload, Instant::now()));
        self.pending.clear();
        self.answers = None;
        self.stop.cancel();
        self.touch();
        true
    }
}

/// The tasks of every caller of this host.
pub(crate) struct Tasks {
    limits: TaskLimits,
    entries: Mutex<HashMap<String, Entry>>,
    /// This replica's tag (`[http] replica_id`): task ids are `<tag>.<random>`, so a load
    /// balancer routes `tasks/*` (whose `Mcp-Name` header is the task id) to the replica that
    /// holds the task. `None`: plain random ids.
    replica: Option<String>,
}

/// A new task: its id, what `tools/call` answers with, and the token that stops its run.
pub(crate) struct Created {
    pub(crate) id: String,
    pub(crate) task: Task,
    pub(crate) stop: CancellationToken,
}

impl Tasks {
    pub(crate) fn new(limits: TaskLimits) -> Self {
        Self { limits, entries: Mutex::default(), replica: None }
    }

    /// The same store, creating ids tagged with `replica`.
    pub(crate) fn tagged(self, replica: Option<String>) -> Self {
        Self { replica, ..self }
    }

    pub(crate) fn limits(&self) -> TaskLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while the lock was held leaves entries that are each whole: go on with them.
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        sweep(&mut entries);
        entries
    }

    /// Create a task of `tool` for `owner`, working, visible to `get` before this returns.
    pub(crate) fn create(&self, owner: &str, tool: &str) -> Result<Created, CreateError> {
        let now = timestamp();
        let ttl_ms = u64::try_from(self.limits.ttl.as_millis()).unwrap_or(u64::MAX);
        let task = Task::new(String::new(), TaskStatus::Working, now.clone(), now)
            .with_ttl_ms(ttl_ms)
            .with_poll_interval_ms(POLL_INTERVAL_MS);
        self.insert(owner, tool, task, self.limits.ttl, None)
    }

    /// Record a task `peer` created (as its `CreateTaskResult` says) for `owner`'s call of
    /// `tool`, under an id of this host's; counted against the same limits as this host's own
    /// tasks. Kept for the shorter of the peer's TTL and this host's.
    pub(crate) fn delegate(
        &self,
        owner: &str,
        tool: &str,
        peer: Arc<Peer>,
        caller: Value,
        remote: &Task,
    ) -> Result<Created, CreateError> {
        if !passable_peer_task_id(&remote.task_id) {
            return Err(CreateError::BadPeerId);
        }
        let ttl = match remote.ttl_ms {
            Some(ms) => self.limits.ttl.min(Duration::from_millis(ms)),
            None => self.limits.ttl,
        };
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let mut task = remote.clone();
        task.ttl_ms = Some(ttl_ms);
        let delegated = Delegated { peer, remote_id: remote.task_id.clone(), caller, ttl_ms };
        self.insert(owner, tool, task, ttl, Some(delegated))
    }

    /// Whether `owner` may hold one more task now (`tasks.rs` refuses the same at creation).
    pub(crate) fn has_room(&self, owner: &str) -> bool {
        let entries = self.lock();
        entries.len() < self.limits.total
            && entries.values().filter(|entry| entry.owner == owner).count() < self.limits.per_identity
    }

    fn insert(
        &self,
        owner: &str,
        tool: &str,
        mut task: Task,
        ttl: Duration,
        delegated: Option<Delegated>,
    ) -> Result<Created, CreateError> {
        let random = random_hex().map_err(CreateError::NoRandom)?;
        let id = match &self.replica {
            Some(replica) => format!("{replica}.{random}"),
            None => random,
        };
        task.task_id = id.clone();
        let mut entries = self.lock();
        if entries.len() >= self.limits.total {
            return Err(CreateError::Total { limit: self.limits.total });
        }
        let held = entries.values().filter(|entry| entry.owner == owner).count();
        if held >= self.limits.per_identity {
            return Err(CreateError::PerIdentity {
                held,
                limit: self.limits.per_identity,
                ttl_secs: self.limits.ttl.as_secs(),
            });
        }
        let stop = CancellationToken::new();
        entries.insert(
            id.clone(),
            Entry {
                owner: owner.to_owned(),
                tool: tool.to_owned(),
                task: task.clone(),
                created: Instant::now(),
                terminal: None,
                pending: BTreeMap::new(),
                answered: Vec::new(),
                answers: None,
                used_keys: HashSet::new(),
                plugin_keys: HashMap::new(),
                stop: stop.clone(),
                ttl,
                delegated,
            },
        );
        Ok(Created { id, task, stop })
    }

    /// The tool an owner's task runs (what the gate judges a `tasks/*` request as a use of),
    /// and the peer that runs it, if one does.
    pub(crate) fn find(&self, owner: &str, id: &str) -> Result<TaskRef, UnknownTask> {
        let entries = self.lock();
        let entry = owned(&entries, owner, id)?;
        Ok(TaskRef { tool: entry.tool.clone(), delegated: entry.delegated.clone() })
    }

    /// Note that a peer's task has ended (as its `tasks/get` said): it is then kept no
    /// longer than a finished task of this host's.
    pub(crate) fn delegated_ended(&self, id: &str, status: TaskStatus) {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(id).filter(|entry| entry.delegated.is_some()) {
            let payload = match status {
                TaskStatus::Cancelled => TaskPayload::Cancelled,
                TaskStatus::Failed => TaskPayload::Failed { error: JsonObject::new() },
                _ => TaskPayload::Completed { result: JsonObject::new() },
            };
            entry.settle(payload);
        }
    }

    /// The task as its owner sees it.
    pub(crate) fn get(&self, owner: &str, id: &str) -> Result<DetailedTask, UnknownTask> {
        let entries = self.lock();
        let entry = owned(&entries, owner, id)?;
        Ok(entry.detailed())
    }

    /// Park a running task on `questions` (keyed as the plugin keyed them); the answers come
    /// through the receiver, under the plugin's keys, once every question has one. A key the task
    /// used before is given a suffix on the wire (keys are unique over a task's life). `None`:
    /// the task has ended meanwhile.
    pub(crate) fn ask(
        &self,
        id: &str,
        questions: Vec<(String, McpInputRequest)>,
    ) -> Option<oneshot::Receiver<Vec<(String, Value)>>> {
        let mut entries = self.lock();
        let entry = entries.get_mut(id).filter(|entry| entry.terminal.is_none())?;
        let (sender, receiver) = oneshot::channel();
        entry.plugin_keys.clear();
        for (key, request) in questions {
            let mut wire = key.clone();
            let mut round = 2;
            while entry.used_keys.contains(&wire) {
                wire = format!("{key}#{round}");
                round += 1;
            }
            entry.used_keys.insert(wire.clone());
            entry.plugin_keys.insert(wire.clone(), key);
            entry.pending.insert(wire, request);
        }
        entry.answered.clear();
        entry.answers = Some(sender);
        entry.touch();
        Some(receiver)
    }

    /// Take a client's answers to the task's questions: unknown or already answered keys are
    /// ignored; once every question has an answer the task runs on.
    pub(crate) fn update(&self, owner: &str, id: &str, answers: BTreeMap<String, Value>) -> Result<(), UnknownTask> {
        let mut entries = self.lock();
        let entry = owned_mut(&mut entries, owner, id)?;
        for (key, value) in answers {
            if entry.pending.remove(&key).is_some()
                && let Some(plugin_key) = entry.plugin_keys.get(&key)
            {
                entry.answered.push((plugin_key.clone(), value));
            }
        }
        if entry.pending.is_empty()
            && let Some(sender) = entry.answers.take()
        {
            let _ = sender.send(std::mem::take(&mut entry.answered));
        }
        entry.touch();
        Ok(())
    }

    /// Cancel the task: a running one ends `cancelled` at once (its call is stopped); one that
    /// has finished keeps its status.
    pub(crate) fn cancel(&self, owner: &str, id: &str) -> Result<(), UnknownTask> {
        let mut entries = self.lock();
        let entry = owned_mut(&mut entries, owner, id)?;
        entry.settle(TaskPayload::Cancelled);
        Ok(())
    }

    /// Record how the task's run ended (nothing, if it was cancelled or expired first).
    pub(crate) fn finish(&self, id: &str, payload: TaskPayload) -> bool {
        let mut entries = self.lock();
        entries.get_mut(id).is_some_and(|entry| entry.settle(payload))
    }

    /// Set a running task's status message (its latest progress message).
    pub(crate) fn status_message(&self, id: &str, message: String) {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(id).filter(|entry| entry.terminal.is_none()) {
            entry.task.status_message = Some(message);
            entry.touch();
        }
    }

    /// Fail every task still running, with `reason` (the host is shutting down): their calls
    /// stop, and their audit lines are written.
    ///
    /// The peers' tasks among them are returned, for the caller to cancel at their peers
    /// ([`cancel_at_peers`]) before the runtime goes.
    pub(crate) fn fail_open(&self, reason: &str) -> (usize, Vec<Delegated>) {
        let mut entries = self.lock();
        let mut failed = 0;
        let mut delegated = Vec::new();
        for entry in entries.values_mut() {
            if entry.settle(TaskPayload::Failed { error: error_object(-32603, reason) }) {
                failed += 1;
                delegated.extend(entry.delegated.clone());
            }
        }
        (failed, delegated)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

fn owned<'a>(entries: &'a HashMap<String, Entry>, owner: &str, id: &str) -> Result<&'a Entry, UnknownTask> {
    entries.get(id).filter(|entry| entry.owner == owner).ok_or_else(|| UnknownTask(id.to_owned()))
}

fn owned_mut<'a>(entries: &'a mut HashMap<String, Entry>, owner: &str, id: &str) -> Result<&'a mut Entry, UnknownTask> {
    entries.get_mut(id).filter(|entry| entry.owner == owner).ok_or_else(|| UnknownTask(id.to_owned()))
}

/// Fail the tasks past their TTL that still run, and forget the finished ones past it.
/// A peer's task past its TTL here is forgotten (the peer expires its own) and cancelled at
/// the peer in case it still runs.
fn sweep(entries: &mut HashMap<String, Entry>) {
    for entry in entries.values_mut() {
        if entry.terminal.is_none() && entry.created.elapsed() >= entry.ttl {
            let reason = format!("the task expired: it did not finish within its TTL of {} ms", entry.ttl.as_millis());
            entry.settle(TaskPayload::Failed { error: error_object(-32603, &reason) });
            if let Some(delegated) = &entry.delegated {
                cancel_at_peer(delegated.clone());
            }
        }
    }
    entries.retain(|_, entry| match &entry.terminal {
        Some((_, finished)) => entry.created.elapsed() < entry.ttl || finished.elapsed() < RESULT_GRACE,
        None => true,
    });
}

/// Cancel a peer's task this host no longer follows (expired here, or refused by the limits
/// after the peer created it), in the background (when a runtime runs).
pub(crate) fn cancel_at_peer(delegated: Delegated) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(cancel_one(delegated));
}

/// Cancel peers' tasks and wait for their answers, no longer than `within` (shutting down:
/// the runtime, and any cancel still on its way, goes after this).
pub(crate) async fn cancel_at_peers(delegated: Vec<Delegated>, within: Duration) {
    let all = futures::future::join_all(delegated.into_iter().map(cancel_one));
    if tokio::time::timeout(within, all).await.is_err() {
        tracing::warn!(
            within_ms = within.as_millis() as u64,
            "some peers did not acknowledge their tasks' cancel in time"
        );
    }
}

async fn cancel_one(delegated: Delegated) {
    let mut cx = crate::call::CallContext::default();
    cx.meta.insert(crate::federation::credentials::CALLER_KEY.to_owned(), delegated.caller.clone());
    if let Err(error) = delegated.peer.cancel_task(&delegated.remote_id, &cx).await {
        tracing::debug!(peer = delegated.peer.name(), %error, "cancelling a task at its peer failed");
    }
}

/// A JSON-RPC error object, as a failed task carries it.
pub(crate) fn error_object(code: i32, message: &str) -> JsonObject {
    let mut error = JsonObject::new();
    error.insert("code".to_owned(), Value::from(code));
    error.insert("message".to_owned(), Value::from(message));
    error
}

/// 16 random bytes as hex. In a task id, 128 random bits: it cannot be guessed (and is
/// checked against its owner anyway).
pub(crate) fn random_hex() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn timestamp() -> String {
    rmcp::task_manager::current_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replicas_task_ids_start_with_its_tag() {
        let tagged = Tasks::new(TaskLimits::default()).tagged(Some("r2".to_owned()));
        let created = tagged.create("alice", "t__slow").expect("created");
        let (tag, random) = created.id.split_once('.').expect("tag.random");
        assert_eq!((tag, random.len()), ("r2", 32), "{}", created.id);
        assert!(tagged.get("alice", &created.id).is_ok());
        let plain = Tasks::new(TaskLimits::default()).create("alice", "t__slow").expect("created");
        assert!(!plain.id.contains('.'), "{}", plain.id);
    }

    fn tasks(per_identity: usize, total: usize) -> Tasks {
        Tasks::new(TaskLimits { ttl: Duration::from_secs(60), per_identity, total })
    }

    fn elicitation() -> McpInputRequest {
        serde_json::from_value(serde_json::json!({
            "method": "elicitation/create",
            "params": { "message": "ok?", "requestedSchema": { "type": "object", "properties": {} } }
        }))
        .expect("an elicitation request")
    }

    #[test]
    fn a_peers_task_id_is_passed_on_only_if_short_and_printable() {
        assert!(passable_peer_task_id("7b6a87344155612003ddd3932a88ffa1"));
        assert!(passable_peer_task_id("r2.abc"));
        for bad in
            [String::new(), "x".repeat(MAX_PEER_TASK_ID + 1), "a b".to_owned(), "a\nb".to_owned(), "é".to_owned()]
        {
            assert!(!passable_peer_task_id(&bad), "{bad:?}");
        }
    }

    #[test]
    fn a_task_is_its_owners_only() {
        let tasks = tasks(4, 10);
        let created = tasks.create("alice", "t").expect("created");
        assert_eq!(tasks.get("alice", &created.id).expect("alice sees it").status(), TaskStatus::Working);
        assert!(tasks.get("bob", &created.id).is_err());
        assert!(tasks.update("bob", &created.id, BTreeMap::new()).is_err());
        assert!(tasks.cancel("bob", &created.id).is_err());
        assert_eq!(tasks.get("alice", &created.id).expect("still there").status(), TaskStatus::Working);
    }

    #[test]
    fn limits_refuse_with_the_field_to_raise() {
        let tasks = tasks(2, 3);
        tasks.create("alice", "t").expect("first");
        tasks.create("alice", "t").expect("second");
        let error = tasks.create("alice", "t").err().expect("refused");
        assert!(error.to_string().contains("plugins.max_tasks_per_identity"), "{error}");
        tasks.create("bob", "t").expect("bob's first");
        let error = tasks.create("carol", "t").err().expect("refused");
        assert!(error.to_string().contains("plugins.max_tasks"), "{error}");
        assert_eq!(tasks.len(), 3);
    }

    #[tokio::test]
    async fn answers_arrive_once_every_question_has_one_under_the_plugins_keys() {
        let tasks = tasks(4, 10);
        let created = tasks.create("alice", "t").expect("created");
        let answers = tasks
            .ask(&created.id, vec![("a".to_owned(), elicitation()), ("b".to_owned(), elicitation())])
            .expect("running");
        let seen = tasks.get("alice", &created.id).expect("visible");
        assert_eq!(seen.status(), TaskStatus::InputRequired);
        tasks.update("alice", &created.id, BTreeMap::from([("a".to_owned(), Value::from(1))])).expect("partial");
        let TaskPayload::InputRequired { input_requests } = tasks.get("alice", &created.id).expect("visible").payload
        else {
            panic!("still input required");
        };
        assert_eq!(input_requests.keys().collect::<Vec<_>>(), ["b"]);
        tasks.update("alice", &created.id, BTreeMap::from([("b".to_owned(), Value::from(2))])).expect("rest");
        let answers = tokio::time::timeout(Duration::from_secs(5), answers).await.expect("in time").expect("answered");
        assert_eq!(answers, vec![("a".to_owned(), Value::from(1)), ("b".to_owned(), Value::from(2))]);
        // A second round that asks under the same key gets another key on the wire.
        let _again = tasks.ask(&created.id, vec![("a".to_owned(), elicitation())]).expect("running");
        let TaskPayload::InputRequired { input_requests } = tasks.get("alice", &created.id).expect("visible").payload
        else {
            panic!("input required again");
        };
        assert_eq!(input_requests.keys().collect::<Vec<_>>(), ["a#2"]);
    }

    #[test]
    fn cancel_ends_a_running_task_and_leaves_a_finished_one() {
        let tasks = tasks(4, 10);
        let running = tasks.create("alice", "t").expect("created");
        tasks.cancel("alice", &running.id).expect("cancelled");
        assert!(running.stop.is_cancelled());
        assert_eq!(tasks.get("alice", &running.id).expect("kept").status(), TaskStatus::Cancelled);
        let done = tasks.create("alice", "t").expect("created");
        assert!(tasks.finish(&done.id, TaskPayload::Completed { result: JsonObject::new() }));
        tasks.cancel("alice", &done.id).expect("acknowledged");
        assert_eq!(tasks.get("alice", &done.id).expect("kept").status(), TaskStatus::Completed);
    }

    #[test]
    fn shutting_down_fails_the_open_tasks_only() {
        let tasks = tasks(4, 10);
        let open = tasks.create("alice", "t").expect("created");
        let done = tasks.create("alice", "t").expect("created");
        tasks.finish(&done.id, TaskPayload::Completed { result: JsonObject::new() });
        assert_eq!(tasks.fail_open("the host is shutting down").0, 1);
        assert!(open.stop.is_cancelled());
        let TaskPayload::Failed { error } = tasks.get("alice", &open.id).expect("kept").payload else {
            panic!("failed");
        };
        assert_eq!(error["message"], "the host is shutting down");
        assert_eq!(tasks.get("alice", &done.id).expect("kept").status(), TaskStatus::Completed);
    }

    #[test]
    fn a_task_past_its_ttl_fails_then_is_forgotten() {
        let tasks = Tasks::new(TaskLimits { ttl: Duration::from_millis(1), per_identity: 4, total: 10 });
        let created = tasks.create("alice", "t").expect("created");
        std::thread::sleep(Duration::from_millis(5));
        let seen = tasks.get("alice", &created.id).expect("kept for its grace");
        assert_eq!(seen.status(), TaskStatus::Failed);
        assert!(created.stop.is_cancelled());
    }
}
