"""doc-search: search and read the Markdown documents in a folder the host grants.

The manifest (plugins/doc-search.toml) preopens a folder read-only at /docs; the plugin can
read nothing else.
"""

import os

from fedmcp import InvalidParams, NotFound, Plugin, Result, log, text

DOCS = "/docs"

plugin = Plugin()


def _documents() -> list:
    try:
        return sorted(name for name in os.listdir(DOCS) if name.endswith(".md"))
    except OSError as error:
        raise NotFound(f"the documents folder is not available: {error}") from None


@plugin.tool(read_only=True)
def list_docs() -> str:
    "List the documents, one name per line."
    return "\n".join(_documents())


@plugin.tool(read_only=True)
def read_doc(name: str) -> str:
    "Return the text of one document, by the name list_docs gives."
    if "/" in name or name.startswith("."):
        raise InvalidParams("name must be a document name from list_docs, not a path")
    if name not in _documents():
        raise NotFound(f"no document named {name!r}")
    with open(os.path.join(DOCS, name), encoding="utf-8") as handle:
        return handle.read()


@plugin.tool(read_only=True)
def search_docs(query: str, limit: int = 10) -> Result:
    "Find the lines that contain the query (case-insensitive); each hit as document:line: text."
    if not query.strip():
        raise InvalidParams("query must not be empty")
    needle = query.lower()
    hits = []
    for name in _documents():
        with open(os.path.join(DOCS, name), encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if needle in line.lower():
                    hits.append({"doc": name, "line": number, "text": line.strip()})
    log(f"{len(hits)} hits for {query!r}", level="debug")
    shown = hits[: max(limit, 0)]
    lines = [f"{h['doc']}:{h['line']}: {h['text']}" for h in shown] or ["no matches"]
    return Result(content=[text("\n".join(lines))], structured={"hits": shown, "total": len(hits)})


Tools, Resources, Prompts, Completions = plugin.export()
