/* The TPM backend's life: connect through the TCTI loader, recreate the
 * primary storage key (SRK) under the owner hierarchy, learn how many
 * objects the TPM holds, describe the TPM, reconnect after the TPM went
 * away, and the translation of TSS2_RC into kmsd's codes. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <tss2/tss2_rc.h>

#include "kms-error.h"
#include "kms-log.h"
#include "kms-util.h"
#include "tpm-internal.h"

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

/* ---------------------------------------------------------------- TSS2_RC */

TSS2_RC kms_tpm_rc_base(TSS2_RC rc)
{
        TSS2_RC layer = rc & TSS2_RC_LAYER_MASK, code = rc & 0xffffu;

        if (layer != TSS2_TPM_RC_LAYER && layer != TSS2_RESMGR_TPM_RC_LAYER)
                return 0;
        /* Format one carries the handle, parameter or session number in
         * bits 6 and 8..11; format zero has none. */
        if (code & TPM2_RC_FMT1)
                return code & (TPM2_RC_FMT1 | 0x3fu);
        return code;
}

int kms_tpm_rc_to_errno(struct kms_tpm *t, TSS2_RC rc, const char *what)
{
        TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;

        if (rc == TSS2_RC_SUCCESS)
                return 0;
        log_debug("tpm: %s: %s (0x%08x)", what, Tss2_RC_Decode(rc), (unsigned)rc);
        if (layer != TSS2_TPM_RC_LAYER && layer != TSS2_RESMGR_TPM_RC_LAYER) {
                /* TCTI, ESYS, MU: the connection or the ESYS context is
                 * in doubt; only a fresh one can tell. */
                if ((rc & 0xffffu) == TSS2_BASE_RC_MEMORY)
                        return -ENOMEM;
                t->broken = true;
                return KMS_E_BACKEND;
        }
        switch (kms_tpm_rc_base(rc)) {
        case TPM2_RC_INITIALIZE: /* the TPM was restarted: our objects are gone */
        case TPM2_RC_REFERENCE_S0:
        case TPM2_RC_REFERENCE_H0:
        case TPM2_RC_HANDLE: t->broken = true; return KMS_E_BACKEND;
        case TPM2_RC_OBJECT_MEMORY:
        case TPM2_RC_OBJECT_HANDLES:
        case TPM2_RC_SESSION_MEMORY:
        case TPM2_RC_SESSION_HANDLES:
        case TPM2_RC_MEMORY:
        case TPM2_RC_RETRY:
        case TPM2_RC_YIELDED:
        case TPM2_RC_TESTING:
        case TPM2_RC_NV_RATE:
        case TPM2_RC_NV_UNAVAILABLE: return -EBUSY;
        case TPM2_RC_BAD_AUTH:
        case TPM2_RC_AUTH_FAIL: return -EACCES;
        case TPM2_RC_CURVE:
        case TPM2_RC_KEY_SIZE:
        case TPM2_RC_ASYMMETRIC:
        case TPM2_RC_HASH:
        case TPM2_RC_SCHEME:
        case TPM2_RC_SYMMETRIC:
        case TPM2_RC_COMMAND_CODE: return -EOPNOTSUPP;
        case TPM2_RC_ATTRIBUTES:
        case TPM2_RC_KEY: return -EPERM;
        case TPM2_RC_VALUE:
        case TPM2_RC_SIZE:
        case TPM2_RC_ECC_POINT:
        case TPM2_RC_NO_RESULT: return -EINVAL;
        default: return KMS_E_BACKEND;
        }
}

/* ---------------------------------------------------------------- owner auth */

/* Read the owner auth file with the permission checks of the PIN file
 * (pkcs11/module.c), into *ret. "hex:..." is a binary value, anything
 * else the bytes themselves; one trailing newline is dropped. The read
 * buffer is wiped; *ret is untouched on failure and the caller wipes it. */
