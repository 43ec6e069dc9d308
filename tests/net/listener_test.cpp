// net::listener: binding (port 0, a port in use) and listening.
#include <netinet/in.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <cerrno>
#include <string>
#include <system_error>

#include "support/loopback.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/listener.hpp"

using ucoro::net::address;
using ucoro::net::listener;

namespace {

// What getsockname says, independently of listener's own bookkeeping.
address kernel_local_address(int fd) {
    address local;
    socklen_t length = address::capacity();
    REQUIRE(::getsockname(fd, local.data(), &length) == 0);
    return local;
}

} // namespace

TEST_CASE("a listener bound to port 0 reports the port the kernel chose") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    const address local = server.local_address();
    CHECK(local.family() == AF_INET);
    CHECK(local.host() == "127.0.0.1");
    CHECK(local.port() != 0);
    CHECK(local == kernel_local_address(server.native_handle()));
    CHECK(ucoro_test::get_int_option(server.native_handle(), SOL_SOCKET, SO_ACCEPTCONN) == 1);
}

TEST_CASE("binding a port that is already listened on throws EADDRINUSE naming the address") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener first(*context, address::ipv4_loopback(0));
    const address taken = first.local_address();
    bool threw = false;
    try {
        listener second(*context, taken);
    } catch (const std::system_error& e) {
        threw = true;
        CHECK(e.code() == std::errc::address_in_use);
        CHECK(e.code().value() == EADDRINUSE);
        const std::string message = e.what();
        INFO("what(): " << message);
        CHECK(message.find(taken.to_string()) != std::string::npos);
        CHECK(message.find("bind") != std::string::npos);
    }
    CHECK(threw);
    // The failed constructor must not have disturbed the first listener.
    CHECK(ucoro_test::get_int_option(first.native_handle(), SOL_SOCKET, SO_ACCEPTCONN) == 1);
}
