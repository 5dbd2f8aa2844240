// The fedmcp plugin SDK for JavaScript (componentize-js).
//
// A plugin is an ES module that declares its tools and re-exports what `plugin.exports()`
// returns:
//
//   import { Plugin, text } from "./fedmcp.js";
//   const plugin = new Plugin();
//   plugin.tool("shout", {
//     description: "Upper-case the text.",
//     input: { text: { type: "string" } },
//     handler: ({ text }) => text.toUpperCase(),
//   });
//   export const { tools, resources, prompts, completions } = plugin.exports();
//
// `input` maps each argument to its JSON Schema; all are required unless listed in
// `optional`. A handler returns a string, a content value (text, image, audio, resourceLink,
// embeddedText, embeddedBlob), an array of them, or `result({ content, structured, isError })`.
// Throw `new InvalidParams(message)` or `new NotFound(message)` for the caller's mistakes; any
// other error becomes an internal error with its message.

import { log as hostLog, progress as hostProgress } from "fedmcp:plugin/host@0.1.0";

// Build-time set-up of the bindings' standard classes. componentize-js runs its generated
// bindings (which lift each export's arguments and lower its result) in a global of their own,
// apart from this module's, and snapshots the engine once this module's top level has run;
// every call then starts from a fresh instance of that snapshot. SpiderMonkey creates a
// standard class (its constructor and prototype methods) the first time a script names it, so
// the classes the bindings use at call time (Promise for their `async` export functions,
// String, DataView, Uint8Array, TypeError, ...) were created again in every call: about a
// quarter of a small tool's call (0.30 -> 0.23 ms median for unit-convert). `hostLog` is one of
// those bindings, so its Function constructor compiles a function in their global; running
// it once here names the classes there, and they are then part of the snapshot. Nothing else
// changes: no plugin code runs. If the engine refuses to compile it, calls only stay slower.
const STANDARD_CLASSES = [
  "Object", "Function", "Array", "Number", "Boolean", "String", "Symbol", "BigInt", "Math", "JSON",
  "Reflect", "Promise", "Error", "TypeError", "RangeError", "SyntaxError", "ReferenceError",
  "EvalError", "URIError", "AggregateError", "Map", "Set", "WeakMap", "WeakSet", "Date", "RegExp",
  "ArrayBuffer", "DataView", "Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array",
  "Uint16Array", "Int32Array", "Uint32Array", "Float32Array", "Float64Array", "BigInt64Array",
  "BigUint64Array",
];
try {
  hostLog.constructor(STANDARD_CLASSES.map((name) => `void globalThis.${name};`).join(""))();
} catch {
  // Not fatal: see above.
}

class PluginError extends Error {
  constructor(tag, message) {
    super(message);
    // componentize-js returns a thrown error's `payload` as the `err` of a WIT result.
    this.payload = { tag, val: message };
  }
}

export class InvalidParams extends PluginError {
  constructor(message) {
    super("invalid-params", message);
  }
}

export class NotFound extends PluginError {
  constructor(message) {
    super("not-found", message);
  }
}

function asPluginError(error) {
  if (error instanceof PluginError) {
    return error;
  }
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return new PluginError("internal", message);
}

export const text = (value) => ({ tag: "text", val: String(value) });
export const image = (data, mimeType) => ({ tag: "image", val: { data, mimeType } });
export const audio = (data, mimeType) => ({ tag: "audio", val: { data, mimeType } });
export const resourceLink = (uri, name, { description, mimeType } = {}) => ({
  tag: "resource-link",
  val: { uri, name, title: undefined, description, mimeType },
});
export const embeddedText = (uri, value, mimeType = "text/plain") => ({
  tag: "resource",
  val: { tag: "text", val: { uri, mimeType, text: value } },
});
export const embeddedBlob = (uri, data, mimeType) => ({
  tag: "resource",
  val: { tag: "blob", val: { uri, mimeType, blob: data } },
});

/** A tool result with more than content: structured data, or an error the model sees. */
export const result = ({ content = [], structured, isError = false }) => ({ fedmcpResult: true, content, structured, isError });

/** A log message for the client that made the call. */
export function log(message, level = "info", logger) {
  hostLog(level, logger, String(message));
}

/** Progress of the current call. */
export function progress(done, total, message) {
  hostProgress(done, total, message);
}

function contents(value) {
  const items = Array.isArray(value) ? value : [value];
  return items.map((item) => (typeof item === "string" ? text(item) : item));
}

const TYPE_CHECKS = {
  string: (v) => typeof v === "string",
  boolean: (v) => typeof v === "boolean",
  integer: (v) => Number.isInteger(v),
  number: (v) => typeof v === "number",
  array: (v) => Array.isArray(v),
  object: (v) => v !== null && typeof v === "object" && !Array.isArray(v),
};

