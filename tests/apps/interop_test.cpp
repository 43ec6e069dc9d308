// Interoperability with echo programs ucoro did not write: the Python selectors server and
// client of the lesson this project rebuilds (tests/peers/), run against ucoro's client and
// server. Each side must accept the other's chunking of the bytes.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/process.hpp"

namespace {

using Catch::Matchers::Contains;
using ucoro_test::child_process;
using ucoro_test::completed_run;

/// The python3 on PATH, or nothing: without it these tests cannot run (a WARN, not a pass).
std::optional<std::string> find_python() {
    const char* path = std::getenv("PATH");
    std::string_view dirs = path != nullptr ? path : "/usr/bin:/bin";
    while (!dirs.empty()) {
        const std::size_t colon = dirs.find(':');
        const std::string candidate = std::string(dirs.substr(0, colon)) + "/python3";
        if (::access(candidate.c_str(), X_OK) == 0) {
            return candidate;
        }
        dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
    }
    return std::nullopt;
}

std::uint16_t read_port(child_process& server) {
    const auto line = server.read_stdout_line();
    INFO("stderr: " << server.stderr_text());
    REQUIRE(line);
    const auto port = ucoro_test::parse_listening_port(*line);
    INFO("first line: " << *line);
    REQUIRE(port);
    return *port;
}

} // namespace

TEST_CASE("ucoro-echo-client passes against the lesson's selectors echo server in Python",
          "[interop]") {
    const auto python = find_python();
    if (!python) {
        WARN("SKIPPED: python3 is not on PATH (.ci/install-deps installs it)");
        return;
    }
    child_process server({*python, UCORO_TEST_PEERS "/selectors_echo_server.py", "127.0.0.1", "0"});
    const std::uint16_t port = read_port(server);

    const completed_run client =
        ucoro_test::run_program({UCORO_ECHO_CLIENT, "127.0.0.1", std::to_string(port), "20"});
    INFO("client stdout:\n" << client.out << "client stderr:\n" << client.err);
    REQUIRE(client.status.exited);
    CHECK(client.status.code == 0);
    CHECK_THAT(client.out, Contains("all 20 connections got back every byte they sent"));

    server.send_signal(SIGTERM);
    const auto status = server.wait();
    CHECK(status.exited);
}

TEST_CASE("the lesson's selectors echo client in Python passes against ucoro-echo-server",
          "[interop]") {
    const auto python = find_python();
    if (!python) {
        WARN("SKIPPED: python3 is not on PATH (.ci/install-deps installs it)");
        return;
    }
    child_process server({UCORO_ECHO_SERVER, "-q", "127.0.0.1", "0"});
    const std::uint16_t port = read_port(server);

    const completed_run client =
        ucoro_test::run_program({*python, UCORO_TEST_PEERS "/selectors_echo_client.py", "127.0.0.1",
                                 std::to_string(port), "20"});
    INFO("client stdout:\n" << client.out << "client stderr:\n" << client.err);
    REQUIRE(client.status.exited);
    CHECK(client.status.code == 0);
    CHECK_THAT(client.out, Contains("all 20 connections matched"));

    server.send_signal(SIGINT);
    const auto status = server.wait();
    REQUIRE(status.exited);
    CHECK(status.code == 0);
}
