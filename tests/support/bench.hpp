// For the tests of ucoro-bench and of the benchmark peers: start a server and learn its
// port, run ucoro-bench against it, read numbers out of its --json line.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/process.hpp"

namespace ucoro_test {

/// A server started on 127.0.0.1 port 0, and the port it announced.
struct started_server {
    std::unique_ptr<child_process> process;
    std::uint16_t port = 0;
};

inline started_server start_server(std::vector<std::string> argv) {
    started_server server{std::make_unique<child_process>(std::move(argv)), 0};
    const auto port = read_listening_port(*server.process);
    INFO("server stderr: " << server.process->stderr_text());
    REQUIRE(port);
    server.port = *port;
    return server;
}

/// Runs ucoro-bench against 127.0.0.1:port with `options` (bounded by default_wait).
inline completed_run run_bench(std::uint16_t port, std::vector<std::string> options) {
    std::vector<std::string> argv{UCORO_BENCH, "127.0.0.1", std::to_string(port)};
    argv.insert(argv.end(), options.begin(), options.end());
    return run_program(std::move(argv));
}

/// The number after "key": in a flat JSON object, or nothing if the key is missing.
inline std::optional<double> json_number(std::string_view json, std::string_view key) {
    // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict) about "\"" + std::string.
    std::string needle(1, '"');
    needle.append(key).append("\": ");
    const std::size_t at = json.find(needle);
    if (at == std::string_view::npos) {
        return std::nullopt;
    }
    const std::string rest(json.substr(at + needle.size()));
    char* end = nullptr;
    const double value = std::strtod(rest.c_str(), &end);
    if (end == rest.c_str()) {
        return std::nullopt;
    }
    return value;
}

} // namespace ucoro_test
