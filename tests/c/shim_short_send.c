/*
 * shim_short_send.c - preloaded into the driver by the tests: every other
 * send(2) fails with EAGAIN and the others take at most SHIM_SEND_MAX
 * bytes, as a peer that reads slowly would make them, so the engine's
 * short-write paths run against a real server on loopback.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#define SHIM_SEND_MAX 1000

typedef ssize_t (*send_fn)(int, const void *, size_t, int);

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    static send_fn real;
    static unsigned long calls;

    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "send");
    if (++calls % 2 == 0) {
        errno = EAGAIN;
        return -1;
    }
    return real(fd, buf, len < SHIM_SEND_MAX ? len : SHIM_SEND_MAX, flags);
}
