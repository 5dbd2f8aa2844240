"""The fedmcp plugin SDK for Python (componentize-py).

A plugin is a module that declares its tools with decorators and ends with ``export()``::

    from fedmcp import Plugin

    plugin = Plugin()

    @plugin.tool
    def shout(text: str) -> str:
        "Upper-case the text."
        return text.upper()

    Tools, Resources, Prompts, Completions = plugin.export()

The input schema of a tool comes from its parameters' type hints (``str``, ``int``,
``float``, ``bool``, ``list[...]``, ``dict``, ``Optional[...]``); parameters with defaults
are optional. A tool returns a string, a content value (``text``, ``image``, ``audio``,
``resource_link``, ``embedded_text``, ``embedded_blob``), a list of them, or a ``Result``.
Raise ``InvalidParams`` or ``NotFound`` for the caller's mistakes; any other exception
becomes an internal error with its message.
"""

import inspect
import keyword
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from componentize_py_types import Err
from wit_world import exports as wit_exports
from wit_world.exports import completions as wit_completions
from wit_world.exports import prompts as wit_prompts
from wit_world.exports import resources as wit_resources
from wit_world.exports import tools as wit_tools
from wit_world.imports import host as wit_host
from wit_world.imports import types as wit

__all__ = [
    "Plugin",
    "Result",
    "InvalidParams",
    "NotFound",
    "text",
    "image",
    "audio",
    "resource_link",
    "embedded_text",
    "embedded_blob",
    "log",
    "progress",
]


class InvalidParams(Exception):
    """The caller's arguments are wrong; the message says how."""


class NotFound(Exception):
    """No such tool, prompt or resource."""


def text(value: str) -> wit.Content:
    return wit.Content_Text(value)


def image(data: bytes, mime_type: str) -> wit.Content:
    return wit.Content_Image(wit.Media(data, mime_type))


def audio(data: bytes, mime_type: str) -> wit.Content:
    return wit.Content_Audio(wit.Media(data, mime_type))


def resource_link(uri: str, name: str, description: Optional[str] = None, mime_type: Optional[str] = None) -> wit.Content:
    return wit.Content_ResourceLink(wit.ResourceLink(uri, name, None, description, mime_type))


def embedded_text(uri: str, value: str, mime_type: Optional[str] = "text/plain") -> wit.Content:
    return wit.Content_Resource(wit.ResourceContents_Text(wit.TextResourceContents(uri, mime_type, value)))


def embedded_blob(uri: str, data: bytes, mime_type: Optional[str] = None) -> wit.Content:
    return wit.Content_Resource(wit.ResourceContents_Blob(wit.BlobResourceContents(uri, mime_type, data)))


@dataclass
class Result:
    """A tool result with more than content: structured data, or an error the model sees."""

    content: list = field(default_factory=list)
    structured: Any = None
    is_error: bool = False


_LEVELS = {
    "debug": wit.LogLevel.DEBUG,
    "info": wit.LogLevel.INFO,
    "notice": wit.LogLevel.NOTICE,
    "warning": wit.LogLevel.WARNING,
    "error": wit.LogLevel.ERROR,
}


def log(message: str, level: str = "info", logger: Optional[str] = None) -> None:
    """Send a log message to the client that made the call."""
    wit_host.log(_LEVELS.get(level, wit.LogLevel.INFO), logger, message)


def progress(done: float, total: Optional[float] = None, message: Optional[str] = None) -> None:
    """Report progress of the current call."""
    wit_host.progress(float(done), None if total is None else float(total), message)


