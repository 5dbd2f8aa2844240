//! The stdio transport: one JSON-RPC message per line on stdin and stdout, served as rmcp's
//! `AsyncRwTransport` serves it (the same line limit, the same answers to what cannot be read,
//! rmcp's own codec for everything written and for every message but one kind), except that a
//! plain `tools/call` is read straight into rmcp's type.
//!
//! Why: rmcp reads a message by trying its request types one after the other, and builds a
//! serde error (formatted, with its position searched for in the text) for each that does not
//! fit: ~13 of them for a `tools/call`, 29k of the 135k instructions of a WASM tool's whole
//! call over stdio (callgrind, `fedmcp serve --stdio`, text-tools `slugify`). Reading the
//! line as a `tools/call` first costs a fraction of that, and gives the same value: it is the
//! type rmcp's parse ends with, read by the same deserializer.

use std::sync::Arc;

use bytes::BytesMut;
use futures::SinkExt as _;
use rmcp::RoleServer;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, ErrorData, JsonRpcRequest, ServerJsonRpcMessage};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::transport::async_rw::{DEFAULT_MAX_LINE_LENGTH, JsonRpcMessageCodec, JsonRpcMessageCodecError};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, BufReader};
use tokio::sync::Mutex;
use tokio_util::codec::{Decoder as _, FramedWrite};

use super::jsonrpc::ToolCall;

type Writer<W> = FramedWrite<W, JsonRpcMessageCodec<ServerJsonRpcMessage>>;

/// The server's side of a stdio connection (see the module's doc).
pub(crate) struct StdioTransport<R, W> {
    read: BufReader<R>,
    /// The line being read: a read cancelled mid-line (`receive` is polled in a `select!`)
    /// leaves its bytes here for the next call.
    line: Vec<u8>,
    max_line_length: usize,
    /// Dropping the rest of a line that ran past `max_line_length`.
    discarding: bool,
    write: Arc<Mutex<Option<Writer<W>>>>,
    /// An "Invalid request" answer owed to the client, written before the next read.
    owed_answer: Option<OwedAnswer>,
}

/// Where writing an owed answer got to (a cancelled `receive` resumes from here).
enum OwedAnswer {
    Queued,
    Written,
}

/// How one read ended.
enum LineRead {
    Line,
    Oversized,
    Eof,
    Io(std::io::Error),
}

impl<R, W> StdioTransport<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    pub(crate) fn new(read: R, write: W) -> Self {
        Self::with_max_line_length(read, write, DEFAULT_MAX_LINE_LENGTH)
    }

    fn with_max_line_length(read: R, write: W, max_line_length: usize) -> Self {
        Self {
            read: BufReader::new(read),
            line: Vec::new(),
            max_line_length,
            discarding: false,
            write: Arc::new(Mutex::new(Some(FramedWrite::new(write, JsonRpcMessageCodec::default())))),
            owed_answer: None,
        }
    }

    /// Read one line into `self.line`, never letting it grow past `max_line_length`: bytes are
    /// taken from the buffer only as far as they fit, so an endless line costs no memory.
    /// Cancel-safe: nothing is consumed across an await.
    async fn read_line(&mut self) -> LineRead {
        loop {
            let (taken, read) = {
                let available = match self.read.fill_buf().await {
                    Ok(available) => available,
                    Err(error) => return LineRead::Io(error),
                };
                if available.is_empty() {
                    return LineRead::Eof;
                }
                let newline = available.iter().position(|&b| b == b'\n');
                let taken = newline.map_or(available.len(), |at| at + 1);
                let read = if self.discarding {
                    // The rest of a line already dropped.
                    self.discarding = newline.is_none();
                    None
                } else if self.line.len().saturating_add(taken) > self.max_line_length {
                    self.line.clear();
                    self.discarding = newline.is_none();
                    Some(LineRead::Oversized)
                } else {
                    self.line.extend_from_slice(&available[..taken]);
                    newline.map(|_| LineRead::Line)
                };
                (taken, read)
            };
            self.read.consume(taken);
            if let Some(read) = read {
                return read;
            }
        }
    }

    /// Write the answer owed to a message that was JSON but no message of the protocol.
    async fn answer_owed(&mut self) -> Option<()> {
        let Some(state) = self.owed_answer.as_mut() else { return Some(()) };
        let mut write = self.write.lock().await;
        let framed = write.as_mut()?;
        if matches!(state, OwedAnswer::Queued) {
            let answer = ServerJsonRpcMessage::error(ErrorData::invalid_request("Invalid request", None), None);
            framed.feed(answer).await.ok()?;
            *state = OwedAnswer::Written;
        }
        framed.flush().await.ok()?;
        drop(write);
        self.owed_answer = None;
        Some(())
    }
}

