// ucoro-echo-server HOST PORT: see echo_server.cpp.
#include "echo_server.hpp"

int main(int argc, char** argv) {
    return ucoro::apps::echo_server_main(argc, argv);
}
