/* See kms-ini.h. */
#include "kms-ini.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static void setup_inih(void)
{
        /* Debian's libinih exposes its options at run time. Allow "#"
         * comments after values as the docs show, and stop at the first
         * error so the message and line agree. */
        static char prefixes[] = ";#";
        ini_inline_comment_prefixes = prefixes;
        ini_allow_inline_comments = true;
        ini_stop_on_first_error = true;
        ini_allow_multiline = false;
}

static char *read_line(char *buf, int size, void *stream)
{
        struct kms_ini_source *src = stream;
        size_t n;
        const char *p;

        if (src->f) {
                if (!fgets(buf, size, src->f))
                        return NULL;
                n = strlen(buf);
        } else {
                if (!*src->text)
                        return NULL;
                n = strcspn(src->text, "\n");
                if (src->text[n] == '\n')
                        n++;
                if (n > (size_t)size - 1)
                        n = (size_t)size - 1;
                memcpy(buf, src->text, n);
                buf[n] = '\0';
                src->text += n;
        }
        src->line++;
        /* A line inih's buffer cannot hold would come back in pieces. */
        if (n == (size_t)size - 1 && buf[n - 1] != '\n' && !(src->f && feof(src->f))) {
                snprintf(src->msg, src->msglen, "line too long (at most %d characters)", size - 2);
                src->bad_line = src->line;
                return NULL;
        }
        p = buf + strspn(buf, " \t");
        if (*p == '[' && src->on_section) {
                size_t len = strcspn(p + 1, "]");

                if (p[1 + len] == ']' &&
                    src->on_section(src->userdata, p + 1, len, src->line, src->msg, src->msglen) < 0) {
                        if (src->bad_line == 0) /* on_section may name an earlier line */
                                src->bad_line = src->line;
                        return NULL; /* stop here; kms_ini_parse() reports it */
                }
        }
        return buf;
}

int kms_ini_parse(struct kms_ini_source *src, ini_handler handler, void *user)
{
        int line;

        setup_inih();
        src->line = 0;
        src->bad_line = 0;
        line = ini_parse_stream(read_line, src, handler, user);
        if (line == 0 && src->bad_line > 0)
                line = src->bad_line;
        return line;
}
