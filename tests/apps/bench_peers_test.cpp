// Every peer server of the benchmark (bench/peers, tests/peers) echoes correctly: checked
// once with ucoro-bench, byte for byte, with small pipelined and with large messages (which
// force short writes). A peer that was not built is skipped, saying why. The reference
// client (bench/reference_client.c) is checked the same way, against the peers and against a
// server that corrupts a byte.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "support/bench.hpp"
#include "support/process.hpp"
#include "support/unique_fd.hpp"

namespace {

using Catch::Matchers::Contains;
using ucoro_test::completed_run;

void check_echoes(std::vector<std::string> server_argv) {
    auto server = ucoro_test::start_server(std::move(server_argv));
    for (const std::vector<std::string>& shape :
         {std::vector<std::string>{"-c", "20", "-s", "3000", "-d", "2"},
          std::vector<std::string>{"-c", "2", "-s", "300000", "-d", "2"}}) {
        std::vector<std::string> options = shape;
        options.insert(options.end(), {"--warmup", "0", "--duration", "0.5", "--json"});
        const completed_run run = ucoro_test::run_bench(server.port, options);
        INFO("ucoro-bench " << shape[1] << " connections x " << shape[3]
                            << " B\nstdout: " << run.out << "\nstderr: " << run.err);
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 0);
        CHECK(ucoro_test::json_number(run.out, "messages").value_or(0) > 0);
        CHECK(ucoro_test::json_number(run.out, "connection_errors") == 0.0);
    }
    server.process->send_signal(SIGTERM);
    const auto status = server.process->wait();
    CHECK(status.exited);
    CHECK(status.code == 0);
}

void check_built_peer(const std::string& name, const std::string& why_missing,
                      std::vector<std::string> options = {}) {
    const std::string path = UCORO_BENCH_PEERS_DIR "/" + name;
    if (::access(path.c_str(), X_OK) != 0) {
        WARN("SKIPPED: " << name << " was not built (" << why_missing << ")");
        return;
    }
    std::vector<std::string> argv{path};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.insert(argv.end(), {"127.0.0.1", "0"});
    check_echoes(std::move(argv));
}

} // namespace

TEST_CASE("peer epoll-echo echoes every byte", "[bench][peers]") {
    check_built_peer("epoll-echo", "configure with UCORO_BUILD_BENCH=ON");
}

TEST_CASE("peer uring-echo-basic echoes every byte", "[bench][peers]") {
    check_built_peer("uring-echo-basic", "configure with UCORO_BUILD_BENCH=ON");
}

TEST_CASE("peer uring-echo-multishot echoes every byte", "[bench][peers]") {
    check_built_peer("uring-echo-multishot", "configure with UCORO_BUILD_BENCH=ON");
}

TEST_CASE("peer uring-echo-basic --batch-wait 200 echoes every byte", "[bench][peers]") {
    check_built_peer("uring-echo-basic", "configure with UCORO_BUILD_BENCH=ON",
                     {"--batch-wait", "200"});
}

TEST_CASE("peer uring-echo-multishot --batch-wait 200 echoes every byte", "[bench][peers]") {
    check_built_peer("uring-echo-multishot", "configure with UCORO_BUILD_BENCH=ON",
                     {"--batch-wait", "200"});
}

TEST_CASE("peer asio-echo-epoll echoes every byte", "[bench][peers]") {
    check_built_peer("asio-echo-epoll", "needs libboost1.81-dev and UCORO_BUILD_BENCH=ON");
}

TEST_CASE("peer asio-echo-uring echoes every byte", "[bench][peers]") {
    check_built_peer("asio-echo-uring", "needs libboost1.81-dev and UCORO_BUILD_BENCH=ON");
}

TEST_CASE("peer selectors_echo_server.py echoes every byte", "[bench][peers]") {
    const auto python = ucoro_test::find_on_path("python3");
    if (!python) {
        WARN("SKIPPED: python3 is not on PATH (.ci/install-deps installs it)");
        return;
    }
    check_echoes({*python, UCORO_TEST_PEERS "/selectors_echo_server.py", "127.0.0.1", "0"});
}

namespace {

const std::string reference_client = UCORO_BENCH_PEERS_DIR "/reference-client";

completed_run run_reference(std::uint16_t port, std::vector<std::string> options) {
    std::vector<std::string> argv{reference_client, "127.0.0.1", std::to_string(port)};
    argv.insert(argv.end(), options.begin(), options.end());
    return ucoro_test::run_program(std::move(argv));
}

void check_reference_against(std::vector<std::string> server_argv) {
    auto server = ucoro_test::start_server(std::move(server_argv));
    // 10 connections x 100 B at 2,000 msg/s: 2,000 messages measured in one second.
    const completed_run run = run_reference(
        server.port, {"-c", "10", "-s", "100", "--rate", "2000", "--warmup", "0.2", "--duration",
                      "1", "--server-pid", std::to_string(server.process->pid())});
    INFO("stdout: " << run.out << "\nstderr: " << run.err);
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 0);
    CHECK(run.err.empty());
    const double messages = ucoro_test::json_number(run.out, "messages").value_or(0);
    const double seconds = ucoro_test::json_number(run.out, "seconds").value_or(0);
    CHECK(messages <= 2000 * seconds + 10);
    CHECK(messages >= 0.8 * 2000 * seconds);
    CHECK(ucoro_test::json_number(run.out, "server_cpu_ns_per_message").value_or(-1) >= 0);
    CHECK(ucoro_test::json_number(run.out, "client_busy").value_or(-1) > 0);
}

} // namespace

TEST_CASE("reference-client gets every byte back from epoll-echo and ucoro-echo-server",
          "[bench][peers]") {
    if (::access(reference_client.c_str(), X_OK) != 0) {
        WARN("SKIPPED: reference-client was not built (configure with UCORO_BUILD_BENCH=ON)");
        return;
    }
    check_reference_against({UCORO_ECHO_SERVER, "-q", "127.0.0.1", "0"});
    const std::string epoll_echo = UCORO_BENCH_PEERS_DIR "/epoll-echo";
    if (::access(epoll_echo.c_str(), X_OK) == 0) {
        check_reference_against({epoll_echo, "127.0.0.1", "0"});
    }
}

TEST_CASE("reference-client exits 1 naming the offset of a corrupted echo", "[bench][peers]") {
    if (::access(reference_client.c_str(), X_OK) != 0) {
        WARN("SKIPPED: reference-client was not built (configure with UCORO_BUILD_BENCH=ON)");
        return;
    }
    // One connection, echoed by a thread of the test that flips the byte at offset 300.
    const ucoro_test::unique_fd listener = ucoro_test::bind_loopback(true);
    std::thread server([fd = listener.get()] {
        const ucoro_test::unique_fd c(::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC));
        unsigned char buffer[4096];
        std::size_t offset = 0;
        ssize_t n = 0;
        while (c && (n = ::recv(c.get(), buffer, sizeof(buffer), 0)) > 0) {
            if (offset <= 300 && 300 < offset + std::size_t(n)) {
                buffer[300 - offset] ^= 0xff;
            }
            offset += std::size_t(n);
            if (::send(c.get(), buffer, std::size_t(n), MSG_NOSIGNAL) != n) {
                break;
            }
        }
    });
    const completed_run run = run_reference(
        ucoro_test::local_port(listener.get()),
        {"-c", "1", "-s", "64", "--rate", "1000", "--warmup", "0", "--duration", "5"});
    server.join();
    INFO("stdout: " << run.out << "\nstderr: " << run.err);
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 1);
    CHECK_THAT(run.err, Contains("connection 0: echoed byte at offset 300 is"));
}
