//! Watching the plugins folder: a debounced signal that something in it changed.

use std::path::Path;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long the folder must stay quiet before a change is reported, so a copy in progress
/// or an editor's write-then-rename is seen once, complete.
pub(crate) const SETTLE: Duration = Duration::from_millis(30);

/// Watches a folder until dropped.
pub(crate) struct FolderWatcher {
    _watcher: RecommendedWatcher,
}

/// Start watching `dir`; `changed` receives one message per settled burst of changes.
pub(crate) fn watch(dir: &Path) -> notify::Result<(FolderWatcher, mpsc::Receiver<()>)> {
    let (raw_sender, mut raw) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(event) => event.paths.iter().any(|p| {
                p.extension().is_some_and(|ext| ext == "wasm" || ext == "toml")
                    && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
            }),
            Err(_) => true,
        };
        if relevant {
            let _ = raw_sender.send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    let (sender, changed) = mpsc::channel(1);
    tokio::spawn(async move {
        while raw.recv().await.is_some() {
            // Debounce: wait until no event has arrived for SETTLE.
            loop {
                match tokio::time::timeout(SETTLE, raw.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            // A full channel already holds a pending signal; one is enough.
            let _ = sender.try_send(());
        }
    });
    Ok((FolderWatcher { _watcher: watcher }, changed))
}
