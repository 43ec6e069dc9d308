// server_controls in-process: the live-connection count survives a connection that fails.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <system_error>

#include "echo_server.hpp"
#include "support/context.hpp"
#include "support/stream_pair.hpp"

namespace {

using namespace std::chrono_literals;

// Points stdout at /dev/full, unbuffered, so that the next print fails at once (as on a
// closed or full stdout), and puts it back afterwards.
class failing_stdout {
public:
    failing_stdout() {
        std::fflush(stdout);
        m_saved = ::dup(STDOUT_FILENO);
        REQUIRE(m_saved >= 0);
        const int full = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
        REQUIRE(full >= 0);
        REQUIRE(::dup2(full, STDOUT_FILENO) == STDOUT_FILENO);
        ::close(full);
        std::setvbuf(stdout, nullptr, _IONBF, 0);
    }
    failing_stdout(const failing_stdout&) = delete;
    failing_stdout& operator=(const failing_stdout&) = delete;
    ~failing_stdout() {
        std::clearerr(stdout);
        ::dup2(m_saved, STDOUT_FILENO);
        ::close(m_saved);
        std::setvbuf(stdout, nullptr, _IOFBF, BUFSIZ);
    }

private:
    int m_saved = -1;
};

} // namespace

TEST_CASE("a connection that throws still counts itself out of the live connections",
          "[echo_server][controls]") {
    if (::access("/dev/full", W_OK) != 0) {
        WARN("SKIPPED: /dev/full is not available here");
        return;
    }
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    ucoro::apps::connection_deadlines deadlines(*context, 0ms, 0ms);
    ucoro::apps::server_controls controls;
    controls.context = context.get();
    controls.deadlines = &deadlines;
    controls.max_connections = 1;
    controls.live = 1; // as the accept loop counts it, before the connection runs
    ucoro::apps::echo_server_stats stats;
    auto pair = ucoro_test::make_stream_pair(*context);
    {
        const failing_stdout broken;
        // Not quiet: its "accepted connection" line is the print that fails.
        context->spawn(ucoro::apps::echo_connection(std::move(pair.ours), /*quiet=*/false, stats,
                                                    nullptr, &controls));
        CHECK_THROWS_AS(context->run(), std::system_error);
    }
    // Otherwise a --max-connections server would never accept again, and a drain would
    // never see its last connection close.
    CHECK(controls.live == 0);
    CHECK(deadlines.size() == 0);
}
