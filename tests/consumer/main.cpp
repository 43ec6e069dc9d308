// Proves the installed package works: headers found, library linked, a ring set up, a
// connection accepted and echoed over loopback.
#include <ucoro/ucoro.hpp>

#include <cstdio>
#include <string_view>

namespace {

ucoro::task<int> round_trip(ucoro::io_context& context) {
    ucoro::net::listener listener(context, ucoro::net::address::ipv4_loopback(0));
    auto [connect_error, client] = co_await ucoro::net::connect(context, listener.local_address());
    auto [accept_error, server] = co_await listener.accept();
    if (connect_error || accept_error) {
        co_return 1;
    }
    constexpr std::string_view text = "hello from a consumer";
    auto [send_error, sent] = co_await client.send_all(std::as_bytes(std::span(text)));
    std::array<std::byte, 64> buffer{};
    auto [recv_error, received] = co_await server.recv(buffer);
    if (send_error || recv_error || received != text.size()) {
        co_return 1;
    }
    const std::string_view echoed(reinterpret_cast<const char*>(buffer.data()), received);
    co_return echoed == text ? 0 : 1;
}

} // namespace

int main() {
    ucoro::io_context context;
    const int result = context.block_on(round_trip(context));
    std::puts(result == 0 ? "consumer: ok" : "consumer: FAILED");
    return result;
}
