#!/usr/bin/env python3
"""An independent echo client in the shape of the Python selectors lesson: it opens the
connections at once, sends two messages on each, and reads back as many bytes as it sent.
Exits 0 only if every connection got back exactly its bytes. The interop tests run it
against ucoro-echo-server.

usage: selectors_echo_client.py HOST PORT NUM_CONNECTIONS
"""
import selectors
import socket
import sys
import types

MESSAGES = [b"Message 1 from client.", b"Message 2 from client."]
TIMEOUT_SECONDS = 30

sel = selectors.DefaultSelector()


# ANCHOR: start_connections
def start_connections(host, port, count):
    for connid in range(1, count + 1):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex((host, port))
        data = types.SimpleNamespace(
            connid=connid,
            expected=b"".join(MESSAGES),
            received=b"",
            outb=b"".join(MESSAGES),
        )
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, data=data)
# ANCHOR_END: start_connections


# ANCHOR: service
def service(key, mask, results):
    sock, data = key.fileobj, key.data
    if mask & selectors.EVENT_READ:
        chunk = sock.recv(1024)
        data.received += chunk
        if not chunk or len(data.received) >= len(data.expected):
            results[data.connid] = data.received == data.expected
            sel.unregister(sock)
            sock.close()
            return
    if mask & selectors.EVENT_WRITE and data.outb:
        sent = sock.send(data.outb)
        data.outb = data.outb[sent:]
# ANCHOR_END: service


def main():
    if len(sys.argv) != 4:
        print(f"usage: {sys.argv[0]} HOST PORT NUM_CONNECTIONS", file=sys.stderr)
        return 2
    count = int(sys.argv[3])
    start_connections(sys.argv[1], int(sys.argv[2]), count)
    results = {}
    while sel.get_map():
        events = sel.select(timeout=TIMEOUT_SECONDS)
        if not events:
            print("timed out waiting for the echo", file=sys.stderr)
            return 1
        for key, mask in events:
            service(key, mask, results)
    sel.close()
    failed = [connid for connid in range(1, count + 1) if not results.get(connid)]
    if failed:
        print(f"connections that did not get their bytes back: {failed}", file=sys.stderr)
        return 1
    print(f"all {count} connections matched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
