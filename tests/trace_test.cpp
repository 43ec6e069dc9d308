// The trace (UCORO_TRACE=1, or io_context_options::trace): what it prints for a scripted
// exchange over loopback, line by line, and that it stays silent when off.
#include "ucoro/trace.hpp"

#include <catch2/catch.hpp>

#include <liburing.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "support/context.hpp"
#include "support/stderr_capture.hpp"
#include "ucoro/io_context.hpp"
#include "ucoro/net/connect.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"

namespace {

using ucoro::io_context;
using ucoro::task;
using ucoro::net::address;
using ucoro::net::listener;

struct exchange_fds {
    int listen = -1;
    int client = -1;
    int server = -1;
};

std::span<const std::byte> bytes_of(std::string_view text) {
    return std::as_bytes(std::span(text.data(), text.size()));
}

// One coroutine does every step in turn, so each SQE and CQE names the same waiter and the
// order of the lines is fixed: connect, accept, "hello" there and back, close both.
task<void> scripted_exchange(io_context& context, listener& server_listener, exchange_fds& fds) {
    auto [connect_error, client] =
        co_await ucoro::net::connect(context, server_listener.local_address());
    REQUIRE_FALSE(connect_error);
    auto [accept_error, server] = co_await server_listener.accept();
    REQUIRE_FALSE(accept_error);
    fds = {server_listener.native_handle(), client.native_handle(), server.native_handle()};

    std::array<std::byte, 64> buffer;
    auto [send_error, sent] = co_await client.send_all(bytes_of("hello"));
    REQUIRE(sent == 5);
    auto [recv_error, received] = co_await server.recv(buffer);
    REQUIRE(received == 5);
    auto [echo_error, echoed] = co_await server.send_all(std::span(buffer).first(received));
    REQUIRE(echoed == 5);
    auto [back_error, back] = co_await client.recv(buffer);
    REQUIRE(back == 5);
    REQUIRE_FALSE(co_await server.close());
    REQUIRE_FALSE(co_await client.close());
}

std::string read_all(std::FILE* file) {
    std::fflush(file);
    std::rewind(file);
    std::string text;
    std::array<char, 4096> chunk{};
    while (const std::size_t n = std::fread(chunk.data(), 1, chunk.size(), file)) {
        text.append(chunk.data(), n);
    }
    return text;
}

std::vector<std::string> split(const std::string& line) {
    std::vector<std::string> words;
    std::istringstream in(line);
    for (std::string word; in >> word;) {
        words.push_back(word);
    }
    return words;
}

/// Replaces what changes from run to run by names that keep the relations the test is
/// about: ids become A, B, C... in order of first appearance; the three descriptors become
/// LISTEN, CLIENT, SERVER, also as the result of the ACCEPT that created SERVER.
std::vector<std::string> normalise(const std::string& trace, const exchange_fds& fds) {
    std::map<std::string, std::string> ids{{"-", "-"}};
    std::map<std::string, std::string> opcode_of_op;
    const std::map<std::string, std::string> fd_names = {{std::to_string(fds.listen), "LISTEN"},
                                                         {std::to_string(fds.client), "CLIENT"},
                                                         {std::to_string(fds.server), "SERVER"}};
    std::vector<std::string> lines;
    std::istringstream in(trace);
    for (std::string line; std::getline(in, line);) {
        std::vector<std::string> words = split(line);
        std::string op;
        for (auto& word : words) {
            const auto equals = word.find('=');
            if (equals == std::string::npos) {
                continue;
            }
            const std::string key = word.substr(0, equals);
            std::string value = word.substr(equals + 1);
            if (key == "op" || key == "co" || key == "target") {
                auto [it, added] =
                    ids.try_emplace(value, std::string(1, static_cast<char>('A' + ids.size() - 1)));
                value = it->second;
            } else if (key == "fd" && fd_names.count(value) != 0) {
                value = fd_names.at(value);
            }
            if (key == "op") {
                op = value;
            }
            word = key + "=" + value;
        }
        if (words.size() > 2 && words[1] == "sqe") {
            opcode_of_op[op] = words[2];
        }
        if (words.size() > 2 && words[1] == "cqe" && opcode_of_op[op] == "ACCEPT" &&
            fd_names.count(words[2].substr(4)) != 0) {
            words[2] = "res=" + fd_names.at(words[2].substr(4));
        }
        std::string joined;
        for (const auto& word : words) {
            joined += (joined.empty() ? "" : " ") + word;
        }
        lines.push_back(joined);
    }
    return lines;
}

task<void> sleep_briefly(io_context& context) {
    (void)co_await ucoro::sleep_for(context, std::chrono::milliseconds(1));
}

struct file_closer {
    void operator()(std::FILE* file) const { std::fclose(file); }
};

} // namespace

