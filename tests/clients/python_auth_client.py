"""The official MCP Python SDK client on a 2025-11-25 session to a host with [auth]: it sends a
bearer token, lists what its scopes allow, and answers the host's consent questions
(elicitation) with accept, then decline.

Usage: python_auth_client.py URL TOKEN TOOL ARGUMENTS_JSON

Prints one JSON line with what it saw.
"""

import asyncio
import json
import sys

import httpx2
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

questions: list[str] = []


async def answer(context, params) -> types.ElicitResult:
    questions.append(params.message)
    action = "accept" if len(questions) == 1 else "decline"
    return types.ElicitResult(action=action, content={} if action == "accept" else None)


async def main() -> int:
    url, token, tool, arguments = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write, elicitation_callback=answer) as session:
                init = await session.initialize()
                tools = await session.list_tools()
                first = await session.call_tool(tool, arguments)
                try:
                    second = await session.call_tool(tool, arguments)
                    refused = None
                except Exception as error:  # the host refuses the call: a JSON-RPC error
                    second, refused = None, str(error)
    print(
        json.dumps(
            {
                "protocol": init.protocol_version,
                "tools": [t.name for t in tools.tools],
                "questions": questions,
                "first": {"is_error": first.is_error, "text": [c.text for c in first.content if c.type == "text"]},
                "second_served": second is not None,
                "second_refused": refused,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
