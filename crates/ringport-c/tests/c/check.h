/* A tiny check macro for the C tests: a failed check prints where and
 * exits with status 1. */
#ifndef RINGPORT_C_TEST_CHECK_H
#define RINGPORT_C_TEST_CHECK_H
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "%s:%d: check failed: %s (GetLastError %u)\n", __FILE__, __LINE__, \
                    #cond, (unsigned)GetLastError());                                       \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

#endif
