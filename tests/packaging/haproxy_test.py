"""HAProxy in front of two ucoro-echo-servers (docs/deployment.md), on loopback:
the doc shows packaging/haproxy.cfg verbatim and `haproxy -c` accepts it; echoes through the
balancer come back byte for byte; leastconn puts a second connection on the other server;
after one server is stopped with SIGTERM, the health check marks it down and new
connections reach the other one, byte for byte. Skipped without haproxy.
usage: haproxy_test.py SOURCE_DIR ECHO_SERVER ECHO_CLIENT
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

DEADLINE = 15.0  # seconds for any one wait; every loop below is bounded by it


def fail(message):
    print(f"FAILED: {message}")
    sys.exit(1)


def wait_until(what, predicate, timeout=DEADLINE, every=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)  # polling an outside process: nothing to wait on
    fail(f"timed out after {timeout} s waiting for {what}")


def check_doc_config(source_dir, haproxy):
    config_path = os.path.join(source_dir, "packaging", "haproxy.cfg")
    with open(config_path) as f:
        config = f.read()
    with open(os.path.join(source_dir, "docs", "deployment.md")) as f:
        doc = f.read()
    blocks = re.findall(r"```haproxy\n(.*?)```", doc, re.S)
    if config not in blocks:
        fail("docs/deployment.md does not show packaging/haproxy.cfg verbatim in a ```haproxy block")
    result = subprocess.run([haproxy, "-c", "-f", config_path], capture_output=True, text=True,
                            timeout=DEADLINE)
    if result.returncode != 0:
        fail(f"haproxy -c rejects packaging/haproxy.cfg:\n{result.stdout}{result.stderr}")
    print("docs/deployment.md shows packaging/haproxy.cfg; haproxy -c: valid")


def start_server(binary, work, name):
    log = open(os.path.join(work, f"{name}.log"), "w+")
    process = subprocess.Popen([binary, "-q", "127.0.0.1", "0"], stdout=log,
                               stderr=subprocess.STDOUT)

    def port():
        if process.poll() is not None:
            fail(f"{name} exited with {process.returncode} before listening")
        log.seek(0)
        match = re.search(r"^listening on 127\.0\.0\.1:(\d+)$", log.read(), re.M)
        return int(match.group(1)) if match else None

    return process, wait_until(f"{name}'s startup line", port)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def haproxy_config(port, stats_socket, servers):
    lines = [
        "global",
        f"    stats socket {stats_socket} mode 600 level admin",
        "defaults",
        "    mode tcp",
        "    timeout connect 2s",
        "    retries 2",
        "    option redispatch",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout tunnel 1h",
        "    timeout client-fin 10s",
        "    timeout server-fin 10s",
        "frontend echo",
        f"    bind 127.0.0.1:{port}",
        "    default_backend echo_servers",
        "backend echo_servers",
        "    balance leastconn",
        # Short, so that the test sees a server go down in a fraction of a second.
        "    default-server check inter 100ms fall 2 rise 1",
    ]
    lines += [f"    server {name} 127.0.0.1:{p}" for name, p in servers]
    return "\n".join(lines) + "\n"


def start_haproxy(haproxy, work, servers):
    """Starts HAProxy on a free loopback port. HAProxy cannot bind port 0, so a port found
    free is tried, and another if something took it meanwhile (a bounded number of times)."""
    stats_socket = os.path.join(work, "admin.sock")
    config_path = os.path.join(work, "haproxy.cfg")
    for attempt in range(5):
        port = free_port()
        with open(config_path, "w") as f:
            f.write(haproxy_config(port, stats_socket, servers))
        err = open(os.path.join(work, f"haproxy-{attempt}.err"), "w+")
        process = subprocess.Popen([haproxy, "-db", "-f", config_path], stdout=err,
                                   stderr=subprocess.STDOUT)

        def ready():
            if process.poll() is not None:
                return "exited"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
            except OSError:
                return None
            return "ready" if os.path.exists(stats_socket) else None

        if wait_until("HAProxy to accept connections", ready) == "ready":
            return process, port, stats_socket
        err.seek(0)
        output = err.read()
        if "bind" not in output.lower():
            fail(f"haproxy exited with {process.returncode}:\n{output}")
        print(f"port {port} was taken before haproxy could bind it; trying another")
    fail("haproxy could not bind a free port in 5 attempts")


def show_stat(stats_socket):
    """The backend's servers from `show stat`: {name: {field: value}}."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(DEADLINE)
        s.connect(stats_socket)
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    servers = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == "echo_servers" and row.get("svname") not in ("BACKEND", None):
            servers[row["svname"]] = row
    return servers


