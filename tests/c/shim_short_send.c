/*
 * shim_short_send.c - preloaded into the driver by the tests: every other
 * send(2) or sendmsg(2) fails with EAGAIN and the others take at most
 * SHIM_SEND_MAX bytes, as a peer that reads slowly would make them, so the
 * engine's short-write paths run against a real server on loopback.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SHIM_SEND_MAX 1000

typedef ssize_t (*send_fn)(int, const void *, size_t, int);
typedef ssize_t (*sendmsg_fn)(int, const struct msghdr *, int);

/* One count for both calls: every other call of either refuses. */
static unsigned long calls;

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    static send_fn real;

    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "send");
    if (++calls % 2 == 0) {
        errno = EAGAIN;
        return -1;
    }
    return real(fd, buf, len < SHIM_SEND_MAX ? len : SHIM_SEND_MAX, flags);
}

/* The message's iovec cut after SHIM_SEND_MAX bytes in all, so that a
 * short send can end inside any of its parts. */
ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    static sendmsg_fn real;
    struct iovec iov[8];
    struct msghdr cut = *msg;
    size_t left = SHIM_SEND_MAX;
    size_t n = 0;

    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "sendmsg");
    if (++calls % 2 == 0) {
        errno = EAGAIN;
        return -1;
    }
    for (size_t i = 0; i < msg->msg_iovlen && i < 8 && left > 0; i++) {
        iov[n] = msg->msg_iov[i];
        if (iov[n].iov_len > left)
            iov[n].iov_len = left;
        left -= iov[n].iov_len;
        n++;
    }
    cut.msg_iov = iov;
    cut.msg_iovlen = n;
    return real(fd, &cut, flags);
}