/// Read a line (without its `\n`): a plain `tools/call` straight into its type, anything else
/// with rmcp's codec, which skips notifications it does not know as rmcp's transport does.
fn parse(line: &[u8]) -> Result<Option<ClientJsonRpcMessage>, JsonRpcMessageCodecError> {
    if let Some(call) = plain_tool_call(line) {
        let JsonRpcRequest { jsonrpc, id, request } = call;
        let request = ClientRequest::CallToolRequest(request);
        return Ok(Some(ClientJsonRpcMessage::Request(JsonRpcRequest { jsonrpc, id, request })));
    }
    let mut framed = BytesMut::with_capacity(line.len() + 1);
    framed.extend_from_slice(line);
    framed.extend_from_slice(b"\n");
    JsonRpcMessageCodec::<ClientJsonRpcMessage>::default().decode(&mut framed)
}

/// A line that reads as a `tools/call` and can be nothing else to rmcp (one that does not
/// name the method is not tried: reading another message here would read it twice). rmcp takes an object
/// with a `result` or `error` member for no request, whatever else it has; a line that has
/// either word anywhere (or an escape, which could spell one in a key) is left to rmcp's
/// parse, as is one with a byte order mark. The method is a constant of the type, so a line
/// of any other method does not read as one.
fn plain_tool_call(line: &[u8]) -> Option<ToolCall> {
    let has = |word: &[u8]| line.windows(word.len()).any(|window| window == word);
    if !has(b"\"tools/call\"")
        || line.starts_with(b"\xEF\xBB\xBF")
        || has(b"\"result\"")
        || has(b"\"error\"")
        || has(b"\\u")
    {
        return None;
    }
    serde_json::from_slice(line).ok()
}

