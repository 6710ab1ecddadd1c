/* check.h: a tiny assertion macro for the C tests (exit 1 with the failing line). */
#ifndef KC_TEST_CHECK_H
#define KC_TEST_CHECK_H
#include <stdio.h>
#include <stdlib.h>

/* Line-buffered stdout: a program that dies after printing (a sanitizer report exits
 * without flushing stdio) still shows what it printed. */
__attribute__((constructor)) static void kc_test_line_buffered(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
}

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define CHECK_EQ(a, b)                                                                     \
    do {                                                                                   \
        long long va_ = (long long)(a), vb_ = (long long)(b);                              \
        if (va_ != vb_) {                                                                  \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, \
                    #a, va_, #b, vb_);                                                     \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)
#endif