function checkArguments(schema, args) {
  for (const name of schema.required ?? []) {
    if (!(name in args)) {
      throw new InvalidParams(`missing required argument: ${name}`);
    }
  }
  for (const [name, value] of Object.entries(args)) {
    const expected = schema.properties[name];
    if (expected === undefined) {
      throw new InvalidParams(`unknown argument: ${name}`);
    }
    const check = TYPE_CHECKS[expected.type];
    if (check && !check(value)) {
      throw new InvalidParams(`argument ${name} must be of type ${expected.type}`);
    }
  }
}

export class Plugin {
  #tools = new Map();
  #resources = new Map();
  #prompts = new Map();

  /** Declare a tool: `{ description, input, optional, readOnly, handler }`. */
  tool(name, { description, input = {}, optional = [], readOnly, handler }) {
    const required = Object.keys(input).filter((arg) => !optional.includes(arg));
    const schema = { type: "object", properties: input, ...(required.length ? { required } : {}) };
    this.#tools.set(name, { name, description, schema, readOnly, handler });
    return this;
  }

  /** Declare a resource at `uri`: `{ name, description, mimeType, read }`; `read` returns text or bytes. */
  resource(uri, { name, description, mimeType = "text/plain", read }) {
    this.#resources.set(uri, { uri, name: name ?? uri, description, mimeType, read });
    return this;
  }

  /** Declare a prompt: `{ description, arguments: [names], optional, render }`. */
  prompt(name, { description, arguments: names = [], optional = [], render }) {
    const args = names.map((arg) => ({ name: arg, title: undefined, description: undefined, required: !optional.includes(arg) }));
    this.#prompts.set(name, { name, description, args, render });
    return this;
  }

  /** The WIT exports componentize-js looks for. */
  exports() {
    const tools = this.#tools;
    const resources = this.#resources;
    const prompts = this.#prompts;
    return {
      tools: {
        listTools() {
          return [...tools.values()].map((tool) => ({
            name: tool.name,
            title: undefined,
            description: tool.description,
            inputSchema: JSON.stringify(tool.schema),
            outputSchema: undefined,
            annotations:
              tool.readOnly === undefined
                ? undefined
                : { title: undefined, readOnly: tool.readOnly, destructive: undefined, idempotent: undefined, openWorld: undefined },
          }));
        },
        callTool(name, argumentsJson, _context) {
          try {
            const tool = tools.get(name);
            if (!tool) {
              throw new NotFound(`unknown tool: ${name}`);
            }
            let args;
            try {
              args = JSON.parse(argumentsJson || "{}");
            } catch (error) {
              throw new InvalidParams(`arguments are not JSON: ${error.message}`);
            }
            if (args === null || typeof args !== "object" || Array.isArray(args)) {
              throw new InvalidParams("arguments must be a JSON object");
            }
            checkArguments(tool.schema, args);
            const value = tool.handler(args);
            const done = value && value.fedmcpResult ? value : { content: value, structured: undefined, isError: false };
            return {
              tag: "complete",
              val: {
                content: contents(done.content),
                structuredContent: done.structured === undefined ? undefined : JSON.stringify(done.structured),
                isError: Boolean(done.isError),
              },
            };
          } catch (error) {
            throw asPluginError(error);
          }
        },
      },
      resources: {
        listResources() {
          return [...resources.values()].map((r) => ({
            uri: r.uri,
            name: r.name,
            title: undefined,
            description: r.description,
            mimeType: r.mimeType,
            size: undefined,
          }));
        },
        listResourceTemplates() {
          return [];
        },
        readResource(uri, _context) {
          try {
            const resource = resources.get(uri);
            if (!resource) {
              throw new NotFound(`unknown resource: ${uri}`);
            }
            const value = resource.read();
            const item =
              value instanceof Uint8Array
                ? { tag: "blob", val: { uri, mimeType: resource.mimeType, blob: value } }
                : { tag: "text", val: { uri, mimeType: resource.mimeType, text: String(value) } };
            return { tag: "complete", val: [item] };
          } catch (error) {
            throw asPluginError(error);
          }
        },
      },
      prompts: {
        listPrompts() {
          return [...prompts.values()].map((p) => ({ name: p.name, title: undefined, description: p.description, arguments: p.args }));
        },
        getPrompt(name, argumentPairs, _context) {
          try {
            const prompt = prompts.get(name);
            if (!prompt) {
              throw new NotFound(`unknown prompt: ${name}`);
            }
            const args = Object.fromEntries(argumentPairs);
            for (const arg of prompt.args) {
              if (arg.required && !(arg.name in args)) {
                throw new InvalidParams(`missing required argument: ${arg.name}`);
              }
            }
            const messages = contents(prompt.render(args)).map((content) => ({ role: "user", content }));
            return { tag: "complete", val: { description: prompt.description, messages } };
          } catch (error) {
            throw asPluginError(error);
          }
        },
      },
      completions: {
        complete(_reference, _argumentName, _argumentValue, _context) {
          return { values: [], total: undefined, hasMore: false };
        },
      },
    };
  }
}
