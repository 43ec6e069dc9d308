// An IPv4, IPv6 or Unix-domain socket address: what bind, connect and accept speak.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace ucoro::net {

/// An IPv4 or IPv6 address with a port, or a Unix-domain stream socket's name: a plain
/// value (116 bytes, the size of sockaddr_un) copied freely. Printed as `host:port`, with
/// IPv6 hosts in brackets (`127.0.0.1:65432`, `[::1]:65432`), and a Unix name with its
/// `unix:` prefix: `unix:/run/echo.sock`, `unix:@echo` (abstract), `unix:` for the unnamed
/// address a connecting Unix socket gets (what accept reports as its peer).
class address {
public:
    /// 0.0.0.0:0
    address() noexcept;

    /// Parses a numeric IPv4 or IPv6 host ("127.0.0.1", "::1"; "localhost" is accepted as
    /// 127.0.0.1) and a port. No DNS lookup: an event loop must not block on one.
    static std::optional<address> parse(std::string_view host, std::uint16_t port);
    /// Parses a port given as text ("65432"): digits only, 0 to 65535.
    static std::optional<std::uint16_t> parse_port(std::string_view text) noexcept;

    /// A Unix-domain socket name: a filesystem path ("/run/echo.sock", or relative), or
    /// with a leading '@' a Linux abstract name ("@echo", no file). At most 107 bytes (not
    /// counting the '@'), no NUL byte, not empty.
    static std::optional<address> unix_socket(std::string_view name);
    /// Parses an address given as one word: `unix:NAME` (any unix_socket name), or a name
    /// starting with '/' or '@'. Nothing else: a host needs a port (parse).
    static std::optional<address> parse_unix(std::string_view text);

    static address ipv4_loopback(std::uint16_t port = 0) noexcept;
    static address ipv6_loopback(std::uint16_t port = 0) noexcept;
    /// Copies what the kernel filled in (accept, getsockname): AF_INET, AF_INET6 or
    /// AF_UNIX; any other family (or a length that does not fit) gives the default.
    static address from_sockaddr(const sockaddr* sa, socklen_t length) noexcept;

    int family() const noexcept { return m_storage.any.sa_family; }
    bool is_unix() const noexcept { return family() == AF_UNIX; }
    /// The port; 0 for a Unix name.
    std::uint16_t port() const noexcept;
    /// The host as text; for a Unix name, the name as unix_socket() takes it ("/path",
    /// "@abstract", or "" when unnamed).
    std::string host() const;
    std::string to_string() const;
    /// For a Unix name that is a filesystem path: that path, else "" (abstract, unnamed, IP).
    std::string path() const;

    const sockaddr* data() const noexcept { return &m_storage.any; }
    sockaddr* data() noexcept { return &m_storage.any; }
    socklen_t size() const noexcept;
    static constexpr socklen_t capacity() noexcept { return sizeof(storage); }
    /// After the kernel has written up to capacity() bytes at data() (getsockname,
    /// accept), its length: a Unix name's size depends on it.
    void set_size(socklen_t length) noexcept;

    friend bool operator==(const address& a, const address& b) noexcept;

private:
    union storage {
        sockaddr any;
        sockaddr_in v4;
        sockaddr_in6 v6;
        sockaddr_un local;
    } m_storage;
    socklen_t m_unix_size = 0; // a Unix name's length as the kernel counts it
};

} // namespace ucoro::net

template <>
struct fmt::formatter<ucoro::net::address> : fmt::formatter<std::string_view> {
    template <typename FormatContext>
    auto format(const ucoro::net::address& a, FormatContext& ctx) const {
        return fmt::formatter<std::string_view>::format(a.to_string(), ctx);
    }
};