static int read_owner_auth(const char *path, TPM2B_AUTH *ret, char *errbuf, size_t errlen)
{
        _cleanup_(closep) int fd = -1;
        uint8_t buf[KMS_TPM_MAX_AUTH_FILE + 1];
        TPM2B_AUTH auth = {0};
        struct stat st;
        size_t len = 0;
        int r = 0;

        if (!path) {
                memset(ret, 0, sizeof(*ret));
                return 0;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                errorf(errbuf, errlen, "cannot open the TPM owner auth file %s: %s", path, strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                errorf(errbuf, errlen, "cannot stat the TPM owner auth file %s: %s", path, strerror(-r));
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                errorf(errbuf, errlen, "the TPM owner auth file %s is not a regular file", path);
                return -EINVAL;
        }
        if (st.st_mode & (S_IRWXG | S_IRWXO)) {
                errorf(errbuf, errlen,
                       "the TPM owner auth file %s has mode %04o: it must not be accessible by group or others "
                       "(chmod 600 %s)",
                       path, (unsigned)(st.st_mode & 07777), path);
                return -EACCES;
        }
        for (;;) {
                ssize_t n = read(fd, buf + len, sizeof(buf) - len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        errorf(errbuf, errlen, "cannot read the TPM owner auth file %s: %s", path, strerror(-r));
                        goto out;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len > KMS_TPM_MAX_AUTH_FILE) {
                        errorf(errbuf, errlen, "the TPM owner auth file %s is longer than %u bytes", path,
                               KMS_TPM_MAX_AUTH_FILE);
                        r = -E2BIG;
                        goto out;
                }
        }
        if (len > 0 && buf[len - 1] == '\n')
                len--;
        if (len > 0 && buf[len - 1] == '\r')
                len--;
        if (memchr(buf, '\n', len)) {
                errorf(errbuf, errlen, "the TPM owner auth file %s must hold the auth value on one line", path);
                r = -EINVAL;
                goto out;
        }
        if (len >= 4 && memcmp(buf, "hex:", 4) == 0) {
                size_t digits = len - 4;

                if (digits % 2 != 0 || digits / 2 > KMS_TPM_MAX_AUTH) {
                        errorf(errbuf, errlen,
                               "the TPM owner auth file %s: \"hex:\" must be followed by an even number of hex "
                               "digits, at most %u bytes",
                               path, KMS_TPM_MAX_AUTH);
                        r = -EINVAL;
                        goto out;
                }
                for (size_t i = 0; i < digits; i++) {
                        int c = buf[4 + i], v;

                        if (c >= '0' && c <= '9')
                                v = c - '0';
                        else if (c >= 'a' && c <= 'f')
                                v = c - 'a' + 10;
                        else if (c >= 'A' && c <= 'F')
                                v = c - 'A' + 10;
                        else {
                                errorf(errbuf, errlen, "the TPM owner auth file %s: not a hex digit after \"hex:\"",
                                       path);
                                r = -EINVAL;
                                goto out;
                        }
                        auth.buffer[i / 2] = (uint8_t)(auth.buffer[i / 2] << 4 | v);
                }
                auth.size = (UINT16)(digits / 2);
        } else {
                if (len > KMS_TPM_MAX_AUTH) {
                        errorf(errbuf, errlen, "the TPM owner auth in %s is longer than %u bytes", path,
                               KMS_TPM_MAX_AUTH);
                        r = -EINVAL;
                        goto out;
                }
                memcpy(auth.buffer, buf, len);
                auth.size = (UINT16)len;
        }
        *ret = auth;
out:
        OPENSSL_cleanse(buf, sizeof(buf));
        OPENSSL_cleanse(&auth, sizeof(auth));
        return r;
}

/* ---------------------------------------------------------------- capabilities */

/* One TPM property (TPM2_CAP_TPM_PROPERTIES). */
static int get_property(struct kms_tpm *t, TPM2_PT prop, uint32_t *ret)
{
        TPMS_CAPABILITY_DATA *cap = NULL;
        TPMI_YES_NO more = TPM2_NO;
        TSS2_RC rc;
        int r = KMS_E_BACKEND;

        rc = Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES, prop, 1,
                                &more, &cap);
        if (rc != TSS2_RC_SUCCESS)
                return kms_tpm_rc_to_errno(t, rc, "Esys_GetCapability(TPM_PROPERTIES)");
        if (cap->capability == TPM2_CAP_TPM_PROPERTIES && cap->data.tpmProperties.count >= 1 &&
            cap->data.tpmProperties.tpmProperty[0].property == prop) {
                *ret = cap->data.tpmProperties.tpmProperty[0].value;
                r = 0;
        } else
                log_debug("tpm: the TPM does not report property 0x%x", (unsigned)prop);
        Esys_Free(cap);
        return r;
}

