/*
 * errors.c - the one list of SMTP_E* codes and the thread-local record of
 * the last failure.
 *
 * Every failing public call records a code and a sentence that names the
 * rule it broke; every successful one clears the record.  The record is
 * per thread, so a refusal on one thread never hides another's.
 */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

struct error_entry {
    int code;
    const char *name;
    const char *text;
};

static const struct error_entry error_table[] = {
    {SMTP_EAGAIN, "SMTP_EAGAIN", "operation would block"},
    {SMTP_ECLOSED, "SMTP_ECLOSED", "connection closed by peer"},
    {SMTP_EIO, "SMTP_EIO", "socket error"},
    {SMTP_ETIMEOUT, "SMTP_ETIMEOUT", "deadline passed"},
    {SMTP_EPROTO, "SMTP_EPROTO", "protocol error"},
    {SMTP_ETOOBIG, "SMTP_ETOOBIG", "reply exceeds its size cap"},
    {SMTP_ECONNECT, "SMTP_ECONNECT", "connection failed"},
    {SMTP_ESTATE, "SMTP_ESTATE", "a state broke its contract"},
    {SMTP_ENOMEM, "SMTP_ENOMEM", "out of memory"},
    {SMTP_ETLS, "SMTP_ETLS", "TLS failure"},
    {SMTP_EWORKER, "SMTP_EWORKER", "worker process lost"},
    {SMTP_ENULL, "SMTP_ENULL", "required pointer is NULL"},
    {SMTP_ESIZE, "SMTP_ESIZE", "record built with another layout"},
    {SMTP_ENAME, "SMTP_ENAME", "invalid state name"},
    {SMTP_EDUPNAME, "SMTP_EDUPNAME", "state name already registered"},
    {SMTP_ENOCALLBACK, "SMTP_ENOCALLBACK", "state has no callback"},
    {SMTP_ENOSTATE, "SMTP_ENOSTATE", "no such state"},
    {SMTP_EFULL, "SMTP_EFULL", "state table is full"},
    {SMTP_ETHREAD, "SMTP_ETHREAD", "not the owner thread"},
    {SMTP_EBUILTIN, "SMTP_EBUILTIN", "built-in state"},
    {SMTP_EBUSY, "SMTP_EBUSY", "in use: connections are in the state, "
     "or the loop is running"},
    {SMTP_EINVAL, "SMTP_EINVAL", "invalid argument"},
    {SMTP_EPLUGIN, "SMTP_EPLUGIN", "plugin failed"},
};

#define ERROR_TABLE_LEN (sizeof(error_table) / sizeof(error_table[0]))

static _Thread_local int last_code;
static _Thread_local char last_text[512];

static const struct error_entry *error_lookup(int code)
{
    for (size_t i = 0; i < ERROR_TABLE_LEN; i++) {
        if (error_table[i].code == code)
            return &error_table[i];
    }
    return NULL;
}

int smtp__fail(int code, const char *fmt, ...)
{
    va_list ap;

    last_code = code;
    va_start(ap, fmt);
    vsnprintf(last_text, sizeof(last_text), fmt, ap);
    va_end(ap);
    return code;
}

void smtp__succeed(void)
{
    last_code = 0;
    last_text[0] = '\0';
}

SMTP_API int smtp_last_error_code(void)
{
    return last_code;
}

SMTP_API const char *smtp_last_error(void)
{
    return last_text;
}

SMTP_API const char *smtp_error_name(int code)
{
    const struct error_entry *entry = error_lookup(code);

    return entry ? entry->name : "unknown";
}

SMTP_API const char *smtp_strerror(int code)
{
    const struct error_entry *entry = error_lookup(code);

    return entry ? entry->text : "unknown error";
}
