/* Per-key locks: what makes "once RevokeKey has replied, no reply carrying
 * a revoked version leaves kmsd" hold. An operation that uses a version
 * (Sign, Derive, Decrypt, AttestKey, OpenSession, Seal, OpenEnvelope)
 * holds its key's lock shared from before it reads the key's state until
 * its reply is queued for sending; a change of the key (rotate, revoke,
 * disable, enable, destroy, settings) holds it exclusive from before it
 * reads the state until its reply is queued. Replies leave in the order
 * they are queued (the audit writer), so a use that passed its check
 * before a revocation is answered before the revocation is.
 *
 * The locks are a fixed set of stripes chosen by a hash of the key name:
 * no allocation, no table to grow; two keys that share a stripe only wait
 * for each other. Writers are preferred, so a stream of signatures cannot
 * hold off a revocation. A request holds at most one stripe, so requests
 * cannot deadlock on them. */
#include <string.h>

#include "daemon.h"

static unsigned stripe(const char *name)
{
        uint32_t h = 2166136261u; /* FNV-1a */

        for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
                h ^= *p;
                h *= 16777619u;
        }
        return h % KMS_KEY_LOCK_STRIPES;
}

void kms_key_locks_init(struct kms_key_locks *l)
{
        pthread_rwlockattr_t attr;

        pthread_rwlockattr_init(&attr);
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        for (unsigned i = 0; i < KMS_KEY_LOCK_STRIPES; i++)
                pthread_rwlock_init(&l->stripes[i], &attr);
        pthread_rwlockattr_destroy(&attr);
}

void kms_key_locks_free(struct kms_key_locks *l)
{
        for (unsigned i = 0; i < KMS_KEY_LOCK_STRIPES; i++)
                pthread_rwlock_destroy(&l->stripes[i]);
}

int kms_key_lock(struct kms_daemon *d, struct kms_request *req, const char *name, bool exclusive)
{
        unsigned s = stripe(name);

        if (req->key_locked) {
                /* Held already (a change that calls another): enough if it
                 * is the same stripe in a mode at least as strong. */
                if (req->key_lock == s && (req->key_lock_exclusive || !exclusive))
                        return 0;
                return -EDEADLK;
        }
        if (exclusive)
                pthread_rwlock_wrlock(&d->key_locks.stripes[s]);
        else
                pthread_rwlock_rdlock(&d->key_locks.stripes[s]);
        req->key_lock = s;
        req->key_locked = true;
        req->key_lock_exclusive = exclusive;
        return 0;
}

void kms_key_unlock(struct kms_daemon *d, struct kms_request *req)
{
        if (!req->key_locked)
                return;
        pthread_rwlock_unlock(&d->key_locks.stripes[req->key_lock]);
        req->key_locked = false;
}
