/* The backends kmsd has (d->backends: the PKCS#11 token, then the TPM),
 * what their failures mean for a person, and the slots that keep key
 * generation from taking every worker. */
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "kms-error.h"

int kms_generation_begin(struct kms_daemon *d, char *errmsg, size_t errlen)
{
        unsigned max = d->pool.n_workers > 1 ? d->pool.n_workers - 1 : 1;

        if (atomic_fetch_add(&d->generating, 1) >= max) {
                atomic_fetch_sub(&d->generating, 1);
                return kms_errorf(errmsg, errlen, -EBUSY,
                                  "%u key generations are running (workers - 1); retry in a moment", max);
        }
        return 0;
}

void kms_generation_end(struct kms_daemon *d)
{
        atomic_fetch_sub(&d->generating, 1);
}

const char *kms_backend_noun(const char *name)
{
        return strcmp(name, "tpm") == 0 ? "TPM" : "token";
}

const char *kms_backend_explain(struct kms_daemon *d, const char *name, int r, char *buf, size_t len)
{
        int b = kms_backend_index(d, name);
        const char *noun = kms_backend_noun(name);

        if (r == -ENOENT)
                snprintf(buf, len, "its private key is missing from the %s", noun);
        else if (r == -EOPNOTSUPP)
                snprintf(buf, len, "the %s does not support it", noun);
        else if (r == -EPERM)
                snprintf(buf, len, "the %s object does not allow it", noun);
        else {
                struct kms_backend_info info = { 0 };

                if (b >= 0 && (r == KMS_E_BACKEND || r == -EBUSY) &&
                    d->backends[b]->ops->info(d->backends[b], &info) >= 0 && info.unavailable)
                        snprintf(buf, len, "the %s (%s) cannot be reached: %s; its keys work again once it is back",
                                 noun, info.label, info.unavailable_why[0] ? info.unavailable_why : "no answer");
                else
                        snprintf(buf, len, "%s", strerror(-r));
        }
        return buf;
}

int kms_backend_index(const struct kms_daemon *d, const char *name)
{
        for (unsigned b = 0; b < d->n_backends; b++)
                if (strcmp(d->backends[b]->ops->name, name) == 0)
                        return (int)b;
        return -1;
}
