/* The spelling Windows code uses in include lines: winerror.h. */
#include "winerror.h"
