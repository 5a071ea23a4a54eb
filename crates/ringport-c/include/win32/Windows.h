/* The spelling Windows code uses in include lines: windows.h. */
#include "windows.h"
