"""bench/run's statistics and rules, on small fixed data sets: the paired ratios, k of n, the
distribution-free interval of the median and its verdict, which runs are the server's, the load generator's busy limit, the reference client's
check, and --render on a run's JSON. Run by ctest (bench/CMakeLists.txt):
    python3 -m unittest tests/apps/bench_run_test.py   (from the repository's root)
"""
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, "bench", "run")


def load_bench_run():
    loader = importlib.machinery.SourceFileLoader("bench_run", RUN)
    spec = importlib.util.spec_from_loader("bench_run", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


bench = load_bench_run()


def run(rep, config, server, generator="ucoro-bench", **result):
    entry = {"rep": rep, "config": config, "server": server, "result": dict(result)}
    if generator != "ucoro-bench":
        entry["generator"] = generator
    return entry


class PairedStatistics(unittest.TestCase):
    def test_k_of_n_and_median(self):
        p = bench.paired_statistics([1.1, 1.2, 0.9, 1.3, 1.05, 1.15, 0.95])
        self.assertEqual(p["n"], 7)
        self.assertEqual(p["ahead"], 5)
        self.assertAlmostEqual(p["median"], 1.1)
        # Lower is better (CPU per message): ahead means below 1.
        self.assertEqual(bench.paired_statistics([0.9, 1.1, 0.8], higher_is_better=False)["ahead"],
                         2)

    def test_interval_holds_the_median_and_stays_within_the_data(self):
        data = [0.92, 1.01, 1.04, 1.08, 1.12, 1.19, 1.31]
        p = bench.paired_statistics(data)
        self.assertLessEqual(min(data), p["low"])
        self.assertLessEqual(p["low"], p["median"])
        self.assertLessEqual(p["median"], p["high"])
        self.assertLessEqual(p["high"], max(data))
        # The bounds are order statistics of the data.
        self.assertIn(p["low"], data)
        self.assertIn(p["high"], data)

    def test_interval_on_a_fixed_data_set(self):
        # Seven ratios: [2nd, 6th] would hold the median 87.5% of the time, [min, max] 98.4%:
        # the interval is [min, max], and a verdict needs all seven on one side.
        p = bench.paired_statistics([1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6])
        self.assertEqual((p["low"], p["high"]), (1.0, 1.6))
        self.assertAlmostEqual(p["coverage"], 1 - 2 / 128)
        self.assertAlmostEqual(p["median"], 1.3)
        self.assertEqual(p["verdict"], "level")
        self.assertEqual(bench.paired_statistics([1.01, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6])
                         ["verdict"], "ahead")

    def test_interval_coverage_by_n(self):
        # n = 14 (two runs a repetition, were they independent): the 3rd and the 12th
        # (98.7%); the 4th and 11th would be 94.3%, under 95%.
        data = [float(i) for i in range(1, 15)]
        low, high, coverage = bench.median_interval(data)
        self.assertEqual((low, high), (3.0, 12.0))
        self.assertGreaterEqual(coverage, 0.95)
        # n = 5 never reaches 95% ([min, max] is 93.75%): no verdict from 5 pairs.
        self.assertAlmostEqual(bench.median_interval([1, 2, 3, 4, 5])[2], 1 - 2 / 32)
        self.assertTrue(bench.paired_statistics([1.05, 1.06, 1.07, 1.08, 1.09])["verdict"]
                        .startswith("no verdict"))

    def test_verdicts_only_where_the_interval_excludes_one(self):
        self.assertEqual(bench.paired_statistics([1.05, 1.06, 1.07, 1.08, 1.09, 1.1])["verdict"],
                         "ahead")
        self.assertEqual(bench.paired_statistics([0.9, 0.92, 0.93, 0.95, 0.91, 0.94])
                         ["verdict"], "behind")
        # Ahead in 4 of 7, but the interval holds 1.0: level, not "ahead".
        self.assertEqual(bench.paired_statistics([0.83, 0.9, 0.95, 1.02, 1.1, 1.2, 1.31])
                         ["verdict"], "level")
        # Ahead in 6 of 7: still level (the bootstrap's [2nd, 6th] would have said ahead).
        self.assertEqual(bench.paired_statistics([0.99, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6])
                         ["verdict"], "level")
        # CPU per message: below 1 is ahead.
        self.assertEqual(bench.paired_statistics([0.8, 0.85, 0.82, 0.84, 0.83, 0.81],
                                                 higher_is_better=False)["verdict"], "ahead")
        self.assertEqual(bench.paired_statistics([1.2, 1.3, 1.25, 1.22, 1.21, 1.23],
                                                 higher_is_better=False)["verdict"], "behind")

    def test_no_verdict_from_too_few_pairs(self):
        # One run each: the interval is the one ratio, which says nothing about the spread.
        p = bench.paired_statistics([1.4])
        self.assertEqual((p["low"], p["high"]), (1.4, 1.4))
        self.assertTrue(p["verdict"].startswith("no verdict"))
        self.assertTrue(bench.paired_statistics([1.2, 1.3, 1.25, 1.22])["verdict"]
                        .startswith("no verdict"))

    def test_no_pairs(self):
        self.assertIsNone(bench.paired_statistics([]))
        self.assertIsNone(bench.paired_statistics([None, None]))


class Pairing(unittest.TestCase):
    def test_pairs_within_each_repetition_in_order(self):
        results = [
            run(0, "k", "ucoro", messages_per_second=110), run(0, "k", "c-epoll",
                                                               messages_per_second=100),
            run(1, "k", "c-epoll", messages_per_second=100), run(1, "k", "ucoro",
                                                                 messages_per_second=90),
            # Run twice in repetition 2: two pairs, first with first, one ratio per repetition
            # (their geometric mean).
            run(2, "k", "ucoro", messages_per_second=100), run(2, "k", "c-epoll",
                                                               messages_per_second=50),
            run(2, "k", "c-epoll", messages_per_second=200), run(2, "k", "ucoro",
                                                                 messages_per_second=100),
            # Only one side in repetition 3: no pair.
            run(3, "k", "ucoro", messages_per_second=100),
            # A failed run pairs as nothing.
            run(4, "k", "ucoro", error="boom"), run(4, "k", "c-epoll", messages_per_second=1),
            # The reference client's runs are not ucoro-bench's.
            run(0, "k", "c-epoll", generator="reference-client", messages_per_second=1),
        ]
        self.assertEqual(bench.paired_ratios(results, "k", "c-epoll", "messages_per_second"),
                         [1.1, 0.9, 1.0, None])
        # A pair that is not valid counts as none.
        self.assertEqual(bench.paired_ratios(results, "k", "c-epoll", "messages_per_second",
                                             valid=lambda r: r["messages_per_second"] != 90),
                         [1.1, None, 1.0, None])


class GeneratorLimits(unittest.TestCase):
    def test_busy_share_from_the_json_or_from_an_old_run(self):
        self.assertEqual(bench.generator_busy({"client_busy": 0.4, "client_cores": 0.5,
                                               "threads": 1}), 0.5)
        self.assertEqual(bench.generator_busy({"client_busy": 0.4, "client_cores": 0.5,
                                               "threads": 2}), 0.4)
        # Recorded before ucoro-bench measured its busy share: CPU per message x rate.
        self.assertAlmostEqual(bench.generator_busy({"client_cpu_ns_per_message": 24000,
                                                     "messages_per_second": 40000}), 0.96)

    def test_latency_refused_above_the_busy_limit_or_when_late(self):
        self.assertIsNone(bench.latency_refusal({"client_busy": 0.5, "rate": 40000,
                                                 "messages": 1000, "late_sends": 10}))
        self.assertIn("0.93 busy", bench.latency_refusal({"client_busy": 0.93}))
        self.assertIn("left late", bench.latency_refusal({"client_busy": 0.5, "rate": 40000,
                                                          "messages": 1000, "late_sends": 11}))
        # Late among the messages scheduled, not those an overloaded server echoed.
        self.assertIsNone(bench.latency_refusal({"client_busy": 0.5, "rate": 1000,
                                                 "seconds": 3, "messages": 1000,
                                                 "late_sends": 20}))
        # Clumped sends: under 500 us late each, but a lag p99 over the limit.
        self.assertIn("clumped", bench.latency_refusal({"client_busy": 0.5, "rate": 40000,
                                                        "messages": 1000, "late_sends": 0,
                                                        "send_lag_p99_ns": 150_000}))
        # Kept off its CPU: idle-looking, but its schedule is not its own.
        self.assertIn("waited for its CPU", bench.latency_refusal(
            {"client_busy": 0.3, "rate": 40000, "messages": 1000, "late_sends": 0,
             "send_lag_p99_ns": 40_000, "client_runqueue_wait": 0.2}))
        # A closed-loop run has no schedule to keep.
        self.assertIsNone(bench.latency_refusal({"client_busy": 0.5, "send_lag_p99_ns": 10**9}))

    def test_summary_prints_latency_only_from_qualifying_runs(self):
        results = [run(i, "r", "ucoro", client_busy=busy, messages=1000, late_sends=0,
                       rate=40000, messages_per_second=40000, latency_p50_ns=p50,
                       latency_p99_ns=p50, latency_p999_ns=p50, connection_errors=0)
                   for i, (busy, p50) in enumerate([(0.5, 100e3), (0.9, 9e6), (0.6, 200e3),
                                                    (0.6, 150e3), (0.9, 8e6)])]
        results += [run(i, "r", "c-epoll", client_busy=0.95, messages=1000, late_sends=0,
                         rate=40000, messages_per_second=40000, latency_p50_ns=1e6,
                         latency_p99_ns=1e6, latency_p999_ns=1e6, connection_errors=0)
                    for i in range(3)]
        servers = [("ucoro", [], ""), ("c-epoll", [], "")]
        table = bench.summarize(results, servers, [("r", "title", [], "rate")])
        self.assertEqual(table[("r", "ucoro")]["latency_runs"], 3)
        self.assertAlmostEqual(table[("r", "ucoro")]["p50_us"], 150)
        self.assertIsNone(table[("r", "c-epoll")]["p50_us"])
        self.assertIn("0.95 busy", table[("r", "c-epoll")]["latency_refused"])
        # Two of three qualifying runs are too few: the quietest runs are not the server's.
        table = bench.summarize(results[:3], servers[:1], [("r", "title", [], "rate")])
        self.assertIsNone(table[("r", "ucoro")]["p50_us"])
        self.assertIn("only 2 of 3 runs qualified", table[("r", "ucoro")]["latency_refused"])


class ServerDefaults(unittest.TestCase):
    def test_the_default_batch_wait_is_read_from_the_servers_help(self):
        with tempfile.TemporaryDirectory() as directory:
            fake = os.path.join(directory, "server")
            with open(fake, "w") as f:
                f.write("#!/bin/sh\ncat <<'EOF'\nusage: s [--send-timeout S] [--batch-wait "
                        "MICROSECONDS]\n  --send-timeout S\n            (default: 10)\n"
                        "  --batch-wait MICROSECONDS\n            when idle, sleep; 0 wakes at "
                        "the first (default: 0; needs Linux\n            6.12)\nEOF\n")
            os.chmod(fake, 0o755)
            self.assertEqual(bench.default_batch_wait(fake), 0)
            self.assertIsNone(bench.default_batch_wait(os.path.join(directory, "missing")))


class Comparisons(unittest.TestCase):
    def test_a_fixed_rate_verdict_only_from_pairs_where_both_runs_were_the_servers(self):
        results = []
        for rep in range(7):
            busy = 0.9 if rep < 2 else 0.5
            results.append(run(rep, "r", "ucoro", client_busy=busy, rate=20000, messages=60000,
                               server_process_ns_per_message=8000))
            results.append(run(rep, "r", "c-epoll", client_busy=0.5, rate=20000,
                               messages=60000, server_process_ns_per_message=10000))
        p = bench.compare(results, "r", "c-epoll", "rate")
        self.assertEqual((p["n"], p["of"]), (5, 7))
        self.assertTrue(p["verdict"].startswith("no verdict"))  # 5 pairs: too few
        self.assertIn("5 of 7 pairs had both runs the server's", bench.paired_text(p, False))
        for r in results:
            r["result"]["client_busy"] = 0.95
        p = bench.compare(results, "r", "c-epoll", "rate")
        self.assertEqual(p["none_valid"], 7)
        self.assertIn("no verdict: none of the 7 pairs", bench.paired_text(p, False))

    def test_a_generator_bound_saturated_run_is_judged_on_cpu(self):
        results = []
        for rep in range(7):
            # ucoro-bench a whole core, the servers at 0.4 and 0.5 of theirs.
            results.append(run(rep, "s", "ucoro", client_busy=0.99, messages_per_second=100000,
                               server_process_ns_per_message=4000))
            results.append(run(rep, "s", "c-epoll", client_busy=0.99, messages_per_second=100000,
                               server_process_ns_per_message=5000))
        p = bench.compare(results, "s", "c-epoll", "saturated")
        self.assertFalse(p["higher"])
        self.assertAlmostEqual(p["median"], 0.8)
        self.assertEqual(p["verdict"], "ahead")
        self.assertIn("the generator setting the pace", p["what"])
        # The servers at a whole core: throughput is theirs, and compared.
        for r in results:
            r["result"]["server_process_ns_per_message"] = 9950
        p = bench.compare(results, "s", "c-epoll", "saturated")
        self.assertEqual((p["what"], p["verdict"]), ("throughput", "level"))


class ReferenceCheck(unittest.TestCase):
    def test_ratio_per_repetition_and_the_flag(self):
        key = "c100-64B-40k"
        results = []
        for rep, (under_bench, under_reference) in enumerate([(13000, 10000), (12000, 10000),
                                                              (14000, 10000)]):
            results.append(run(rep, key, "c-epoll", server_cpu_ns_per_message=under_bench,
                               latency_p50_ns=1e5, client_busy=0.5))
            results.append(run(rep, key, "c-epoll", generator="reference-client",
                               server_cpu_ns_per_message=under_reference, latency_p50_ns=1e5,
                               client_busy=0.5))
        check = bench.generator_check(results, key)["c-epoll"]
        self.assertEqual(check["imposed"]["ratios"], [1.3, 1.2, 1.4])
        self.assertTrue(check["flag"])
        self.assertEqual(check["reference_cpu_ns"], 10000)
        # Below as well: a generator that makes the server look cheaper is flagged too.
        for r in results:
            if r.get("generator") != "reference-client":
                r["result"]["server_cpu_ns_per_message"] = 6000
        self.assertTrue(bench.generator_check(results, key)["c-epoll"]["flag"])
        for r in results:
            if r.get("generator") != "reference-client":
                r["result"]["server_cpu_ns_per_message"] = 10500
        self.assertFalse(bench.generator_check(results, key)["c-epoll"]["flag"])


class Render(unittest.TestCase):
    def test_render_writes_the_page_from_a_runs_json(self):
        results = []
        for rep in range(7):
            for name, mps, cpu in (("ucoro", 100000 + rep, 6000), ("c-epoll", 90000, 6500)):
                results.append(run(rep, "c100-64B", name, messages_per_second=mps,
                                   server_cpu_ns_per_message=cpu, latency_p50_ns=5e5,
                                   latency_p99_ns=1e6, latency_p999_ns=2e6, rate=0,
                                   client_cpu_ns_per_message=5000, connection_errors=0,
                                   connections_established=100))
            results.append(run(rep, "churn-c100", "ucoro", messages_per_second=20000 + rep,
                               server_cpu_ns_per_message=40000, rate=0, connection_errors=0,
                               connections_established=100000, latency_p50_ns=1e6,
                               latency_p99_ns=2e6, latency_p999_ns=3e6))
            results.append(run(rep, "churn-c100", "c-epoll", messages_per_second=10000,
                               server_cpu_ns_per_message=50000, rate=0, connection_errors=0,
                               connections_established=50000, latency_p50_ns=1e6,
                               latency_p99_ns=2e6, latency_p999_ns=3e6))
            for name, pages in (("ucoro", 5000), ("c-epoll", 7000)):
                results.append(run(rep, "rss-5000", name, server_rss_start_kib=4000,
                                   server_rss_end_kib=12000, connections_established=5000,
                                   connection_errors=0, messages_per_second=1, rate=0,
                                   tcp_mem_pages_start=100, tcp_mem_pages_end=100 + pages,
                                   tcp_inuse_start=3, tcp_inuse_end=10003, tcp_orphan_end=0))
            for rate, achieved in ((10000, 10000), (40000, 39990), (80000, 60000)):
                for name, cpu in (("ucoro --batch-wait 200", 8000),
                                  ("ucoro --batch-wait 0", 10000), ("c-epoll", 9000)):
                    results.append(curve_run(rep, name, rate, achieved, cpu=cpu + rep))
        document = {"environment": {"commit": "test", "date": "today", "kernel": "k",
                                    "cpu": "c", "cores": 2, "compiler": "cc", "liburing": "2.3"},
                    "load_before": "0", "load_after": "0", "results": results,
                    "profiles": {}, "micro": None, "micro_cmd": None, "elapsed_s": 60}
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "benchmarks.json")
            with open(path, "w") as f:
                json.dump(document, f)
            done = subprocess.run([sys.executable, RUN, "--render", path], capture_output=True,
                                  text=True)
            self.assertEqual(done.returncode, 0, done.stderr)
            with open(os.path.join(directory, "benchmarks.md")) as f:
                page = f.read()
        self.assertIn("faster in 7 of 7", page)
        self.assertIn("**ahead**", page)
        self.assertIn("vs **c-epoll**: ucoro ahead in 100 connections x 64 B, saturated", page)
        self.assertIn("7 repetition(s)", page)
        self.assertIn("### ucoro against the C peers where the generator paces", page)
        self.assertIn("| ucoro --batch-wait 200 | c-epoll | 10,000 | 0.89 [0.89–0.89], cheaper "
                      "in 7 of 7: **ahead** |", page)
        # Churn: connections per second, compared like throughput.
        self.assertIn("## connection churn", page)
        self.assertIn("| server | connections/s |", page)
        # The kernel's memory beside the RSS: 5,000 pages over 5,000 connections.
        self.assertIn(f"| ucoro | 1.6 | 12,000 | — | {bench.PAGE_KIB:.2f} | 2.00 | 0 |", page)
        # The curve: the point past saturation is marked, not plotted; the default computed.
        self.assertIn("## Latency against rate", page)
        self.assertIn("**not the server's point** (not plotted): achieved 60,000 msg/s", page)
        self.assertIn("**The numbers favour `--batch-wait 200` as the default.**", page)
        self.assertIn("Highest rate kept, median over the repetitions: ucoro --batch-wait 200 "
                      "40,000 msg/s", page)
        # No scaling runs in this JSON: the section says so.
        self.assertIn("## Scaling", page)
        self.assertIn("Not measured in this run", page)


