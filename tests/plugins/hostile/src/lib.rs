//! A hostile plugin for the security tests: each tool attempts one thing the sandbox must
//! stop unless the manifest grants it, and reports what happened.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::time::Duration;

use fedmcp_sdk::{Error, InputRequest, InputRequired, JsonSchema, Plugin, ToolOutcome, ToolResult, Tools};
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
struct PathArg {
    path: String,
}

#[derive(Deserialize, JsonSchema)]
struct WriteArg {
    path: String,
    text: String,
}

#[derive(Deserialize, JsonSchema)]
struct NameArg {
    name: String,
}

#[derive(Deserialize, JsonSchema)]
struct AddressArg {
    /// host:port
    address: String,
}

#[derive(Deserialize, JsonSchema)]
struct SizeArg {
    /// Mebibytes (allocate) or kibibytes (big_response).
    size: u32,
}

#[derive(Deserialize, JsonSchema)]
struct SecretArg {
    secret: String,
}

#[derive(Deserialize, JsonSchema)]
struct Nothing {}

#[derive(Deserialize, JsonSchema)]
struct SecondsArg {
    seconds: u32,
}

#[derive(Deserialize, JsonSchema)]
struct CountArg {
    count: u32,
}

thread_local! {
    static REMEMBERED: RefCell<Option<String>> = const { RefCell::new(None) };
    static CALLS: RefCell<u32> = const { RefCell::new(0) };
}

/// Ask the user for a name (keeping `state` between the rounds), or say what they answered.
fn ask_name(cx: &fedmcp_sdk::Context, state: Option<String>) -> ToolOutcome {
    match cx.response("answer") {
        Some(answer) => format!("user said {answer}").into(),
        None => {
            let schema = serde_json::json!({"type": "object", "properties": {}});
            let asked = InputRequired::new().request("answer", InputRequest::elicit("Name?", schema));
            match state {
                Some(state) => asked.state(state).into(),
                None => asked.into(),
            }
        }
    }
}

fn denied(what: &str, error: impl std::fmt::Display) -> Error {
    Error::internal(format!("{what} failed: {error}"))
}

/// GET http://<address>/ through wasi:http's outgoing handler; the status and body.
fn http_get(address: &str) -> Result<String, Error> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, OutgoingRequest, Scheme};
    let failed = |e: &dyn std::fmt::Debug| denied(&format!("requesting http://{address}/"), format!("{e:?}"));
    let request = OutgoingRequest::new(Fields::new());
    request.set_scheme(Some(&Scheme::Http)).map_err(|e| failed(&e))?;
    request.set_authority(Some(address)).map_err(|e| failed(&e))?;
    request.set_path_with_query(Some("/")).map_err(|e| failed(&e))?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| failed(&e))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(failed(&code)),
        other => return Err(failed(&other.map(|_| ()))),
    };
    let status = response.status();
    let body = response.consume().map_err(|e| failed(&e))?;
    let stream = body.stream().map_err(|e| failed(&e))?;
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(16 * 1024) {
        bytes.extend(chunk);
    }
    Ok(format!("{status} {}", String::from_utf8_lossy(&bytes)))
}

/// Resolve `name` with wasi:sockets/ip-name-lookup; the addresses found.
fn lookup(name: &str) -> Result<String, Error> {
    use wasi::sockets::instance_network::instance_network;
    use wasi::sockets::ip_name_lookup::resolve_addresses;
    use wasi::sockets::network::ErrorCode;
    let failed = |e: ErrorCode| denied(&format!("looking up {name}"), format!("{e:?}"));
    let network = instance_network();
    let stream = resolve_addresses(&network, name).map_err(failed)?;
    let mut found = Vec::new();
    loop {
        match stream.resolve_next_address() {
            Ok(Some(address)) => found.push(format!("{address:?}")),
            Ok(None) => break,
            Err(ErrorCode::WouldBlock) => stream.subscribe().block(),
            Err(e) => return Err(failed(e)),
        }
    }
    Ok(found.join(", "))
}

/// Written by `mark_pages` at the start of each page it marks; `find_marked_pages` looks for it.
/// Only ever an immediate in the code, never stored in linear memory except by `mark_pages`.
const PAGE_MARKER: u64 = 0x4d41_524b_4544_2166;
/// A WebAssembly page (64 KiB). Marking the first bytes of each of `MARKED_PAGES` fresh wasm
/// pages dirties that many host pages (4 KiB) with clean pages between them: as many separate
/// dirty runs, more than the 32 regions one PAGEMAP_SCAN of wasmtime's slot reset records.
const WASM_PAGE: usize = 64 << 10;
const MARKED_PAGES: usize = 64;
/// The host page size the scan steps by (markers sit at wasm-page starts, which are host-page
/// starts too).
const HOST_PAGE: usize = 4 << 10;

