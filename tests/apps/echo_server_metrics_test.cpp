// --metrics HOST:PORT end to end against the real binary: scrapes under load, the output
// checked by promtool, HTTP errors, scrapers that stall or never read, the scraper limit, and
// the drain on SIGINT with a scraper connected.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/process.hpp"
#include "support/unique_fd.hpp"

namespace {

using ucoro_test::child_process;
using ucoro_test::unique_fd;
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

// How long a concurrent echo may take while a scraper misbehaves: far above a loopback
// echo's microseconds, far below the scrape timeouts (5 s) a stalled server would show.
constexpr auto echo_bound = 1s;

struct metrics_server {
    child_process process;
    std::uint16_t port = 0;
    std::uint16_t metrics_port = 0;

    explicit metrics_server(bool simple = false, unsigned threads = 0)
        : process(make_argv(simple, threads)) {
        INFO("stderr: " << process.stderr_text());
        const auto first = process.read_stdout_line();
        REQUIRE(first);
        const auto echo = ucoro_test::parse_listening_port(*first);
        REQUIRE(echo);
        port = *echo;
        const auto second = process.read_stdout_line();
        REQUIRE(second);
        INFO("second line: " << *second);
        constexpr std::string_view prefix = "metrics on 127.0.0.1:";
        REQUIRE(second->rfind(prefix, 0) == 0);
        metrics_port = static_cast<std::uint16_t>(std::stoi(second->substr(prefix.size())));
        REQUIRE(metrics_port != 0);
    }

    static std::vector<std::string> make_argv(bool simple, unsigned threads) {
        std::vector<std::string> argv{UCORO_ECHO_SERVER, "-q"};
        if (simple) {
            argv.emplace_back("--simple");
        }
        if (threads != 0) {
            argv.insert(argv.end(), {"--threads", std::to_string(threads)});
        }
        argv.insert(argv.end(), {"--metrics", "127.0.0.1:0", "127.0.0.1", "0"});
        return argv;
    }

