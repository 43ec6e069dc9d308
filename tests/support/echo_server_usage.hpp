// The usage line ucoro-echo-server prints on bad arguments, in one place for every test
// that checks it (tests/apps/echo_server_test.cpp, tests/apps/echo_server_defences_test.cpp).
#pragma once

#include <string_view>

namespace ucoro_test {

inline constexpr std::string_view echo_server_usage =
    "usage: ucoro-echo-server [-q] [-v] [--simple] [--disable FEATURE[,FEATURE...]] "
    "[--idle-timeout SECONDS] [--send-timeout SECONDS] [--max-connections N] "
    "[--drain-timeout SECONDS] [--batch-wait MICROSECONDS] [--metrics HOST:PORT] "
    "{HOST PORT | unix:PATH}";

} // namespace ucoro_test
