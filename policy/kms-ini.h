/* libinih with line numbers we can trust: a line source for
 * ini_parse_stream() that counts lines, tells the caller about each
 * [section] line as it is read (inih itself only reports a section at its
 * first key, and never an empty one), and refuses lines longer than inih's
 * buffer instead of letting inih split them. Used by kmsd.conf and the
 * policy files. */
#pragma once

#include <stdio.h>

#include <ini.h>

struct kms_ini_source {
        FILE *f;          /* read from f, or else */
        const char *text; /* from text */
        int line;         /* the line being parsed, 1-based */
        int bad_line;     /* where on_section or a long line stopped the parse */
        char *msg;        /* the reason, for the caller's message */
        size_t msglen;
        /* Called for each "[name]" line; returns 0, or -1 after writing
         * msg to stop the parse at this line. */
        int (*on_section)(void *userdata, const char *name, size_t len, int line, char *msg, size_t msglen);
        void *userdata;
};

/* Parse src with handler. Returns 0, the line of the first error (the
 * handler returned 0, a syntax error, or on_section refused), -1 if the
 * file cannot be read, -2 when out of memory. The handler may read
 * src->line for the current line number. */
int kms_ini_parse(struct kms_ini_source *src, ini_handler handler, void *user);