class ProfileSplit(unittest.TestCase):
    def test_a_sample_goes_to_the_function_it_landed_in(self):
        k = "[kernel.kallsyms]"
        # A copy that TCP called is a copy, not TCP.
        self.assertEqual(bench.classify([("copy_user_enhanced_fast_string", k),
                                         ("tcp_recvmsg", k)], "/x/server"),
                         "kernel: copies and memory allocation")
        self.assertEqual(bench.classify([("tcp_sendmsg_locked", k), ("io_issue_sqe", k)],
                                        "/x/server"), "kernel: TCP/IP and sockets")
        self.assertEqual(bench.classify([("io_submit_sqes", k), ("tcp_v4_rcv", k)],
                                        "/x/server"), "kernel: io_uring")
        self.assertEqual(bench.classify([("ep_poll", k)], "/x/server"), "kernel: epoll")
        self.assertEqual(bench.classify([("__schedule", k), ("io_cqring_wait", k)], "/x/server"),
                         "kernel: scheduler, wake-ups and idle")
        self.assertEqual(bench.classify([("entry_SYSCALL_64", k)], "/x/server"),
                         "kernel: other (syscall entry and exit, interrupts, timers, locks)")
        self.assertEqual(bench.classify([("main", "/x/server")], "/y/server"),
                         "user: the server binary (for ucoro: ucoro + the echo app)")
        self.assertEqual(bench.classify([("memcpy", "/lib/libc.so.6"), ("tcp", k)], "/x/s"),
                         "user: libc")


