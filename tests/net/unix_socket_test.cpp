// Unix-domain stream sockets through net::address, net::listener and net::connect: bytes
// byte for byte both ways over a path and an abstract name, how peers print, and what the
// listener does with the socket file (a stale one is replaced, a live or foreign one is
// not, its own is removed when it goes).
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "support/loopback.hpp"
#include "support/unique_fd.hpp"

namespace {

using ucoro::task;
using ucoro::net::address;
using ucoro::net::listener;

/// A fresh directory under $TMPDIR (or /tmp), removed with what is left in it.
class temporary_directory {
public:
    temporary_directory() {
        const char* base = std::getenv("TMPDIR");
        std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/ucoro-unix-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::system_error(errno, std::system_category(), "mkdtemp");
        }
        m_path = pattern;
    }
    ~temporary_directory() { (void)std::system(("rm -rf '" + m_path + "'").c_str()); }
    std::string file(const std::string& name) const { return m_path + "/" + name; }

private:
    std::string m_path;
};

bool exists(const std::string& path) {
    struct stat status {};
    return ::stat(path.c_str(), &status) == 0;
}

/// Ping from the client, pong from the server, each compared byte for byte.
void check_both_ways(ucoro_test::test_context& context, ucoro_test::connected_pair& pair) {
    const auto ping = ucoro_test::make_pattern(100000, 11);
    const auto pong = ucoro_test::make_pattern(777, 12);
    auto [there, back] =
        context.block_on([](ucoro_test::connected_pair& p, const std::vector<std::byte>& a,
                            const std::vector<std::byte>& b)
                             -> task<std::pair<ucoro_test::read_result, ucoro_test::read_result>> {
            auto [error, n] = co_await p.client.send_all(a);
            REQUIRE_FALSE(error);
            auto got = co_await ucoro_test::read_until_end(p.server, 4096, a.size());
            auto [back_error, m] = co_await p.server.send_all(b);
            REQUIRE_FALSE(back_error);
            auto returned = co_await ucoro_test::read_until_end(p.client, 4096, b.size());
            co_return std::pair{std::move(got), std::move(returned)};
        }(pair, ping, pong));
    CHECK_FALSE(there.error);
    UCORO_CHECK_SAME_BYTES(there.bytes, ping);
    CHECK_FALSE(back.error);
    UCORO_CHECK_SAME_BYTES(back.bytes, pong);
}

} // namespace

TEST_CASE("address: Unix names parse, print and compare") {
    const auto path = address::parse_unix("/run/echo.sock");
    REQUIRE(path);
    CHECK(path->is_unix());
    CHECK(path->family() == AF_UNIX);
    CHECK(path->port() == 0);
    CHECK(path->host() == "/run/echo.sock");
    CHECK(path->path() == "/run/echo.sock");
    CHECK(path->to_string() == "unix:/run/echo.sock");
    CHECK(fmt::format("{}", *path) == "unix:/run/echo.sock");
    CHECK(*address::parse_unix("unix:/run/echo.sock") == *path);
    CHECK(*address::unix_socket("/run/echo.sock") == *path);

    const auto relative = address::parse_unix("unix:echo.sock");
    REQUIRE(relative);
    CHECK(relative->to_string() == "unix:echo.sock");

    const auto abstract = address::parse_unix("@echo");
    REQUIRE(abstract);
    CHECK(abstract->to_string() == "unix:@echo");
    CHECK(abstract->path().empty());
    CHECK(*address::parse_unix("unix:@echo") == *abstract);
    CHECK_FALSE(*abstract == *address::parse_unix("@echo2"));
    CHECK_FALSE(*abstract == *address::parse_unix("/echo"));

    // Not Unix names, or not valid ones.
    CHECK_FALSE(address::parse_unix("127.0.0.1"));
    CHECK_FALSE(address::parse_unix("echo.sock"));
    CHECK_FALSE(address::parse_unix(""));
    CHECK_FALSE(address::parse_unix("unix:"));
    CHECK_FALSE(address::parse_unix("@"));
    CHECK_FALSE(address::parse_unix(std::string_view("/a\0b", 4)));
    CHECK(address::parse_unix("/" + std::string(106, 'x')));       // 107 bytes: fits
    CHECK_FALSE(address::parse_unix("/" + std::string(107, 'x'))); // 108: no room for NUL
    CHECK(address::parse_unix("@" + std::string(107, 'x')));
    CHECK_FALSE(address::parse_unix("@" + std::string(108, 'x')));
}

