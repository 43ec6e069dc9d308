// The multi-connection echo client, as a library the binary and the tests share.
#pragma once

namespace ucoro::apps {

/// The whole program: `ucoro-echo-client HOST PORT NUM_CONNECTIONS`. Returns the exit
/// code: 0 if every connection got back exactly the bytes it sent, 1 if not, 2 on wrong
/// arguments.
int echo_client_main(int argc, char** argv);

} // namespace ucoro::apps
