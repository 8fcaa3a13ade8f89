/* kmsctl key cancel-destroy NAME: CancelDestroy, undoing a destruction
 * scheduled with key destroy --after. */
#include "key.h"
#include "kmsctl.h"

int kmsctl_key_cancel_destroy_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        return kmsctl_key_simple_main(cmd, argc, argv, "CancelDestroy", "Cancelled the scheduled destruction of key");
}
