/*
 * reply.c - the SMTP reply reader: where one reply ends in the bytes
 * received so far, and its code, text and enhanced code.
 *
 * The scan checks each complete line once: every byte before
 * scan->scanned belongs to a line that passed the grammar and the caps,
 * and a resumed scan starts there.  It looks at no more than
 * SMTP__REPLY_LINE_MAX bytes of the incomplete line, so the work of one
 * call is bounded whatever the buffer holds, and it never reads past the
 * reply's last LF, so a reply that follows in the same buffer is left
 * for the next scan.  Extraction trusts a length the scan returned and
 * rewrites the reply in place; it never writes past it.
 */
#include <stdbool.h>
#include <string.h>

#include "reply.h"

/* Bytes of a line's start that decide its code and separator. */
#define CODE_LEN 3

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int code_of(const char *p)
{
    return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
}

/* Checks the code of a line whose first n bytes are known. */
static long check_code(const struct smtp__reply_scan *scan, const char *p,
                       size_t n)
{
    int code;

    for (size_t i = 0; i < n && i < CODE_LEN; i++) {
        if (!is_digit(p[i]))
            return SMTP_EPROTO;
    }
    if (n < CODE_LEN)
        return 0;

    code = code_of(p);
    if (code < 200 || code > 599)
        return SMTP_EPROTO;
    if (scan->lines > 0 && code != scan->code)
        return SMTP_EPROTO;
    return 0;
}

/*
 * Checks the start of a line.  `ended` says p[0..n) is the whole line
 * without its CR LF; otherwise it is what has arrived of a line whose LF
 * has not, so a CR after the code may still turn out to end the line.
 */
static long check_line_head(const struct smtp__reply_scan *scan,
                            const char *p, size_t n, bool ended)
{
    long rc = check_code(scan, p, n);

    if (rc != 0)
        return rc;
    if (n < CODE_LEN)
        return ended ? SMTP_EPROTO : 0;
    if (n == CODE_LEN || p[CODE_LEN] == '-' || p[CODE_LEN] == ' ')
        return 0;
    if (!ended && p[CODE_LEN] == '\r' && n == CODE_LEN + 1)
        return 0;
    return SMTP_EPROTO;
}

/* Bytes of a complete line's content: its LF and a CR before it off. */
static size_t content_len(const char *line, size_t line_len)
{
    size_t n = line_len - 1;

    if (n > 0 && line[n - 1] == '\r')
        n--;
    return n;
}

/*
 * An incomplete line: either it may still end in time (0), or the bytes
 * present already prove that it, or the reply, will pass a cap.
 */
static long check_incomplete(const struct smtp__reply_scan *scan,
                             const char *line, size_t avail)
{
    long rc = check_line_head(scan, line, avail, false);

    if (rc != 0)
        return rc;
    if (avail >= SMTP__REPLY_LINE_MAX)
        return SMTP_ETOOBIG;
    if (scan->scanned + avail >= SMTP__REPLY_MAX)
        return SMTP_ETOOBIG;
    return 0;
}

/*
 * Records a complete line of line_len bytes.  Returns the reply's length
 * when it was the last line, 0 when more lines follow, or an error.
 */
static long accept_line(struct smtp__reply_scan *scan, const char *line,
                        size_t line_len)
{
    size_t n = content_len(line, line_len);
    long rc = check_line_head(scan, line, n, true);

    if (rc != 0)
        return rc;
    if (scan->lines == 0)
        scan->code = code_of(line);
    scan->lines++;
    scan->scanned += line_len;

    if (n == CODE_LEN || line[CODE_LEN] == ' ')
        return (long)scan->scanned;

    /* A continuation promises one more line: fail now if none fits. */
    if (scan->lines >= SMTP__REPLY_LINES_MAX)
        return SMTP_ETOOBIG;
    if (scan->scanned >= SMTP__REPLY_MAX)
        return SMTP_ETOOBIG;
    return 0;
}

