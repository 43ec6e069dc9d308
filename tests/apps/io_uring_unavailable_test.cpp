// The echo binaries on a machine without a usable io_uring. A seccomp filter installed in
// the child between fork and exec makes io_uring_setup fail with a chosen errno, as a
// container's seccomp profile (EPERM), a low memlock limit on an old kernel (ENOMEM) or a
// kernel without io_uring (ENOSYS) would. Each must end in exit 1 and one line on stderr
// that names the cause.
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "support/process.hpp"

namespace {

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

#if defined(__x86_64__)
constexpr unsigned filter_arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr unsigned filter_arch = AUDIT_ARCH_AARCH64;
#else
constexpr unsigned filter_arch = 0; // no filter written for this CPU: the tests warn
#endif

/// A seccomp program that answers io_uring_setup with `error` and allows everything else.
/// Built before the fork: the child may only make async-signal-safe calls.
struct io_uring_denial {
    sock_filter instructions[7];
    sock_fprog program;

    explicit io_uring_denial(int error)
        : instructions{
              // Syscall numbers differ between ABIs: compare the number only for calls
              // made through the ABI it belongs to, and leave any other ABI alone.
              BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
              BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, filter_arch, 1, 0),
              BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
              BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
              BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
              BPF_STMT(BPF_RET | BPF_K,
                       SECCOMP_RET_ERRNO | (static_cast<unsigned>(error) & SECCOMP_RET_DATA)),
              BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
          },
          program{static_cast<unsigned short>(std::size(instructions)), instructions} {}
};

// Runs in the child (see ucoro_test::child_setup). PR_SET_NO_NEW_PRIVS lets an
// unprivileged process install a filter; the filter survives the exec.
int install_denial(const void* data) noexcept {
    const auto* denial = static_cast<const io_uring_denial*>(data);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        return errno;
    }
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &denial->program) != 0) {
        return errno;
    }
    return 0;
}

/// Runs `argv` with io_uring_setup failing with `error`. False (after a WARN saying why)
/// if this system cannot do that, in which case the caller returns.
bool run_without_io_uring(std::vector<std::string> argv, int error,
                          ucoro_test::completed_run& run) {
    if (filter_arch == 0) {
        WARN("SKIPPED: no seccomp filter for this CPU architecture");
        return false;
    }
    const io_uring_denial denial(error);
    try {
        ucoro_test::child_process child(std::move(argv), install_denial, &denial);
        run.status = child.wait();
        run.out = child.stdout_text();
        run.err = child.stderr_text();
        return true;
    } catch (const ucoro_test::spawn_error& e) {
        if (!e.in_setup()) {
            throw;
        }
        WARN("SKIPPED: cannot install a seccomp filter here (" << e.code().message() << ")");
        return false;
    }
}

void check_one_line_failure(const ucoro_test::completed_run& run, std::string_view program) {
    INFO("stdout:\n" << run.out << "stderr:\n" << run.err);
    REQUIRE(run.status.exited);
    CHECK(run.status.code == 1);
    CHECK(run.out.empty());
    CHECK(ucoro_test::split_lines(run.err).size() == 1);
    CHECK_THAT(run.err, StartsWith(std::string(program) + ": "));
    CHECK_THAT(run.err, Contains("io_uring"));
}

const std::vector<std::string> server_argv = {UCORO_ECHO_SERVER, "127.0.0.1", "0"};

} // namespace

TEST_CASE("echo server blocked by seccomp (EPERM) names seccomp and io_uring_disabled",
          "[io_uring_unavailable]") {
    ucoro_test::completed_run run;
    if (!run_without_io_uring(server_argv, EPERM, run)) {
        return;
    }
    check_one_line_failure(run, "ucoro-echo-server");
    CHECK_THAT(run.err, Contains("seccomp"));
    CHECK_THAT(run.err, Contains("kernel.io_uring_disabled"));
}

TEST_CASE("echo server whose ring cannot be allocated (ENOMEM) names the memlock limit",
          "[io_uring_unavailable]") {
    ucoro_test::completed_run run;
    if (!run_without_io_uring(server_argv, ENOMEM, run)) {
        return;
    }
    check_one_line_failure(run, "ucoro-echo-server");
    CHECK_THAT(run.err, Contains("memlock", Catch::CaseSensitive::No));
    CHECK_THAT(run.err, Contains("ulimit -l"));
}

TEST_CASE("echo server on a kernel without io_uring (ENOSYS) names the kernel",
          "[io_uring_unavailable]") {
    ucoro_test::completed_run run;
    if (!run_without_io_uring(server_argv, ENOSYS, run)) {
        return;
    }
    check_one_line_failure(run, "ucoro-echo-server");
    CHECK_THAT(run.err, Contains("ENOSYS"));
    CHECK_THAT(run.err, Contains("the kernel is too old"));
    CHECK_THAT(run.err, Contains("Linux >= 5.11"));
}

TEST_CASE("echo client blocked by seccomp (EPERM) fails the same way", "[io_uring_unavailable]") {
    ucoro_test::completed_run run;
    if (!run_without_io_uring({UCORO_ECHO_CLIENT, "127.0.0.1", "1", "1"}, EPERM, run)) {
        return;
    }
    check_one_line_failure(run, "ucoro-echo-client");
    CHECK_THAT(run.err, Contains("seccomp"));
}
