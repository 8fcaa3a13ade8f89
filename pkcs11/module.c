/* The PKCS#11 backend's life: load the module through p11-kit, find the
 * token, log in with the PIN from a file, open one session per worker,
 * describe the token, and unload. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <p11-kit/p11-kit.h>

#include "kms-error.h"
#include "kms-log.h"
#include "kms-util.h"
#include "pkcs11-internal.h"

static void errorf(char *buf, size_t len, const char *fmt, ...) _printf_(3, 4);
static void errorf(char *buf, size_t len, const char *fmt, ...)
{
        va_list ap;

        if (!buf || len == 0)
                return;
        va_start(ap, fmt);
        vsnprintf(buf, len, fmt, ap);
        va_end(ap);
}

int kms_pkcs11_rv_to_errno(CK_RV rv, const char *what)
{
        log_debug("pkcs11: %s: %s (0x%lx)", what, p11_kit_strerror(rv), (unsigned long)rv);
        switch (rv) {
        case CKR_OK: return 0;
        case CKR_HOST_MEMORY:
        case CKR_DEVICE_MEMORY: return -ENOMEM;
        case CKR_PIN_INCORRECT:
        case CKR_PIN_INVALID:
        case CKR_PIN_LEN_RANGE:
        case CKR_PIN_EXPIRED:
        case CKR_PIN_LOCKED: return -EACCES;
        case CKR_KEY_HANDLE_INVALID:
        case CKR_OBJECT_HANDLE_INVALID: return -ENOENT;
        case CKR_MECHANISM_INVALID:
        case CKR_MECHANISM_PARAM_INVALID:
        case CKR_KEY_TYPE_INCONSISTENT:
        case CKR_KEY_FUNCTION_NOT_PERMITTED: return -EOPNOTSUPP;
        case CKR_DATA_LEN_RANGE:
        case CKR_DATA_INVALID:
        case CKR_ARGUMENTS_BAD: return -EINVAL;
        default: return KMS_E_BACKEND;
        }
}

/* Copy a blank-padded PKCS#11 string field into a C string. */
static void copy_padded(char *dst, size_t dstlen, const unsigned char *src, size_t srclen)
{
        size_t n = srclen;

        while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\0'))
                n--;
        if (n >= dstlen)
                n = dstlen - 1;
        memcpy(dst, src, n);
        dst[n] = '\0';
}

int kms_pkcs11_read_pin(const char *path, char **ret, size_t *ret_len, char *errbuf, size_t errlen)
{
        _cleanup_(closep) int fd = -1;
        struct stat st;
        char *buf;
        ssize_t n;
        size_t len = 0;

        if (!path) {
                errorf(errbuf, errlen, "no PIN file configured");
                return -EINVAL;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0) {
                int r = -errno;
                errorf(errbuf, errlen, "cannot open PIN file %s: %s", path, strerror(errno));
                return r;
        }
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                errorf(errbuf, errlen, "cannot stat PIN file %s: %s", path, strerror(errno));
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                errorf(errbuf, errlen, "PIN file %s is not a regular file", path);
                return -EINVAL;
        }
        if (st.st_mode & (S_IRWXG | S_IRWXO)) {
                errorf(errbuf, errlen,
                       "PIN file %s has mode %04o: it must not be accessible by group or others (chmod 600 %s)",
                       path, (unsigned)(st.st_mode & 07777), path);
                return -EACCES;
        }
        buf = malloc(KMS_PKCS11_MAX_PIN + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                n = read(fd, buf + len, KMS_PKCS11_MAX_PIN + 1 - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int r = -errno;
                        kms_freezero(buf, KMS_PKCS11_MAX_PIN + 1);
                        errorf(errbuf, errlen, "cannot read PIN file %s: %s", path, strerror(-r));
                        return r;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len > KMS_PKCS11_MAX_PIN) {
                        kms_freezero(buf, KMS_PKCS11_MAX_PIN + 1);
                        errorf(errbuf, errlen, "PIN file %s is longer than %u bytes", path, KMS_PKCS11_MAX_PIN);
                        return -E2BIG;
                }
        }
        if (len > 0 && buf[len - 1] == '\n')
                len--;
        if (len > 0 && buf[len - 1] == '\r')
                len--;
        if (len == 0 || memchr(buf, '\n', len)) {
                kms_freezero(buf, KMS_PKCS11_MAX_PIN + 1);
                errorf(errbuf, errlen, "PIN file %s must hold the PIN on one non-empty line", path);
                return -EINVAL;
        }
        buf[len] = '\0';
        *ret = buf;
        *ret_len = len;
        return 0;
}

