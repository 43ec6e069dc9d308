// Everything ucoro offers, in one include.
#pragma once

#include "ucoro/io_context.hpp"
#include "ucoro/io_result.hpp"
#include "ucoro/net/accept.hpp"
#include "ucoro/net/accept_stream.hpp"
#include "ucoro/net/address.hpp"
#include "ucoro/net/close.hpp"
#include "ucoro/net/connect.hpp"
#include "ucoro/net/listener.hpp"
#include "ucoro/net/recv.hpp"
#include "ucoro/net/send.hpp"
#include "ucoro/net/shutdown.hpp"
#include "ucoro/net/socket.hpp"
#include "ucoro/poll.hpp"
#include "ucoro/signal_set.hpp"
#include "ucoro/sleep.hpp"
#include "ucoro/task.hpp"