impl<R, W> Transport<RoleServer> for StdioTransport<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let write = self.write.clone();
        async move {
            match write.lock().await.as_mut() {
                Some(framed) => framed.send(item).await.map_err(Into::into),
                None => Err(std::io::Error::new(std::io::ErrorKind::NotConnected, "the transport is closed")),
            }
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            self.answer_owed().await?;
            match self.read_line().await {
                LineRead::Line => {}
                LineRead::Oversized => {
                    tracing::error!(max = self.max_line_length, "a message longer than the line limit was dropped");
                    continue;
                }
                LineRead::Eof => return None,
                LineRead::Io(error) => {
                    tracing::error!(%error, "reading stdin failed");
                    return None;
                }
            }
            let parsed = {
                let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                (!line.is_empty()).then(|| parse(line))
            };
            self.line.clear();
            match parsed {
                None | Some(Ok(None)) => {}
                Some(Ok(Some(message))) => return Some(message),
                // As rmcp: text that is no JSON gets no answer (there is no id to answer, and
                // answering could start an error storm with a peer that echoes); JSON that is
                // no message of the protocol gets "Invalid request".
                Some(Err(JsonRpcMessageCodecError::Serde(error))) => match error.classify() {
                    serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                        tracing::debug!(%error, "ignoring a line that is not JSON");
                    }
                    serde_json::error::Category::Data | serde_json::error::Category::Io => {
                        tracing::debug!(%error, "a message of no known shape");
                        self.owed_answer = Some(OwedAnswer::Queued);
                    }
                },
                Some(Err(error)) => {
                    tracing::error!(%error, "reading stdin failed");
                    return None;
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        drop(self.write.lock().await.take());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// rmcp's own reading of a line, as its stdio transport does it.
    fn rmcp_parse(line: &[u8]) -> Result<Option<ClientJsonRpcMessage>, JsonRpcMessageCodecError> {
        let mut framed = BytesMut::from(line);
        framed.extend_from_slice(b"\n");
        JsonRpcMessageCodec::<ClientJsonRpcMessage>::default().decode(&mut framed)
    }

    fn outcome(parsed: Result<Option<ClientJsonRpcMessage>, JsonRpcMessageCodecError>) -> String {
        match parsed {
            Ok(Some(message)) => serde_json::to_string(&message).unwrap_or_default(),
            Ok(None) => "skipped".into(),
            Err(JsonRpcMessageCodecError::Serde(error)) => format!("{:?}", error.classify()),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn every_line_reads_as_rmcp_reads_it() {
        let call =
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a__b","arguments":{"text":"Hi"}}}"#;
        let lines = [
            call,
            r#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"t","_meta":{"progressToken":3,"k":[1]},"arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","task":{"ttl":5}}}"#,
            // Not plain: rmcp decides what they are.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"},"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"},"error":{"code":1,"message":"m"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"},"\u0072esult":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"t"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list","params":{"name":"t"}}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"t"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"t"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"t"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/not-a-standard-one"}"#,
            r#"{"jsonrpc":"2.0","method":"$/lsp-thing"}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
            "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"t\"}}",
            "not json",
            "[1, 2]",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"t\"}} trailing",
        ];
        for line in lines {
            assert_eq!(outcome(parse(line.as_bytes())), outcome(rmcp_parse(line.as_bytes())), "{line}");
        }
        assert!(plain_tool_call(call.as_bytes()).is_some(), "the common call takes the short way");
        assert!(plain_tool_call(lines[3].as_bytes()).is_none());
        assert!(plain_tool_call(lines[5].as_bytes()).is_none());
    }

    #[tokio::test]
    async fn what_cannot_be_read_is_answered_or_dropped_as_rmcp_does_and_reading_goes_on() {
        let (server, mut client) = tokio::io::duplex(1 << 16);
        let (read, write) = tokio::io::split(server);
        let mut transport = StdioTransport::with_max_line_length(read, write, 256);
        let long =
            format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"x\":\"{}\"}}\n", "a".repeat(400));
        let input = [
            "not json\n",
            "\n",
            "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":[1]}\n",
            &long,
            "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"t\"}}\r\n",
        ]
        .concat();
        client.write_all(input.as_bytes()).await.unwrap();
        let Some(ClientJsonRpcMessage::Request(request)) = transport.receive().await else {
            panic!("the call after the bad lines was not read");
        };
        assert_eq!(request.id, rmcp::model::RequestId::Number(9));
        assert!(matches!(request.request, ClientRequest::CallToolRequest(_)));
        // The one line that was JSON but no message was answered, and only it.
        client.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n").await.unwrap();
        assert!(transport.receive().await.is_some());
        transport.close().await.unwrap();
        drop(transport);
        let mut written = String::new();
        client.read_to_string(&mut written).await.unwrap();
        let answers: Vec<serde_json::Value> = written.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(answers.len(), 1, "{written}");
        assert_eq!(answers[0]["error"]["code"], -32600);
        assert_eq!(answers[0]["id"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn a_partly_read_line_survives_a_cancelled_receive() {
        let (server, mut client) = tokio::io::duplex(1 << 16);
        let (read, write) = tokio::io::split(server);
        let mut transport = StdioTransport::new(read, write);
        client.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",").await.unwrap();
        let cut = tokio::time::timeout(std::time::Duration::from_millis(50), transport.receive()).await;
        assert!(cut.is_err(), "nothing whole was there to read");
        client.write_all(b"\"params\":{\"name\":\"t\"}}\n").await.unwrap();
        assert!(matches!(transport.receive().await, Some(ClientJsonRpcMessage::Request(_))));
    }
}
