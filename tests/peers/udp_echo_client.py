#!/usr/bin/env python3
"""A UDP echo client: from two sockets, sends datagrams of several sizes (an empty one and
one of 60,000 bytes among them) one at a time, and checks each echo byte for byte and that
it comes back to the socket that sent it.

usage: udp_echo_client.py HOST PORT
Exits 0 and prints "all N datagrams echoed byte for byte" only if every echo matched.
"""
import os
import socket
import sys

TIMEOUT_SECONDS = 5
SIZES = [0, 1, 5, 1200, 1472, 9000, 60000]


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    host, port = sys.argv[1], int(sys.argv[2])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    senders = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(2)]
    count = 0
    for size in SIZES:
        for index, sender in enumerate(senders):
            sender.settimeout(TIMEOUT_SECONDS)
            payload = os.urandom(size)
            sender.sendto(payload, (host, port))
            try:
                echo, source = sender.recvfrom(65535)
            except socket.timeout:
                print(f"no echo of {size} bytes to sender {index} within {TIMEOUT_SECONDS} s")
                return 1
            if echo != payload:
                print(f"echo of {size} bytes to sender {index} differs: got {len(echo)} bytes")
                return 1
            if source[1] != port:
                print(f"echo came from port {source[1]}, not {port}")
                return 1
            count += 1
    print(f"all {count} datagrams echoed byte for byte")
    return 0


if __name__ == "__main__":
    sys.exit(main())
