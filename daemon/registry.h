/* The method registry: the table of org.kmsd.KeyManager1's methods that
 * the bus thread checks every call against (member, signature, operation
 * and scope for the access decision, parser, handler), assembled at start
 * from the slices of the API's domain files (api/api.c). It is part of
 * the core and knows nothing of the handlers it holds. */
#pragma once

#include <stddef.h>

#include "kms-policy.h"

struct kms_daemon;
struct kms_worker;
struct kms_request;

#define KMS_MAX_METHODS 128u

/* A worker answers with a reply, or with a negative errno and a message
 * for the caller. */
typedef int (*kms_method_run_t)(struct kms_worker *w, struct kms_request *req, DBusMessage **ret_reply,
                                char *errmsg, size_t errlen);
typedef int (*kms_method_parse_t)(struct kms_daemon *d, struct kms_request *req, char *errmsg, size_t errlen);

/* What the bus thread checks before a request reaches a worker. */
enum kms_scope {
        KMS_SCOPE_KEY,         /* op on the key named in the request */
        KMS_SCOPE_GLOBAL,      /* op not about one key */
        KMS_SCOPE_CREATE,      /* create on the name; admin to name another owner */
        KMS_SCOPE_FILTER,      /* a list: the worker shows what op allows */
        KMS_SCOPE_SESSION,     /* op on the key of the caller's session */
        KMS_SCOPE_OWN_SESSION, /* the caller's session, whatever the policy now says */
        KMS_SCOPE_NONE,        /* internal requests: never from the bus */
};

struct kms_method {
        const char *member;
        const char *signature;
        enum kms_operation op;
        enum kms_scope scope;
        kms_method_parse_t parse; /* bus thread: arguments → req, validated */
        kms_method_run_t run;     /* worker: act, reply */
};

/* One domain's part of the table (api/<domain>.c). */
struct kms_method_slice {
        const char *domain;
        const struct kms_method *methods;
        size_t n;
};

struct kms_registry {
        const struct kms_method *methods[KMS_MAX_METHODS];
        const char *domains[KMS_MAX_METHODS]; /* the slice each came from */
        size_t n;
};

/* Add a slice. Refused (nothing added, errbuf says why): a member already
 * there (-EEXIST, naming both domains), a signature libdbus does not
 * accept, a bus method without parser or handler, an internal method
 * (KMS_SCOPE_NONE) without handler or with a signature, more than
 * KMS_MAX_METHODS in all (-E2BIG). */
int kms_registry_add(struct kms_registry *reg, const struct kms_method_slice *slice, char *errbuf, size_t errlen);
/* The bus method named member, or NULL (internal methods are not found). */
const struct kms_method *kms_registry_find(const struct kms_registry *reg, const char *member);
/* The internal method (KMS_SCOPE_NONE) named member, or NULL. */
const struct kms_method *kms_registry_find_internal(const struct kms_registry *reg, const char *member);
