#!/usr/bin/env python3
"""A/B of two echo-server binaries on the configurations a change to the fast path can move.

    bench/ab.py [--reps N] [--duration S] A_SERVER B_SERVER

Each repetition runs A and B back to back (the order alternates between repetitions), the
server pinned to CPU 0 and ucoro-bench (next to B) to CPU 1, and prints per configuration:
each repetition's B/A ratio of throughput and of server CPU per message, in how many of n
repetitions B was ahead, and the median ratio with a 95% bootstrap interval (fixed seed).
The last configuration is memory: RSS per idle connection after one 64 KiB echo each.
Loopback only; both servers get the same arguments (-q 127.0.0.1 0 and their defaults).
"""
import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time

CONFIGS = [
    ("100 x 64 B, saturated", ["-c", "100", "-s", "64", "-d", "1"]),
    ("1,000 x 64 B, saturated", ["-c", "1000", "-s", "64", "-d", "1"]),
    ("10 x 64 KiB, saturated", ["-c", "10", "-s", "65536", "-d", "1"]),
]
MEMORY = ("5,000 idle after a 64 KiB echo", ["-c", "5000", "-s", "65536", "--messages", "1"])


def start(server):
    proc = subprocess.Popen(["taskset", "-c", "0", server, "-q", "127.0.0.1", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    port = re.search(r":(\d+)$", line.strip())
    if not port:
        proc.kill()
        sys.exit(f"ab: {server} did not say where it listens: {line!r}")
    return proc, port.group(1)


def measure(bench, server, args, duration):
    proc, port = start(server)
    try:
        timing = [] if "--messages" in args else ["--duration", str(duration), "--warmup", "1"]
        out = subprocess.run(["taskset", "-c", "1", bench, *args, *timing, "--server-pid",
                              str(proc.pid), "--json", "127.0.0.1", port],
                             capture_output=True, text=True, timeout=600, check=True).stdout
        return json.loads(out)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def interval(ratios, rounds=10000):
    rng = random.Random(12345)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def report(name, a_values, b_values, higher_is_better, unit):
    ratios = [b / a for a, b in zip(a_values, b_values) if a > 0]
    ahead = sum(1 for r in ratios if (r > 1) == higher_is_better and r != 1)
    low, high = interval(ratios)
    verdict = "level"
    if low > 1 or high < 1:
        verdict = "B ahead" if (low > 1) == higher_is_better else "B behind"
    print(f"  {name}: A {statistics.median(a_values):,.1f} {unit}, B {statistics.median(b_values):,.1f}"
          f" {unit}; B/A per rep {', '.join(f'{r:.2f}' for r in ratios)}; B ahead in {ahead} of"
          f" {len(ratios)}; median {statistics.median(ratios):.3f} [{low:.3f}, {high:.3f}]: {verdict}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("a")
    parser.add_argument("b")
    options = parser.parse_args()
    bench = os.path.join(os.path.dirname(os.path.abspath(options.b)), "ucoro-bench")
    results = {name: {"a": [], "b": []} for name, _ in CONFIGS + [MEMORY]}
    for rep in range(options.reps):
        order = [("a", options.a), ("b", options.b)]
        if rep % 2 == 1:
            order.reverse()
        for name, args in CONFIGS + [MEMORY]:
            for side, server in order:
                results[name][side].append(measure(bench, server, args, options.duration))
                time.sleep(0.5)
        print(f"repetition {rep + 1} of {options.reps} done", file=sys.stderr)
    print(f"A = {options.a}\nB = {options.b}\n{options.reps} repetitions, alternating; "
          f"command: {' '.join(sys.argv)}")
    for name, _ in CONFIGS:
        print(name)
        r = results[name]
        report("msg/s", [x["messages_per_second"] for x in r["a"]],
               [x["messages_per_second"] for x in r["b"]], True, "msg/s")
        report("server CPU per message", [x["server_cpu_ns_per_message"] for x in r["a"]],
               [x["server_cpu_ns_per_message"] for x in r["b"]], False, "ns")
        report("generator CPU per message", [x["client_cpu_ns_per_message"] for x in r["a"]],
               [x["client_cpu_ns_per_message"] for x in r["b"]], False, "ns")
    name = MEMORY[0]
    print(name)
    r = results[name]
    per_connection = [
        [(x["server_rss_end_kib"] - x["server_rss_start_kib"]) / x["connections"] for x in r[side]]
        for side in ("a", "b")
    ]
    report("RSS per connection", per_connection[0], per_connection[1], False, "KiB")


if __name__ == "__main__":
    main()
