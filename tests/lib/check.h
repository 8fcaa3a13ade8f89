#pragma once

/* PASS/FAIL lines for the in-process check programs of the integration
 * tests (backend-ops-check, tpm-backend-check): one line per check on
 * standard output, counted. Thread-safe. */

#include "kms-util.h"

void check(int ok, const char *fmt, ...) _printf_(2, 3);

/* check(r == want) with both as errno names. */
void check_rc(int r, int want, const char *what);

/* "-EINVAL" and the like for the errors the backends return. */
const char *check_err_name(int r);

unsigned check_passed(void);
unsigned check_failed(void);

/* 0 if at least one check ran and none failed, else 1: an exit status. */
int check_exit_status(void);
