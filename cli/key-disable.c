/* kmsctl key disable NAME: DisableKey. Reversible with key enable; while
 * disabled the key refuses sign, derive and decrypt, and still verifies. */
#include "key.h"
#include "kmsctl.h"

int kmsctl_key_disable_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        return kmsctl_key_simple_main(cmd, argc, argv, "DisableKey", "Disabled key");
}
