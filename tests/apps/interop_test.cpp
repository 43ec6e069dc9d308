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

std::uint16_t read_port(child_process& server) {
    const auto port = ucoro_test::read_listening_port(server);
    INFO("stderr: " << server.stderr_text());
    REQUIRE(port);
    return *port;
}

} // namespace

TEST_CASE("ucoro-echo-client passes against the lesson's selectors echo server in Python",
          "[interop]") {
    const auto python = ucoro_test::find_on_path("python3");
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
    const auto python = ucoro_test::find_on_path("python3");
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