int kms_tpm_transient_avail(struct kms_tpm *t, unsigned *ret)
{
        uint32_t v = 0;
        int r = get_property(t, TPM2_PT_HR_TRANSIENT_AVAIL, &v);

        if (r == 0)
                *ret = v;
        return r;
}

/* TPM2_TRANSIENT_FIRST and TPM2_LOADED_SESSION_FIRST, without the
 * header's shift of a promoted UINT8 into the sign bit of an int (UBSan
 * stops on it). */
#define KMS_TPM_TRANSIENT_FIRST ((TPM2_HANDLE)0x80000000u)
#define KMS_TPM_LOADED_SESSION_FIRST ((TPM2_HANDLE)0x02000000u)

/* The handles in the TPM from first on, of first's type (at most
 * TPM2_MAX_CAP_HANDLES). */
static int handles(struct kms_tpm *t, TPM2_HANDLE first, TPML_HANDLE *ret)
{
        TPMS_CAPABILITY_DATA *cap = NULL;
        TPMI_YES_NO more = TPM2_NO;
        TSS2_RC rc;

        rc = Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, first,
                                TPM2_MAX_CAP_HANDLES, &more, &cap);
        if (rc != TSS2_RC_SUCCESS)
                return kms_tpm_rc_to_errno(t, rc, "Esys_GetCapability(HANDLES)");
        ret->count = 0;
        for (UINT32 i = 0; i < cap->data.handles.count && i < TPM2_MAX_CAP_HANDLES; i++) {
                TPM2_HANDLE h = cap->data.handles.handle[i], type = h >> 24;

                /* Loaded sessions are HMAC (0x02) and policy (0x03) ones. */
                if (type == first >> 24 || (first == KMS_TPM_LOADED_SESSION_FIRST && type == 0x03))
                        ret->handle[ret->count++] = h;
        }
        Esys_Free(cap);
        return 0;
}

int kms_tpm_transient_count(struct kms_tpm *t, unsigned *ret)
{
        TPML_HANDLE h;
        int r = handles(t, KMS_TPM_TRANSIENT_FIRST, &h);

        if (r == 0)
                *ret = h.count;
        return r;
}

/* Four bytes of a TPM property as characters, NULs and blanks dropped. */
static void append_chars(char *dst, size_t dstlen, uint32_t v)
{
        size_t n = strlen(dst);

        for (int shift = 24; shift >= 0; shift -= 8) {
                char c = (char)(v >> shift & 0xff);

                if (c == '\0' || c < ' ' || c > '~')
                        continue;
                if (c == ' ' && (n == 0 || dst[n - 1] == ' '))
                        continue;
                if (n + 1 < dstlen) {
                        dst[n++] = c;
                        dst[n] = '\0';
                }
        }
}

static void trim_right(char *s)
{
        size_t n = strlen(s);

        while (n > 0 && s[n - 1] == ' ')
                s[--n] = '\0';
}

/* Manufacturer, vendor strings and firmware into t->info (best effort:
 * a TPM that does not report one leaves it empty). */
