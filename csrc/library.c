/*
 * library.c - one-time initialisation and the owner-thread rule.
 *
 * The first call into the library, on whatever thread, initialises it:
 * that thread becomes the owner and the built-in states are registered
 * before any caller's code can register its own.  The owner never
 * changes for the life of the process.
 */
#include <pthread.h>

#include "internal.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_t owner_thread;

static void library_init_once(void)
{
    owner_thread = pthread_self();
    smtp__builtin_states_register();
}

void smtp__ensure_init(void)
{
    pthread_once(&init_once, library_init_once);
}

bool smtp__on_owner_thread(void)
{
    smtp__ensure_init();
    return pthread_equal(owner_thread, pthread_self()) != 0;
}

bool smtp__require_owner(const char *func)
{
    if (smtp__on_owner_thread())
        return true;
    smtp__fail(SMTP_ETHREAD,
               "%s: called from a thread that is not the owner thread "
               "(rule: owner thread only; the owner is the thread that "
               "initialised the library)", func);
    return false;
}

SMTP_API int smtp_library_init(void)
{
    if (!smtp__require_owner("smtp_library_init"))
        return SMTP_ETHREAD;
    smtp__succeed();
    return 0;
}
