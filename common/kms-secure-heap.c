/* Start-up of OpenSSL's secure heap; see kms-secure-heap.h. */
#include "kms-secure-heap.h"

#include <errno.h>

#include <openssl/crypto.h>

int kms_secure_heap_init(size_t size)
{
        int r;

        if (size < KMS_SECURE_HEAP_MIN_SIZE || size > KMS_SECURE_HEAP_MAX_SIZE || (size & (size - 1)) != 0)
                return -EINVAL;
        if (CRYPTO_secure_malloc_initialized())
                return -EALREADY;

        /* 1: arena mapped, locked and excluded from dumps; 2: mapped but
         * mlock or madvise failed; 0: not initialised at all. */
        r = CRYPTO_secure_malloc_init(size, KMS_SECURE_HEAP_MIN_BLOCK);
        if (r == 1)
                return 0;
        if (r == 2)
                return 1;
        return -ENOMEM;
}

bool kms_secure_heap_active(void)
{
        return CRYPTO_secure_malloc_initialized() == 1;
}
