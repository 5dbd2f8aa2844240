"""Drive fedmcp with the official MCP Python SDK client, over Streamable HTTP or stdio.

Usage: python_client.py http URL
       python_client.py stdio FEDMCP_BINARY PLUGINS_DIR

Lists tools, calls one, reads a resource, gets a prompt; prints one JSON line with what it
saw and exits non-zero if anything is missing.
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


async def exercise(session: ClientSession) -> dict:
    init = await session.initialize()
    tools = await session.list_tools()
    names = [tool.name for tool in tools.tools]
    called = await session.call_tool("text-tools__word_count", {"text": "one two three\nfour"})
    resources = await session.list_resources()
    index = await session.read_resource("notes://index")
    prompt = await session.get_prompt("field-notes__review_code", {"code": "fn main() {}", "language": "rust"})
    return {
        "server": init.server_info.name,
        "protocol": init.protocol_version,
        "tools": names,
        "word_count": called.structured_content,
        "is_error": called.is_error,
        "resources": [str(r.uri) for r in resources.resources],
        "index_text": index.contents[0].text,
        "prompt_text": prompt.messages[0].content.text,
    }


async def main() -> int:
    mode = sys.argv[1]
    if mode == "http":
        async with streamable_http_client(sys.argv[2]) as (read, write, *_):
            async with ClientSession(read, write) as session:
                seen = await exercise(session)
    elif mode == "stdio":
        params = StdioServerParameters(command=sys.argv[2], args=["serve", "--stdio", "--plugins", sys.argv[3]])
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                seen = await exercise(session)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(seen))
    ok = (
        seen["server"] == "fedmcp"
        and "text-tools__word_count" in seen["tools"]
        and seen["word_count"] == {"words": 4, "lines": 2, "characters": 18}
        and not seen["is_error"]
        and "notes://index" in seen["resources"]
        and "notes://topics/getting-started" in seen["index_text"]
        and "fn main() {}" in seen["prompt_text"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