def curve_run(rep, server, asked, achieved, p99=1e5, busy=0.4, cpu=10000):
    return {"rep": rep, "config": f"curve-{asked}", "server": server, "section": "curve",
            "asked": asked,
            "result": {"messages_per_second": achieved, "rate": asked, "messages": 1000,
                       "late_sends": 0, "client_busy": busy, "latency_p50_ns": p99 / 2,
                       "latency_p99_ns": p99, "latency_p999_ns": 2 * p99,
                       "server_process_ns_per_message": cpu}}


class Curve(unittest.TestCase):
    def test_points_past_saturation_or_the_generators_limit_are_marked(self):
        self.assertIsNone(bench.curve_mark(curve_run(0, "s", 40000, 39900)["result"], 40000))
        self.assertIn("under 95%", bench.curve_mark(curve_run(0, "s", 40000, 37000)["result"],
                                                    40000))
        self.assertIn("busy", bench.curve_mark(curve_run(0, "s", 40000, 40000, busy=0.8)
                                               ["result"], 40000))

    def test_summary_plots_only_the_servers_points_with_their_range(self):
        results = [curve_run(rep, "s", 10000, 10000, p99=p99) for rep, p99 in
                   enumerate([1e5, 2e5, 3e5])]
        # At 80k, two of three runs past saturation: marked, not plotted.
        results += [curve_run(0, "s", 80000, 80000), curve_run(1, "s", 80000, 60000),
                    curve_run(2, "s", 80000, 50000)]
        points = bench.curve_summary(results)["s"]
        self.assertEqual([p["asked"] for p in points], [10000, 80000])
        self.assertTrue(points[0]["plotted"])
        self.assertAlmostEqual(points[0]["p99_us"], 200)
        self.assertEqual(points[0]["p99_us_spread"], (100, 300))
        self.assertFalse(points[1]["plotted"])
        self.assertEqual(points[1]["good"], 1)
        # Per repetition the highest rate kept: 80k, 10k, 10k; their median.
        self.assertEqual(bench.curve_capacity(results, "s"), 10000)

    def batch_waits(self, cpu200, p99_200, reps=7):
        results = []
        for rep in range(reps):
            for rate in (10000, 40000):
                results.append(curve_run(rep, "ucoro --batch-wait 0", rate, rate, p99=1e5,
                                         cpu=10000 + rep))
                results.append(curve_run(rep, "ucoro --batch-wait 200", rate, rate,
                                         p99=p99_200 * (1 + rep / 100),
                                         cpu=cpu200 * (1 + rep / 100)))
        return bench.batch_wait_verdict(results)

    def test_the_batch_wait_default_is_computed_from_the_paired_data(self):
        # Cheaper everywhere, p99 level: 200.
        self.assertEqual(self.batch_waits(cpu200=8000, p99_200=1e5)["favours"], "200")
        # Level CPU, worse p99: 0.
        self.assertEqual(self.batch_waits(cpu200=10000, p99_200=1.5e5)["favours"], "0")
        # Level on both: 0, the wait saves nothing measurable.
        verdict = self.batch_waits(cpu200=10000, p99_200=1e5)
        self.assertEqual(verdict["favours"], "0")
        self.assertIn("level", verdict["why"])
        # Cheaper and slower: a trade, with both facts.
        verdict = self.batch_waits(cpu200=8000, p99_200=1.5e5)
        self.assertEqual(verdict["favours"], "a trade")
        self.assertIn("costs less CPU per message at 10k, 40k msg/s", verdict["why"])
        self.assertIn("p99 is higher", verdict["why"])
        # Level CPU, lower p99: better somewhere, worse nowhere: 200.
        self.assertEqual(self.batch_waits(cpu200=10000, p99_200=0.5e5)["favours"], "200")
        # Too few repetitions: no verdict.
        self.assertIsNone(self.batch_waits(cpu200=8000, p99_200=1e5, reps=3)["favours"])


