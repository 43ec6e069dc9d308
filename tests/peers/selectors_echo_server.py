#!/usr/bin/env python3
"""An independent echo server in the shape of the Python selectors lesson: one event loop,
non-blocking sockets, a per-connection output buffer, and .send() that may take less than
asked. The interop tests run ucoro-echo-client against it, and bench/run measures it (out of
the verdicts: it is the lesson's design, not a contender). Its connections have TCP_NODELAY,
like every other peer's (NoDelayListener); the lesson's code is otherwise unchanged.

usage: selectors_echo_server.py HOST PORT   (port 0: the kernel picks; the first line says which)
"""
import selectors
import signal
import socket
import sys
import types

sel = selectors.DefaultSelector()


# ANCHOR: accept
def accept(listener):
    conn, addr = listener.accept()
    conn.setblocking(False)
    data = types.SimpleNamespace(addr=addr, outb=b"")
    sel.register(conn, selectors.EVENT_READ | selectors.EVENT_WRITE, data=data)
# ANCHOR_END: accept


# ANCHOR: service
def service(key, mask):
    conn, data = key.fileobj, key.data
    if mask & selectors.EVENT_READ:
        received = conn.recv(1024)
        if received:
            data.outb += received
        else:
            sel.unregister(conn)
            conn.close()
            return
    if mask & selectors.EVENT_WRITE and data.outb:
        sent = conn.send(data.outb)
        data.outb = data.outb[sent:]  # keep what the kernel did not take
# ANCHOR_END: service


# Outside the tutorial's excerpt: a client that resets (ucoro-bench ending a run, a killed
# client) ends its own connection, not the whole server, as the lesson's code would let it.
lesson_service = service


def service(key, mask):  # noqa: F811 (wraps the lesson's function above)
    try:
        lesson_service(key, mask)
    except ConnectionError:
        sel.unregister(key.fileobj)
        key.fileobj.close()


class NoDelayListener:
    """The listening socket as the lesson's accept() sees it, except that every connection it
    hands out has TCP_NODELAY, as every other benchmark peer's does: without it an echo of a
    small message waits for the client's delayed ACK (40 ms on Linux), and the benchmark
    measured that stall instead of the server."""

    def __init__(self, listener):
        self.listener = listener

    def fileno(self):
        return self.listener.fileno()

    def accept(self):
        conn, addr = self.listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


def main():
    if len(sys.argv) != 3:
        print(f"usage: {sys.argv[0]} HOST PORT", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((sys.argv[1], int(sys.argv[2])))
    listener.listen()
    listener.setblocking(False)
    sel.register(NoDelayListener(listener), selectors.EVENT_READ, data=None)
    host, port = listener.getsockname()
    print(f"listening on {host}:{port}", flush=True)
    # ANCHOR: loop
    try:
        while True:
            for key, mask in sel.select(timeout=None):
                if key.data is None:
                    accept(key.fileobj)
                else:
                    service(key, mask)
    finally:
        sel.close()
    # ANCHOR_END: loop


if __name__ == "__main__":
    sys.exit(main())