static void describe(struct kms_tpm *t)
{
        static const TPM2_PT vendor[] = {TPM2_PT_VENDOR_STRING_1, TPM2_PT_VENDOR_STRING_2, TPM2_PT_VENDOR_STRING_3,
                                         TPM2_PT_VENDOR_STRING_4};
        uint32_t v = 0, fw1 = 0, fw2 = 0;

        t->info.manufacturer[0] = t->info.model[0] = t->info.firmware[0] = '\0';
        if (get_property(t, TPM2_PT_MANUFACTURER, &v) == 0)
                append_chars(t->info.manufacturer, sizeof(t->info.manufacturer), v);
        trim_right(t->info.manufacturer);
        for (size_t i = 0; i < ELEMENTSOF(vendor); i++)
                if (get_property(t, vendor[i], &v) == 0)
                        append_chars(t->info.model, sizeof(t->info.model), v);
        trim_right(t->info.model);
        if (get_property(t, TPM2_PT_FIRMWARE_VERSION_1, &fw1) == 0 &&
            get_property(t, TPM2_PT_FIRMWARE_VERSION_2, &fw2) == 0)
                snprintf(t->info.firmware, sizeof(t->info.firmware), "%u.%u.%u.%u", fw1 >> 16, fw1 & 0xffffu, fw2 >> 16,
                         fw2 & 0xffffu);
}

/* ---------------------------------------------------------------- SRK */

/* The SRK templates of the TCG "TPM v2.0 Provisioning Guidance" (7.5.1):
 * a restricted decryption key with AES-128-CFB for its children, noDA,
 * and a unique field of zeros of the key's size, so the same owner seed
 * always gives the same key. ECC P-256 first, RSA-2048 for a TPM
 * without it. */
static void srk_template(bool rsa, TPM2B_PUBLIC *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->publicArea.nameAlg = TPM2_ALG_SHA256;
        ret->publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                           TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                                           TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
        if (rsa) {
                TPMS_RSA_PARMS *p = &ret->publicArea.parameters.rsaDetail;

                ret->publicArea.type = TPM2_ALG_RSA;
                p->symmetric.algorithm = TPM2_ALG_AES;
                p->symmetric.keyBits.aes = 128;
                p->symmetric.mode.aes = TPM2_ALG_CFB;
                p->scheme.scheme = TPM2_ALG_NULL;
                p->keyBits = 2048;
                p->exponent = 0;
                ret->publicArea.unique.rsa.size = 256;
        } else {
                TPMS_ECC_PARMS *p = &ret->publicArea.parameters.eccDetail;

                ret->publicArea.type = TPM2_ALG_ECC;
                p->symmetric.algorithm = TPM2_ALG_AES;
                p->symmetric.keyBits.aes = 128;
                p->symmetric.mode.aes = TPM2_ALG_CFB;
                p->scheme.scheme = TPM2_ALG_NULL;
                p->curveID = TPM2_ECC_NIST_P256;
                p->kdf.scheme = TPM2_ALG_NULL;
                ret->publicArea.unique.ecc.x.size = 32;
                ret->publicArea.unique.ecc.y.size = 32;
        }
}

/* A one-command HMAC session for the owner auth, so the auth value itself
 * never crosses the bus (a password session sends it as it is): unbound
 * and unsalted (there is no key to salt with before the SRK), the HMAC
 * keyed by the auth value alone. ESYS_TR_PASSWORD if the TPM cannot start
 * one. */
static ESYS_TR auth_session(struct kms_tpm *t)
{
        TPMT_SYM_DEF sym = {.algorithm = TPM2_ALG_NULL};
        ESYS_TR s = ESYS_TR_NONE;
        TSS2_RC rc;

        rc = Esys_StartAuthSession(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL,
                                   TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256, &s);
        if (rc == TSS2_RC_SUCCESS)
                rc = Esys_TRSess_SetAttributes(t->esys, s, 0, TPMA_SESSION_CONTINUESESSION);
        if (rc != TSS2_RC_SUCCESS) {
                (void)kms_tpm_rc_to_errno(t, rc, "Esys_StartAuthSession (owner auth as a password)");
                if (s != ESYS_TR_NONE)
                        (void)Esys_FlushContext(t->esys, s);
                t->broken = false;
                return ESYS_TR_PASSWORD;
        }
        return s;
}

