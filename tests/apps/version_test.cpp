// --version on every program: "NAME VERSION (git COMMIT)" on stdout, exit 0; under -v the
// server also names the kernel and the io_uring features it would use.
#include <catch2/catch.hpp>

#include <string>

#include "support/context.hpp"
#include "support/process.hpp"

namespace {

using Catch::Matchers::Contains;
using Catch::Matchers::Matches;

// The version from project(VERSION), and a short commit hash or "unknown" outside git.
const std::string version_pattern = R"( \d+\.\d+\.\d+ \(git ([0-9a-f]{4,40}|unknown)\)\n)";

} // namespace

TEST_CASE("every program prints its name, version and commit with --version and exits 0",
          "[version][cli]") {
    for (const char* program : {UCORO_ECHO_SERVER, UCORO_ECHO_CLIENT, UCORO_BENCH}) {
        const std::string name = std::string(program).substr(std::string(program).rfind('/') + 1);
        INFO("program " << name);
        const ucoro_test::completed_run run = ucoro_test::run_program({program, "--version"});
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 0);
        CHECK_THAT(run.out, Matches(name + version_pattern));
        CHECK(run.err.empty());
    }
}

TEST_CASE("echo server -v --version also names the kernel and its io_uring features",
          "[version][echo_server][cli]") {
    if (!ucoro_test::make_context()) {
        return; // make_context said "SKIPPED: why"
    }
    const ucoro_test::completed_run run =
        ucoro_test::run_program({UCORO_ECHO_SERVER, "-v", "--version"});
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 0);
    CHECK_THAT(run.out, Matches("ucoro-echo-server" + version_pattern +
                                "kernel: Linux .+\nio_uring features: multishot accept (on|off), "
                                ".*receive limit (on|off)\n"));
    CHECK(run.err.empty());
}
