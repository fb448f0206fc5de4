/*
 * capabilities.h - the EHLO keyword parser behind smtp_parse_capabilities.
 */
#ifndef SMTPSTATE_CAPABILITIES_H
#define SMTPSTATE_CAPABILITIES_H

#include <stddef.h>

/*
 * Parses an EHLO reply's text (lines joined by "\n", the first being the
 * server's greeting, which is not a keyword) into SMTP_CAP_* bits.  The
 * SIZE value goes to *max_size (0 when absent, bare or not a number that
 * fits).  Reads only text[0..len); text need not be NUL-terminated.
 */
unsigned long smtp__capabilities_parse(const char *text, size_t len,
                                       unsigned long *max_size);

#endif /* SMTPSTATE_CAPABILITIES_H */
