// ucoro-echo-server's command line: its options with their defaults (and why those), the
// --disable list, --help and --version.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>

#include "ucoro/io_context.hpp"
#include "ucoro/net/address.hpp"

#include "command_line.hpp"

namespace ucoro::apps {

/// The program's name and usage line, for its messages.
extern const program_info echo_server_program;

/// What the command line asked for (see --help).
struct echo_server_options {
    bool quiet = false;                        // -q
    bool verbose = false;                      // -v
    bool simple = false;                       // --simple
    bool gather_send = true;                   // off with --disable gather-send
    std::chrono::milliseconds idle_timeout{0}; // 0: off
    std::chrono::milliseconds send_timeout{0}; // 0: off
    std::chrono::milliseconds drain_timeout{0};
    std::size_t max_connections = 0;           // 0: no limit
    io_context_options loop;                   // --disable's kernel features, --batch-wait
    net::address local;                        // HOST PORT
    std::optional<net::address> metrics_local; // --metrics HOST:PORT
};

/// Parses `ucoro-echo-server [OPTIONS] HOST PORT`, filling in the defaults. Returns nullopt
/// when the program should exit now, with `exit_code`: 0 after --help or --version, 2 for
/// wrong arguments, 1 for a host that is no address or --version -v without io_uring (each
/// has printed its line).
std::optional<echo_server_options> parse_echo_server_options(int argc, char** argv, int& exit_code);

} // namespace ucoro::apps
