// ucoro-bench HOST PORT: the load generator; see bench_cli.cpp and load_generator.cpp.
#include "bench_cli.hpp"

int main(int argc, char** argv) {
    return ucoro::apps::bench_main(argc, argv);
}
