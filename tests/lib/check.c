#include "check.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned n_passed, n_failed;

void check(int ok, const char *fmt, ...)
{
        va_list ap;

        pthread_mutex_lock(&lock);
        printf("%s: ", ok ? "PASS" : "FAIL");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
        if (ok)
                n_passed++;
        else
                n_failed++;
        pthread_mutex_unlock(&lock);
}

const char *check_err_name(int r)
{
        switch (r) {
        case 0: return "0";
        case -EINVAL: return "-EINVAL";
        case -EPERM: return "-EPERM";
        case -EACCES: return "-EACCES";
        case -ENOENT: return "-ENOENT";
        case -EBADMSG: return "-EBADMSG";
        case -EOPNOTSUPP: return "-EOPNOTSUPP";
        case -EBUSY: return "-EBUSY";
        case -EIO: return "-EIO (backend)";
        case -ENOMEM: return "-ENOMEM";
        case -ENODEV: return "-ENODEV";
        default: return "other";
        }
}

void check_rc(int r, int want, const char *what)
{
        check(r == want, "%s -> %s (want %s)", what, check_err_name(r), check_err_name(want));
}

unsigned check_passed(void)
{
        unsigned n;

        pthread_mutex_lock(&lock);
        n = n_passed;
        pthread_mutex_unlock(&lock);
        return n;
}

unsigned check_failed(void)
{
        unsigned n;

        pthread_mutex_lock(&lock);
        n = n_failed;
        pthread_mutex_unlock(&lock);
        return n;
}

int check_exit_status(void)
{
        return check_failed() == 0 && check_passed() > 0 ? 0 : 1;
}