static int find_slot(struct kms_pkcs11 *p, const struct kms_pkcs11_config *cfg, char *errbuf, size_t errlen)
{
        _cleanup_(freep) CK_SLOT_ID *slots = NULL;
        CK_ULONG n = 0;
        CK_RV rv;

        rv = p->f->C_GetSlotList(CK_TRUE, NULL, &n);
        if (rv != CKR_OK) {
                errorf(errbuf, errlen, "cannot list the module's slots: %s", p11_kit_strerror(rv));
                return kms_pkcs11_rv_to_errno(rv, "C_GetSlotList");
        }
        slots = calloc(n ? n : 1, sizeof(*slots));
        if (!slots)
                return -ENOMEM;
        rv = p->f->C_GetSlotList(CK_TRUE, slots, &n);
        if (rv != CKR_OK) {
                errorf(errbuf, errlen, "cannot list the module's slots: %s", p11_kit_strerror(rv));
                return kms_pkcs11_rv_to_errno(rv, "C_GetSlotList");
        }
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO ti;
                char label[33], serial[17];

                if (p->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
                        continue;
                copy_padded(label, sizeof(label), ti.label, sizeof(ti.label));
                copy_padded(serial, sizeof(serial), ti.serialNumber, sizeof(ti.serialNumber));
                if (cfg->token_serial ? strcmp(serial, cfg->token_serial) != 0
                                      : strcmp(label, cfg->token_label) != 0)
                        continue;
                if (!(ti.flags & CKF_TOKEN_INITIALIZED) || !(ti.flags & CKF_USER_PIN_INITIALIZED)) {
                        errorf(errbuf, errlen, "token '%s' is not initialized (no user PIN set)", label);
                        return -ENODEV;
                }
                p->slot = slots[i];
                snprintf(p->info.label, sizeof(p->info.label), "%s", label);
                snprintf(p->info.serial, sizeof(p->info.serial), "%s", serial);
                copy_padded(p->info.manufacturer, sizeof(p->info.manufacturer), ti.manufacturerID,
                            sizeof(ti.manufacturerID));
                copy_padded(p->info.model, sizeof(p->info.model), ti.model, sizeof(ti.model));
                return 0;
        }
        errorf(errbuf, errlen, "no token with %s '%s' in module %s (%lu token(s) present)",
               cfg->token_serial ? "serial" : "label", cfg->token_serial ? cfg->token_serial : cfg->token_label,
               cfg->module, (unsigned long)n);
        return -ENODEV;
}

/* Mutexes handed to the module. Adaptive mutexes spin briefly before
 * sleeping: the module's critical sections are short, and on a loaded
 * machine a futex sleep and wake per contended lock costs more than the
 * signature (measured with kmsd-bench, docs/benchmark.md). */
static CK_RV mutex_create(void **ret)
{
        pthread_mutexattr_t attr;
        pthread_mutex_t *m = malloc(sizeof(*m));

        if (!m)
                return CKR_HOST_MEMORY;
        pthread_mutexattr_init(&attr);
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
        if (pthread_mutex_init(m, &attr) != 0) {
                pthread_mutexattr_destroy(&attr);
                free(m);
                return CKR_GENERAL_ERROR;
        }
        pthread_mutexattr_destroy(&attr);
        *ret = m;
        return CKR_OK;
}

static CK_RV mutex_destroy(void *m)
{
        if (!m)
                return CKR_MUTEX_BAD;
        pthread_mutex_destroy(m);
        free(m);
        return CKR_OK;
}

static CK_RV mutex_lock(void *m)
{
        return m && pthread_mutex_lock(m) == 0 ? CKR_OK : CKR_MUTEX_BAD;
}

static CK_RV mutex_unlock(void *m)
{
        return m && pthread_mutex_unlock(m) == 0 ? CKR_OK : CKR_MUTEX_NOT_LOCKED;
}

static void pkcs11_free(struct kms_backend *b)
{
        struct kms_pkcs11 *p = (struct kms_pkcs11 *)b;

        if (!p)
                return;
        if (p->f) {
                if (p->login_session != CK_INVALID_HANDLE) {
                        p->f->C_Logout(p->login_session);
                        p->f->C_CloseSession(p->login_session);
                }
                if (p->initialized)
                        p->f->C_Finalize(NULL);
                p11_kit_module_release(p->f);
        }
        kms_pkcs11_cache_clear(&p->cache);
        pthread_mutex_destroy(&p->cache.lock);
        free(p);
}