def _schema_of(hint: Any) -> dict:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return _schema_of(rest[0]) if len(rest) == 1 else {}
    if hint is str:
        return {"type": "string"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is list or origin is list:
        return {"type": "array", "items": _schema_of(args[0])} if args else {"type": "array"}
    if hint is dict or origin is dict:
        return {"type": "object"}
    return {}


def _argument_name(parameter: str) -> str:
    """The argument a parameter takes: ``from_`` takes ``from``, since a Python keyword cannot
    name a parameter."""
    stripped = parameter[:-1]
    return stripped if parameter.endswith("_") and keyword.iskeyword(stripped) else parameter


def _input_schema(function: Callable) -> dict:
    properties, required = {}, []
    for parameter_name, parameter in inspect.signature(function).parameters.items():
        name = _argument_name(parameter_name)
        hint = parameter.annotation if parameter.annotation is not inspect.Parameter.empty else Any
        properties[name] = _schema_of(hint)
        optional = typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)
        if parameter.default is inspect.Parameter.empty and not optional:
            required.append(name)
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _check_arguments(schema: dict, arguments: dict) -> None:
    for name in schema.get("required", []):
        if name not in arguments:
            raise InvalidParams(f"missing required argument: {name}")
    types = {"string": str, "boolean": bool, "integer": int, "number": (int, float), "array": list, "object": dict}
    for name, value in arguments.items():
        expected = schema["properties"].get(name)
        if expected is None:
            raise InvalidParams(f"unknown argument: {name}")
        kind = expected.get("type")
        wrong_bool = kind in ("integer", "number") and isinstance(value, bool)
        if kind in types and (not isinstance(value, types[kind]) or wrong_bool):
            raise InvalidParams(f"argument {name} must be of type {kind}")


def _contents(value: Any) -> list:
    if isinstance(value, str):
        return [text(value)]
    if isinstance(value, list):
        return [text(v) if isinstance(v, str) else v for v in value]
    return [value]


def _plugin_error(error: Exception) -> Err:
    if isinstance(error, InvalidParams):
        return Err(wit.PluginError_InvalidParams(str(error)))
    if isinstance(error, NotFound):
        return Err(wit.PluginError_NotFound(str(error)))
    return Err(wit.PluginError_Internal(f"{type(error).__name__}: {error}"))


@dataclass
class _Tool:
    function: Callable
    name: str
    description: Optional[str]
    schema: dict
    read_only: Optional[bool]
    # Argument name -> parameter name, where they differ (``from`` -> ``from_``).
    parameters: dict = field(default_factory=dict)


@dataclass
class _Resource:
    function: Callable
    uri: str
    name: str
    description: Optional[str]
    mime_type: Optional[str]


@dataclass
class _Prompt:
    function: Callable
    name: str
    description: Optional[str]
    arguments: list


