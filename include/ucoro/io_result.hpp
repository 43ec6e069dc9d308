// How ucoro reports failure: one model, used everywhere.
//
// - An awaited operation never throws for an I/O failure. A negative CQE result becomes a
//   std::error_code in the system category holding the errno, returned as a value, because
//   end of stream, a reset peer or a cancelled operation are ordinary events a connection
//   handler must branch on, not exceptional ones.
// - Setup that cannot return a value (constructors: io_context, listener) throws
//   std::system_error carrying the same kind of error_code; so does starting an operation
//   if io_uring_enter itself fails, which is a failure of the ring, not of the operation.
// - Operations cancelled by io_context::stop() or io_context::cancel() report
//   std::errc::operation_canceled.
#pragma once

#include <system_error>

namespace ucoro {

/// The outcome of an awaited operation that produces a value: either `error` is set, or
/// `value` holds the result. Decompose it with a structured binding:
///
///     auto [error, n] = co_await sock.recv(buffer);
template <typename T>
struct [[nodiscard]] io_result {
    std::error_code error;
    T value{};

    explicit operator bool() const noexcept { return !error; }
};

/// The error_code for a negative io_uring result (-errno), or success for >= 0.
inline std::error_code make_io_error(int result) noexcept {
    return result < 0 ? std::error_code(-result, std::system_category()) : std::error_code();
}

} // namespace ucoro