/// Grow linear memory by `pages` wasm pages; the byte address where the new pages start.
fn grow_memory(pages: usize) -> Result<usize, Error> {
    let previous = core::arch::wasm32::memory_grow(0, pages);
    if previous == usize::MAX {
        return Err(Error::internal(format!("growing memory by {pages} pages failed")));
    }
    Ok(previous * WASM_PAGE)
}

/// Write `PAGE_MARKER` at the start of `MARKED_PAGES` newly grown, 64 KiB apart pages.
fn mark_pages() -> Result<String, Error> {
    let from = grow_memory(MARKED_PAGES)?;
    for page in 0..MARKED_PAGES {
        let address = from + page * WASM_PAGE;
        // SAFETY: the pages were just added to linear memory by `grow_memory` and nothing else
        // (the allocator included) knows of them; `address` is 8-byte aligned and not null.
        unsafe { core::ptr::write_volatile(address as *mut u64, PAGE_MARKER) };
    }
    let to = from + MARKED_PAGES * WASM_PAGE;
    Ok(serde_json::json!({ "marked_from": from, "marked_to": to, "pages": MARKED_PAGES }).to_string())
}

/// Host pages `mark_pages_past_keep_resident` marks, every other one: more than the 256 (1 MiB)
/// the host keeps resident per memory slot, so a slot's reset runs out of its budget among them
/// and must decommit the rest.
const MARKS_PAST_KEEP_RESIDENT: usize = 320;

/// Write `PAGE_MARKER` at the start of every other host page of newly grown memory, for
/// `MARKS_PAST_KEEP_RESIDENT` pages (as many separate dirty runs).
fn mark_pages_past_keep_resident() -> Result<String, Error> {
    let bytes = MARKS_PAST_KEEP_RESIDENT * 2 * HOST_PAGE;
    let from = grow_memory(bytes.div_ceil(WASM_PAGE))?;
    for mark in 0..MARKS_PAST_KEEP_RESIDENT {
        let address = from + mark * 2 * HOST_PAGE;
        // SAFETY: as in `mark_pages`: freshly grown memory nothing else knows of, and
        // `address` is 8-byte aligned and not null.
        unsafe { core::ptr::write_volatile(address as *mut u64, PAGE_MARKER) };
    }
    let to = from + bytes;
    Ok(serde_json::json!({ "marked_from": from, "marked_to": to, "pages": MARKS_PAST_KEEP_RESIDENT }).to_string())
}

/// Grow memory by twice what `mark_pages` grows (so this instance's memory reaches past where
/// an earlier instance of the same slot marked, even if its heap grew a little differently),
/// then read every host page of linear memory for `PAGE_MARKER`.
fn find_marked_pages() -> Result<String, Error> {
    let grown_from = grow_memory(2 * MARKED_PAGES)?;
    let scanned_to = grown_from + 2 * MARKED_PAGES * WASM_PAGE;
    let mut found = Vec::new();
    // Address 0 is skipped: it is never marked (the first grown page is past the module's own
    // memory), and Rust may not read through a null pointer.
    for address in (HOST_PAGE..scanned_to).step_by(HOST_PAGE) {
        // SAFETY: `address` lies inside linear memory (below its current size) and is 8-byte
        // aligned; a volatile read of plain bytes is valid whatever they hold.
        let word = unsafe { core::ptr::read_volatile(address as *const u64) };
        if word == PAGE_MARKER {
            found.push(address);
        }
    }
    Ok(serde_json::json!({ "scanned_to": scanned_to, "found": found }).to_string())
}

struct Hostile;