class Plugin:
    """The registry of one plugin's tools, resources and prompts."""

    def __init__(self) -> None:
        self._tools: dict = {}
        self._resources: dict = {}
        self._prompts: dict = {}

    def tool(self, function: Optional[Callable] = None, *, name: Optional[str] = None, read_only: Optional[bool] = None):
        """Declare a tool; its description is the docstring, its schema the type hints."""

        def register(function: Callable) -> Callable:
            tool_name = name or function.__name__
            doc = inspect.getdoc(function)
            renamed = {_argument_name(p): p for p in inspect.signature(function).parameters if _argument_name(p) != p}
            self._tools[tool_name] = _Tool(function, tool_name, doc, _input_schema(function), read_only, renamed)
            return function

        return register(function) if function is not None else register

    def resource(self, uri: str, *, name: Optional[str] = None, mime_type: Optional[str] = "text/plain"):
        """Declare a resource at ``uri``; the function returns its text (or bytes)."""

        def register(function: Callable) -> Callable:
            self._resources[uri] = _Resource(function, uri, name or function.__name__, inspect.getdoc(function), mime_type)
            return function

        return register

    def prompt(self, function: Optional[Callable] = None, *, name: Optional[str] = None):
        """Declare a prompt; its string parameters are its arguments, it returns the user message."""

        def register(function: Callable) -> Callable:
            prompt_name = name or function.__name__
            arguments = [
                wit_prompts.PromptArgument(p.name, None, None, p.default is inspect.Parameter.empty)
                for p in inspect.signature(function).parameters.values()
            ]
            self._prompts[prompt_name] = _Prompt(function, prompt_name, inspect.getdoc(function), arguments)
            return function

        return register(function) if function is not None else register

    def export(self):
        """The classes componentize-py looks for: ``Tools, Resources, Prompts, Completions``."""
        plugin = self

        class Tools(wit_exports.Tools):
            def list_tools(self) -> list:
                listed = []
                for tool in plugin._tools.values():
                    annotations = None
                    if tool.read_only is not None:
                        annotations = wit_tools.ToolAnnotations(None, tool.read_only, None, None, None)
                    listed.append(
                        wit_tools.Tool(tool.name, None, tool.description, json.dumps(tool.schema), None, annotations)
                    )
                return listed

            def call_tool(self, name: str, arguments: str, context: wit.RequestContext) -> wit_tools.CallOutcome:
                tool = plugin._tools.get(name)
                try:
                    if tool is None:
                        raise NotFound(f"unknown tool: {name}")
                    parsed = json.loads(arguments or "{}")
                    if not isinstance(parsed, dict):
                        raise InvalidParams("arguments must be a JSON object")
                    _check_arguments(tool.schema, parsed)
                    value = tool.function(**{tool.parameters.get(k, k): v for k, v in parsed.items()})
                except Exception as error:  # noqa: BLE001 - every failure goes back as a plugin error
                    raise _plugin_error(error) from None
                if isinstance(value, Result):
                    structured = None if value.structured is None else json.dumps(value.structured)
                    result = wit_tools.CallResult(_contents(value.content), structured, value.is_error)
                else:
                    result = wit_tools.CallResult(_contents(value), None, False)
                return wit_tools.CallOutcome_Complete(result)

        class Resources(wit_exports.Resources):
            def list_resources(self) -> list:
                return [
                    wit_resources.Resource(r.uri, r.name, None, r.description, r.mime_type, None)
                    for r in plugin._resources.values()
                ]

            def list_resource_templates(self) -> list:
                return []

            def read_resource(self, uri: str, context: wit.RequestContext) -> wit_resources.ReadOutcome:
                resource = plugin._resources.get(uri)
                try:
                    if resource is None:
                        raise NotFound(f"unknown resource: {uri}")
                    value = resource.function()
                except Exception as error:  # noqa: BLE001
                    raise _plugin_error(error) from None
                if isinstance(value, bytes):
                    contents = wit.ResourceContents_Blob(wit.BlobResourceContents(uri, resource.mime_type, value))
                else:
                    contents = wit.ResourceContents_Text(wit.TextResourceContents(uri, resource.mime_type, str(value)))
                return wit_resources.ReadOutcome_Complete([contents])

        class Prompts(wit_exports.Prompts):
            def list_prompts(self) -> list:
                return [wit_prompts.Prompt(p.name, None, p.description, p.arguments) for p in plugin._prompts.values()]

            def get_prompt(self, name: str, arguments: list, context: wit.RequestContext) -> wit_prompts.PromptOutcome:
                prompt = plugin._prompts.get(name)
                try:
                    if prompt is None:
                        raise NotFound(f"unknown prompt: {name}")
                    value = prompt.function(**dict(arguments))
                except TypeError as error:
                    raise _plugin_error(InvalidParams(str(error))) from None
                except Exception as error:  # noqa: BLE001
                    raise _plugin_error(error) from None
                messages = [wit_prompts.PromptMessage(wit.Role.USER, c) for c in _contents(value)]
                return wit_prompts.PromptOutcome_Complete(wit_prompts.PromptResult(prompt.description, messages))

        class Completions(wit_exports.Completions):
            def complete(self, reference, argument_name: str, argument_value: str, context: list):
                return wit_completions.Completion([], None, False)

        return Tools, Resources, Prompts, Completions
