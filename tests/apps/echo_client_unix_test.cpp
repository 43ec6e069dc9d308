// ucoro-echo-client over Unix-domain stream sockets: unix:PATH, /PATH and @NAME in place of
// HOST PORT, against a plain echo server on that socket; a refused or missing socket and a
// bad name are one line and exit 1, a wrong argument count is the usage and exit 2.
#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "support/process.hpp"
#include "support/unique_fd.hpp"
#include "ucoro/net/address.hpp"

namespace {

using Catch::Matchers::Contains;
using ucoro::net::address;
using ucoro_test::completed_run;
using ucoro_test::unique_fd;

completed_run run_client(std::vector<std::string> args) {
    args.insert(args.begin(), UCORO_ECHO_CLIENT);
    return ucoro_test::run_program(std::move(args));
}

/// A blocking echo server on a Unix-domain socket that serves `connections` connections,
/// one after another (the client's connections wait in the backlog), each until its peer
/// closes.
class unix_echo_server {
public:
    unix_echo_server(const address& at, int connections)
        : m_listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        if (::bind(m_listener.get(), at.data(), at.size()) != 0 ||
            ::listen(m_listener.get(), 64) != 0) {
            throw std::system_error(errno, std::system_category(), "unix listener");
        }
        m_thread = std::thread([this, connections] {
            for (int i = 0; i < connections; ++i) {
                // Bounded: a client that never comes (a failed test) ends the server too.
                pollfd ready{m_listener.get(), POLLIN, 0};
                if (::poll(&ready, 1, 10000) != 1) {
                    return;
                }
                unique_fd peer(::accept4(m_listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
                char buffer[4096];
                ssize_t n = 0;
                while ((n = ::recv(peer.get(), buffer, sizeof(buffer), 0)) > 0) {
                    if (::send(peer.get(), buffer, static_cast<std::size_t>(n), MSG_NOSIGNAL) !=
                        n) {
                        break;
                    }
                }
            }
        });
    }
    unix_echo_server(const unix_echo_server&) = delete;
    unix_echo_server& operator=(const unix_echo_server&) = delete;
    ~unix_echo_server() { m_thread.join(); }

private:
    unique_fd m_listener;
    std::thread m_thread;
};

/// A fresh directory for socket files, removed at the end.
class temporary_directory {
public:
    temporary_directory() {
        const char* base = std::getenv("TMPDIR");
        std::string pattern =
            std::string(base != nullptr ? base : "/tmp") + "/ucoro-client-unix-XXXXXX";
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

void check_echoed(const completed_run& run, const std::string& printed, int connections) {
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 0);
    CHECK_THAT(run.out, Contains("starting connection 1 to " + printed));
    CHECK_THAT(run.out, Contains(fmt::format("all {} connections got back every byte they sent",
                                             connections)));
    CHECK(run.err.empty());
}

} // namespace

TEST_CASE("echo client over a Unix path, as unix:PATH and as /PATH", "[echo_client][unix]") {
    temporary_directory directory;
    const std::string path = directory.file("echo.sock");
    {
        unix_echo_server server(*address::unix_socket(path), 3);
        check_echoed(run_client({"unix:" + path, "3"}), "unix:" + path, 3);
    }
    ::unlink(path.c_str());
    {
        unix_echo_server server(*address::unix_socket(path), 2);
        check_echoed(run_client({"-t", "5", path, "2"}), "unix:" + path, 2);
    }
}

TEST_CASE("echo client over an abstract Unix name", "[echo_client][unix]") {
    const std::string name = "@ucoro-client-test-" + std::to_string(::getpid());
    unix_echo_server server(*address::unix_socket(name), 2);
    check_echoed(run_client({name, "2"}), "unix:" + name, 2);
}

TEST_CASE("echo client exits 1 naming a Unix socket nobody serves", "[echo_client][unix]") {
    temporary_directory directory;
    const std::string path = directory.file("none.sock");
    const completed_run run = run_client({"unix:" + path, "1"});
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 1);
    CHECK_THAT(run.out + run.err, Contains("unix:" + path));
}

TEST_CASE("echo client: a bad Unix name exits 1, a wrong count of arguments 2",
          "[echo_client][unix][cli]") {
    for (const std::string& bad :
         {std::string("unix:"), std::string("@"), "/" + std::string(200, 'x')}) {
        INFO("name: " << bad);
        const completed_run run = run_client({bad, "1"});
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 1);
        CHECK_THAT(run.err, Contains("bad Unix socket name"));
        CHECK(run.out.empty());
    }
    const std::vector<std::vector<std::string>> wrong = {
        {"unix:/tmp/x"}, {"unix:/tmp/x", "1", "1"}, {"/tmp/x", "0"}, {"@x", "many"}};
    for (const auto& args : wrong) {
        INFO("arguments: " << fmt::format("{}", fmt::join(args, " ")));
        const completed_run run = run_client(args);
        REQUIRE(run.status.exited);
        CHECK(run.status.code == 2);
        CHECK_THAT(run.err, Contains("usage: ucoro-echo-client"));
    }
}