TEST_CASE("the trace of a scripted exchange shows every SQE, CQE and the task, in order") {
    std::unique_ptr<std::FILE, file_closer> output(std::tmpfile());
    REQUIRE(output != nullptr);
    ucoro::io_context_options options;
    options.trace = output.get();
    auto context = ucoro_test::make_context(options);
    if (!context) {
        return;
    }
    listener server_listener(*context, address::ipv4_loopback(0));
    exchange_fds fds;
    context->spawn(scripted_exchange(*context, server_listener, fds));
    context->run();

    const std::vector<std::string> lines = normalise(read_all(output.get()), fds);
    INFO("the trace, normalised:\n"
         << [&] {
                std::string all;
                for (const auto& l : lines) {
                    all += l + "\n";
                }
                return all;
            }());
    // A is the coroutine; B, C, D... the operations, each named once per await.
    const std::vector<std::string> expected = {
        "ucoro-trace spawn co=A",
        "ucoro-trace sqe CONNECT fd=CLIENT len=0 op=B co=A",
        "ucoro-trace cqe res=0 flags=- op=B co=A",
        "ucoro-trace sqe ACCEPT fd=LISTEN len=0 op=C co=A",
        "ucoro-trace cqe res=SERVER flags=- op=C co=A",
        "ucoro-trace sqe SEND fd=CLIENT len=5 op=D co=A",
        "ucoro-trace cqe res=5 flags=- op=D co=A",
        "ucoro-trace sqe RECV fd=SERVER len=64 op=E co=A",
        "ucoro-trace cqe res=5 flags=- op=E co=A",
        "ucoro-trace sqe SEND fd=SERVER len=5 op=F co=A",
        "ucoro-trace cqe res=5 flags=- op=F co=A",
        "ucoro-trace sqe RECV fd=CLIENT len=64 op=G co=A",
        "ucoro-trace cqe res=5 flags=- op=G co=A",
    };
    REQUIRE(lines.size() >= expected.size());
    CHECK(std::vector<std::string>(lines.begin(), lines.begin() + expected.size()) == expected);

    // The closes. Nothing is armed on either descriptor by then, so neither close queues a
    // cancel (close.cpp cancels only what is listed on its descriptor): no line without an
    // operation.
    const std::vector<std::string> rest(lines.begin() + expected.size(), lines.end());
    const std::vector<std::string> closes = {
        "ucoro-trace sqe CLOSE fd=SERVER len=0 op=H co=A",
        "ucoro-trace cqe res=0 flags=- op=H co=A",
        "ucoro-trace sqe CLOSE fd=CLIENT len=0 op=I co=A",
        "ucoro-trace cqe res=0 flags=- op=I co=A",
        "ucoro-trace finish co=A",
    };
    CHECK(rest == closes);
}

TEST_CASE("the trace is off by default and costs no output") {
    ::unsetenv("UCORO_TRACE");
    CHECK(ucoro::trace::output_from_environment() == nullptr);
    ::setenv("UCORO_TRACE", "0", 1);
    CHECK(ucoro::trace::output_from_environment() == nullptr);
    ucoro_test::stderr_capture capture;
    auto context = ucoro_test::make_context();
    if (!context) {
        return;
    }
    CHECK(context->trace_output() == nullptr);
    context->block_on(sleep_briefly(*context));
    CHECK(capture.finish().find("ucoro-trace") == std::string::npos);
}

TEST_CASE("UCORO_TRACE=1 sends the trace to stderr") {
    ::setenv("UCORO_TRACE", "1", 1);
    ucoro_test::stderr_capture capture;
    auto context = ucoro_test::make_context();
    ::unsetenv("UCORO_TRACE");
    if (!context) {
        return;
    }
    CHECK(context->trace_output() == stderr);
    context->spawn(sleep_briefly(*context));
    context->run();
    const std::string text = capture.finish();
    CHECK_THAT(text, Catch::Matches("ucoro-trace spawn co=([0-9a-f]{5})\n"
                                    "ucoro-trace sqe TIMEOUT fd=-1 len=1 op=[0-9a-f]{5} co=\\1\n"
                                    "ucoro-trace cqe res=" +
                                    std::to_string(-ETIME) +
                                    " flags=- op=[0-9a-f]{5} co=\\1\n"
                                    "ucoro-trace finish co=\\1\n"));
}

TEST_CASE("a spawned task that throws is traced as finishing with an exception") {
    std::unique_ptr<std::FILE, file_closer> output(std::tmpfile());
    REQUIRE(output != nullptr);
    ucoro::io_context_options options;
    options.trace = output.get();
    std::unique_ptr<io_context> context;
    try {
        context = std::make_unique<io_context>(options);
    } catch (const std::system_error& e) {
        WARN("SKIPPED: io_uring is not available here: " << e.what());
        return;
    }
    int reported = 0;
    context->set_unhandled_exception_handler([&](std::exception_ptr) { ++reported; });
    context->spawn([]() -> task<void> {
        throw std::runtime_error("boom");
        co_return;
    }());
    context->run();
    CHECK(reported == 1);
    CHECK_THAT(read_all(output.get()), Catch::Matches("ucoro-trace spawn co=([0-9a-f]{5})\n"
                                                      "ucoro-trace finish co=\\1 exception\n"));
}

TEST_CASE("CQE flags are named, with the buffer id of a provided buffer") {
    std::unique_ptr<std::FILE, file_closer> output(std::tmpfile());
    REQUIRE(output != nullptr);
    ucoro::trace::write_cqe(output.get(), nullptr, 3,
                            IORING_CQE_F_MORE | IORING_CQE_F_BUFFER |
                                (7U << IORING_CQE_BUFFER_SHIFT));
    ucoro::trace::write_cqe(output.get(), nullptr, -104, IORING_CQE_F_SOCK_NONEMPTY | 0x80);
    ucoro::trace::cqe(nullptr, nullptr, 0, 0); // off: writes nowhere, and does not crash
    CHECK(read_all(output.get()) ==
          "ucoro-trace cqe res=3 flags=MORE|BUFFER bid=7 op=- co=-\n"
          "ucoro-trace cqe res=-104 flags=SOCK_NONEMPTY|0x80 op=- co=-\n");
}