class Scaling(unittest.TestCase):
    def test_two_threads_over_one_paired_within_each_repetition(self):
        results = []
        for rep in range(7):
            for name, mps, cpu in (("ucoro --threads 1", 100000, 6000),
                                   ("ucoro --threads 2", 90000 + rep, 6600)):
                for key, _, _, _ in bench.SCALING_CONFIGS:
                    results.append({"rep": rep, "config": key, "server": name,
                                    "section": "scaling",
                                    "result": {"messages_per_second": mps,
                                               "server_process_ns_per_message": cpu,
                                               "connection_errors": 0, "rate": 0}})
        table, paired = bench.scaling_table(results)
        key = bench.SCALING_CONFIGS[1][0]
        self.assertAlmostEqual(paired[(key, "msg_s")]["median"], 0.90003)
        self.assertEqual(paired[(key, "msg_s")]["verdict"], "behind")
        self.assertAlmostEqual(paired[(key, "cpu")]["median"], 1.1)
        self.assertEqual(paired[(key, "cpu")]["verdict"], "behind")
        self.assertEqual(table[(key, "ucoro --threads 1")]["msg_s"], 100000)
        page = []
        bench.scaling_section(page.append, type("A", (), {"warmup": 1, "duration": 5}),
                              {"results": results})
        text = "\n".join(page)
        self.assertIn("2 threads ÷ 1 thread, paired: throughput 0.90 [0.90–0.90], faster in "
                      "0 of 7: **behind**", text)
        self.assertIn("what a 2-core machine can and cannot show".capitalize(), text)