long smtp__reply_scan(struct smtp__reply_scan *scan, const char *buf,
                      size_t len)
{
    /* Each pass accepts a line, and a reply has at most LINES_MAX. */
    for (int pass = 0; pass < SMTP__REPLY_LINES_MAX; pass++) {
        size_t start = scan->scanned;
        size_t limit;
        const char *line, *lf;
        long rc;

        if (start >= len)
            return 0;

        /* Only a window that could still hold a line within the caps is
         * searched, so a flood without LF costs a bounded amount. */
        line = buf + start;
        limit = len - start;
        if (limit > SMTP__REPLY_LINE_MAX)
            limit = SMTP__REPLY_LINE_MAX;
        if (limit > SMTP__REPLY_MAX - start)
            limit = SMTP__REPLY_MAX - start;

        lf = memchr(line, '\n', limit);
        if (lf == NULL)
            return check_incomplete(scan, line, limit);

        rc = accept_line(scan, line, (size_t)(lf - line) + 1);
        if (rc != 0)
            return rc;
    }
    return SMTP_ETOOBIG;
}

/* Digits at p[0..n), at most `max` + 1 looked at; the count found. */
static size_t digit_run(const char *p, size_t n, size_t max)
{
    size_t i = 0;

    while (i < n && i <= max && is_digit(p[i]))
        i++;
    return i;
}

/*
 * Length of the RFC 3463 code class.subject.detail opening t[0..n) (the
 * first line's text), 0 when there is none or its class is not the
 * reply code's.  A code must be followed by a space or the line's end.
 */
static size_t enhanced_len(const char *t, size_t n, int code)
{
    size_t i = 2;

    if (n < 5 || t[0] != (char)('0' + code / 100) || t[1] != '.')
        return 0;

    for (int part = 0; part < 2; part++) {
        size_t digits = digit_run(t + i, n - i, 3);

        if (digits == 0 || digits > 3)
            return 0;
        i += digits;
        if (part == 0) {
            if (i >= n || t[i] != '.')
                return 0;
            i++;
        }
    }
    return (i == n || t[i] == ' ') ? i : 0;
}

static void set_enhanced(smtp_reply *out)
{
    const char *nl = memchr(out->text, '\n', out->text_len);
    size_t first = nl ? (size_t)(nl - out->text) : out->text_len;
    size_t n = enhanced_len(out->text, first, out->code);

    memcpy(out->enhanced, out->text, n);
    out->enhanced[n] = '\0';
}

/* Moves each line's text down to `w`, joined by "\n"; returns the
 * length of the joined text and counts the lines. */
static size_t join_lines(char *buf, size_t n, int *lines)
{
    size_t pos = 0, w = 0;

    *lines = 0;
    while (pos < n && *lines < SMTP__REPLY_LINES_MAX) {
        char *line = buf + pos;
        char *lf = memchr(line, '\n', n - pos);
        size_t line_len = lf ? (size_t)(lf - line) + 1 : n - pos;
        size_t c = lf ? content_len(line, line_len) : line_len;
        size_t text = c > CODE_LEN + 1 ? c - (CODE_LEN + 1) : 0;

        /* w stays behind pos, so nothing is overwritten before it is
         * read: a line drops at least its code and LF and adds one
         * separator at most. */
        if (*lines > 0)
            buf[w++] = '\n';
        memmove(buf + w, line + CODE_LEN + 1, text);
        w += text;
        pos += line_len;
        (*lines)++;
    }
    return w;
}

void smtp__reply_extract(char *buf, size_t n, smtp_reply *out)
{
    size_t len;

    out->code = 0;
    memset(out->enhanced, 0, sizeof(out->enhanced));
    out->text = "";
    out->text_len = 0;
    out->lines = 0;
    if (n < CODE_LEN + 1)
        return;

    out->code = code_of(buf);
    len = join_lines(buf, n, &out->lines);
    for (char *nul = memchr(buf, '\0', len); nul != NULL;
         nul = memchr(nul + 1, '\0', len - (size_t)(nul + 1 - buf)))
        *nul = '?';
    buf[len] = '\0';
    out->text = buf;
    out->text_len = len;
    set_enhanced(out);
}
