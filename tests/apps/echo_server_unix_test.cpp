// ucoro-echo-server on a Unix-domain stream socket (unix:PATH in place of HOST PORT), checked
// with ucoro-echo-client over the same path byte for byte, on both receive paths; the
// socket file is gone once the server has exited, a stale one is replaced, a live one is
// not, and a bad name is one line and exit 1.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <string>
#include <system_error>
#include <vector>

#include "support/echo_server_usage.hpp"
#include "support/process.hpp"
#include "support/unique_fd.hpp"
#include "ucoro/net/address.hpp"

namespace {

using Catch::Matchers::Contains;
using ucoro::net::address;
using ucoro_test::child_process;
using ucoro_test::completed_run;

/// A fresh directory for socket files, removed at the end.
class temporary_directory {
public:
    temporary_directory() {
        const char* base = std::getenv("TMPDIR");
        std::string pattern =
            std::string(base != nullptr ? base : "/tmp") + "/ucoro-server-unix-XXXXXX";
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

bool is_socket_file(const std::string& path) {
    struct stat status {};
    return ::stat(path.c_str(), &status) == 0 && S_ISSOCK(status.st_mode);
}

bool exists(const std::string& path) {
    struct stat status {};
    return ::stat(path.c_str(), &status) == 0;
}

/// Runs the server on `name` (with `extra` options), the client with 5 connections against
/// it, then stops the server with SIGTERM; checks both, byte for byte by the client's word.
void serve_and_check(const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> argv{UCORO_ECHO_SERVER};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(name);
    child_process server(argv);
    const auto line = server.read_stdout_line();
    REQUIRE(line);
    const std::string printed = name.starts_with("unix:") ? name : "unix:" + name;
    CHECK(*line == "listening on " + printed);

    const completed_run client =
        ucoro_test::run_program({UCORO_ECHO_CLIENT, "-t", "30", name, "5"});
    REQUIRE(client.status.exited);
    CHECK(client.status.code == 0);
    CHECK_THAT(client.out, Contains("all 5 connections got back every byte they sent"));

    server.send_signal(SIGTERM);
    const auto status = server.wait();
    REQUIRE(status.exited);
    CHECK(status.code == 0);
    CHECK_THAT(server.stdout_text(), Contains("accepted connection from unix:"));
    CHECK(server.stderr_text().find("ERROR") == std::string::npos);
}

} // namespace

TEST_CASE("echo server on unix:PATH serves the client byte for byte and removes its socket",
          "[echo_server][unix]") {
    temporary_directory directory;
    const std::string path = directory.file("echo.sock");
    SECTION("default path") {
        serve_and_check("unix:" + path, {});
    }
    SECTION("--simple path, named as /PATH") {
        serve_and_check(path, {"--simple"});
    }
    CHECK_FALSE(exists(path));
}

TEST_CASE("echo server on an abstract Unix name serves the client", "[echo_server][unix]") {
    serve_and_check("@ucoro-server-test-" + std::to_string(::getpid()), {});
}

TEST_CASE("echo server replaces a stale socket file but not a live server's",
          "[echo_server][unix]") {
    temporary_directory directory;
    const std::string path = directory.file("echo.sock");
    {
        // What a killed server leaves: a socket file nobody listens on.
        ucoro_test::unique_fd left(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        const auto at = *address::unix_socket(path);
        REQUIRE(::bind(left.get(), at.data(), at.size()) == 0);
    }
    REQUIRE(is_socket_file(path));

    child_process first({UCORO_ECHO_SERVER, "-q", "unix:" + path});
    const auto line = first.read_stdout_line();
    REQUIRE(line);
    CHECK(*line == "listening on unix:" + path);

    const completed_run second = ucoro_test::run_program({UCORO_ECHO_SERVER, "unix:" + path});
    REQUIRE(second.status.exited);
    CHECK(second.status.code == 1);
    CHECK_THAT(second.err, Contains("cannot listen on unix:" + path));
    CHECK(is_socket_file(path)); // the live server's, untouched

    const completed_run client = ucoro_test::run_program({UCORO_ECHO_CLIENT, path, "2"});
    CHECK(client.status.code == 0);

    first.send_signal(SIGTERM);
    const auto status = first.wait();
    REQUIRE(status.exited);
    CHECK(status.code == 0);
    CHECK_FALSE(exists(path));
}

TEST_CASE("echo server: a bad Unix name exits 1, an extra argument after it 2",
          "[echo_server][unix][cli]") {
    const completed_run bad = ucoro_test::run_program({UCORO_ECHO_SERVER, "unix:"});
    REQUIRE(bad.status.exited);
    CHECK(bad.status.code == 1);
    CHECK_THAT(bad.err, Contains("bad Unix socket name"));

    const completed_run extra = ucoro_test::run_program({UCORO_ECHO_SERVER, "unix:/tmp/x", "1"});
    REQUIRE(extra.status.exited);
    CHECK(extra.status.code == 2);
    CHECK_THAT(extra.err, Contains(std::string(ucoro_test::echo_server_usage)));
}