TEST_CASE("address::from_sockaddr keeps a Unix name and its length") {
    sockaddr_un named{};
    named.sun_family = AF_UNIX;
    std::strcpy(named.sun_path, "/tmp/x");
    const address a = address::from_sockaddr(reinterpret_cast<const sockaddr*>(&named),
                                             offsetof(sockaddr_un, sun_path) + 7);
    CHECK(a.to_string() == "unix:/tmp/x");
    CHECK(a == *address::unix_socket("/tmp/x"));

    sockaddr_un unnamed{};
    unnamed.sun_family = AF_UNIX;
    const address b =
        address::from_sockaddr(reinterpret_cast<const sockaddr*>(&unnamed), sizeof(sa_family_t));
    CHECK(b.to_string() == "unix:");
    CHECK(b.size() == sizeof(sa_family_t));
}

TEST_CASE("a Unix listener on a path: bytes both ways, peers printed, the file removed after") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    temporary_directory directory;
    const std::string path = directory.file("echo.sock");
    {
        listener server(*context, *address::unix_socket(path));
        CHECK(server.local_address() == *address::unix_socket(path));
        CHECK(server.local_address().to_string() == "unix:" + path);
        struct stat status {};
        REQUIRE(::stat(path.c_str(), &status) == 0);
        CHECK(S_ISSOCK(status.st_mode));

        auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
        CHECK(pair.client.peer_address() == server.local_address());
        CHECK(pair.server.peer_address().to_string() == "unix:"); // a client is unnamed
        CHECK(pair.client.local_address().to_string() == "unix:");
        CHECK(pair.server.local_address() == server.local_address());
        check_both_ways(*context, pair);
    }
    CHECK_FALSE(exists(path));
}

TEST_CASE("a Unix listener on an abstract name: bytes both ways, no file") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    const auto name = address::unix_socket("@ucoro-test-" + std::to_string(::getpid()));
    REQUIRE(name);
    listener server(*context, *name);
    CHECK(server.local_address() == *name);
    auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
    CHECK(pair.client.peer_address() == *name);
    check_both_ways(*context, pair);
}

TEST_CASE("a Unix listener replaces a stale socket file, not a live one or another file") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    temporary_directory directory;

    // What a crashed server leaves: a socket file nobody listens on.
    const std::string stale = directory.file("stale.sock");
    {
        ucoro_test::unique_fd left(::socket(AF_UNIX, SOCK_STREAM, 0));
        const auto at = *address::unix_socket(stale);
        REQUIRE(::bind(left.get(), at.data(), at.size()) == 0);
    }
    REQUIRE(exists(stale));
    {
        listener server(*context, *address::unix_socket(stale));
        auto pair = context->block_on(ucoro_test::connect_pair(*context, server));
        check_both_ways(*context, pair);
    }
    CHECK_FALSE(exists(stale));

    // A live listener keeps its path.
    const std::string live = directory.file("live.sock");
    listener first(*context, *address::unix_socket(live));
    try {
        listener second(*context, *address::unix_socket(live));
        FAIL("a second listener took a live path");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::address_in_use);
        CHECK(std::string(e.what()).find("bind unix:" + live) != std::string::npos);
    }
    // The probe that found it live is one connection, closed at once (listener.hpp).
    auto probe_end = context->block_on([](listener& l) -> task<ucoro_test::read_result> {
        auto [error, probe] = co_await l.accept();
        REQUIRE_FALSE(error);
        co_return co_await ucoro_test::read_until_end(probe, 64, 64);
    }(first));
    CHECK(probe_end.end_of_stream);
    CHECK(probe_end.bytes.empty());
    auto pair = context->block_on(ucoro_test::connect_pair(*context, first));
    check_both_ways(*context, pair);

    // A file that is not a socket is not ours to remove.
    const std::string regular = directory.file("notes.txt");
    std::ofstream(regular) << "keep me\n";
    CHECK_THROWS_AS(listener(*context, *address::unix_socket(regular)), std::system_error);
    std::ifstream kept(regular);
    std::string line;
    std::getline(kept, line);
    CHECK(line == "keep me");
}

