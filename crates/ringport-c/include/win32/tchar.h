/* tchar.h for Linux: ANSI text (_T, TCHAR are in windows.h). */
#include "windows.h"