static int create_srk(struct kms_tpm *t, char *errbuf, size_t errlen)
{
        static const TPM2B_AUTH empty_auth = {0};
        TPM2B_SENSITIVE_CREATE sensitive = {0};
        TPM2B_DATA outside = {0};
        TPML_PCR_SELECTION pcrs = {0};
        TPM2B_PUBLIC tmpl;
        TPM2B_AUTH auth = {0};
        TSS2_RC rc;
        int r;

        r = read_owner_auth(t->owner_auth_file, &auth, errbuf, errlen);
        if (r < 0)
                return r;
        rc = Esys_TR_SetAuth(t->esys, ESYS_TR_RH_OWNER, &auth);
        OPENSSL_cleanse(&auth, sizeof(auth));
        if (rc != TSS2_RC_SUCCESS) {
                errorf(errbuf, errlen, "cannot set the owner auth: %s", Tss2_RC_Decode(rc));
                return kms_tpm_rc_to_errno(t, rc, "Esys_TR_SetAuth(owner)");
        }
        for (int rsa = 0; rsa <= 1; rsa++) {
                ESYS_TR s = auth_session(t);

                srk_template(rsa, &tmpl);
                rc = Esys_CreatePrimary(t->esys, ESYS_TR_RH_OWNER, s, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive, &tmpl,
                                        &outside, &pcrs, &t->srk, NULL, NULL, NULL, NULL);
                /* The TPM ends a session without continueSession after a
                 * command that succeeds; after a failure it stays. */
                if (rc != TSS2_RC_SUCCESS && s != ESYS_TR_PASSWORD)
                        (void)Esys_FlushContext(t->esys, s);
                if (rc == TSS2_RC_SUCCESS || rsa)
                        break;
                if (kms_tpm_rc_base(rc) != TPM2_RC_CURVE && kms_tpm_rc_base(rc) != TPM2_RC_ASYMMETRIC &&
                    kms_tpm_rc_base(rc) != TPM2_RC_VALUE)
                        break;
                (void)kms_tpm_rc_to_errno(t, rc, "Esys_CreatePrimary(ECC P-256 SRK); trying RSA-2048");
        }
        /* Overwrite the copy ESYS keeps (the whole TPM2B, not only size). */
        (void)Esys_TR_SetAuth(t->esys, ESYS_TR_RH_OWNER, &empty_auth);
        if (rc != TSS2_RC_SUCCESS) {
                t->srk = ESYS_TR_NONE;
                r = kms_tpm_rc_to_errno(t, rc, "Esys_CreatePrimary(SRK)");
                if (r == -EACCES)
                        errorf(errbuf, errlen,
                               "the TPM refused the owner hierarchy auth (%s): check the owner auth file%s%s",
                               Tss2_RC_Decode(rc), t->owner_auth_file ? " " : " setting (none configured)",
                               t->owner_auth_file ? t->owner_auth_file : "");
                else
                        errorf(errbuf, errlen, "cannot create the primary storage key under the owner hierarchy: %s",
                               Tss2_RC_Decode(rc));
                return r;
        }
        return 0;
}

/* ---------------------------------------------------------------- connection */

/* The encrypting session (see struct kms_tpm): HMAC, salted by the SRK so
 * only this TPM learns the session key, AES-128-CFB for the first
 * response parameter, kept across calls. A TPM that cannot start one
 * leaves t->session at ESYS_TR_NONE (logged). */
static void start_session(struct kms_tpm *t)
{
        TPMT_SYM_DEF sym = {.algorithm = TPM2_ALG_AES, .keyBits.aes = 128, .mode.aes = TPM2_ALG_CFB};
        TSS2_RC rc;

        t->session = ESYS_TR_NONE;
        rc = Esys_StartAuthSession(t->esys, t->srk, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL,
                                   TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256, &t->session);
        if (rc == TSS2_RC_SUCCESS)
                rc = Esys_TRSess_SetAttributes(t->esys, t->session, TPMA_SESSION_CONTINUESESSION | TPMA_SESSION_ENCRYPT,
                                               0xff);
        if (rc != TSS2_RC_SUCCESS) {
                (void)kms_tpm_rc_to_errno(t, rc, "Esys_StartAuthSession (ECDH and RSA results go unencrypted)");
                if (t->session != ESYS_TR_NONE)
                        (void)Esys_FlushContext(t->esys, t->session);
                t->session = ESYS_TR_NONE;
                t->broken = false;
        }
}

