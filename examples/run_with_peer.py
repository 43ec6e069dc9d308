#!/usr/bin/env python3
"""Runs an example that talks to another program, the way a reader would in two terminals.

Starts SERVER, waits for a line matching --ready (its named group `port`, if any, replaces
{port} in CLIENT), runs CLIENT to completion, then sends --signal to SERVER and waits for
it. Passes only if every exit code is the expected one and every --expect-* regex matches
that program's output. Both outputs are printed, for the ctest log.

usage: run_with_peer.py --server CMD... --ready REGEX [--client CMD...]
           [--expect-client REGEX]... [--signal INT|TERM] [--server-exit N]
           [--expect-server REGEX]...
"""
import argparse
import queue
import re
import signal
import subprocess
import sys
import threading
import time

READY_SECONDS = 10
CLIENT_SECONDS = 30
EXIT_SECONDS = 10


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", nargs="+", required=True)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--client", nargs="+")
    parser.add_argument("--expect-client", action="append", default=[])
    parser.add_argument("--signal", choices=["INT", "TERM"], default="TERM")
    parser.add_argument("--server-exit", type=int, default=0)
    parser.add_argument("--expect-server", action="append", default=[])
    args = parser.parse_args()

    server = subprocess.Popen(args.server, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    lines = queue.Queue()

    def forward_lines():  # a thread, so that waiting for a line can time out
        for line in server.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=forward_lines, daemon=True).start()
    server_output = []
    failures = []

    def read_line(deadline):
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if line is not None:
            server_output.append(line)
        return line

    ready = None
    deadline = time.monotonic() + READY_SECONDS
    while ready is None:
        line = read_line(deadline)
        if line is None:
            failures.append(f"server never printed a line matching {args.ready!r}")
            break
        ready = re.search(args.ready, line)

    if ready and args.client:
        port = ready.groupdict().get("port", "")
        client_cmd = [part.replace("{port}", port) for part in args.client]
        try:
            client = subprocess.run(client_cmd, capture_output=True, text=True,
                                    timeout=CLIENT_SECONDS)
            print(f"$ {' '.join(client_cmd)}\n{client.stdout}{client.stderr}")
            if client.returncode != 0:
                failures.append(f"client exited with {client.returncode}")
            for pattern in args.expect_client:
                if not re.search(pattern, client.stdout):
                    failures.append(f"client output does not match {pattern!r}")
        except subprocess.TimeoutExpired:
            failures.append(f"client still running after {CLIENT_SECONDS} s")

    if server.poll() is None:
        server.send_signal(signal.SIGINT if args.signal == "INT" else signal.SIGTERM)
    try:
        server.wait(timeout=EXIT_SECONDS)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        failures.append(f"server still running {EXIT_SECONDS} s after SIG{args.signal}")
    deadline = time.monotonic() + EXIT_SECONDS
    while read_line(deadline) is not None:
        pass
    text = "".join(server_output)
    print(f"$ {' '.join(args.server)}\n{text}(exit {server.returncode})")
    if server.returncode != args.server_exit:
        failures.append(f"server exited with {server.returncode}, expected {args.server_exit}")
    for pattern in args.expect_server:
        if not re.search(pattern, text):
            failures.append(f"server output does not match {pattern!r}")

    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
