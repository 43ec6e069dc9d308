// stderr_capture: read what the code under test prints on stderr.
#pragma once

#include <unistd.h>

#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <string>

namespace ucoro_test {

/// Points fd 2 at a temporary file for as long as it lives, to read what the library
/// prints on stderr.
class stderr_capture {
public:
    stderr_capture() {
        std::fflush(stderr);
        m_file = std::tmpfile();
        REQUIRE(m_file != nullptr);
        m_saved = ::dup(STDERR_FILENO);
        REQUIRE(m_saved >= 0);
        REQUIRE(::dup2(::fileno(m_file), STDERR_FILENO) == STDERR_FILENO);
    }
    stderr_capture(const stderr_capture&) = delete;
    stderr_capture& operator=(const stderr_capture&) = delete;
    ~stderr_capture() {
        restore();
        std::fclose(m_file);
    }

    /// Restores fd 2 and returns everything written to it meanwhile.
    std::string finish() {
        std::fflush(stderr);
        restore();
        std::string text;
        std::rewind(m_file);
        std::array<char, 4096> chunk{};
        while (const std::size_t n = std::fread(chunk.data(), 1, chunk.size(), m_file)) {
            text.append(chunk.data(), n);
        }
        return text;
    }

private:
    void restore() noexcept {
        if (m_saved >= 0) {
            std::fflush(stderr);
            ::dup2(m_saved, STDERR_FILENO);
            ::close(m_saved);
            m_saved = -1;
        }
    }

    std::FILE* m_file = nullptr;
    int m_saved = -1;
};

} // namespace ucoro_test