    void stop() {
        process.send_signal(SIGINT);
        const auto status = process.wait(10s);
        INFO("stdout:\n" << process.stdout_text() << "stderr:\n" << process.stderr_text());
        REQUIRE(status.exited);
        CHECK(status.code == 0);
        CHECK(process.stderr_text().empty());
    }
};

using ucoro_test::send_exactly;

// True if the peer closed (end of stream or reset) within `timeout`, having sent nothing.
bool sees_close(int fd, std::chrono::milliseconds timeout) {
    if (!ucoro_test::wait_readable(fd, timeout)) {
        return false;
    }
    char byte = 0;
    const ssize_t n = ::recv(fd, &byte, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

// One request on its own connection; the whole response, read to the server's close.
std::string http_exchange(std::uint16_t port, std::string_view request) {
    unique_fd fd = ucoro_test::connect_loopback(port);
    send_exactly(fd.get(), request);
    return ucoro_test::receive_exactly(fd.get(), 1 << 20, 5s);
}

std::string scrape(std::uint16_t port) {
    const std::string response = http_exchange(port, "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    INFO("response:\n" << response);
    REQUIRE(response.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    REQUIRE(response.find("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n") !=
            std::string::npos);
    const std::size_t body = response.find("\r\n\r\n");
    REQUIRE(body != std::string::npos);
    return response.substr(body + 4);
}

// The value of the sample `series` (name and labels, as printed).
std::uint64_t sample(std::string_view text, std::string_view series) {
    for (const auto& line : ucoro_test::split_lines(text)) {
        if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
            line[series.size()] == ' ') {
            return std::stoull(line.substr(series.size() + 1));
        }
    }
    FAIL("no sample " << series << " in:\n" << text);
    return 0;
}

// A fresh client's echo comes back within echo_bound: the loop is not held up.
void check_echo_within_bound(std::uint16_t port) {
    unique_fd fresh = ucoro_test::connect_loopback(port);
    const auto start = steady::now();
    send_exactly(fresh.get(), "still serving");
    CHECK(ucoro_test::receive_exactly(fresh.get(), 13, echo_bound) == "still serving");
    CHECK(steady::now() - start < echo_bound);
}

// Clients echo byte-exact while the test scrapes; then the counters must add up exactly.
void check_scrape_under_load(bool simple, unsigned server_threads = 0) {
    metrics_server server(simple, server_threads);
    constexpr int clients = 8;
    constexpr int messages = 200;
    std::atomic<bool> mismatch{false};
    std::atomic<int> done{0};
    std::vector<std::thread> threads;
    std::uint64_t sent_total = 0;
    for (int c = 0; c < clients; ++c) {
        for (int m = 0; m < messages; ++m) {
            sent_total += 1 + static_cast<std::uint64_t>((c * 7919 + m * 104729) % 4096);
        }
    }
    for (int c = 0; c < clients; ++c) {
        threads.emplace_back([&, c] {
            unique_fd fd = ucoro_test::connect_loopback(server.port);
            for (int m = 0; m < messages; ++m) {
                const std::size_t size =
                    1 + static_cast<std::size_t>((c * 7919 + m * 104729) % 4096);
                std::string message(size, static_cast<char>('a' + (c + m) % 26));
                send_exactly(fd.get(), message);
                if (ucoro_test::receive_exactly(fd.get(), size, 10s) != message) {
                    mismatch = true;
                }
            }
            ++done;
        });
    }
    std::uint64_t scrapes = 0;
    std::uint64_t last_bytes_in = 0;
    while (done.load() < clients) {
        const std::string text = scrape(server.metrics_port);
        const std::uint64_t bytes_in = sample(text, "ucoro_received_bytes_total");
        CHECK(bytes_in >= last_bytes_in); // a counter never goes down
        last_bytes_in = bytes_in;
        ++scrapes;
    }
    for (auto& thread : threads) {
        thread.join();
    }
    CHECK_FALSE(mismatch.load());
    CHECK(scrapes > 0);
    // The clients have closed; the server counts them out as it sees each end of stream.
    std::string text;
    const auto deadline = steady::now() + 10s;
    do {
        text = scrape(server.metrics_port);
    } while (sample(text, "ucoro_connections_live") != 0 && steady::now() < deadline);
    INFO("last scrape:\n" << text);
    CHECK(sample(text, "ucoro_connections_live") == 0);
    CHECK(sample(text, "ucoro_connections_accepted_total") >= clients);
    CHECK(sample(text, "ucoro_received_bytes_total") == sent_total);
    CHECK(sample(text, "ucoro_sent_bytes_total") == sent_total);
    CHECK(sample(text, "ucoro_received_messages_total") >= clients * messages / 16);
    CHECK(sample(text, "ucoro_sent_messages_total") >= clients * messages / 16);
    CHECK(sample(text, "ucoro_sent_messages_total") <=
          sample(text, "ucoro_received_messages_total"));
    CHECK(sample(text, "ucoro_connection_timeouts_total{kind=\"idle\"}") == 0);
    CHECK(sample(text, "ucoro_connection_timeouts_total{kind=\"send\"}") == 0);
    CHECK(sample(text, "ucoro_io_uring_cqes_total") > 0);
    CHECK(sample(text, "ucoro_io_uring_enters_total") > 0);
    server.stop();
}

} // namespace

TEST_CASE("metrics: counters add up after a scrape under load, fast path") {
    check_scrape_under_load(false);
}

TEST_CASE("metrics: with 4 server threads every counter is the sum over the threads") {
    check_scrape_under_load(false, 4);
}

TEST_CASE("metrics: counters add up after a scrape under load, --simple") {
    check_scrape_under_load(true);
}

TEST_CASE("metrics: a scrape under load passes promtool check metrics") {
    const auto promtool = ucoro_test::find_on_path("promtool");
    if (!promtool) {
        WARN("SKIPPED: promtool not found (.ci/install-deps installs Debian's prometheus)");
        return;
    }
    metrics_server server;
    unique_fd client = ucoro_test::connect_loopback(server.port);
    send_exactly(client.get(), "load");
    REQUIRE(ucoro_test::receive_exactly(client.get(), 4, 5s) == "load");
    const auto file = std::filesystem::temp_directory_path() /
                      ("ucoro-metrics-" + std::to_string(::getpid()) + ".txt");
    {
        std::ofstream out(file);
        out << scrape(server.metrics_port);
    }
    const auto run = ucoro_test::run_program(
        {"/bin/sh", "-c", *promtool + " check metrics < '" + file.string() + "' 2>&1"});
    std::filesystem::remove(file);
    INFO("promtool printed:\n" << run.out << run.err);
    CHECK(run.status.exited);
    CHECK(run.status.code == 0);
    CHECK(run.out.empty()); // no lint complaint either
    client.reset();
    server.stop();
}

TEST_CASE("metrics: other paths, methods and garbage get an HTTP error and the server goes on") {
    metrics_server server;
    CHECK(http_exchange(server.metrics_port, "GET /other HTTP/1.1\r\n\r\n")
              .rfind("HTTP/1.1 404 ", 0) == 0);
    const std::string post = http_exchange(server.metrics_port, "POST /metrics HTTP/1.1\r\n\r\n");
    CHECK(post.rfind("HTTP/1.1 405 ", 0) == 0);
    CHECK(post.find("\r\nAllow: GET\r\n") != std::string::npos);
    CHECK(
        http_exchange(server.metrics_port, "\x01\x02 garbage\r\n\r\n").rfind("HTTP/1.1 400 ", 0) ==
        0);
    CHECK(http_exchange(server.metrics_port, "GET /metrics SPDY/9\r\n\r\n")
              .rfind("HTTP/1.1 400 ", 0) == 0);
    // A head over the 8 KiB bound: answered 400 without waiting for the rest.
    CHECK(http_exchange(server.metrics_port, "GET /" + std::string(9000, 'x'))
              .rfind("HTTP/1.1 400 ", 0) == 0);
    check_echo_within_bound(server.port);
    (void)scrape(server.metrics_port);
    server.stop();
}

TEST_CASE("metrics: a scraper sending a byte a second does not delay the echo and is closed "
          "after 5 s") {
    metrics_server server;
    unique_fd slow = ucoro_test::connect_loopback(server.metrics_port);
    const std::string_view request = "GET /metrics HTTP/1.1\r\n\r\n";
    const auto start = steady::now();
    bool closed = false;
    for (std::size_t i = 0; i < request.size() && !closed; ++i) {
        if (::send(slow.get(), &request[i], 1, MSG_NOSIGNAL) != 1) {
            closed = true; // reset: the server gave up on us
            break;
        }
        check_echo_within_bound(server.port);
        closed = sees_close(slow.get(), 1s); // a second between bytes; returns early at a close
    }
    const auto elapsed = steady::now() - start;
    INFO("closed after " << std::chrono::duration<double>(elapsed).count() << " s");
    CHECK(closed);
    // The 5 s bound is for the whole head, not per byte: a trickle does not extend it.
    CHECK(elapsed >= 4s);
    CHECK(elapsed < 8s);
    (void)scrape(server.metrics_port);
    server.stop();
}

TEST_CASE("metrics: scrapers that never read, and more than 16 at once, do not delay the echo") {
    metrics_server server;
    // Never read: the request goes in, the response is never taken.
    std::vector<unique_fd> non_readers;
    for (int i = 0; i < 4; ++i) {
        non_readers.push_back(ucoro_test::connect_loopback(server.metrics_port));
        send_exactly(non_readers.back().get(), "GET /metrics HTTP/1.1\r\n\r\n");
    }
    check_echo_within_bound(server.port);
    // Their answers (Connection: close) wait in their receive buffers: read each to the
    // server's close, so every slot is free before the limit is tested. Without this, a
    // slot freed by a late answer after the silent scrapers connected went to the one
    // past the limit, which then waited for the 5 s request timeout (seen under -j2).
    for (auto& fd : non_readers) {
        CHECK(ucoro_test::receive_exactly(fd.get(), 1 << 20, 5s).rfind("HTTP/1.1 200", 0) == 0);
    }
    // Silent scrapers fill the 16 slots; one past the limit is closed at once.
    std::vector<unique_fd> silent;
    for (int i = 0; i < 16; ++i) {
        silent.push_back(ucoro_test::connect_loopback(server.metrics_port));
    }
    unique_fd extra = ucoro_test::connect_loopback(server.metrics_port);
    CHECK(sees_close(extra.get(), echo_bound));
    check_echo_within_bound(server.port);
    // The silent ones are closed by the 5 s request timeout; the slots come back.
    for (auto& fd : silent) {
        CHECK(sees_close(fd.get(), 8s));
    }
    (void)scrape(server.metrics_port);
    server.stop();
}

TEST_CASE("metrics: SIGINT drains and exits 0 with a scraper connected") {
    metrics_server server;
    unique_fd scraper = ucoro_test::connect_loopback(server.metrics_port);
    send_exactly(scraper.get(), "GET /met"); // half a request: the scrape is in its recv
    unique_fd client = ucoro_test::connect_loopback(server.port);
    send_exactly(client.get(), "drain me");
    REQUIRE(ucoro_test::receive_exactly(client.get(), 8, 5s) == "drain me");
    const auto start = steady::now();
    server.process.send_signal(SIGINT);
    // The drain half-closes the echo client; it closes, the last connection, and the server
    // stops without waiting for the scraper's 5 s timeout.
    CHECK(sees_close(client.get(), 5s));
    client.reset();
    const auto status = server.process.wait(10s);
    INFO("stdout:\n"
         << server.process.stdout_text() << "stderr:\n"
         << server.process.stderr_text());
    REQUIRE(status.exited);
    CHECK(status.code == 0);
    CHECK(steady::now() - start < 4s);
    CHECK(sees_close(scraper.get(), 1s));
}

TEST_CASE("metrics: --metrics rejects a bad HOST:PORT and a port in use") {
    auto bad =
        ucoro_test::run_program({UCORO_ECHO_SERVER, "--metrics", "nonsense", "127.0.0.1", "0"});
    CHECK(bad.status.exited);
    CHECK(bad.status.code == 2);
    CHECK(bad.err.rfind("ucoro-echo-server: --metrics must be HOST:PORT", 0) == 0);
    auto bad_port = ucoro_test::run_program(
        {UCORO_ECHO_SERVER, "--metrics", "127.0.0.1:70000", "127.0.0.1", "0"});
    CHECK(bad_port.status.code == 2);
    unique_fd taken = ucoro_test::bind_loopback(true);
    const std::string in_use = "127.0.0.1:" + std::to_string(ucoro_test::local_port(taken.get()));
    auto busy = ucoro_test::run_program({UCORO_ECHO_SERVER, "--metrics", in_use, "127.0.0.1", "0"});
    INFO("stderr: " << busy.err);
    CHECK(busy.status.exited);
    CHECK(busy.status.code == 1);
    CHECK(busy.err.find("cannot listen for --metrics on " + in_use) != std::string::npos);
    CHECK(busy.out.empty()); // it never said it was listening
}
