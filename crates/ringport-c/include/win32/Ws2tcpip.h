/* The spelling Windows code uses in include lines: ws2tcpip.h. */
#include "ws2tcpip.h"
