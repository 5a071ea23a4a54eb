/* The spelling Windows code uses in include lines: winsock2.h. */
#include "winsock2.h"
