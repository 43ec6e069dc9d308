// An IPv4 or IPv6 socket address: what bind, connect and accept speak.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace ucoro::net {

/// An IPv4 or IPv6 address with a port, small enough to copy freely (32 bytes).
/// Printed as `host:port`, with IPv6 hosts in brackets: `127.0.0.1:65432`, `[::1]:65432`.
class address {
public:
    /// 0.0.0.0:0
    address() noexcept;

    /// Parses a numeric IPv4 or IPv6 host ("127.0.0.1", "::1"; "localhost" is accepted as
    /// 127.0.0.1) and a port. No DNS lookup: an event loop must not block on one.
    static std::optional<address> parse(std::string_view host, std::uint16_t port);
    /// Parses a port given as text ("65432"): digits only, 0 to 65535.
    static std::optional<std::uint16_t> parse_port(std::string_view text) noexcept;

    static address ipv4_loopback(std::uint16_t port = 0) noexcept;
    static address ipv6_loopback(std::uint16_t port = 0) noexcept;
    /// Copies what the kernel filled in (accept, getsockname); AF_INET/AF_INET6 only.
    static address from_sockaddr(const sockaddr* sa, socklen_t length) noexcept;

    int family() const noexcept { return m_storage.any.sa_family; }
    std::uint16_t port() const noexcept;
    std::string host() const;
    std::string to_string() const;

    const sockaddr* data() const noexcept { return &m_storage.any; }
    sockaddr* data() noexcept { return &m_storage.any; }
    socklen_t size() const noexcept;
    static constexpr socklen_t capacity() noexcept { return sizeof(storage); }

    friend bool operator==(const address& a, const address& b) noexcept;

private:
    union storage {
        sockaddr any;
        sockaddr_in v4;
        sockaddr_in6 v6;
    } m_storage;
};

} // namespace ucoro::net

template <>
struct fmt::formatter<ucoro::net::address> : fmt::formatter<std::string_view> {
    template <typename FormatContext>
    auto format(const ucoro::net::address& a, FormatContext& ctx) const {
        return fmt::formatter<std::string_view>::format(a.to_string(), ctx);
    }
};