ESYS_TR kms_tpm_secret_session(struct kms_tpm *t)
{
        return t->session != ESYS_TR_NONE ? t->session : ESYS_TR_PASSWORD;
}

/* Flush transient objects and loaded sessions a previous process left:
 * a TPM without a resource manager (swtpm, /dev/tpm0) keeps them after
 * its client is gone, and kmsd expects the TPM, or its space in the
 * kernel's resource manager (where this finds nothing), to itself. */
static void flush_leftovers(struct kms_tpm *t)
{
        static const TPM2_HANDLE kinds[] = {KMS_TPM_TRANSIENT_FIRST, KMS_TPM_LOADED_SESSION_FIRST};

        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                TPML_HANDLE h;

                if (handles(t, kinds[k], &h) < 0)
                        return;
                for (UINT32 i = 0; i < h.count; i++) {
                        ESYS_TR tr = ESYS_TR_NONE;
                        TSS2_RC rc = Esys_TR_FromTPMPublic(t->esys, h.handle[i], ESYS_TR_NONE, ESYS_TR_NONE,
                                                           ESYS_TR_NONE, &tr);

                        if (rc == TSS2_RC_SUCCESS)
                                rc = Esys_FlushContext(t->esys, tr);
                        if (rc != TSS2_RC_SUCCESS) {
                                (void)kms_tpm_rc_to_errno(t, rc, "flushing what an earlier client left in the TPM");
                                if (tr != ESYS_TR_NONE)
                                        (void)Esys_TR_Close(t->esys, &tr);
                        } else
                                log_debug("tpm: flushed 0x%08x, left by an earlier client", (unsigned)h.handle[i]);
                }
        }
}

/* Free the contexts without talking to the TPM. */
static void drop_contexts(struct kms_tpm *t)
{
        if (t->esys)
                Esys_Finalize(&t->esys);
        if (t->tcti_ctx)
                Tss2_TctiLdr_Finalize(&t->tcti_ctx);
        t->esys = NULL;
        t->tcti_ctx = NULL;
        t->srk = ESYS_TR_NONE;
        t->session = ESYS_TR_NONE;
        t->connected = false;
}

void kms_tpm_disconnect(struct kms_tpm *t)
{
        bool alive = t->connected && !t->broken;

        kms_tpm_lru_clear(t, alive);
        if (alive && t->session != ESYS_TR_NONE) {
                TSS2_RC rc = Esys_FlushContext(t->esys, t->session);

                if (rc != TSS2_RC_SUCCESS)
                        (void)kms_tpm_rc_to_errno(t, rc, "Esys_FlushContext(session)");
        }
        alive = alive && !t->broken;
        if (alive && t->srk != ESYS_TR_NONE) {
                TSS2_RC rc = Esys_FlushContext(t->esys, t->srk);

                if (rc != TSS2_RC_SUCCESS)
                        (void)kms_tpm_rc_to_errno(t, rc, "Esys_FlushContext(SRK)");
        }
        drop_contexts(t);
        t->broken = false;
}

/* Connect, start the TPM if nobody has, flush leftovers, size the LRU and
 * create the SRK. Returns 0, -ENODEV when the TPM cannot be reached, or
 * another negative errno; errbuf says why. */
