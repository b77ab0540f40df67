//! JSON-RPC 2.0 as MCP's Streamable HTTP transport carries it: one message (or a batch: an
//! array of them) POSTed, the answer either JSON or an SSE stream whose `data:` events are
//! messages (the responses among them; MCP 2025-03-26 lets a server put several in one event or
//! JSON array). Answers are read to their end (at most [`MAX_ANSWER`] bytes) so the connection
//! goes back to the pool.

use std::borrow::Cow;

use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::McpError;

/// The largest answer read (DBHub's results are bounded by its tools' `max_rows`).
pub const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// JSON-RPC "invalid params".
pub const INVALID_PARAMS: i64 = -32602;

/// A failed request: a JSON-RPC error (its code; the message is the server's text and is not
/// passed on), or anything else.
#[derive(Debug)]
pub enum Failure {
    /// The server answered with a JSON-RPC error of this code.
    Rpc(i64),
    /// Transport, HTTP or an answer that is not the expected one.
    Mcp(McpError),
}

impl From<McpError> for Failure {
    fn from(e: McpError) -> Self {
        Self::Mcp(e)
    }
}

impl Failure {
    /// As an [`McpError`] (a JSON-RPC error is a protocol failure unless the caller knows its
    /// code).
    pub fn into_mcp(self) -> McpError {
        match self {
            Self::Rpc(code) => McpError::Protocol(format!("JSON-RPC error {code}")),
            Self::Mcp(e) => e,
        }
    }
}

#[derive(Serialize)]
struct Request<'a, P> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    params: &'a P,
}

/// Request `id` calling `method` with `params`, encoded.
pub fn request<P: Serialize>(id: u64, method: &str, params: &P) -> Result<Vec<u8>, McpError> {
    serde_json::to_vec(&Request {
        jsonrpc: "2.0",
        id,
        method,
        params,
    })
    .map_err(|e| McpError::Protocol(format!("encoding {method}: {e}")))
}

/// Notification `method` (no parameters), encoded.
pub fn notification(method: &str) -> Vec<u8> {
    serde_json::json!({"jsonrpc": "2.0", "method": method})
        .to_string()
        .into_bytes()
}

/// POSTs `body`; the answer when its status is a success.
pub async fn post(
    http: &reqwest::Client,
    url: &Url,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Result<Answer, McpError> {
    let res = http
        .post(url.clone())
        .headers(headers.clone())
        .body(body)
        .send()
        .await
        .map_err(transport)?;
    match res.status() {
        s if s.is_success() => Ok(Answer { res }),
        StatusCode::UNAUTHORIZED => Err(McpError::Unavailable("DBHub refused the token".into())),
        // DBHub's DNS-rebinding guard: the Host it was reached by is not in its allowed hosts.
        StatusCode::FORBIDDEN => Err(McpError::Unavailable(
            "DBHub refused the request (host not allowed)".into(),
        )),
        s => Err(McpError::Unavailable(format!(
            "DBHub answered HTTP {}",
            s.as_u16()
        ))),
    }
}

fn transport(e: reqwest::Error) -> McpError {
    if e.is_connect() || e.is_timeout() {
        return McpError::Unavailable("DBHub is not reachable".into());
    }
    if e.is_request() || e.is_body() || e.is_decode() {
        return McpError::Unavailable("DBHub closed the connection".into());
    }
    tracing::debug!(error = %e.without_url(), "unclassified DBHub transport error");
    McpError::Unavailable("DBHub transport error".into())
}

/// A successful HTTP answer, not read yet.
pub struct Answer {
    res: reqwest::Response,
}

#[derive(serde::Deserialize)]
#[serde(bound = "R: DeserializeOwned")]
struct Reply<R> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    result: Option<R>,
    #[serde(default)]
    error: Option<RpcError>,
}

#[derive(serde::Deserialize)]
struct RpcError {
    code: i64,
}

/// The id of the request message `text` answers; None when it is no response (a request or a
/// notification from the server) or not JSON-RPC.
pub fn response_id(text: &str) -> Option<u64> {
    let head: Reply<serde::de::IgnoredAny> = serde_json::from_str(text).ok()?;
    head.method.is_none().then_some(head.id?.as_u64()?)
}

fn too_large() -> McpError {
    McpError::Protocol(format!(
        "DBHub's answer is larger than {} MiB",
        MAX_ANSWER >> 20
    ))
}

fn utf8(bytes: &[u8]) -> Result<&str, McpError> {
    std::str::from_utf8(bytes).map_err(|_| McpError::Protocol("the answer is not UTF-8".into()))
}

/// Hands each message in `text` (one JSON-RPC message, or an array of them) to `each`.
fn each_message(text: &str, each: &mut impl FnMut(&str)) -> Result<(), McpError> {
    if !text.trim_start().starts_with('[') {
        each(text);
        return Ok(());
    }
    let all: Vec<Value> = serde_json::from_str(text)
        .map_err(|_| McpError::Protocol("not a JSON-RPC batch of the expected shape".into()))?;
    for message in all {
        each(&message.to_string());
    }
    Ok(())
}