impl Plugin for Hostile {
    fn tools(tools: &mut Tools) {
        tools.add("read_file", "Read a file", |a: PathArg, _cx| {
            std::fs::read_to_string(&a.path).map_err(|e| denied(&format!("reading {}", a.path), e))
        });
        tools.add("write_file", "Write a file", |a: WriteArg, _cx| {
            std::fs::write(&a.path, a.text).map_err(|e| denied(&format!("writing {}", a.path), e))?;
            Ok("written")
        });
        tools.add("read_env", "Read an environment variable", |a: NameArg, _cx| {
            std::env::var(&a.name).map_err(|e| denied(&format!("reading ${}", a.name), e))
        });
        tools.add("connect", "Open a TCP connection, send a line, return the first reply", |a: AddressArg, _cx| {
            let mut stream = std::net::TcpStream::connect(&a.address)
                .map_err(|e| denied(&format!("connecting to {}", a.address), e))?;
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| denied("sending", e))?;
            let mut reply = String::new();
            stream.read_to_string(&mut reply).map_err(|e| denied("receiving", e))?;
            Ok(reply)
        });
        tools.add("http_get", "GET http://<address>/ with wasi:http", |a: AddressArg, _cx| http_get(&a.address));
        tools.add("spin", "Loop forever", |_: Nothing, _cx| -> Result<ToolResult, Error> {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        });
        tools.add("allocate", "Allocate and touch `size` MiB", |a: SizeArg, _cx| {
            let mut block = vec![0u8; (a.size as usize) << 20];
            for i in (0..block.len()).step_by(4096) {
                block[i] = 1;
            }
            Ok(format!("allocated {} MiB", std::hint::black_box(block).len() >> 20))
        });
        tools.add("big_response", "Return `size` KiB of text", |a: SizeArg, _cx| {
            Ok("x".repeat((a.size as usize) << 10))
        });
        tools.add(
            "big_state",
            "Ask the user, keeping `size` KiB of state",
            |a: SizeArg, cx| -> Result<ToolOutcome, Error> {
                Ok(ask_name(cx, Some("s".repeat((a.size as usize) << 10))))
            },
        );
        tools.add("trap", "Panic (a trap)", |_: Nothing, _cx| -> Result<ToolResult, Error> {
            panic!("hostile plugin trapped on purpose")
        });
        tools.add("ask_sampling", "Ask the client's model", |_: Nothing, cx| -> Result<ToolOutcome, Error> {
            match cx.response("answer") {
                Some(answer) => Ok(format!("model said {answer}").into()),
                None => Ok(InputRequired::new().request("answer", InputRequest::sample("Say hi", 10)).into()),
            }
        });
        tools.add("ask_elicitation", "Ask the user", |_: Nothing, cx| -> Result<ToolOutcome, Error> {
            Ok(ask_name(cx, None))
        });
        tools.add("remember", "Store a secret in a global, wait, and read the global back", |a: SecretArg, _cx| {
            let before = REMEMBERED.with(|r| r.borrow().clone());
            REMEMBERED.with(|r| *r.borrow_mut() = Some(a.secret));
            std::thread::sleep(Duration::from_millis(200));
            let after = REMEMBERED.with(|r| r.borrow().clone());
            Ok(serde_json::json!({ "before": before, "after": after }).to_string())
        });
        tools.add("lookup", "Resolve a host name", |a: NameArg, _cx| lookup(&a.name));
        tools.add("log_flood", "Log 1 MiB messages in a loop for `seconds`", |a: SecondsArg, _cx| {
            let message = "x".repeat(1 << 20);
            let started = std::time::Instant::now();
            let mut sent: u64 = 0;
            while started.elapsed() < Duration::from_secs(u64::from(a.seconds)) {
                fedmcp_sdk::log::info(&message);
                sent += 1;
            }
            Ok(format!("logged {sent} messages of 1 MiB"))
        });
        tools.add(
            "event_flood",
            "Send `count` progress messages of 64 KiB and `count` list-changed notifications",
            |a: CountArg, _cx| {
                let message = "p".repeat(64 << 10);
                for i in 0..a.count {
                    fedmcp_sdk::progress(f64::from(i), Some(f64::from(a.count)), Some(&message));
                    fedmcp_sdk::notify_list_changed(fedmcp_sdk::ListKind::Tools);
                }
                Ok(format!("sent {} progress and {} list-changed events", a.count, a.count))
            },
        );
        tools.add(
            "mark_pages",
            "Grow memory and write a marker into 64 widely separated pages (as many separate dirty runs)",
            |_: Nothing, _cx| mark_pages(),
        );
        tools.add(
            "mark_pages_past_keep_resident",
            "Grow memory and write a marker into every other page of 640, more than the host keeps resident",
            |_: Nothing, _cx| mark_pages_past_keep_resident(),
        );
        tools.add(
            "find_marked_pages",
            "Grow memory and report every page that holds the marker mark_pages writes",
            |_: Nothing, _cx| find_marked_pages(),
        );
        tools.add("count_calls", "Count the calls this instance has served", |_: Nothing, _cx| {
            let n = CALLS.with(|c| {
                *c.borrow_mut() += 1;
                *c.borrow()
            });
            Ok(n.to_string())
        });
    }
}

fedmcp_sdk::export!(Hostile);
