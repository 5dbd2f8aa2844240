//! Which plugins of the host's first load are still loading: the host listens before its
//! plugins are compiled, and `/health` reports ready only once each has loaded or failed.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// The plugins of the first load not yet loaded or failed, by name.
pub struct Loading {
    pending: watch::Sender<Vec<String>>,
    /// Whether `pending` is empty, read without a lock: asked on every request of a session
    /// that waits for the first load.
    settled: AtomicBool,
}

impl Default for Loading {
    /// Nothing to load: ready.
    fn default() -> Self {
        Self { pending: watch::Sender::new(Vec::new()), settled: AtomicBool::new(true) }
    }
}

impl Loading {
    /// The first load starts with these plugins.
    pub fn start(&self, mut names: Vec<String>) {
        names.sort();
        self.settled.store(names.is_empty(), Ordering::Release);
        self.pending.send_replace(names);
    }

    /// Plugin `name` has loaded (and is served) or failed.
    pub fn done(&self, name: &str) {
        self.pending.send_modify(|pending| {
            pending.retain(|n| n != name);
            if pending.is_empty() {
                self.settled.store(true, Ordering::Release);
            }
        });
    }

    /// The plugins still loading, in name order.
    pub fn pending(&self) -> Vec<String> {
        self.pending.borrow().clone()
    }

    /// Whether every plugin of the first load has loaded or failed.
    pub fn is_ready(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    /// Wait until every plugin of the first load has loaded or failed.
    pub async fn ready(&self) {
        if self.is_ready() {
            return;
        }
        let mut pending = self.pending.subscribe();
        // The sender lives as long as `self`, so this ends only when nothing is pending.
        let _ = pending.wait_for(Vec::is_empty).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::Loading;

    #[tokio::test]
    async fn ready_once_every_plugin_has_loaded_or_failed() {
        let loading = Arc::new(Loading::default());
        assert!(loading.is_ready(), "nothing to load is ready");
        loading.start(vec!["b".into(), "a".into()]);
        assert!(!loading.is_ready());
        assert_eq!(loading.pending(), ["a", "b"]);
        let waiter = tokio::spawn({
            let loading = loading.clone();
            async move { loading.ready().await }
        });
        loading.done("a");
        assert_eq!(loading.pending(), ["b"]);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "ready before b loaded");
        loading.done("b");
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("ready").expect("joined");
        assert!(loading.is_ready() && loading.pending().is_empty());
    }
}
