/*
 * reply.h - the SMTP reply reader: finds one complete reply in received
 * bytes and parses it in place.
 *
 * Grammar (RFC 5321 4.2, with DESIGN 9's tolerance): each line is three
 * digits, then "-" (more lines follow), " " or nothing (last line), then
 * text, ended by LF with an optional CR before it.  Every line of a reply
 * carries the same code, 200..599.  Caps: a line of SMTP__REPLY_LINE_MAX
 * bytes, a reply of SMTP__REPLY_MAX bytes or SMTP__REPLY_LINES_MAX lines;
 * past a cap the scan fails at once, without waiting for more bytes.
 */
#ifndef SMTPSTATE_REPLY_H
#define SMTPSTATE_REPLY_H

#include <stddef.h>

#include "smtp.h"

#define SMTP__REPLY_LINE_MAX 4096   /* bytes in a line, its LF included */
#define SMTP__REPLY_MAX 65536       /* bytes in a reply */
#define SMTP__REPLY_LINES_MAX 200   /* lines in a reply */

/* Progress of a scan, kept between calls so that bytes already checked
 * are not checked again when more arrive.  Zero it for a new reply. */
struct smtp__reply_scan {
    size_t scanned; /* bytes validated: the start of the incomplete line */
    int lines;      /* complete lines seen */
    int code;       /* the first line's code, 0 before it is complete */
};

/*
 * Looks for one complete reply at the start of buf[0..len), resuming
 * where `scan` stopped.  Returns its length in bytes (> 0) when complete,
 * 0 when more bytes are needed, SMTP_EPROTO for a malformed line (bad or
 * out-of-range code, missing separator, code changing between lines) and
 * SMTP_ETOOBIG past a cap.  Never reads past buf[len - 1].
 */
long smtp__reply_scan(struct smtp__reply_scan *scan, const char *buf,
                      size_t len);

/*
 * Parses the complete reply buf[0..n) (a length smtp__reply_scan
 * returned) into `out`, rewriting buf in place: out->text points into buf
 * and holds each line's text joined by "\n", NUL-terminated, with NUL
 * bytes in the text shown as '?'.  out->enhanced is the RFC 3463 code
 * that opens the first line when its class matches the reply's, else "".
 */
void smtp__reply_extract(char *buf, size_t n, smtp_reply *out);

#endif /* SMTPSTATE_REPLY_H */
