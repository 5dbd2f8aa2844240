//! What this host presents to a peer: a short-lived token it mints with its own key for each
//! caller it forwards (`sub` = the caller, `act.sub` = this host), refreshed before it expires.
//!
//! rmcp's HTTP client sends one bearer token per transport; this wrapper picks the token per
//! message instead, from the caller the session wrote into the request's `_meta` (a key it
//! removes before the request leaves).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::stream::BoxStream;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, GetMeta, JsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use sse_stream::Sse;

use crate::auth::keys::{Signer, TokenRequest};

/// The `_meta` key that carries the forwarded caller's subject from the session to the peer's
/// HTTP client. It never leaves this host.
pub const CALLER_KEY: &str = "dev.fedmcp/caller";

/// How long a minted token lives, and how long before its end it is replaced.
const TOKEN_TTL: Duration = Duration::from_secs(300);
const REFRESH_BEFORE: Duration = Duration::from_secs(60);
/// Cached tokens kept per peer; past this the cache starts over.
const MAX_CACHED: usize = 1024;

/// Mints and caches this host's tokens for one peer.
pub struct Minter {
    signer: Arc<Signer>,
    audience: String,
    scopes: Vec<String>,
    cache: Mutex<HashMap<String, (String, SystemTime)>>,
}

impl Minter {
    pub fn new(signer: Arc<Signer>, audience: String, scopes: Vec<String>) -> Self {
        Self { signer, audience, scopes, cache: Mutex::default() }
    }

    /// A token for `caller` (this host itself when `None`).
    pub fn token_for(&self, caller: Option<&str>) -> Result<String, String> {
        let subject = caller.unwrap_or(self.signer.name());
        let now = SystemTime::now();
        if let Ok(cache) = self.cache.lock()
            && let Some((token, expires)) = cache.get(subject)
            && *expires > now + REFRESH_BEFORE
        {
            return Ok(token.clone());
        }
        let request = TokenRequest {
            subject: subject.to_owned(),
            audience: self.audience.clone(),
            scopes: self.scopes.clone(),
            ttl: TOKEN_TTL,
            actor: caller.is_some().then(|| self.signer.name().to_owned()),
        };
        let (token, expires) = self.signer.mint(&request).map_err(|e| e.to_string())?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(subject.to_owned(), (token.clone(), expires));
        }
        Ok(token)
    }
}

/// rmcp's reqwest client for a peer: with this host's token on every request when it has a
/// minter (else the transport's static token, if any), and with the causes of a failed request
/// in its error (a certificate the peer's CA did not sign, say), which rmcp's message omits.
#[derive(Clone)]
pub struct PeerHttpClient {
    pub inner: reqwest::Client,
    pub minter: Option<Arc<Minter>>,
}

type Error = StreamableHttpError<reqwest::Error>;

/// An error and what caused it, outermost first ("error sending request" alone says little).
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A transport-level failure with its causes spelled out; HTTP answers pass unchanged.
fn explained<T>(result: Result<T, Error>) -> Result<T, Error> {
    result.map_err(|error| match error {
        StreamableHttpError::Client(error) if error.status().is_none() => {
            StreamableHttpError::Io(std::io::Error::other(with_causes(&error)))
        }
        other => other,
    })
}

impl PeerHttpClient {
    fn token(&self, caller: Option<&str>, fallback: Option<String>) -> Result<Option<String>, Error> {
        let Some(minter) = &self.minter else { return Ok(fallback) };
        minter.token_for(caller).map(Some).map_err(|e| {
            StreamableHttpError::Io(std::io::Error::other(format!("cannot mint a token for the peer: {e}")))
        })
    }

    /// The token for a message, with the caller's marker taken out of it.
    fn token_for_message(
        &self,
        message: &mut ClientJsonRpcMessage,
        fallback: Option<String>,
    ) -> Result<Option<String>, Error> {
        let caller = match message {
            JsonRpcMessage::Request(request) => request.request.get_meta_mut().remove(CALLER_KEY),
            _ => None,
        };
        self.token(caller.as_ref().and_then(|c| c.as_str()), fallback)
    }
}

impl StreamableHttpClient for PeerHttpClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        mut message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let token = self.token_for_message(&mut message, auth_header)?;
        explained(self.inner.post_message(uri, message, session_id, token, custom_headers).await)
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        mut message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let token = self.token_for_message(&mut message, auth_header)?;
        explained(
            self.inner
                .post_message_with_max_sse_event_size(
                    uri,
                    message,
                    session_id,
                    token,
                    custom_headers,
                    max_sse_event_size,
                )
                .await,
        )
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        mut message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let token = self.token_for_message(&mut message, auth_header)?;
        explained(
            self.inner.post_message_with_response_limits(uri, message, session_id, token, custom_headers, limits).await,
        )
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Error> {
        let token = self.token(None, auth_header)?;
        explained(self.inner.delete_session(uri, session_id, token, custom_headers).await)
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let token = self.token(None, auth_header)?;
        explained(self.inner.get_stream(uri, session_id, last_event_id, token, custom_headers).await)
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let token = self.token(None, auth_header)?;
        explained(
            self.inner
                .get_stream_with_max_sse_event_size(
                    uri,
                    session_id,
                    last_event_id,
                    token,
                    custom_headers,
                    max_sse_event_size,
                )
                .await,
        )
    }
}
