/*
 * ctest.h - the few macros the C-level tests share.
 *
 * A failed CHECK prints the file, line and expression and counts a
 * failure; the program goes on so one run shows every broken rule.
 * CTEST_END prints "N passed, N failed" and sets the exit status.
 */
#ifndef SMTPSTATE_CTEST_H
#define SMTPSTATE_CTEST_H

#include <stdio.h>

static int ctest_passed;
static int ctest_failed;

#define CHECK(expr)                                                        \
    do {                                                                   \
        if (expr) {                                                        \
            ctest_passed++;                                                \
        } else {                                                           \
            ctest_failed++;                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,         \
                    __LINE__, #expr);                                      \
        }                                                                  \
    } while (0)

#define CTEST_END()                                                        \
    do {                                                                   \
        printf("%d passed, %d failed\n", ctest_passed, ctest_failed);     \
        return ctest_failed == 0 ? 0 : 1;                                  \
    } while (0)

#endif /* SMTPSTATE_CTEST_H */
