#!/usr/bin/env python3
"""Time `fedmcp serve` from process start: to its first /health answer and to `ready: true`.

Cold: an empty compile cache (the first answer must come while plugins still compile).
Warm: COPIES copies of one plugin under different names, cache filled by a first start.
Every wait is bounded; the server is killed after each run. Only 127.0.0.1 is used.

    cargo build --release -p fedmcp && cargo xtask plugins
    python3 host/benches/start_time.py [--bin target/release/fedmcp] [--runs 5]
        [--cold-plugins plugins] [--warm-plugin plugins/text-tools.wasm] [--copies 10]
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def serve(binary, plugins, cache, work):
    """Start the server; (process, started_at, address holder, log lines)."""
    config = os.path.join(work, "host.toml")
    with open(config, "w") as f:
        f.write(f"[plugins]\ncache_dir = {json.dumps(cache)}\n")
    env = dict(os.environ, RUST_LOG="fedmcp=info,warn", NO_COLOR="1")
    started = time.monotonic()
    process = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--plugins", plugins, "--config", config],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines, address = [], {}

    def read():
        for line in process.stderr:
            lines.append((time.monotonic() - started, line.rstrip()))
            if "serving MCP at http://" in line and "value" not in address:
                address["value"] = line.split("serving MCP at http://")[1].split("/")[0]

    threading.Thread(target=read, daemon=True).start()
    return process, started, address, lines


def health(address):
    connection = http.client.HTTPConnection(address, timeout=2)
    try:
        connection.request("GET", "/health")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def run(binary, plugins, cache, patience):
    """Seconds from process start to the first /health answer and to ready; the answers."""
    with tempfile.TemporaryDirectory() as work:
        process, started, address, lines = serve(binary, plugins, cache, work)
        first = ready = None
        first_answer = None
        deadline = started + patience
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    sys.exit(f"fedmcp exited ({process.returncode}):\n" + "\n".join(l for _, l in lines))
                if "value" not in address:
                    time.sleep(0.002)
                    continue
                try:
                    answer = health(address["value"])
                except OSError:
                    time.sleep(0.002)
                    continue
                now = time.monotonic() - started
                if first is None:
                    first, first_answer = now, answer
                if answer.get("ready") is True:
                    ready = now
                    break
                time.sleep(0.005)
        finally:
            process.kill()
            process.wait(timeout=10)
        if ready is None:
            sys.exit(f"not ready within {patience} s:\n" + "\n".join(l for _, l in lines))
        return first, ready, first_answer, lines


def show_log(lines):
    for at, line in lines:
        print(f"    +{at * 1e3:7.1f} ms  {line[line.find('INFO') if 'INFO' in line else 0:][:150]}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "fedmcp"))
    parser.add_argument("--cold-plugins", default=os.path.join(ROOT, "plugins"))
    parser.add_argument("--warm-plugin", default=os.path.join(ROOT, "plugins", "text-tools.wasm"))
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--log", action="store_true", help="print the server's log of each run, with times")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        # Cold: the example plugins, in place (manifests name folders beside them), with an
        # empty cache; then warm, from the cache the cold start filled.
        cold_cache = os.path.join(scratch, "cold-cache")
        count = len([n for n in os.listdir(args.cold_plugins) if n.endswith(".wasm")])
        first, ready, answer, lines = run(args.bin, args.cold_plugins, cold_cache, patience=300)
        print(f"cold ({count} plugins of {args.cold_plugins}, empty cache):")
        print(f"  first /health answer {first * 1e3:.0f} ms after start: {json.dumps(answer)[:300]}")
        print(f"  ready {ready * 1e3:.0f} ms after start")
        if args.log:
            show_log(lines)
        first, ready, _, lines = run(args.bin, args.cold_plugins, cold_cache, patience=60)
        print(f"warm (the same {count} plugins): first /health answer {first * 1e3:.0f} ms, ready {ready * 1e3:.0f} ms")
        if args.log:
            show_log(lines)

        # Warm: COPIES copies of one plugin; the first start fills the cache.
        warm = os.path.join(scratch, "warm")
        os.makedirs(warm)
        for i in range(args.copies):
            shutil.copy(args.warm_plugin, os.path.join(warm, f"copy{i}.wasm"))
        cache = os.path.join(scratch, "warm-cache")
        run(args.bin, warm, cache, patience=300)
        readies = []
        for _ in range(args.runs):
            first, ready, _, lines = run(args.bin, warm, cache, patience=30)
            readies.append(ready)
            if args.log:
                show_log(lines)
        shown = ", ".join(f"{r * 1e3:.0f}" for r in readies)
        print(f"warm ({args.copies} copies of {os.path.basename(args.warm_plugin)}): start -> ready:true "
              f"median {statistics.median(readies) * 1e3:.0f} ms (runs: {shown} ms)")


if __name__ == "__main__":
    main()
