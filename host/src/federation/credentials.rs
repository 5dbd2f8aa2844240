//! What this host presents to a peer: a short-lived token it mints with its own key for each
//! caller it forwards, refreshed before it expires. The token names the caller as its issuer
//! knew it: `sub` = the caller's subject, `sub_id` = the caller's issuer and subject (RFC 9493
//! `iss_sub`), `act.sub` = this host (RFC 8693), so two callers with the same subject from
//! two issuers stay two principals at the peer.
//!
//! rmcp's HTTP client sends one bearer token per transport; this wrapper picks the token per
//! message instead, from the caller the session wrote into the request's `_meta` (a key it
//! removes before the request leaves).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, GetMeta, JsonRpcMessage, RequestId};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sse_stream::Sse;

use super::client::StreamMark;
use crate::auth::Identity;
use crate::auth::keys::{Signer, TokenRequest};

/// The `_meta` key that carries the forwarded caller (a [`Caller`]) from the session to the
/// peer's HTTP client. It never leaves this host.
pub(crate) const CALLER_KEY: &str = "dev.fedmcp/caller";

/// Who a forwarded request is for: the caller's subject and the issuer that named it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Caller {
    pub subject: String,
    /// `None` for this host's local user (stdio, or HTTP without `[auth]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

impl Caller {
    /// The caller under [`CALLER_KEY`]: an object, or (what sessions wrote before callers
    /// carried their issuer) a bare subject, which is a caller without an issuer.
    fn from_meta(value: &Value) -> Option<Self> {
        serde_json::from_value(value.clone()).ok()
    }
}

impl From<&Identity> for Caller {
    fn from(identity: &Identity) -> Self {
        Self { subject: identity.subject.clone(), issuer: identity.issuer.clone() }
    }
}

impl From<&str> for Caller {
    /// A subject alone: a caller without an issuer, as the local user is.
    fn from(subject: &str) -> Self {
        Self { subject: subject.to_owned(), issuer: None }
    }
}

impl From<&String> for Caller {
    fn from(subject: &String) -> Self {
        Self::from(subject.as_str())
    }
}

/// The value the session puts under [`CALLER_KEY`] for a request of `identity`.
pub(crate) fn caller_meta(identity: &Identity) -> Value {
    serde_json::to_value(Caller::from(identity)).unwrap_or(Value::Null)
}

/// How long a minted token lives, and how long before its end it is replaced.
const TOKEN_TTL: Duration = Duration::from_secs(300);
const REFRESH_BEFORE: Duration = Duration::from_secs(60);
/// Cached tokens kept per peer; past this the cache starts over.
const MAX_CACHED: usize = 1024;

/// What a cached token was minted for. The actor keeps this host's own token (no actor) apart
/// from a caller's whose subject happens to be this host's name; the issuer keeps callers with
/// the same subject from different issuers apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    issuer: Option<String>,
    subject: String,
    actor: Option<String>,
}

/// Mints and caches this host's tokens for one peer.
pub(crate) struct Minter {
    signer: Arc<Signer>,
    audience: String,
    scopes: Vec<String>,
    cache: Mutex<HashMap<TokenKey, (String, SystemTime)>>,
}

impl Minter {
    pub(crate) fn new(signer: Arc<Signer>, audience: String, scopes: Vec<String>) -> Self {
        Self { signer, audience, scopes, cache: Mutex::default() }
    }

    /// A token for `caller` (this host itself when `None`).
    pub(crate) fn token_for(&self, caller: Option<&Caller>) -> Result<String, String> {
        let key = match caller {
            Some(caller) => TokenKey {
                issuer: caller.issuer.clone(),
                subject: caller.subject.clone(),
                actor: Some(self.signer.name().to_owned()),
            },
            None => TokenKey { issuer: None, subject: self.signer.name().to_owned(), actor: None },
        };
        let now = SystemTime::now();
        if let Ok(cache) = self.cache.lock()
            && let Some((token, expires)) = cache.get(&key)
            && *expires > now + REFRESH_BEFORE
        {
            return Ok(token.clone());
        }
        let request = TokenRequest {
            subject: key.subject.clone(),
            audience: self.audience.clone(),
            scopes: self.scopes.clone(),
            ttl: TOKEN_TTL,
            actor: key.actor.clone(),
        };
        let (token, expires) = self.signer.mint_for(&request, key.issuer.as_deref()).map_err(|e| e.to_string())?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(key, (token.clone(), expires));
        }
        Ok(token)
    }
}

/// rmcp's reqwest client for a peer: with this host's token on every request when it has a
/// minter (else the transport's static token, if any), and with the causes of a failed request
/// in its error (a certificate the peer's CA did not sign, say), which rmcp's message omits.
#[derive(Clone)]
pub(crate) struct PeerHttpClient {
    pub inner: reqwest::Client,
    pub minter: Option<Arc<Minter>>,
    /// Marks the peer's log messages with the request whose response stream they came on.
    pub mark: Arc<StreamMark>,
}

type Error = StreamableHttpError<reqwest::Error>;