/// Hands the messages of each event in `stream` to `each` (events without data, such as a
/// stream's priming event or keep-alives, carry none).
fn each_event(stream: &str, each: &mut impl FnMut(&str)) -> Result<(), McpError> {
    for data in events(stream).iter().filter(|d| !d.trim().is_empty()) {
        each_message(data, each)?;
    }
    Ok(())
}

/// Whether `buf[i]` ends an SSE event (the line feed of the blank line after it).
fn ends_event(buf: &[u8], i: usize) -> bool {
    buf[i] == b'\n' && (buf[i - 1] == b'\n' || (i >= 2 && &buf[i - 2..i] == b"\n\r"))
}

/// Where the complete events of an SSE stream end in `buf` (just after the blank line closing
/// the last of them, or the first when `first`), looking from `from` on; None when no event
/// ends there.
fn events_end(buf: &[u8], from: usize, first: bool) -> Option<usize> {
    let mut at = from.saturating_sub(2).max(1)..buf.len();
    let found = if first {
        at.find(|&i| ends_event(buf, i))
    } else {
        at.rfind(|&i| ends_event(buf, i))
    };
    found.map(|i| i + 1)
}

impl Answer {
    /// Its headers.
    pub fn headers(&self) -> &HeaderMap {
        self.res.headers()
    }

    fn is_sse(&self) -> bool {
        self.res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
    }

    /// Hands each message of the answer to `each` as soon as it is complete (an SSE stream's
    /// events as they arrive, a JSON answer at its end), reading the answer to its end. In a
    /// stream the limit of [`MAX_ANSWER`] bytes is per event: an event larger than that is
    /// skipped, the others still handed on, and the stream then ends in the error (so in a
    /// batch only the call whose answer was too large goes without one).
    pub async fn messages(mut self, mut each: impl FnMut(&str)) -> Result<(), McpError> {
        let sse = self.is_sse();
        let (mut buf, mut seen, mut skipping, mut skipped) = (Vec::new(), 0, false, false);
        while let Some(chunk) = self.res.chunk().await.map_err(transport)? {
            buf.extend_from_slice(&chunk);
            if !sse {
                if buf.len() > MAX_ANSWER {
                    return Err(too_large());
                }
                continue;
            }
            if skipping {
                let Some(end) = events_end(&buf, seen, true) else {
                    // Keep the last two bytes: the blank line ending the event may straddle.
                    buf.drain(..buf.len().saturating_sub(2));
                    seen = buf.len();
                    continue;
                };
                buf.drain(..end);
                (skipping, seen) = (false, 0);
            }
            match events_end(&buf, seen, false) {
                Some(end) => {
                    each_event(utf8(&buf[..end])?, &mut each)?;
                    buf.drain(..end);
                    seen = 0;
                }
                None => seen = buf.len(),
            }
            if buf.len() > MAX_ANSWER {
                (skipping, skipped) = (true, true);
                buf.drain(..buf.len() - 2);
                seen = buf.len();
            }
        }
        if !sse {
            return each_message(utf8(&buf)?, &mut each);
        }
        if !skipping {
            each_event(utf8(&buf)?, &mut each)?;
        }
        if skipped {
            return Err(too_large());
        }
        Ok(())
    }

    /// Reads the answer to its end (for a notification: nothing is expected in it).
    pub async fn finish(self) -> Result<(), McpError> {
        self.messages(|_| {}).await
    }

    /// The result of request `id`, read from the answer (other messages in it, such as
    /// notifications, are passed over).
    pub async fn reply<R: DeserializeOwned>(self, id: u64) -> Result<R, Failure> {
        let mut got = None;
        let read = self
            .messages(|text| {
                if got.is_none() {
                    got = outcome(text, id).transpose();
                }
            })
            .await;
        match got {
            Some(done) => done,
            None => {
                read?;
                Err(McpError::Protocol("the stream ended without the response".into()).into())
            }
        }
    }
}

/// What message `text` says about request `id`: its result or error, or None when it is
/// another message (a notification, a request from the server, another id).
pub fn outcome<R: DeserializeOwned>(text: &str, id: u64) -> Result<Option<R>, Failure> {
    let reply: Reply<R> = serde_json::from_str(text)
        .map_err(|_| McpError::Protocol("not a JSON-RPC message of the expected shape".into()))?;
    if reply.method.is_some() || reply.id.as_ref().and_then(Value::as_u64) != Some(id) {
        return Ok(None);
    }
    match (reply.result, reply.error) {
        (_, Some(e)) => Err(Failure::Rpc(e.code)),
        (Some(r), None) => Ok(Some(r)),
        (None, None) => {
            Err(McpError::Protocol("a response with neither result nor error".into()).into())
        }
    }
}

