// What the echo programs share on the command line and at start-up: how a mistake is
// reported, HOST PORT parsing, and the one-line io_uring diagnosis.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "ucoro/io_context.hpp"
#include "ucoro/net/address.hpp"

namespace ucoro::apps {

/// Exit codes: 2 for wrong arguments (as the usage line says), 1 for a runtime failure.
constexpr int exit_usage = 2;
constexpr int exit_failure = 1;

/// The program's name and usage line, for its messages.
struct program_info {
    std::string_view name;
    std::string_view usage;
};

/// "NAME VERSION (git COMMIT)": what --version prints, the same for every program.
std::string version_line(std::string_view name);

/// Prints "NAME: REASON" (if there is a reason) and the usage line on stderr; returns
/// exit_usage.
int usage_error(const program_info& program, std::string_view reason = {});

/// Parses HOST and PORT. On failure prints why and sets `exit_code`: exit_usage for a port
/// that is not a number from 0 to 65535, exit_failure for a host that is not a numeric
/// IPv4 or IPv6 address.
std::optional<net::address> parse_host_port(const program_info& program, std::string_view host,
                                            std::string_view port, int& exit_code);

/// Whether a HOST argument names a Unix-domain stream socket instead (`unix:NAME`, `/PATH`
/// or `@ABSTRACT`): then no PORT follows it.
bool names_unix_socket(std::string_view host) noexcept;

/// Parses such a name (net::address::parse_unix). On failure prints why and sets
/// `exit_code` to exit_failure, as for a bad host.
std::optional<net::address> parse_unix_socket(const program_info& program, std::string_view name,
                                              int& exit_code);

/// HOST:PORT in one argument (IPv6 in brackets: [::1]:9100), for options such as --metrics.
/// Fails as parse_host_port does; a value without a colon is a usage error, exit_usage.
std::optional<net::address> parse_endpoint(const program_info& program, std::string_view option,
                                           std::string_view value, int& exit_code);

/// SECONDS: a positive decimal number ("1", "0.5") of at most a day, rounded to whole
/// milliseconds (at least 1); nullopt for anything else.
std::optional<std::chrono::milliseconds> parse_seconds(std::string_view text);

/// A whole number from 1 to 10,000,000; nullopt for anything else.
std::optional<std::size_t> parse_count(std::string_view text);

/// Raises the soft limit on open files to the hard limit: each connection is a descriptor,
/// and the usual soft limit of 1024 would cap a server or client near 1,000 connections
/// however much the administrator allows. Best effort; the limits stay as they are on
/// failure.
void raise_open_file_limit() noexcept;

/// Sets up the io_context, or prints one line naming why io_uring is unavailable (EPERM,
/// ENOMEM, ENOSYS and what to do about each) and returns null.
std::unique_ptr<io_context> open_context(const program_info& program,
                                         const io_context_options& options = {});

} // namespace ucoro::apps