/// An error and what caused it, outermost first ("error sending request" alone says little).
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
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
    fn token(&self, caller: Option<&Caller>, fallback: Option<String>) -> Result<Option<String>, Error> {
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
        // A caller that cannot be read is refused, never taken for this host itself (whose own
        // token carries no actor and would speak for the host).
        let caller = match caller.as_ref().map(|value| Caller::from_meta(value).ok_or(value)) {
            None => None,
            Some(Ok(caller)) => Some(caller),
            Some(Err(value)) => {
                let message = format!("the caller of a forwarded request is unreadable ({value}); not sent");
                return Err(StreamableHttpError::Io(std::io::Error::other(message)));
            }
        };
        self.token(caller.as_ref(), fallback)
    }

    /// The peer's answer to a POST, its log messages marked with the request they answer.
    fn marked(
        &self,
        request: Option<RequestId>,
        response: Result<StreamableHttpPostResponse, Error>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        match (explained(response)?, request) {
            (StreamableHttpPostResponse::Sse(stream, session), Some(request)) => {
                let mark = self.mark.clone();
                let stream = stream.map(move |event| event.map(|event| mark.mark(event, &request))).boxed();
                Ok(StreamableHttpPostResponse::Sse(stream, session))
            }
            (other, _) => Ok(other),
        }
    }
}

/// The id of a request message (the response stream of its POST belongs to it).
fn request_id(message: &ClientJsonRpcMessage) -> Option<RequestId> {
    match message {
        JsonRpcMessage::Request(request) => Some(request.id.clone()),
        _ => None,
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
        let request = request_id(&message);
        self.marked(request, self.inner.post_message(uri, message, session_id, token, custom_headers).await)
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
        let request = request_id(&message);
        self.marked(
            request,
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
        let request = request_id(&message);
        self.marked(
            request,
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn minter() -> (tempfile::TempDir, Minter) {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = crate::auth::keys::generate(dir.path(), "host-a").expect("keys");
        let signer = Signer::load("host-a", &files.private).expect("signer");
        (dir, Minter::new(Arc::new(signer), "host-b".into(), vec!["*".into()]))
    }

    fn claims(token: &str) -> Value {
        let payload = token.split('.').nth(1).unwrap_or_default();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64");
        serde_json::from_slice(&bytes).expect("JSON claims")
    }

    fn caller(subject: &str, issuer: Option<&str>) -> Caller {
        Caller { subject: subject.into(), issuer: issuer.map(str::to_owned) }
    }

    #[test]
    fn callers_with_the_same_subject_from_two_issuers_get_two_tokens_naming_their_issuer() {
        let (_dir, minter) = minter();
        let one = minter.token_for(Some(&caller("alice", Some("https://idp-one")))).expect("token");
        let two = minter.token_for(Some(&caller("alice", Some("https://idp-two")))).expect("token");
        assert_ne!(one, two, "two principals shared a cached token");
        assert_eq!(claims(&one)["sub"], "alice");
        assert_eq!(
            claims(&one)["sub_id"],
            serde_json::json!({ "format": "iss_sub", "iss": "https://idp-one", "sub": "alice" })
        );
        assert_eq!(claims(&two)["sub_id"]["iss"], "https://idp-two");
        assert_eq!(claims(&two)["act"]["sub"], "host-a");
        // The same caller again: the cached token.
        assert_eq!(minter.token_for(Some(&caller("alice", Some("https://idp-one")))).expect("token"), one);
        // A caller without an issuer (the local user) is yet another principal, with no sub_id.
        let local = minter.token_for(Some(&caller("alice", None))).expect("token");
        assert!(local != one && local != two);
        assert!(claims(&local).get("sub_id").is_none(), "{}", claims(&local));
    }

    #[test]
    fn a_caller_named_like_this_host_never_gets_the_hosts_own_token() {
        let (_dir, minter) = minter();
        let own = minter.token_for(None).expect("token");
        assert!(claims(&own).get("act").is_none(), "{}", claims(&own));
        for issuer in [None, Some("https://idp-one")] {
            let namesake = minter.token_for(Some(&caller("host-a", issuer))).expect("token");
            assert_ne!(namesake, own, "a caller named host-a got the host's own token");
            assert_eq!(claims(&namesake)["act"]["sub"], "host-a");
        }
        // And the other way round: the host's own token, asked for after them, is its own.
        let again = minter.token_for(None).expect("token");
        assert!(claims(&again).get("act").is_none(), "{}", claims(&again));
    }

    #[test]
    fn the_caller_key_carries_subject_and_issuer_and_nothing_else_counts() {
        let identity = Identity { issuer: Some("https://idp-one".into()), ..Identity::local() };
        let meta = caller_meta(&identity);
        assert_eq!(meta, serde_json::json!({ "subject": "local", "issuer": "https://idp-one" }));
        assert_eq!(Caller::from_meta(&meta), Some(caller("local", Some("https://idp-one"))));
        assert_eq!(Caller::from_meta(&serde_json::json!("bob")), None, "a bare subject names no caller");
        assert_eq!(Caller::from_meta(&serde_json::json!(42)), None);
    }
}