int kms_pkcs11_open(const struct kms_pkcs11_config *cfg, struct kms_backend **ret, char *errbuf, size_t errlen)
{
        CK_C_INITIALIZE_ARGS init_args = {
                .CreateMutex = mutex_create,
                .DestroyMutex = mutex_destroy,
                .LockMutex = mutex_lock,
                .UnlockMutex = mutex_unlock,
                .flags = CKF_OS_LOCKING_OK,
        };
        struct kms_pkcs11 *p;
        char *pin = NULL;
        size_t pin_len = 0;
        CK_RV rv;
        int r;

        if (!cfg || !cfg->module || (!cfg->token_label && !cfg->token_serial) || !ret)
                return -EINVAL;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->base.ops = &kms_pkcs11_ops;
        p->login_session = CK_INVALID_HANDLE;
        kms_pkcs11_cache_init(&p->cache);
        atomic_init(&p->point_form, KMS_PKCS11_POINT_UNKNOWN);
        atomic_init(&p->oaep_mode, KMS_PKCS11_OAEP_UNKNOWN);

        /* Read the PIN before touching the module, so a bad PIN file is
         * reported as such. */
        r = kms_pkcs11_read_pin(cfg->pin_file, &pin, &pin_len, errbuf, errlen);
        if (r < 0)
                goto fail;

        p->f = p11_kit_module_load(cfg->module, P11_KIT_MODULE_UNMANAGED | P11_KIT_MODULE_CRITICAL);
        if (!p->f) {
                errorf(errbuf, errlen, "cannot load PKCS#11 module %s: %s", cfg->module, p11_kit_message());
                r = -ENOENT;
                goto fail;
        }
        /* Not p11_kit_module_initialize(): it passes NULL init args,
         * which tells the module it will not be called from several
         * threads and lets SoftHSMv2 drop its locks. The workers call it
         * concurrently, so hand it our mutexes (OS locking also allowed). */
        rv = p->f->C_Initialize(&init_args);
        if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)
                rv = CKR_OK; /* initialized by someone else; not ours to finalize */
        else if (rv == CKR_OK)
                p->initialized = true;
        if (rv != CKR_OK) {
                errorf(errbuf, errlen, "cannot initialize PKCS#11 module %s: %s", cfg->module, p11_kit_strerror(rv));
                r = kms_pkcs11_rv_to_errno(rv, "C_Initialize");
                goto fail;
        }

        r = find_slot(p, cfg, errbuf, errlen);
        if (r < 0)
                goto fail;

        rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &p->login_session);
        if (rv != CKR_OK) {
                errorf(errbuf, errlen, "cannot open a session on token '%s': %s", p->info.label,
                       p11_kit_strerror(rv));
                r = kms_pkcs11_rv_to_errno(rv, "C_OpenSession");
                goto fail;
        }
        rv = p->f->C_Login(p->login_session, CKU_USER, (CK_UTF8CHAR_PTR)pin, pin_len);
        kms_freezero(pin, KMS_PKCS11_MAX_PIN + 1);
        pin = NULL;
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
                errorf(errbuf, errlen, "login to token '%s' failed: %s (check %s)", p->info.label,
                       p11_kit_strerror(rv), cfg->pin_file);
                r = kms_pkcs11_rv_to_errno(rv, "C_Login");
                goto fail;
        }
        *ret = &p->base;
        return 0;
fail:
        if (pin)
                kms_freezero(pin, KMS_PKCS11_MAX_PIN + 1);
        pkcs11_free(&p->base);
        return r;
}

static int open_session(struct kms_pkcs11 *p, CK_SESSION_HANDLE *ret)
{
        CK_RV rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, ret);

        return rv == CKR_OK ? 0 : kms_pkcs11_rv_to_errno(rv, "C_OpenSession");
}

static int pkcs11_worker_open(struct kms_backend *b, struct kms_backend_worker **ret)
{
        struct kms_pkcs11 *p = (struct kms_pkcs11 *)b;
        struct kms_pkcs11_worker *w;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->p = p;
        r = open_session(p, &w->session);
        if (r < 0) {
                free(w);
                return r;
        }
        *ret = (struct kms_backend_worker *)w;
        return 0;
}

int kms_pkcs11_worker_reset(struct kms_pkcs11_worker *w)
{
        CK_SESSION_HANDLE s;
        int r = open_session(w->p, &s);

        if (r < 0)
                return r;
        (void)w->p->f->C_CloseSession(w->session);
        w->session = s;
        return 0;
}

static void pkcs11_worker_close(struct kms_backend_worker *bw)
{
        struct kms_pkcs11_worker *w = (struct kms_pkcs11_worker *)bw;

        if (!w)
                return;
        w->p->f->C_CloseSession(w->session);
        free(w);
}

static int pkcs11_info(struct kms_backend *b, struct kms_backend_info *ret)
{
        *ret = ((struct kms_pkcs11 *)b)->info;
        return 0;
}

const struct kms_backend_ops kms_pkcs11_ops = {
        .name = "pkcs11",
        .worker_open = pkcs11_worker_open,
        .worker_close = pkcs11_worker_close,
        .generate = kms_pkcs11_generate,
        .sign = kms_pkcs11_sign,
        .derive = kms_pkcs11_derive,
        .decrypt = kms_pkcs11_decrypt,
        .destroy = kms_pkcs11_destroy,
        .exists = kms_pkcs11_exists,
        .enumerate = kms_pkcs11_enumerate,
        .info = pkcs11_info,
        .free = pkcs11_free,
};
