// A log-linear latency histogram in the spirit of HdrHistogram (Debian packages no C or C++
// HdrHistogram): fixed memory, O(1) record, percentiles with a bounded relative error.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace ucoro::apps {

/// Records non-negative values (nanoseconds, in ucoro-bench) up to 2^48 - 1; larger ones are
/// clamped. Values below 2^sub_bucket_bits are kept exactly; above, each power of two is cut
/// into 2^sub_bucket_bits equal buckets, so a reported value is within 1/128 (0.8%) of the
/// true one. A percentile reports the largest value its bucket can hold, as HdrHistogram
/// does, so it never understates a latency.
class histogram {
public:
    static constexpr unsigned sub_bucket_bits = 7;
    static constexpr unsigned value_bits = 48;
    static constexpr std::uint64_t max_value = (std::uint64_t{1} << value_bits) - 1;

    void record(std::uint64_t value) noexcept;
    /// Adds every value another histogram recorded.
    void merge(const histogram& other) noexcept;

    std::uint64_t count() const noexcept { return m_count; }
    std::uint64_t min() const noexcept { return m_count == 0 ? 0 : m_min; }
    /// The exact largest value recorded (not rounded to a bucket).
    std::uint64_t max() const noexcept { return m_max; }
    double mean() const noexcept;
    /// The value at or below which `percent` (0 to 100) of the recorded values lie; 0 when
    /// empty. Never more than max().
    std::uint64_t percentile(double percent) const noexcept;

    /// Where a value goes and the largest value that bucket holds: public for the tests.
    static std::size_t bucket_of(std::uint64_t value) noexcept;
    static std::uint64_t highest_in_bucket(std::size_t bucket) noexcept;

private:
    static constexpr std::size_t sub_buckets = std::size_t{1} << sub_bucket_bits;
    // The exact range [0, sub_buckets) plus sub_buckets per power of two above it.
    static constexpr std::size_t bucket_count =
        sub_buckets + (value_bits - sub_bucket_bits) * sub_buckets;

    std::array<std::uint64_t, bucket_count> m_buckets{};
    std::uint64_t m_count = 0;
    std::uint64_t m_min = 0;
    std::uint64_t m_max = 0;
    long double m_sum = 0;
};

} // namespace ucoro::apps
