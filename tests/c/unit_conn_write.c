/*
 * unit_conn_write.c - the bound of smtp_conn_write (csrc/connection.c):
 * bytes that could never fit the output buffer are refused with
 * SMTP_EINVAL and a reason naming the limit, rather than SMTP_EAGAIN,
 * which says "later" to a caller that would wait for ever.  What fits
 * the buffer but not now is still SMTP_EAGAIN, and nothing is queued
 * either way.
 *
 * The connection is a record made by hand, never connected: the rule is
 * the function's, whatever the peer.
 */
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "engine.h"

int main(void)
{
    struct smtp__conn *c = calloc(1, sizeof(*c));
    char *big = malloc(SMTP_WRITE_BUFFER_MAX + 1);

    memset(big, 'X', SMTP_WRITE_BUFFER_MAX + 1);
    c->pub.fd = -1;

    CHECK(smtp_conn_write(&c->pub, big, SMTP_WRITE_BUFFER_MAX + 1) ==
          SMTP_EINVAL);
    CHECK(smtp_last_error_code() == SMTP_EINVAL);
    CHECK(strstr(smtp_last_error(), "65536") != NULL);
    CHECK(strstr(smtp_last_error(), "rule: command size") != NULL);
    CHECK(c->wend == c->wstart);

    /* The whole buffer at once fits; one byte more, now, does not. */
    CHECK(smtp_conn_write(&c->pub, big, SMTP_WRITE_BUFFER_MAX) == 0);
    CHECK(c->wend - c->wstart == SMTP_WRITE_BUFFER_MAX);
    CHECK(smtp_conn_write(&c->pub, "N", 1) == SMTP_EAGAIN);
    CHECK(c->wend - c->wstart == SMTP_WRITE_BUFFER_MAX);

    free(c->wbuf);
    free(c);
    free(big);
    CTEST_END();
}
