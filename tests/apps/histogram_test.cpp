// The load generator's latency histogram against inputs whose percentiles are known.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>

#include "histogram.hpp"

using ucoro::apps::histogram;

namespace {

// The histogram may report up to the top of a value's bucket: at most 1/128 above it.
void check_close_above(std::uint64_t reported, std::uint64_t exact) {
    INFO("reported " << reported << ", exact " << exact);
    CHECK(reported >= exact);
    CHECK(double(reported) <= double(exact) * (1.0 + 1.0 / 128) + 1);
}

} // namespace

TEST_CASE("an empty histogram reports zero everywhere", "[histogram]") {
    const histogram h;
    CHECK(h.count() == 0);
    CHECK(h.percentile(50) == 0);
    CHECK(h.percentile(100) == 0);
    CHECK(h.max() == 0);
    CHECK(h.min() == 0);
    CHECK(h.mean() == 0.0);
}

TEST_CASE("values below 128 are kept exactly", "[histogram]") {
    histogram h;
    for (std::uint64_t v = 0; v < 100; ++v) {
        h.record(v);
    }
    CHECK(h.count() == 100);
    CHECK(h.min() == 0);
    CHECK(h.max() == 99);
    CHECK(h.percentile(50) == 49); // the 50th of 100 values, 0-based 49
    CHECK(h.percentile(99) == 98);
    CHECK(h.percentile(100) == 99);
    CHECK(h.percentile(0) == 0);
    CHECK(h.mean() == Approx(49.5));
}

TEST_CASE("every value lands in a bucket whose top is within 1/128 above it", "[histogram]") {
    std::mt19937_64 random(12345);
    for (int i = 0; i < 100000; ++i) {
        const auto shift = static_cast<unsigned>(random() % 40);
        const std::uint64_t v = (random() & histogram::max_value) >> shift; // all magnitudes
        check_close_above(histogram::highest_in_bucket(histogram::bucket_of(v)), v);
    }
    // The edges of a power of two, where an off-by-one would show.
    for (unsigned bit = 7; bit < 47; ++bit) {
        const std::uint64_t power = std::uint64_t{1} << bit;
        check_close_above(histogram::highest_in_bucket(histogram::bucket_of(power - 1)), power - 1);
        check_close_above(histogram::highest_in_bucket(histogram::bucket_of(power)), power);
        CHECK(histogram::bucket_of(power) == histogram::bucket_of(power - 1) + 1);
    }
}

TEST_CASE("a uniform distribution's percentiles come out within 1%", "[histogram]") {
    histogram h;
    for (std::uint64_t v = 1; v <= 1'000'000; ++v) {
        h.record(v);
    }
    check_close_above(h.percentile(50), 500'000);
    check_close_above(h.percentile(90), 900'000);
    check_close_above(h.percentile(99), 990'000);
    check_close_above(h.percentile(99.9), 999'000);
    CHECK(h.percentile(100) == 1'000'000); // never above the true maximum
    CHECK(h.max() == 1'000'000);
    CHECK(h.mean() == Approx(500'000.5));
}

TEST_CASE("a rare slow tail shows at p99.9 and not at p50 or p99", "[histogram]") {
    // 99.5% of requests take 100 us, 0.5% take 20 ms: the shape a stall leaves.
    histogram h;
    for (int i = 0; i < 99'500; ++i) {
        h.record(100'000);
    }
    for (int i = 0; i < 500; ++i) {
        h.record(20'000'000);
    }
    check_close_above(h.percentile(50), 100'000);
    check_close_above(h.percentile(99), 100'000);
    check_close_above(h.percentile(99.9), 20'000'000);
    CHECK(h.max() == 20'000'000);
}

TEST_CASE("an exponential distribution matches its quantiles", "[histogram]") {
    // Quantile q of an exponential with mean m is -m ln(1 - q).
    std::mt19937_64 random(7);
    std::exponential_distribution<double> exponential(1.0 / 50'000.0);
    histogram h;
    for (int i = 0; i < 1'000'000; ++i) {
        h.record(static_cast<std::uint64_t>(exponential(random)));
    }
    CHECK(double(h.percentile(50)) == Approx(50'000.0 * std::log(2.0)).epsilon(0.02));
    CHECK(double(h.percentile(99)) == Approx(50'000.0 * std::log(100.0)).epsilon(0.02));
    CHECK(h.mean() == Approx(50'000.0).epsilon(0.01));
}

TEST_CASE("merging equals recording everything in one histogram", "[histogram]") {
    histogram a;
    histogram b;
    histogram all;
    for (std::uint64_t v = 0; v < 5000; ++v) {
        (v % 3 == 0 ? a : b).record(v * 977);
        all.record(v * 977);
    }
    a.merge(b);
    CHECK(a.count() == all.count());
    CHECK(a.min() == all.min());
    CHECK(a.max() == all.max());
    for (double p : {1.0, 50.0, 90.0, 99.0, 99.9, 100.0}) {
        CHECK(a.percentile(p) == all.percentile(p));
    }
}

TEST_CASE("values beyond the range are clamped, not lost", "[histogram]") {
    histogram h;
    h.record(UINT64_MAX);
    CHECK(h.count() == 1);
    CHECK(histogram::bucket_of(UINT64_MAX) == histogram::bucket_of(histogram::max_value));
    CHECK(h.percentile(50) >= histogram::max_value / 2);
}
