#include "ucoro/net/address.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstddef>
#include <cstring>

namespace ucoro::net {

address::address() noexcept {
    std::memset(&m_storage, 0, sizeof(m_storage));
    m_storage.v4.sin_family = AF_INET;
}

std::optional<address> address::parse(std::string_view host, std::uint16_t port) {
    if (host.find('\0') != std::string_view::npos) {
        return std::nullopt; // inet_pton would stop at the NUL and accept the prefix
    }
    if (host == "localhost") {
        host = "127.0.0.1";
    }
    const std::string text(host); // inet_pton wants a terminated string
    address a;
    if (inet_pton(AF_INET, text.c_str(), &a.m_storage.v4.sin_addr) == 1) {
        a.m_storage.v4.sin_family = AF_INET;
        a.m_storage.v4.sin_port = htons(port);
        return a;
    }
    std::memset(&a.m_storage, 0, sizeof(a.m_storage));
    std::string_view v6 = host;
    if (v6.size() >= 2 && v6.front() == '[' && v6.back() == ']') {
        v6 = v6.substr(1, v6.size() - 2); // accept the printed form, "[::1]"
    }
    if (inet_pton(AF_INET6, std::string(v6).c_str(), &a.m_storage.v6.sin6_addr) == 1) {
        a.m_storage.v6.sin6_family = AF_INET6;
        a.m_storage.v6.sin6_port = htons(port);
        return a;
    }
    return std::nullopt;
}

std::optional<std::uint16_t> address::parse_port(std::string_view text) noexcept {
    unsigned value = 0;
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc() || ptr != end || value > 65535) {
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(value);
}

namespace {
// Where sun_path starts: a Unix name's length is this plus the bytes of its name.
constexpr socklen_t unix_name_offset = offsetof(sockaddr_un, sun_path);
} // namespace

std::optional<address> address::unix_socket(std::string_view name) {
    const bool abstract = !name.empty() && name.front() == '@';
    const std::string_view stored = abstract ? name.substr(1) : name;
    // A path needs its terminating NUL in sun_path, an abstract name its leading one.
    const std::size_t room = sizeof(sockaddr_un::sun_path) - 1;
    if (stored.empty() || stored.size() > room || stored.find('\0') != std::string_view::npos) {
        return std::nullopt;
    }
    address a;
    std::memset(&a.m_storage, 0, sizeof(a.m_storage));
    a.m_storage.local.sun_family = AF_UNIX;
    char* const path = a.m_storage.local.sun_path;
    if (abstract) {
        std::memcpy(path + 1, stored.data(), stored.size()); // sun_path[0] == 0: abstract
        a.m_unix_size = static_cast<socklen_t>(unix_name_offset + 1 + stored.size());
    } else {
        std::memcpy(path, stored.data(), stored.size());
        a.m_unix_size = static_cast<socklen_t>(unix_name_offset + stored.size() + 1);
    }
    return a;
}

std::optional<address> address::parse_unix(std::string_view text) {
    constexpr std::string_view prefix = "unix:";
    if (text.substr(0, prefix.size()) == prefix) {
        return unix_socket(text.substr(prefix.size()));
    }
    if (!text.empty() && (text.front() == '/' || text.front() == '@')) {
        return unix_socket(text);
    }
    return std::nullopt;
}

address address::ipv4_loopback(std::uint16_t port) noexcept {
    address a;
    a.m_storage.v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.m_storage.v4.sin_port = htons(port);
    return a;
}

address address::ipv6_loopback(std::uint16_t port) noexcept {
    address a;
    std::memset(&a.m_storage, 0, sizeof(a.m_storage));
    a.m_storage.v6.sin6_family = AF_INET6;
    a.m_storage.v6.sin6_addr = in6addr_loopback;
    a.m_storage.v6.sin6_port = htons(port);
    return a;
}

address address::from_sockaddr(const sockaddr* sa, socklen_t length) noexcept {
    address a;
    if (sa != nullptr && length <= sizeof(storage) &&
        (sa->sa_family == AF_INET || sa->sa_family == AF_INET6 || sa->sa_family == AF_UNIX)) {
        std::memcpy(&a.m_storage, sa, length);
        a.set_size(length);
    }
    return a;
}

void address::set_size(socklen_t length) noexcept {
    if (is_unix()) {
        m_unix_size = length < sizeof(sockaddr_un) ? length : sizeof(sockaddr_un);
    }
}

std::uint16_t address::port() const noexcept {
    if (is_unix()) {
        return 0;
    }
    return ntohs(family() == AF_INET6 ? m_storage.v6.sin6_port : m_storage.v4.sin_port);
}

socklen_t address::size() const noexcept {
    if (is_unix()) {
        return m_unix_size > unix_name_offset ? m_unix_size : unix_name_offset;
    }
    return family() == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

std::string address::host() const {
    if (is_unix()) {
        const char* const name = m_storage.local.sun_path;
        const std::size_t length = size() - unix_name_offset;
        if (length == 0) {
            return {}; // unnamed: a connecting socket's own address
        }
        if (name[0] == '\0') {
            // Abstract: counted, not terminated. Appended rather than "@" + std::string(...),
            // which g++ 12 at -O3 flags with a false -Wrestrict.
            std::string abstract(1, '@');
            abstract.append(name + 1, length - 1);
            return abstract;
        }
        return {name, strnlen(name, length)};
    }
    char text[INET6_ADDRSTRLEN] = {};
    if (family() == AF_INET6) {
        inet_ntop(AF_INET6, &m_storage.v6.sin6_addr, text, sizeof(text));
    } else {
        inet_ntop(AF_INET, &m_storage.v4.sin_addr, text, sizeof(text));
    }
    return text;
}

std::string address::path() const {
    const std::string name = is_unix() ? host() : std::string();
    return !name.empty() && name.front() != '@' ? name : std::string();
}

std::string address::to_string() const {
    if (is_unix()) {
        return "unix:" + host();
    }
    if (family() == AF_INET6) {
        return fmt::format("[{}]:{}", host(), port());
    }
    return fmt::format("{}:{}", host(), port());
}

bool operator==(const address& a, const address& b) noexcept {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

} // namespace ucoro::net
