/* kmsctl key enable NAME: EnableKey, the way back from key disable. */
#include "key.h"
#include "kmsctl.h"

int kmsctl_key_enable_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        return kmsctl_key_simple_main(cmd, argc, argv, "EnableKey", "Enabled key");
}
