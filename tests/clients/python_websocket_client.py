"""Drive fedmcp's `/ws` with the official MCP Python SDK 1.x WebSocket client
(`mcp.client.websocket.websocket_client`, subprotocol `mcp`; 2.x has no WebSocket client, so this
runs from tests/.venv-ws).

Usage: python_websocket_client.py ws://HOST:PORT/ws

On one connection (one session): lists tools, calls a plugin tool, calls one that reports
progress (and receives it), one that asks the client to fill in a form (elicitation, answered
here), and one that announces a tool list change (and receives the notification). Prints one
JSON line with what it saw; exits non-zero if anything is missing.
"""

import asyncio
import json
import sys
import warnings

from mcp import ClientSession, types

with warnings.catch_warnings():
    # The SDK marks its WebSocket client deprecated (WebSocket is no MCP transport): that is
    # the point of this test, not a problem with it.
    warnings.simplefilter("ignore", DeprecationWarning)
    from mcp.client.websocket import websocket_client

TIMEOUT_S = 30


async def exercise(url: str) -> dict:
    progress: list[dict] = []
    asked: list[str] = []
    list_changed = asyncio.Event()

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append({"progress": done, "total": total, "message": message})

    async def on_elicitation(context, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"username": "ws-user", "email": "ws@example.test"})

    async def on_message(message) -> None:
        if isinstance(message, types.ServerNotification) and isinstance(
            message.root, types.ToolListChangedNotification
        ):
            list_changed.set()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        transport = websocket_client(url)
    async with transport as (read, write):
        async with ClientSession(
            read, write, elicitation_callback=on_elicitation, message_handler=on_message
        ) as session:
            init = await session.initialize()
            tools = [tool.name for tool in (await session.list_tools()).tools]
            slug = await session.call_tool("text-tools__slugify", {"text": "Hello, WebSocket"})
            progressed = await session.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
            elicited = await session.call_tool("test_elicitation", {"message": "Who are you?"})
            await session.call_tool("test_trigger_tool_change", {})
            await asyncio.wait_for(list_changed.wait(), TIMEOUT_S)

    def text(result: types.CallToolResult) -> str:
        return " ".join(c.text for c in result.content if c.type == "text")

    return {
        "server": init.serverInfo.name,
        "protocol": init.protocolVersion,
        "tools": tools,
        "slug": text(slug),
        "progress_result": text(progressed),
        "progress": progress,
        "asked": asked,
        "elicited": text(elicited),
        "elicited_is_error": bool(elicited.isError),
        "list_changed": list_changed.is_set(),
    }


def check(seen: dict) -> list[str]:
    problems = []
    if seen["server"] != "fedmcp":
        problems.append(f"server {seen['server']!r}")
    for tool in ["text-tools__slugify", "test_tool_with_progress", "test_elicitation"]:
        if tool not in seen["tools"]:
            problems.append(f"{tool} not listed")
    if seen["slug"] != "hello-websocket":
        problems.append(f"slugify gave {seen['slug']!r}")
    if [p["progress"] for p in seen["progress"]] != [0.0, 50.0, 100.0]:
        problems.append(f"progress {seen['progress']}")
    if seen["asked"] != ["Who are you?"]:
        problems.append(f"elicitations {seen['asked']}")
    if seen["elicited_is_error"] or "ws-user" not in seen["elicited"]:
        problems.append(f"elicitation result {seen['elicited']!r}")
    if not seen["list_changed"]:
        problems.append("no tools/list_changed")
    return problems


async def main() -> int:
    seen = await asyncio.wait_for(exercise(sys.argv[1]), TIMEOUT_S * 2)
    print(json.dumps(seen))
    problems = check(seen)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
