#include "command_line.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <system_error>

#include <fmt/core.h>

namespace ucoro::apps {

std::string version_line(std::string_view name) {
    return fmt::format("{} {} (git {})", name, UCORO_VERSION, UCORO_GIT_COMMIT);
}

int usage_error(const program_info& program, std::string_view reason) {
    if (!reason.empty()) {
        fmt::print(stderr, "{}: {}\n", program.name, reason);
    }
    fmt::print(stderr, "{}\n", program.usage);
    return exit_usage;
}

std::optional<net::address> parse_host_port(const program_info& program, std::string_view host,
                                            std::string_view port, int& exit_code) {
    const auto port_number = net::address::parse_port(port);
    if (!port_number) {
        exit_code = usage_error(
            program, fmt::format("invalid port '{}': expected a number from 0 to 65535", port));
        return std::nullopt;
    }
    auto address = net::address::parse(host, *port_number);
    if (!address) {
        fmt::print(stderr,
                   "{}: bad address '{}': expected a numeric IPv4 or IPv6 address such as "
                   "127.0.0.1 or ::1\n",
                   program.name, host);
        exit_code = exit_failure;
    }
    return address;
}

bool names_unix_socket(std::string_view host) noexcept {
    return host.starts_with("unix:") || host.starts_with('/') || host.starts_with('@');
}

std::optional<net::address> parse_unix_socket(const program_info& program, std::string_view name,
                                              int& exit_code) {
    auto address = net::address::parse_unix(name);
    if (!address) {
        fmt::print(stderr,
                   "{}: bad Unix socket name '{}': expected unix:PATH, /PATH or @NAME, not "
                   "empty, at most 107 bytes\n",
                   program.name, name);
        exit_code = exit_failure;
    }
    return address;
}

std::optional<net::address> parse_endpoint(const program_info& program, std::string_view option,
                                           std::string_view value, int& exit_code) {
    const std::size_t colon = value.rfind(':');
    std::string_view host = value.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    if (colon == std::string_view::npos || host.empty()) {
        exit_code = usage_error(
            program, fmt::format("{} must be HOST:PORT (such as 127.0.0.1:9100 or [::1]:9100), "
                                 "not '{}'",
                                 option, value));
        return std::nullopt;
    }
    return parse_host_port(program, host, value.substr(colon + 1), exit_code);
}

void raise_open_file_limit() noexcept {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
}

std::unique_ptr<io_context> open_context(const program_info& program,
                                         const io_context_options& options) {
    try {
        return std::make_unique<io_context>(options);
    } catch (const std::system_error& e) {
        fmt::print(stderr, "{}: {}\n", program.name, describe_io_uring_error(e.code().value()));
        return nullptr;
    }
}

std::optional<std::chrono::milliseconds> parse_seconds(std::string_view text) {
    double seconds = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), seconds);
    if (error != std::errc() || end != text.data() + text.size() || !(seconds > 0) ||
        seconds > 86400) {
        return std::nullopt;
    }
    return std::max(std::chrono::milliseconds(1),
                    std::chrono::milliseconds(static_cast<long long>(seconds * 1000 + 0.5)));
}

std::optional<std::size_t> parse_count(std::string_view text) {
    std::size_t count = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), count);
    if (error != std::errc() || end != text.data() + text.size() || count == 0 ||
        count > 10'000'000) {
        return std::nullopt;
    }
    return count;
}

} // namespace ucoro::apps