def echo_exactly(sock, payload):
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(len(payload) - len(received))
        if not chunk:
            fail(f"the connection closed after {len(received)} of {len(payload)} bytes")
        received += chunk
    if received != payload:
        fail("the echo differs from what was sent")


def run_client(client, port, connections):
    result = subprocess.run([client, "-t", "10", "127.0.0.1", str(port), str(connections)],
                            capture_output=True, text=True, timeout=60)
    expected = f"all {connections} connections got back every byte they sent"
    if result.returncode != 0 or expected not in result.stdout:
        fail(f"ucoro-echo-client through HAProxy exited {result.returncode}:\n"
             f"{result.stdout}{result.stderr}")
    print(f"ucoro-echo-client through HAProxy: {expected}")


def main():
    source_dir, server, client = sys.argv[1:4]
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if haproxy is None:
        print("SKIPPED: haproxy not found (.ci/install-deps installs it)")
        return 0
    check_doc_config(source_dir, haproxy)

    processes = []
    with tempfile.TemporaryDirectory() as work:
        try:
            echo1, port1 = start_server(server, work, "echo1")
            processes.append(echo1)
            echo2, port2 = start_server(server, work, "echo2")
            processes.append(echo2)
            balancer, port, stats_socket = start_haproxy(
                haproxy, work, [("echo1", port1), ("echo2", port2)])
            processes.append(balancer)
            wait_until("both servers UP", lambda: all(
                row["status"] == "UP" for row in show_stat(stats_socket).values()))

            run_client(client, port, 4)

            # leastconn: with one connection open on a server, the next goes to the other.
            payload = bytes(range(256)) * 256  # 64 KiB, every byte value
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as a:
                echo_exactly(a, payload)  # a is on a server before b is opened
                b = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
                with b:
                    echo_exactly(b, payload)
                    current = {name: row["scur"] for name, row in show_stat(stats_socket).items()}
                    if current != {"echo1": "1", "echo2": "1"}:
                        fail(f"leastconn did not spread two connections: {current}")
            print("leastconn: two open connections, one on each server")

            echo1.send_signal(signal.SIGTERM)
            if echo1.wait(timeout=DEADLINE) != 0:
                fail(f"echo1 exited with {echo1.returncode} after SIGTERM")
            wait_until("HAProxy to mark echo1 DOWN", lambda: show_stat(stats_socket)["echo1"][
                "status"].startswith("DOWN"))
            print("echo1 stopped with SIGTERM (exit 0); HAProxy marked it DOWN")

            before = {name: int(row["stot"]) for name, row in show_stat(stats_socket).items()}
            run_client(client, port, 3)
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as c:
                echo_exactly(c, payload)
            after = {name: int(row["stot"]) for name, row in show_stat(stats_socket).items()}
            if after["echo1"] != before["echo1"] or after["echo2"] != before["echo2"] + 4:
                fail(f"sessions per server before {before}, after {after}: expected 4 more on "
                     "echo2 and none on echo1")
            print("after echo1 went down, 4 new connections reached echo2, byte for byte")
        finally:
            for process in reversed(processes):
                if process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(timeout=DEADLINE)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
