/* ws2tcpip.h for Linux: the TCP/IP parts of Winsock come with winsock2.h. */
#include "winsock2.h"