static int connect_tpm(struct kms_tpm *t, char *errbuf, size_t errlen)
{
        uint32_t min = 0;
        unsigned avail = 0;
        TSS2_RC rc;
        int r;

        t->broken = false;
        rc = Tss2_TctiLdr_Initialize(t->tcti, &t->tcti_ctx);
        if (rc != TSS2_RC_SUCCESS) {
                (void)kms_tpm_rc_to_errno(t, rc, "Tss2_TctiLdr_Initialize");
                errorf(errbuf, errlen, "cannot reach the TPM through TCTI \"%s\": %s", t->tcti, Tss2_RC_Decode(rc));
                t->tcti_ctx = NULL;
                r = -ENODEV;
                goto fail;
        }
        rc = Esys_Initialize(&t->esys, t->tcti_ctx, NULL);
        if (rc != TSS2_RC_SUCCESS) {
                (void)kms_tpm_rc_to_errno(t, rc, "Esys_Initialize");
                errorf(errbuf, errlen, "cannot initialize ESAPI on TCTI \"%s\": %s", t->tcti, Tss2_RC_Decode(rc));
                t->esys = NULL;
                r = -ENODEV;
                goto fail;
        }
        /* A simulator started without startup-clear needs it; every other
         * TPM answers TPM_RC_INITIALIZE (already started). */
        rc = Esys_Startup(t->esys, TPM2_SU_CLEAR);
        if (rc != TSS2_RC_SUCCESS && kms_tpm_rc_base(rc) != TPM2_RC_INITIALIZE) {
                r = kms_tpm_rc_to_errno(t, rc, "Esys_Startup");
                errorf(errbuf, errlen, "the TPM at \"%s\" does not answer: %s", t->tcti, Tss2_RC_Decode(rc));
                if (t->broken)
                        r = -ENODEV;
                goto fail;
        }
        t->broken = false;

        flush_leftovers(t);
        r = get_property(t, TPM2_PT_HR_TRANSIENT_MIN, &min);
        if (r == 0)
                r = kms_tpm_transient_avail(t, &avail);
        if (r < 0) {
                errorf(errbuf, errlen, "the TPM at \"%s\" does not report its transient object slots", t->tcti);
                if (t->broken)
                        r = -ENODEV;
                goto fail;
        }
        t->transient_min = min;
        /* What the TPM guarantees (a resource manager may hold us to it
         * whatever is free), less the SRK's slot. */
        if (avail < min)
                min = avail;
        t->lru.cap = min > 1 ? min - 1 : 1;
        if (t->lru.cap > KMS_TPM_MAX_CACHED_KEYS)
                t->lru.cap = KMS_TPM_MAX_CACHED_KEYS;

        r = create_srk(t, errbuf, errlen);
        if (r < 0) {
                if (t->broken)
                        r = -ENODEV;
                goto fail;
        }
        start_session(t);
        describe(t);
        t->connected = true;
        t->last_error[0] = '\0';
        log_debug("tpm: connected to \"%s\" (%s %s, firmware %s), %u transient slots, %zu for child keys", t->tcti,
                  t->info.manufacturer, t->info.model, t->info.firmware, t->transient_min, t->lru.cap);
        return 0;
fail:
        drop_contexts(t);
        t->broken = false;
        return r;
}

int kms_tpm_ensure_connected(struct kms_tpm *t)
{
        uint64_t now = kms_now_mono_ms();
        char err[sizeof(t->last_error)];
        int r;

        if (t->connected && !t->broken)
                return 0;
        if (t->connected)
                kms_tpm_disconnect(t); /* lost: reconnect at once */
        else if (now < t->next_try_ms)
                return KMS_E_BACKEND;
        err[0] = '\0';
        r = connect_tpm(t, err, sizeof(err));
        if (r < 0) {
                t->next_try_ms = now + KMS_TPM_RECONNECT_MS;
                snprintf(t->last_error, sizeof(t->last_error), "%s", err[0] ? err : "the TPM cannot be reached");
                log_debug("tpm: %s", t->last_error);
                return r == -ENODEV ? KMS_E_BACKEND : r;
        }
        return 0;
}

/* ---------------------------------------------------------------- the backend */

static void tpm_free(struct kms_backend *b)
{
        struct kms_tpm *t = (struct kms_tpm *)b;

        if (!t)
                return;
        pthread_mutex_lock(&t->lock);
        kms_tpm_disconnect(t);
        pthread_mutex_unlock(&t->lock);
        kms_tpm_store_close(t);
        pthread_mutex_destroy(&t->lock);
        pthread_mutex_destroy(&t->db_lock);
        free(t->tcti);
        free(t->owner_auth_file);
        free(t);
}

