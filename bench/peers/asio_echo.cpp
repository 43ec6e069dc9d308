// asio_echo: the echo server written with Boost.Asio 1.81 C++20 coroutines
// (co_spawn, awaitable, use_awaitable), one io_context on one thread.
//
// The io_context is built with BOOST_ASIO_CONCURRENCY_HINT_UNSAFE: one thread runs it, so
// Asio's locking in the scheduler and the reactor is turned off, as ucoro (single-threaded
// by design) has none. A hint of 1 would keep that locking ("the io_context still provides
// full thread safety"; Asio's overview, core/concurrency_hint.html). The hint's restrictions
// hold here: one thread, no asynchronous resolve, one signal_set.
//
// Built twice by bench/CMakeLists.txt: asio-echo-epoll with Asio's default reactor, and
// asio-echo-uring with BOOST_ASIO_HAS_IO_URING and BOOST_ASIO_DISABLE_EPOLL, which makes
// Asio run its socket operations through io_uring (liburing).
//
// Usage: asio-echo-epoll HOST PORT   (port 0: the kernel picks; the first line says which)
// Test with: ucoro-bench 127.0.0.1 PORT
#include <sys/resource.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>

#include <boost/asio.hpp>

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// The same per-connection buffer as ucoro-echo-server, kept in the coroutine frame.
asio::awaitable<void> echo(tcp::socket socket) {
    std::array<char, 16 * 1024> buffer;
    try {
        while (true) {
            const std::size_t n =
                co_await socket.async_read_some(asio::buffer(buffer), asio::use_awaitable);
            co_await asio::async_write(socket, asio::buffer(buffer, n), asio::use_awaitable);
        }
    } catch (const std::exception&) {
        // end of stream or a reset: the connection is over
    }
}

asio::awaitable<void> accept_connections(tcp::acceptor& acceptor) {
    while (true) {
        boost::system::error_code error;
        tcp::socket socket =
            co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, error));
        if (error == asio::error::operation_aborted) {
            co_return;
        }
        if (!error) {
            socket.set_option(tcp::no_delay(true));
            asio::co_spawn(acceptor.get_executor(), echo(std::move(socket)), asio::detached);
        }
    }
}

} // namespace

int main(int argc, char** argv) {
    const char* name = argc > 0 ? argv[0] : "asio-echo";
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s HOST PORT\n", name);
        return 2;
    }
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
    try {
        asio::io_context context(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE);
        boost::system::error_code error;
        const auto host = asio::ip::make_address(argv[1], error);
        if (error) {
            std::fprintf(stderr, "%s: bad address '%s'\n", name, argv[1]);
            return 1;
        }
        tcp::acceptor acceptor(context, tcp::endpoint(host, std::stoi(argv[2])));
        std::printf("listening on %s:%u\n", argv[1], acceptor.local_endpoint().port());
        std::fflush(stdout);
        asio::signal_set signals(context, SIGINT, SIGTERM);
        signals.async_wait([&](auto, int) {
            acceptor.close(); // the pending accept completes with operation_aborted
            context.stop();
        });
        asio::co_spawn(context, accept_connections(acceptor), asio::detached);
        context.run();
        // Let the aborted accept complete before the acceptor is destroyed: with the io_uring
        // backend, Asio 1.81 otherwise frees an accept still in the ring while destroying the
        // context (AddressSanitizer reports the use after free).
        context.restart();
        context.run_for(std::chrono::milliseconds(200));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", name, e.what());
        return 1;
    }
    return 0;
}