TEST_CASE("a Unix listener leaves alone a file put at its path after it bound") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    temporary_directory directory;
    const std::string path = directory.file("moved.sock");
    {
        listener server(*context, *address::unix_socket(path));
        REQUIRE(::unlink(path.c_str()) == 0);         // an operator removed it, and someone else
        std::ofstream(path) << "another program's\n"; // now has a file there
    }
    CHECK(exists(path));
}

TEST_CASE("connect to a Unix path nobody listens on is refused, to a missing one not found") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    temporary_directory directory;
    auto connect_to = [](ucoro::io_context& ctx, address to) -> task<std::error_code> {
        auto [error, sock] = co_await ucoro::net::connect(ctx, to);
        co_return error;
    };
    const std::string stale = directory.file("stale.sock");
    {
        ucoro_test::unique_fd left(::socket(AF_UNIX, SOCK_STREAM, 0));
        const auto at = *address::unix_socket(stale);
        REQUIRE(::bind(left.get(), at.data(), at.size()) == 0);
    }
    CHECK(context->block_on(connect_to(*context, *address::unix_socket(stale))) ==
          std::errc::connection_refused);
    CHECK(context->block_on(connect_to(*context, *address::unix_socket(directory.file("none")))) ==
          std::errc::no_such_file_or_directory);
}

TEST_CASE("a Unix listener never removes a symlink at its path, even to a stale socket") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    temporary_directory directory;
    const std::string stale = directory.file("stale.sock");
    {
        ucoro_test::unique_fd left(::socket(AF_UNIX, SOCK_STREAM, 0));
        const auto at = *address::unix_socket(stale);
        REQUIRE(::bind(left.get(), at.data(), at.size()) == 0);
    }
    const std::string link = directory.file("link.sock");
    REQUIRE(::symlink(stale.c_str(), link.c_str()) == 0);
    try {
        listener server(*context, *address::unix_socket(link));
        FAIL("the listener replaced a symlink");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::address_in_use);
    }
    struct stat status {};
    REQUIRE(::lstat(link.c_str(), &status) == 0);
    CHECK(S_ISLNK(status.st_mode)); // still the operator's link
    CHECK(exists(stale));
}

TEST_CASE("a Unix listener's probe of a live path whose backlog is full does not block") {
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    temporary_directory directory;
    const std::string live = directory.file("full.sock");
    // A live server that accepts nobody, its backlog of 1 filled by non-blocking connects.
    ucoro_test::unique_fd server(::socket(AF_UNIX, SOCK_STREAM, 0));
    const auto at = *address::unix_socket(live);
    REQUIRE(::bind(server.get(), at.data(), at.size()) == 0);
    REQUIRE(::listen(server.get(), 1) == 0);
    std::vector<ucoro_test::unique_fd> clients;
    for (int i = 0; i < 16; ++i) {
        ucoro_test::unique_fd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0));
        const int result = ::connect(client.get(), at.data(), at.size());
        const int error = errno;
        if (result != 0) {
            REQUIRE(error == EAGAIN);
            break; // the backlog is full: a blocking connect would wait here
        }
        clients.push_back(std::move(client));
    }
    REQUIRE(clients.size() < 16);
    // Under a watchdog: a probe that blocks would otherwise hang the test.
    std::atomic<bool> returned{false};
    std::thread watchdog([&returned] {
        for (int i = 0; i < 100 && !returned.load(); ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        if (!returned.load()) {
            std::fprintf(stderr, "the listener's probe blocked on a full backlog\n");
            std::_Exit(1);
        }
    });
    try {
        listener second(*context, at);
        FAIL("a second listener took a live path");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::address_in_use);
    }
    returned.store(true);
    watchdog.join();
    CHECK(exists(live));
}