class Plan(unittest.TestCase):
    def full_run_args(self):
        import argparse
        args = argparse.Namespace(quick=False, reps=7, duration=5, warmup=1, many_warmup=3,
                                  curve_warmup=0.5, curve_duration=3, curve_rates=bench.CURVE_RATES,
                                  profile_seconds=8, no_perf=False)
        return args

    def test_the_full_run_is_planned_under_80_minutes(self):
        args = self.full_run_args()
        servers = bench.SERVERS
        expected, upper = bench.estimate_seconds(
            args, bench.configurations(False), servers, bench.curve_servers(servers),
            bench.scaling_servers(servers), None)
        self.assertLess(expected, 80 * 60)
        self.assertLess(expected, upper)
        # Only one part: a fraction of it.
        part, _ = bench.estimate_seconds(args, bench.configurations(False), servers, [], [],
                                         ["churn-c100"])
        self.assertLess(part, 0.1 * expected)

    def test_only_rejects_an_unknown_key_with_one_line_and_exit_2(self):
        done = subprocess.run([sys.executable, RUN, "--only", "c100-64B,bogus", "--no-build"],
                              capture_output=True, text=True)
        self.assertEqual(done.returncode, 2)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1)
        self.assertIn("unknown key bogus", done.stderr)
        listing = subprocess.run([sys.executable, RUN, "--only", "list"], capture_output=True,
                                 text=True)
        self.assertEqual(listing.returncode, 0)
        for key in ("churn-c100", "c10000-64B", "curve", "scaling", "rss-5000"):
            self.assertIn(key + ":", listing.stdout)

    def test_scaling_is_skipped_without_threads_in_the_servers_help(self):
        with tempfile.TemporaryDirectory() as directory:
            for name, text in (("old", "usage: server [-q] HOST PORT"),
                               ("new", "usage: server [-q] [--threads N] HOST PORT")):
                path = os.path.join(directory, name)
                with open(path, "w") as f:
                    f.write(f"#!/bin/sh\necho '{text}'\n")
                os.chmod(path, 0o755)
            self.assertFalse(bench.threads_supported(os.path.join(directory, "old")))
            self.assertTrue(bench.threads_supported(os.path.join(directory, "new")))
            self.assertFalse(bench.threads_supported(os.path.join(directory, "missing")))


if __name__ == "__main__":
    unittest.main()
