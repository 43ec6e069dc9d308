#include "ucoro/net/address.hpp"

#include <arpa/inet.h>

#include <charconv>
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
    if (sa != nullptr && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) &&
        length <= sizeof(storage)) {
        std::memcpy(&a.m_storage, sa, length);
    }
    return a;
}

std::uint16_t address::port() const noexcept {
    return ntohs(family() == AF_INET6 ? m_storage.v6.sin6_port : m_storage.v4.sin_port);
}

socklen_t address::size() const noexcept {
    return family() == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

std::string address::host() const {
    char text[INET6_ADDRSTRLEN] = {};
    if (family() == AF_INET6) {
        inet_ntop(AF_INET6, &m_storage.v6.sin6_addr, text, sizeof(text));
    } else {
        inet_ntop(AF_INET, &m_storage.v4.sin_addr, text, sizeof(text));
    }
    return text;
}

std::string address::to_string() const {
    if (family() == AF_INET6) {
        return fmt::format("[{}]:{}", host(), port());
    }
    return fmt::format("{}:{}", host(), port());
}

bool operator==(const address& a, const address& b) noexcept {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

} // namespace ucoro::net