int kms_tpm_open(const struct kms_tpm_config *cfg, struct kms_backend **ret, char *errbuf, size_t errlen)
{
        struct kms_tpm *t;
        TPM2B_AUTH probe = {0};
        int r;

        if (!cfg || !cfg->tcti || !cfg->db_path || !ret)
                return -EINVAL;
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->base.ops = &kms_tpm_ops;
        t->srk = ESYS_TR_NONE;
        t->session = ESYS_TR_NONE;
        pthread_mutex_init(&t->lock, NULL);
        pthread_mutex_init(&t->db_lock, NULL);
        t->tcti = strdup(cfg->tcti);
        t->owner_auth_file = cfg->owner_auth_file ? strdup(cfg->owner_auth_file) : NULL;
        if (!t->tcti || (cfg->owner_auth_file && !t->owner_auth_file)) {
                r = -ENOMEM;
                goto fail;
        }
        snprintf(t->info.label, sizeof(t->info.label), "%s", cfg->tcti);

        /* A broken auth file is a configuration error, TPM or no TPM. */
        r = read_owner_auth(t->owner_auth_file, &probe, errbuf, errlen);
        OPENSSL_cleanse(&probe, sizeof(probe));
        if (r < 0)
                goto fail;
        r = kms_tpm_store_open(t, cfg->db_path, errbuf, errlen);
        if (r < 0)
                goto fail;

        pthread_mutex_lock(&t->lock);
        r = connect_tpm(t, errbuf, errlen);
        if (r < 0) {
                snprintf(t->last_error, sizeof(t->last_error), "%s",
                         errbuf && errbuf[0] ? errbuf : "the TPM cannot be reached");
                t->next_try_ms = kms_now_mono_ms() + KMS_TPM_RECONNECT_MS;
        }
        pthread_mutex_unlock(&t->lock);
        if (r == -ENODEV && cfg->allow_unreachable)
                r = 0; /* errbuf keeps the reason */
        if (r < 0)
                goto fail;
        *ret = &t->base;
        return 0;
fail:
        tpm_free(&t->base);
        return r;
}

static int tpm_worker_open(struct kms_backend *b, struct kms_backend_worker **ret)
{
        struct kms_tpm_worker *w = calloc(1, sizeof(*w));

        if (!w)
                return -ENOMEM;
        w->t = (struct kms_tpm *)b;
        *ret = (struct kms_backend_worker *)w;
        return 0;
}

static void tpm_worker_close(struct kms_backend_worker *w)
{
        free(w);
}

/* The description from the last connection, the free slots asked now.
 * A TPM that cannot be reached is reported, not an error. */
static int tpm_info(struct kms_backend *b, struct kms_backend_info *ret)
{
        struct kms_tpm *t = (struct kms_tpm *)b;
        unsigned avail = 0;
        int r;

        pthread_mutex_lock(&t->lock);
        r = kms_tpm_ensure_connected(t);
        if (r == 0)
                r = kms_tpm_transient_avail(t, &avail);
        if (r < 0 && t->broken) {
                kms_tpm_disconnect(t);
                r = kms_tpm_ensure_connected(t);
                if (r == 0)
                        r = kms_tpm_transient_avail(t, &avail);
        }
        *ret = t->info;
        ret->transient_max = t->transient_min;
        if (r == 0)
                ret->transient_free = avail;
        else {
                ret->unavailable = true;
                snprintf(ret->unavailable_why, sizeof(ret->unavailable_why), "%s",
                         t->last_error[0] ? t->last_error : "the TPM does not answer");
        }
        pthread_mutex_unlock(&t->lock);
        return 0;
}

const struct kms_backend_ops kms_tpm_ops = {
        .name = "tpm",
        .worker_open = tpm_worker_open,
        .worker_close = tpm_worker_close,
        .generate = kms_tpm_generate,
        .sign = kms_tpm_sign,
        .derive = kms_tpm_derive,
        .decrypt = kms_tpm_decrypt,
        .destroy = kms_tpm_destroy,
        .exists = kms_tpm_exists,
        .enumerate = kms_tpm_enumerate,
        .attest = kms_tpm_attest,
        .info = tpm_info,
        .free = tpm_free,
};
