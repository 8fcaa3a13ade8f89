/* The one list of the API's domains: each domain file's slice of the
 * method table, handed to the core's registry at start (main.c). A new
 * domain file adds its slice here; a new method of an existing domain
 * touches only its own file (and the introspection XML and the docs). */
#include "api.h"

static const struct kms_method_slice *const slices[] = {
        &kms_api_keys,     &kms_api_signing, &kms_api_derive, &kms_api_lifecycle,
        &kms_api_sessions, &kms_api_audit,   &kms_api_policy, &kms_api_status,
};

int kms_api_register(struct kms_registry *reg, char *errbuf, size_t errlen)
{
        for (size_t i = 0; i < ELEMENTSOF(slices); i++) {
                int r = kms_registry_add(reg, slices[i], errbuf, errlen);

                if (r < 0)
                        return r;
        }
        return 0;
}
