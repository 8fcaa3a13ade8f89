/* Random session ids as RFC 4122 v4 UUID strings; see kms-session-id.h. */
#include "kms-session-id.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <openssl/rand.h>

/* Where the dashes are in "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx". */
static bool is_dash_position(size_t i)
{
        return i == 8 || i == 13 || i == 18 || i == 23;
}

int kms_session_id_new(char ret[KMS_SESSION_ID_STRING_SIZE])
{
        static const char digits[] = "0123456789abcdef";
        uint8_t b[KMS_SESSION_ID_BYTES];
        size_t j = 0;

        ret[0] = '\0';
        if (RAND_priv_bytes(b, sizeof(b)) != 1)
                return -EIO;
        b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
        b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* variant 10 (RFC 4122) */

        for (size_t i = 0; i < KMS_SESSION_ID_STRING_SIZE - 1; i++) {
                if (is_dash_position(i)) {
                        ret[i] = '-';
                        continue;
                }
                ret[i] = digits[(j % 2 == 0) ? b[j / 2] >> 4 : b[j / 2] & 0x0f];
                j++;
        }
        ret[KMS_SESSION_ID_STRING_SIZE - 1] = '\0';
        return 0;
}

static int lower_hex_value(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

int kms_session_id_parse(const char *s, uint8_t ret_bytes[KMS_SESSION_ID_BYTES])
{
        uint8_t b[KMS_SESSION_ID_BYTES] = {0};
        size_t j = 0;

        if (!s || strnlen(s, KMS_SESSION_ID_STRING_SIZE) != KMS_SESSION_ID_STRING_SIZE - 1)
                return -EINVAL;
        for (size_t i = 0; i < KMS_SESSION_ID_STRING_SIZE - 1; i++) {
                int v;

                if (is_dash_position(i)) {
                        if (s[i] != '-')
                                return -EINVAL;
                        continue;
                }
                v = lower_hex_value(s[i]);
                if (v < 0)
                        return -EINVAL;
                b[j / 2] = (uint8_t)(b[j / 2] | (j % 2 == 0 ? v << 4 : v));
                j++;
        }
        if ((b[6] >> 4) != 4 || (b[8] & 0xc0) != 0x80)
                return -EINVAL;
        if (ret_bytes)
                memcpy(ret_bytes, b, sizeof(b));
        return 0;
}
