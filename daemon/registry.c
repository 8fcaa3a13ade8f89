/* The method registry; see registry.h. Filled once at start, before the
 * bus thread and the workers run, and only read after that. */
#include <dbus/dbus.h>

#include "registry.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct kms_method *lookup(const struct kms_registry *reg, const char *member, size_t *ret_index)
{
        for (size_t i = 0; i < reg->n; i++)
                if (strcmp(reg->methods[i]->member, member) == 0) {
                        if (ret_index)
                                *ret_index = i;
                        return reg->methods[i];
                }
        return NULL;
}

int kms_registry_add(struct kms_registry *reg, const struct kms_method_slice *slice, char *errbuf, size_t errlen)
{
        if (slice->n > KMS_MAX_METHODS - reg->n) {
                snprintf(errbuf, errlen, "more than %u methods (domain %s)", KMS_MAX_METHODS, slice->domain);
                return -E2BIG;
        }
        for (size_t i = 0; i < slice->n; i++) {
                const struct kms_method *m = &slice->methods[i];
                bool internal = m->scope == KMS_SCOPE_NONE;
                size_t at = 0;

                if (lookup(reg, m->member, &at)) {
                        snprintf(errbuf, errlen, "method %s is declared by domain %s and again by %s", m->member,
                                 reg->domains[at], slice->domain);
                        return -EEXIST;
                }
                for (size_t j = 0; j < i; j++)
                        if (strcmp(slice->methods[j].member, m->member) == 0) {
                                snprintf(errbuf, errlen, "method %s is declared twice by domain %s", m->member,
                                         slice->domain);
                                return -EEXIST;
                        }
                if (!m->run || (internal ? (m->parse || *m->signature) : !m->parse) ||
                    !dbus_signature_validate(m->signature, NULL)) {
                        snprintf(errbuf, errlen, "method %s of domain %s is malformed in the method table",
                                 m->member, slice->domain);
                        return -EINVAL;
                }
        }
        for (size_t i = 0; i < slice->n; i++) {
                reg->methods[reg->n] = &slice->methods[i];
                reg->domains[reg->n] = slice->domain;
                reg->n++;
        }
        return 0;
}

const struct kms_method *kms_registry_find(const struct kms_registry *reg, const char *member)
{
        const struct kms_method *m = lookup(reg, member, NULL);

        return m && m->scope != KMS_SCOPE_NONE ? m : NULL;
}

const struct kms_method *kms_registry_find_internal(const struct kms_registry *reg, const char *member)
{
        const struct kms_method *m = lookup(reg, member, NULL);

        return m && m->scope == KMS_SCOPE_NONE ? m : NULL;
}
