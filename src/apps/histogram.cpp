#include "histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace ucoro::apps {

std::size_t histogram::bucket_of(std::uint64_t value) noexcept {
    value = std::min(value, max_value);
    if (value < sub_buckets) {
        return static_cast<std::size_t>(value);
    }
    // The power of two the value lies in, above the exact range, then its top bits below the
    // leading one pick the linear sub-bucket.
    const unsigned magnitude = static_cast<unsigned>(std::bit_width(value)) - 1;
    const unsigned level = magnitude - sub_bucket_bits;
    const std::uint64_t sub = (value >> level) - sub_buckets;
    return sub_buckets + level * sub_buckets + static_cast<std::size_t>(sub);
}

std::uint64_t histogram::highest_in_bucket(std::size_t bucket) noexcept {
    if (bucket < sub_buckets) {
        return bucket;
    }
    const std::size_t level = (bucket - sub_buckets) / sub_buckets;
    const std::uint64_t sub = (bucket - sub_buckets) % sub_buckets;
    const std::uint64_t lowest = (sub_buckets + sub) << level;
    return lowest + ((std::uint64_t{1} << level) - 1);
}

void histogram::record(std::uint64_t value) noexcept {
    ++m_buckets[bucket_of(value)];
    if (m_count == 0 || value < m_min) {
        m_min = value;
    }
    m_max = std::max(m_max, value);
    m_sum += static_cast<long double>(value);
    ++m_count;
}

void histogram::merge(const histogram& other) noexcept {
    if (other.m_count == 0) {
        return;
    }
    for (std::size_t i = 0; i < bucket_count; ++i) {
        m_buckets[i] += other.m_buckets[i];
    }
    m_min = m_count == 0 ? other.m_min : std::min(m_min, other.m_min);
    m_max = std::max(m_max, other.m_max);
    m_sum += other.m_sum;
    m_count += other.m_count;
}

double histogram::mean() const noexcept {
    return m_count == 0 ? 0.0 : static_cast<double>(m_sum / static_cast<long double>(m_count));
}

std::uint64_t histogram::percentile(double percent) const noexcept {
    if (m_count == 0) {
        return 0;
    }
    percent = std::clamp(percent, 0.0, 100.0);
    // The rank of the wanted value, 1-based: at least one value must be at or below it.
    const auto rank = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(std::ceil(percent / 100.0 * static_cast<double>(m_count))));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
        seen += m_buckets[i];
        if (seen >= rank) {
            return std::min(highest_in_bucket(i), m_max);
        }
    }
    return m_max;
}

} // namespace ucoro::apps
