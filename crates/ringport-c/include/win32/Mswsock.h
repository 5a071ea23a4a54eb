/* The spelling Windows code uses in include lines: mswsock.h. */
#include "mswsock.h"
