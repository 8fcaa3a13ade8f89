/* kmsctl session open-envelope ID --in FILE|- --out FILE [--aad TEXT]:
 * OpenEnvelope. The plaintext goes to a 0600 file and is wiped here. */
#include "session.h"

int kmsctl_session_open_envelope_main(const struct kmsctl_command *cmd, int argc, char **argv)
{
        return kmsctl_session_transfer_main(cmd, argc, argv, false);
}
