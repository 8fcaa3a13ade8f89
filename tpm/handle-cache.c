/* The loaded child keys of the TPM backend, most recently used first. A
 * TPM holds only a few objects at once (three on swtpm and in each space
 * of the kernel's resource manager, one of them the SRK), so the list is
 * as long as the free slots and a key that falls off its end is flushed:
 * every ESYS_TR here is loaded in the TPM, and every child key loaded in
 * the TPM is here. All functions run with t->lock held. */
#include <stdlib.h>
#include <string.h>

#include "kms-log.h"
#include "tpm-internal.h"

struct kms_tpm_key *kms_tpm_lru_find(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES])
{
        struct kms_tpm_lru *l = &t->lru;

        for (struct kms_tpm_key *k = l->head; k; k = k->next) {
                if (memcmp(k->id, id, KMS_KEY_ID_BYTES) != 0)
                        continue;
                if (k != l->head) {
                        /* Unlink and put in front. */
                        k->prev->next = k->next;
                        if (k->next)
                                k->next->prev = k->prev;
                        else
                                l->tail = k->prev;
                        k->prev = NULL;
                        k->next = l->head;
                        l->head->prev = k;
                        l->head = k;
                }
                return k;
        }
        return NULL;
}

void kms_tpm_lru_push(struct kms_tpm *t, struct kms_tpm_key *k)
{
        struct kms_tpm_lru *l = &t->lru;

        k->prev = NULL;
        k->next = l->head;
        if (l->head)
                l->head->prev = k;
        else
                l->tail = k;
        l->head = k;
        l->n++;
}

static void unlink_key(struct kms_tpm_lru *l, struct kms_tpm_key *k)
{
        if (k->prev)
                k->prev->next = k->next;
        else
                l->head = k->next;
        if (k->next)
                k->next->prev = k->prev;
        else
                l->tail = k->prev;
        l->n--;
}

/* Flush k from the TPM (if flush) and free it. A flush that fails still
 * releases ESYS's record of the object; if the TPM is there the object
 * may stay loaded, so the connection is marked broken and the next call
 * reconnects (a new connection flushes what an earlier one left). */
static void release_key(struct kms_tpm *t, struct kms_tpm_key *k, bool flush)
{
        if (flush) {
                TSS2_RC rc = Esys_FlushContext(t->esys, k->handle);

                if (rc != TSS2_RC_SUCCESS) {
                        (void)kms_tpm_rc_to_errno(t, rc, "Esys_FlushContext");
                        t->broken = true;
                        (void)Esys_TR_Close(t->esys, &k->handle);
                }
        } else if (t->esys)
                (void)Esys_TR_Close(t->esys, &k->handle);
        free(k);
}

bool kms_tpm_lru_evict_tail(struct kms_tpm *t)
{
        struct kms_tpm_key *k = t->lru.tail;

        if (!k)
                return false;
        unlink_key(&t->lru, k);
        release_key(t, k, true);
        return true;
}

void kms_tpm_lru_drop(struct kms_tpm *t, const uint8_t id[KMS_KEY_ID_BYTES])
{
        for (struct kms_tpm_key *k = t->lru.head; k; k = k->next)
                if (memcmp(k->id, id, KMS_KEY_ID_BYTES) == 0) {
                        unlink_key(&t->lru, k);
                        release_key(t, k, true);
                        return;
                }
}

void kms_tpm_lru_clear(struct kms_tpm *t, bool flush)
{
        while (t->lru.head) {
                struct kms_tpm_key *k = t->lru.head;

                unlink_key(&t->lru, k);
                release_key(t, k, flush && !t->broken);
        }
}
