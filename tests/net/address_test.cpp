// net::address: parsing hosts and ports, printing, comparing. No sockets, no ring.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "ucoro/net/address.hpp"

using ucoro::net::address;
using namespace std::string_literals;

TEST_CASE("address::parse accepts a numeric IPv4 host and keeps the port") {
    const auto a = address::parse("127.0.0.1", 65432);
    REQUIRE(a.has_value());
    CHECK(a->family() == AF_INET);
    CHECK(a->port() == 65432);
    CHECK(a->host() == "127.0.0.1");
    CHECK(a->size() == sizeof(sockaddr_in));
    // The bytes bind() will see: network order, not host order.
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(a->data());
    CHECK(v4->sin_port == htons(65432));
    CHECK(v4->sin_addr.s_addr == htonl(INADDR_LOOPBACK));

    const auto other = address::parse("10.1.2.3", 80);
    REQUIRE(other.has_value());
    CHECK(other->host() == "10.1.2.3");
    CHECK(other->port() == 80);
}

TEST_CASE("address::parse accepts a numeric IPv6 host bare or in brackets") {
    const auto bare = address::parse("::1", 65432);
    REQUIRE(bare.has_value());
    CHECK(bare->family() == AF_INET6);
    CHECK(bare->port() == 65432);
    CHECK(bare->host() == "::1");
    CHECK(bare->size() == sizeof(sockaddr_in6));

    // The printed form must parse back, so "[::1]" is accepted too.
    const auto bracketed = address::parse("[::1]", 65432);
    REQUIRE(bracketed.has_value());
    CHECK(bracketed->family() == AF_INET6);
    CHECK(*bracketed == *bare);

    const auto full = address::parse("fe80::1:2", 7);
    REQUIRE(full.has_value());
    CHECK(full->host() == "fe80::1:2");
    CHECK(full->port() == 7);
}

TEST_CASE("address::parse maps localhost to 127.0.0.1 without a DNS lookup") {
    const auto a = address::parse("localhost", 8080);
    REQUIRE(a.has_value());
    CHECK(a->family() == AF_INET);
    CHECK(a->host() == "127.0.0.1");
    CHECK(a->port() == 8080);
    CHECK(*a == address::ipv4_loopback(8080));
}

TEST_CASE("address::parse rejects hosts that are not numeric addresses") {
    const char* const garbage[] = {
        "",           "   ",        "abc",         "example.com",       "1.2.3",   "256.0.0.1",
        "1.2.3.4.5",  "127.0.0.1 ", " 127.0.0.1",  "127.0.0.1:80",      "::g",     "[::1",
        "::1]",       "[]",         "[127.0.0.1]", "1:2:3:4:5:6:7:8:9", "[[::1]]", "localhost.",
        "LOCALHOST1", "-1",
    };
    for (const char* host : garbage) {
        INFO("host \"" << host << "\"");
        CHECK_FALSE(address::parse(host, 80).has_value());
    }
}

TEST_CASE("address::parse rejects a host with an embedded NUL instead of parsing its prefix") {
    // A string_view carries its own length: "127.0.0.1\0evil" is not 127.0.0.1. Copying it
    // into a std::string and handing c_str() to inet_pton would stop at the NUL.
    const std::string v4 = "127.0.0.1\0evil"s;
    REQUIRE(v4.size() == 14);
    CHECK_FALSE(address::parse(v4, 80).has_value());

    const std::string v6 = "::1\0zz"s;
    REQUIRE(v6.size() == 6);
    CHECK_FALSE(address::parse(v6, 80).has_value());
}

TEST_CASE("address::parse_port accepts decimal ports from 0 to 65535") {
    CHECK(address::parse_port("0") == std::optional<std::uint16_t>(0));
    CHECK(address::parse_port("1") == std::optional<std::uint16_t>(1));
    CHECK(address::parse_port("80") == std::optional<std::uint16_t>(80));
    CHECK(address::parse_port("65432") == std::optional<std::uint16_t>(65432));
    CHECK(address::parse_port("65535") == std::optional<std::uint16_t>(65535));
}

