// Every peer server of the benchmark (bench/peers, tests/peers) echoes correctly: checked
// once with ucoro-bench, byte for byte, with small pipelined and with large messages (which
// force short writes). A peer that was not built is skipped, saying why.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "support/bench.hpp"
#include "support/process.hpp"

namespace {

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

void check_built_peer(const std::string& name, const std::string& why_missing) {
    const std::string path = UCORO_BENCH_PEERS_DIR "/" + name;
    if (::access(path.c_str(), X_OK) != 0) {
        WARN("SKIPPED: " << name << " was not built (" << why_missing << ")");
        return;
    }
    check_echoes({path, "127.0.0.1", "0"});
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
