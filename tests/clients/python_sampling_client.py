"""The official MCP Python SDK client on a 2025-11-25 session: it calls a tool that asks the
client for sampling mid-call, and answers with its own label (after a pause, so that several
of these clients have their calls in flight at once).

Usage: python_sampling_client.py URL TOOL LABEL

Prints one JSON line with the tool's text content.
"""

import asyncio
import json
import sys

from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

label = sys.argv[3]


async def sample(context, params) -> types.CreateMessageResult:
    await asyncio.sleep(1.0)
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text=f"answer from {label}"), model="test"
    )


async def main() -> int:
    url, tool = sys.argv[1], sys.argv[2]
    async with streamable_http_client(url) as (read, write, *_):
        async with ClientSession(read, write, sampling_callback=sample) as session:
            await session.initialize()
            result = await session.call_tool(tool, {"prompt": f"question from {label}"})
    texts = [c.text for c in result.content if c.type == "text"]
    print(json.dumps({"is_error": result.is_error, "text": texts}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
