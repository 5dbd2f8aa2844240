//! The federation proxy: other MCP servers (other fedmcp hosts, or any MCP server over
//! Streamable HTTP or stdio) imported as peers.
//!
//! Each peer is one connection made with rmcp's client, supervised: it connects at start (or
//! at first use), reconnects with backoff, and publishes what the peer lists (after the
//! configured filters and the loop guard) for the catalog to merge. Calls go to the peer with
//! their `_meta`; its progress reaches the caller, cancellation reaches the peer, and an
//! input-required result (MRTR) comes back to the session like a plugin's.
//!
//! Loops: every entry a fedmcp host serves carries the path of hosts it passed through
//! (`_meta["dev.fedmcp/path"]`), like a BGP AS path. A host drops an imported entry whose path
//! holds its own id, so a cycle of imports converges instead of growing, and the drop is
//! reported. Forwarded requests carry the hosts they crossed (`_meta["dev.fedmcp/via"]`); a
//! host refuses a request that already passed through it, or that crossed too many hosts.

mod active_calls;
mod client;
pub(crate) mod config;
pub(crate) mod credentials;
pub(crate) mod loops;
mod peer;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use active_calls::{MAX_CALL_EVENT_BYTES, MAX_CALL_EVENTS};
pub(crate) use peer::{Peer, PeerListing, Relay};

use crate::auth::keys::Signer;
use crate::config::{PeerConfig, PeerCredentials};

/// How long the first request waits for peers that connect at first use.
const FIRST_USE_WAIT: Duration = Duration::from_secs(5);

/// Every configured peer of this host.
pub struct Federation {
    pub peers: Vec<Arc<Peer>>,
}

impl Federation {
    /// Start supervising each peer; connections are made in the background. `signer` mints
    /// the tokens of peers configured with `auth = "identity"`.
    pub fn start(configs: &[PeerConfig], host_id: &str, max_hops: usize, signer: Option<&Arc<Signer>>) -> Self {
        let peers = configs
            .iter()
            .map(|config| {
                let minter = match (&config.credentials, signer) {
                    (PeerCredentials::Minted { audience, scopes }, Some(signer)) => {
                        Some(Arc::new(credentials::Minter::new(signer.clone(), audience.clone(), scopes.clone())))
                    }
                    _ => None,
                };
                Peer::start(config.clone(), host_id.to_owned(), max_hops, minter)
            })
            .collect();
        Self { peers }
    }

    /// `(up, down)` for `/health`.
    pub(crate) fn health(&self) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for peer in &self.peers {
            let (is_up, report) = peer.health();
            if is_up { up.push(report) } else { down.push(report) }
        }
        (up, down)
    }

    /// Each peer's name and whether it is connected, for `/metrics`.
    pub(crate) fn up_by_name(&self) -> Vec<(String, bool)> {
        self.peers.iter().map(|peer| (peer.name().to_owned(), peer.health().0)).collect()
    }

    /// Connect the peers configured to connect at first use, and give them a moment, so
    /// that the first list a client asks for already holds their entries.
    pub(crate) async fn wake(&self) {
        let woken: Vec<_> = self.peers.iter().filter(|peer| peer.wake()).collect();
        for peer in woken {
            peer.first_attempt(FIRST_USE_WAIT).await;
        }
    }
}
