// net::connect over loopback: success, a refused connection.
#include <netinet/in.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <system_error>

#include "support/loopback.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/connect.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/task.hpp"

using ucoro::task;
using ucoro::net::address;
using ucoro::net::listener;

TEST_CASE("connect returns an open socket whose peer is the address it connected to") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    listener server(*context, address::ipv4_loopback(0));
    auto result = context->block_on([&]() -> task<ucoro::io_result<ucoro::net::socket>> {
        co_return co_await ucoro::net::connect(*context, server.local_address());
    }());
    REQUIRE_FALSE(result.error);
    CHECK(result.value.is_open());
    CHECK(result.value.peer_address() == server.local_address());
    CHECK(result.value.local_address().port() != 0);
}

TEST_CASE("connect to a port nobody listens on returns ECONNREFUSED as an error_code") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    // A bound socket that never listens: the kernel answers a SYN to it with RST, and the
    // port stays ours for the whole test, so no other process can start listening on it.
    ucoro_test::unique_fd bound(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(bound.get() >= 0);
    const address any_port = address::ipv4_loopback(0);
    REQUIRE(::bind(bound.get(), any_port.data(), any_port.size()) == 0);
    address target;
    socklen_t length = address::capacity();
    REQUIRE(::getsockname(bound.get(), target.data(), &length) == 0);
    REQUIRE(target.port() != 0);

    auto result = context->block_on([&]() -> task<ucoro::io_result<ucoro::net::socket>> {
        co_return co_await ucoro::net::connect(*context, target);
    }());
    CHECK(result.error == std::errc::connection_refused);
    CHECK(result.error.category() == std::system_category());
    CHECK_FALSE(result.value.is_open());
    CHECK_FALSE(static_cast<bool>(result));
}