TEST_CASE("address::parse_port rejects out-of-range and non-digit text") {
    const char* const bad[] = {
        "65536", "70000", "4294967296", "99999999999999999999",
        "-1",    "",      "12a",        "a12",
        " 80",   "80 ",   "+80",        "0x50",
        "8.0",   "1e3",   "\t80",
    };
    for (const char* text : bad) {
        INFO("port text \"" << text << "\"");
        CHECK_FALSE(address::parse_port(text).has_value());
    }
    // Only the characters in the view count: a longer buffer behind it is not read.
    const std::string_view prefix("8080", 2);
    CHECK(address::parse_port(prefix) == std::optional<std::uint16_t>(80));
    CHECK_FALSE(address::parse_port(std::string_view("65536", 0)).has_value());
}

TEST_CASE("address::to_string prints host:port with IPv6 hosts in brackets") {
    CHECK(address::parse("127.0.0.1", 65432)->to_string() == "127.0.0.1:65432");
    CHECK(address::parse("::1", 65432)->to_string() == "[::1]:65432");
    CHECK(address::ipv4_loopback(65432).to_string() == "127.0.0.1:65432");
    CHECK(address::ipv6_loopback(65432).to_string() == "[::1]:65432");
    CHECK(address::parse("0.0.0.0", 0)->to_string() == "0.0.0.0:0");
    CHECK(address::parse("::", 65535)->to_string() == "[::]:65535");
}

TEST_CASE("a default address is 0.0.0.0:0") {
    const address a;
    CHECK(a.family() == AF_INET);
    CHECK(a.port() == 0);
    CHECK(a.to_string() == "0.0.0.0:0");
    CHECK(a == *address::parse("0.0.0.0", 0));
}

TEST_CASE("fmt formats an address like to_string and honours width and alignment") {
    const address v4 = address::ipv4_loopback(65432);
    const address v6 = address::ipv6_loopback(65432);
    CHECK(fmt::format("{}", v4) == "127.0.0.1:65432");
    CHECK(fmt::format("{}", v6) == "[::1]:65432");
    CHECK(fmt::format("to {} via {}", v4, v6) == "to 127.0.0.1:65432 via [::1]:65432");
    // The formatter reuses the string_view one, so format specs apply to the whole text.
    CHECK(fmt::format("{:>17}", v4) == "  127.0.0.1:65432");
    CHECK(fmt::format("{:<13}|", v6) == "[::1]:65432  |");
}

TEST_CASE("address equality compares family and host and port") {
    CHECK(address::ipv4_loopback(1) == *address::parse("127.0.0.1", 1));
    CHECK(address::ipv6_loopback(1) == *address::parse("::1", 1));
    CHECK_FALSE(address::ipv4_loopback(1) == address::ipv4_loopback(2));
    CHECK_FALSE(address::ipv4_loopback(1) == *address::parse("127.0.0.2", 1));
    CHECK_FALSE(address::ipv4_loopback(1) == address::ipv6_loopback(1));
    CHECK_FALSE(address::ipv6_loopback(1) == *address::parse("::2", 1));
}

TEST_CASE("address::from_sockaddr copies IPv4 and IPv6 and ignores families it does not know") {
    sockaddr_in v4{};
    v4.sin_family = AF_INET;
    v4.sin_port = htons(4242);
    v4.sin_addr.s_addr = htonl(0x0a000001); // 10.0.0.1
    const address a = address::from_sockaddr(reinterpret_cast<const sockaddr*>(&v4), sizeof(v4));
    CHECK(a.to_string() == "10.0.0.1:4242");

    sockaddr_in6 v6{};
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(4343);
    v6.sin6_addr = in6addr_loopback;
    const address b = address::from_sockaddr(reinterpret_cast<const sockaddr*>(&v6), sizeof(v6));
    CHECK(b == address::ipv6_loopback(4343));

    // Another family (netlink here) is none of those (Unix names: unix_socket_test): the
    // result is the default, not a misread union.
    sockaddr_storage other{};
    other.ss_family = AF_NETLINK;
    const address c =
        address::from_sockaddr(reinterpret_cast<const sockaddr*>(&other), sizeof(sockaddr_in));
    CHECK(c == address());
    CHECK(address::from_sockaddr(nullptr, 0) == address());
}
