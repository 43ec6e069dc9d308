// The multi-connection echo server, as a library the binary and the tests share. Its parts,
// one concern each: echo_server_options (the command line), echo_server_controls (what the
// parts share), echo_server_connection (one connection's echo), echo_server_accept (the
// accept loop), echo_server_drain (signals and stopping); echo_server.cpp wires them.
#pragma once

#include "echo_server_accept.hpp"
#include "echo_server_connection.hpp"
#include "echo_server_controls.hpp"

namespace ucoro::apps {

/// The whole program: `ucoro-echo-server [OPTIONS] HOST PORT` (see --help). Returns the exit code
/// (0 after SIGINT/SIGTERM, 1 on a runtime failure, 2 on wrong arguments).
int echo_server_main(int argc, char** argv);

} // namespace ucoro::apps
