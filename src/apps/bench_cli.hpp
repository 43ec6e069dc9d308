// ucoro-bench's command line: options, the live progress line, the summary and --json.
#pragma once

#include <string>

#include "load_generator.hpp"

namespace ucoro::apps {

/// The whole program: `ucoro-bench [OPTIONS] HOST PORT`. Returns the exit code: 0 after a
/// run in which every echoed byte matched, 1 on a mismatch or when no connection could be
/// made, 2 on wrong arguments.
int bench_main(int argc, char** argv);

/// The report as one JSON object (the fields docs/benchmarks.md lists).
std::string to_json(const load_options& options, const load_report& report);

} // namespace ucoro::apps