/// The data of each event of an SSE stream (`data:` lines joined by newlines; other fields and
/// comments skipped).
fn events(stream: &str) -> Vec<Cow<'_, str>> {
    let (mut out, mut data) = (Vec::new(), None::<Cow<'_, str>>);
    for line in stream.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            out.extend(data.take());
            continue;
        }
        let value = match line.strip_prefix("data") {
            Some("") => "",
            Some(rest) => match rest.strip_prefix(':') {
                Some(v) => v.strip_prefix(' ').unwrap_or(v),
                None => continue,
            },
            None => continue,
        };
        data = Some(match data.take() {
            None => Cow::Borrowed(value),
            Some(before) => Cow::Owned(format!("{before}\n{value}")),
        });
    }
    out.extend(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_join_data_lines_and_skip_other_fields() {
        let stream = "event: message\r\ndata: {\"a\":1}\r\n\r\n: comment\nid: 7\ndata:{\"b\":\ndata: 2}\n\ndatax: no\n\ndata: {\"c\":3}";
        assert_eq!(
            events(stream),
            ["{\"a\":1}", "{\"b\":\n2}", "{\"c\":3}"].map(Cow::Borrowed)
        );
        assert!(events("event: message\n\n").is_empty());
    }

    #[test]
    fn the_response_to_the_request_is_picked_among_other_messages() {
        let note = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"x":1}}"#;
        let server_request = r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#;
        let other = r#"{"jsonrpc":"2.0","id":4,"result":{"n":4}}"#;
        let mine = r#"{"jsonrpc":"2.0","id":5,"result":{"n":5}}"#;
        for m in [note, server_request, other] {
            assert!(outcome::<Value>(m, 5).unwrap().is_none(), "{m}");
        }
        assert_eq!(outcome::<Value>(mine, 5).unwrap().unwrap()["n"], 5);
        let failed =
            r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32602,"message":"Tool x not found"}}"#;
        assert!(matches!(
            outcome::<Value>(failed, 5),
            Err(Failure::Rpc(INVALID_PARAMS))
        ));
        assert!(matches!(
            outcome::<Value>("not json", 5),
            Err(Failure::Mcp(McpError::Protocol(_)))
        ));
        // The server's error text is never passed on.
        let e = Failure::Rpc(-32000).into_mcp();
        assert_eq!(e, McpError::Protocol("JSON-RPC error -32000".into()));
    }

    #[test]
    fn complete_events_are_found_however_the_stream_is_cut() {
        let stream = b"event: message\ndata: {\"id\":1}\n\nevent: message\r\ndata: {\"id\":2}\r\n\r\ndata: {\"id\":3}";
        assert_eq!(events_end(stream, 0, false), Some(65));
        assert_eq!(events_end(stream, 0, true), Some(31), "the first one's end");
        assert_eq!(events_end(stream, 40, true), Some(65));
        assert_eq!(
            events_end(&stream[..31], 0, false),
            Some(31),
            "just the first event"
        );
        assert_eq!(
            events_end(&stream[..30], 0, false),
            None,
            "its closing blank line not there yet"
        );
        // Looking only at what arrived since the last look still sees a blank line split
        // between two reads.
        assert_eq!(events_end(&stream[..31], 30, false), Some(31));
        assert_eq!(events_end(&stream[..65], 63, false), Some(65));
        assert_eq!(
            events_end(&stream[..64], 0, false),
            Some(31),
            "the second is not complete"
        );
    }

    #[test]
    fn responses_are_told_by_id_and_batched_responses_are_split() {
        assert_eq!(
            response_id(r#"{"jsonrpc":"2.0","id":7,"result":{"big":[1,2]}}"#),
            Some(7)
        );
        assert_eq!(
            response_id(r#"{"jsonrpc":"2.0","id":7,"error":{"code":1}}"#),
            Some(7)
        );
        assert_eq!(
            response_id(r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#),
            None
        );
        assert_eq!(
            response_id(r#"{"jsonrpc":"2.0","method":"notifications/x"}"#),
            None
        );
        assert_eq!(
            response_id(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            None
        );
        assert_eq!(response_id("not json"), None);
        let mut seen = Vec::new();
        each_message(
            r#" [{"id":1,"result":{"b":1,"a":2}},{"id":2,"result":{}}]"#,
            &mut |m| seen.push(m.to_string()),
        )
        .unwrap();
        assert_eq!(
            seen,
            [
                r#"{"id":1,"result":{"b":1,"a":2}}"#,
                r#"{"id":2,"result":{}}"#
            ]
        );
        assert!(matches!(
            each_message("[1,", &mut |_| {}),
            Err(McpError::Protocol(_))
        ));
    }

    #[test]
    fn requests_are_json_rpc_2() {
        let body = request(9, "tools/call", &serde_json::json!({"name": "t"})).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "t"}})
        );
        let n: Value = serde_json::from_slice(&notification("notifications/initialized")).unwrap();
        assert_eq!(
            n,
            serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
        );
    }
}
