// command_line in-process: the option values the echo server accepts and refuses.
#include <catch2/catch.hpp>

#include <chrono>

#include "command_line.hpp"

using ucoro::apps::parse_count;
using ucoro::apps::parse_seconds;
using namespace std::chrono_literals;

TEST_CASE("parse_seconds takes positive seconds up to a day, rounded to milliseconds",
          "[command_line]") {
    CHECK(parse_seconds("1") == 1000ms);
    CHECK(parse_seconds("0.5") == 500ms);
    CHECK(parse_seconds("0.0001") == 1ms); // at least 1 ms
    CHECK(parse_seconds("86400") == 86'400'000ms);
    CHECK_FALSE(parse_seconds("0"));
    CHECK_FALSE(parse_seconds("-1"));
    CHECK_FALSE(parse_seconds("86401"));
    CHECK_FALSE(parse_seconds("1s"));
    CHECK_FALSE(parse_seconds(""));
    CHECK_FALSE(parse_seconds("nan"));
}

TEST_CASE("parse_count takes whole numbers from 1 to 10000000", "[command_line]") {
    CHECK(parse_count("1") == 1u);
    CHECK(parse_count("10000000") == 10'000'000u);
    CHECK_FALSE(parse_count("0"));
    CHECK_FALSE(parse_count("10000001"));
    CHECK_FALSE(parse_count("-1"));
    CHECK_FALSE(parse_count("1.5"));
    CHECK_FALSE(parse_count(""));
}
