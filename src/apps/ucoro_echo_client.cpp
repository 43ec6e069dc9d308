// ucoro-echo-client {HOST PORT | unix:PATH} NUM_CONNECTIONS: see echo_client.cpp.
#include "echo_client.hpp"

int main(int argc, char** argv) {
    return ucoro::apps::echo_client_main(argc, argv);
}
