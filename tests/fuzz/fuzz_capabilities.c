/*
 * fuzz_capabilities.c - libFuzzer target for the EHLO keyword parser
 * (csrc/capabilities.c).
 *
 * The input is an EHLO reply's text, in a heap buffer of exactly its
 * length with no NUL after it, so a read past the length shows under the
 * address sanitizer.  The result may hold only known SMTP_CAP_* bits; a
 * mechanism bit comes with SMTP_CAP_AUTH; max_size is 0 unless
 * SMTP_CAP_SIZE is set; text without "\n" is a greeting alone and offers
 * nothing.  Two rewrites must not change the result: swapping the ASCII
 * case of every letter (keywords match without case) and replacing the
 * greeting line's bytes (it is not a keyword).  Any violation traps.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capabilities.h"
#include "smtp.h"

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond))                                                      \
            __builtin_trap();                                             \
    } while (0)

#define AUTH_MECHANISMS                                                   \
    (SMTP_CAP_AUTH_PLAIN | SMTP_CAP_AUTH_LOGIN | SMTP_CAP_AUTH_CRAM_MD5 | \
     SMTP_CAP_AUTH_XOAUTH2)

#define KNOWN_BITS                                                        \
    (SMTP_CAP_PIPELINING | SMTP_CAP_8BITMIME | SMTP_CAP_SMTPUTF8 |        \
     SMTP_CAP_SIZE | SMTP_CAP_STARTTLS | SMTP_CAP_ENHANCEDSTATUSCODES |   \
     SMTP_CAP_CHUNKING | SMTP_CAP_DSN | SMTP_CAP_XCLIENT | SMTP_CAP_AUTH | \
     AUTH_MECHANISMS)

/* Parses text[0..n) from an exact-size heap copy. */
static unsigned long parse_copy(const char *text, size_t n,
                                unsigned long *max_size)
{
    char *copy = malloc(n > 0 ? n : 1);
    unsigned long caps;

    CHECK(copy != NULL);
    memcpy(copy, text, n);
    *max_size = 12345; /* the parser must always set it */
    caps = smtp__capabilities_parse(copy, n, max_size);
    free(copy);
    return caps;
}

static char swap_case(char c)
{
    if (c >= 'a' && c <= 'z')
        return (char)(c - 'a' + 'A');
    if (c >= 'A' && c <= 'Z')
        return (char)(c - 'A' + 'a');
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    unsigned long caps, again, max_size, max_again;
    const char *nl = size > 0 ? memchr(text, '\n', size) : NULL;
    char *variant;

    caps = parse_copy(text, size, &max_size);
    CHECK((caps & ~(unsigned long)KNOWN_BITS) == 0);
    CHECK((caps & SMTP_CAP_SIZE) || max_size == 0);
    CHECK(!(caps & AUTH_MECHANISMS) || (caps & SMTP_CAP_AUTH));
    if (nl == NULL)
        CHECK(caps == 0 && max_size == 0);

    variant = malloc(size > 0 ? size : 1);
    CHECK(variant != NULL);

    for (size_t i = 0; i < size; i++)
        variant[i] = swap_case(text[i]);
    again = parse_copy(variant, size, &max_again);
    CHECK(again == caps && max_again == max_size);

    memcpy(variant, text, size);
    for (size_t i = 0; nl != NULL && text + i < nl; i++)
        variant[i] = 'S';
    again = parse_copy(variant, size, &max_again);
    CHECK(again == caps && max_again == max_size);

    free(variant);
    return 0;
}
