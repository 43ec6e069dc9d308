// ensure_fd_limit: tests with thousands of connections need a descriptor for each, here and
// in a server child (which inherits the limit).
#pragma once

#include <sys/resource.h>

namespace ucoro_test {

/// Raises the soft RLIMIT_NOFILE to at least `wanted` if the hard limit allows it; false if
/// it cannot (the caller skips with a reason).
inline bool ensure_fd_limit(rlim_t wanted) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return false;
    }
    if (limit.rlim_cur >= wanted) {
        return true;
    }
    if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < wanted) {
        return false;
    }
    limit.rlim_cur = wanted;
    return ::setrlimit(RLIMIT_NOFILE, &limit) == 0;
}

} // namespace ucoro_test
