#!/usr/bin/env node
// Build a JavaScript plugin into a WebAssembly component:
//   node sdk/js/build.mjs <plugin source.js> <out.wasm>
//
// The plugin imports the SDK as "./fedmcp.js"; the build stages the source beside a copy of
// the SDK (so the plugin folder needs no copy of its own) and runs componentize-js against
// the fedmcp WIT world.

import { componentize } from "@bytecodealliance/componentize-js";
import { copyFile, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const [source, output] = process.argv.slice(2);
if (!source || !output) {
  console.error("usage: node sdk/js/build.mjs <plugin source.js> <out.wasm>");
  process.exit(2);
}
const sdk = dirname(fileURLToPath(import.meta.url));
const wit = resolve(sdk, "../../wit");
const stage = await mkdtemp(join(tmpdir(), "fedmcp-js-"));
try {
  const folder = dirname(resolve(source));
  for (const entry of await readdir(folder)) {
    if (entry.endsWith(".js") || entry.endsWith(".mjs")) {
      await copyFile(join(folder, entry), join(stage, entry));
    }
  }
  await copyFile(join(sdk, "fedmcp.js"), join(stage, "fedmcp.js"));
  const { component } = await componentize({
    sourcePath: join(stage, basename(source)),
    witPath: wit,
    worldName: "plugin",
    // A plugin reaches the network only through what its manifest grants; it has no fetch.
    disableFeatures: ["http", "fetch-event"],
  });
  await writeFile(output, component);
  console.log(`built ${output}`);
} finally {
  await rm(stage, { recursive: true, force: true });
}
