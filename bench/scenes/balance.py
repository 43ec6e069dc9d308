#!/usr/bin/env python3
"""How evenly SO_REUSEPORT spreads connections over the server's threads (docs/scaling.md).

Starts `ucoro-echo-server -q -v --threads T 127.0.0.1 0`, opens N connections to it (each
sends one byte and reads its echo, so that it was accepted), closes them, stops the server
with SIGINT and reads the per-thread "thread I: connections: A accepted" lines of -v.
Repeats R times (each run gets fresh ephemeral ports, so a fresh draw of the hash).

Usage: bench/scenes/balance.py SERVER CONNECTIONS THREADS [REPEATS]
"""
import re
import resource
import signal
import socket
import subprocess
import sys


def one_run(server, connections, threads):
    proc = subprocess.Popen([server, "-q", "-v", "--threads", str(threads), "127.0.0.1", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    match = re.match(r"listening on 127\.0\.0\.1:(\d+)", first)
    if not match:
        proc.kill()
        sys.exit(f"the server did not announce its port: {first!r}")
    port = int(match.group(1))
    sockets = []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"x")
        if s.recv(1) != b"x":
            sys.exit("no echo")
        sockets.append(s)
    for s in sockets:
        s.close()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    counts = [int(m.group(2)) for m in re.finditer(r"^thread (\d+): connections: (\d+) accepted",
                                                    out, re.M)]
    if len(counts) != threads or sum(counts) != connections:
        sys.exit(f"unexpected -v output:\n{out}\n{err}")
    return counts


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    server, connections, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, connections + 256)), hard))
    for _ in range(repeats):
        counts = one_run(server, connections, threads)
        fair = connections / threads
        print(f"{connections} connections, {threads} threads: {counts}  "
              f"max/min {max(counts) / max(1, min(counts)):.2f}, "
              f"max/fair {max(counts) / fair:.2f}")


if __name__ == "__main__":
    main()
