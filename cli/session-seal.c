/* kmsctl session seal ID --in FILE|- --out FILE|- [--aad TEXT]: Seal.
 * The plaintext read is wiped after it is sent; the envelope (not secret)
 * is written with mode 0644. */
#include "session.h"

int kmsctl_session_seal_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        return kmsctl_session_transfer_main(cmd, argc, argv, true);
}
