/* kmsd: command line, start-up and shutdown. The only file that sees both
 * the core and the API: it hands the API's method table to the registry
 * and wires the core's parts to each other. The work happens in bus.c
 * (bus thread), pool.c (workers) and api/ (the handlers);
 * docs/architecture.md has the map. */
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "api/api.h"
#include "daemon.h"
#include "kms-secure-heap.h"
#ifdef KMS_HAVE_TPM
#include "kms-tpm.h"
#endif
#include "kms-log.h"
#include "kms-pkcs11.h"
#include "lifecycle.h"
#include "notify.h"

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: kmsd [OPTIONS]\n"
                "Key-management daemon: keys in a PKCS#11 token, operations over D-Bus.\n\n"
                "  -c, --config FILE       configuration file (default " KMS_DEFAULT_CONFIG_FILE ")\n"
                "      --bus BUS           system, session or a D-Bus address (overrides [daemon] bus)\n"
                "      --bus-address ADDR  a D-Bus address (same as --bus ADDR)\n"
                "      --log-level LEVEL   debug, info, notice, warning, err\n"
                "      --log-target T      stderr or syslog\n"
                "      --check-config      parse the configuration, print it and exit\n"
                "  -h, --help              this text\n"
                "      --version           print the version\n");
}

/* Lock down the process before any secret is in memory. */
static void harden(void)
{
        struct rlimit rl = { 0, 0 };

        (void)setrlimit(RLIMIT_CORE, &rl);
        (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        umask(0077);
}

/* state_dir holds the database (keys' metadata, the audit log): kmsd's
 * alone. Made 0700 if missing; an existing one must belong to kmsd's uid
 * and be closed to group and others, else kmsd does not start (errbuf
 * says why and how to fix it). */
static int make_state_dir(const char *dir, char *errbuf, size_t errlen)
{
        struct stat st;
        int fd, r;

        if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
                r = -errno;
                snprintf(errbuf, errlen, "cannot create state_dir %s: %s", dir, strerror(-r));
                return r;
        }
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
                r = -errno;
                snprintf(errbuf, errlen, "cannot use state_dir %s: %s", dir, strerror(-r));
                if (fd >= 0)
                        close(fd);
                return r;
        }
        close(fd);
        if (st.st_uid != getuid()) {
                snprintf(errbuf, errlen, "state_dir %s is owned by uid %u, not by kmsd's uid %u (chown it)", dir,
                         (unsigned)st.st_uid, (unsigned)getuid());
                return -EPERM;
        }
        if ((st.st_mode & 0777) != 0700) {
                snprintf(errbuf, errlen, "state_dir %s has mode %04o; it must be 0700 (chmod 700 %s)", dir,
                         (unsigned)(st.st_mode & 07777), dir);
                return -EPERM;
        }
        return 0;
}

static void print_config(const struct kms_config *c)
{
        char rights[256];

        printf("[daemon]\nbus = %s\nstate_dir = %s\nworkers = %u\nlog_level = %d\nlog_target = %s\n"
               "[limits]\nmax_message_bytes = %llu\nmax_pending = %u\nmax_keys = %u\nmin_rotate_every = %llu\n"
               "max_versions_kept = %u\n"
               "[pkcs11]\nmodule = %s\n%s = %s\npin_file = %s\n",
               c->bus, c->state_dir, c->workers, c->log_level, c->log_target == KMS_LOG_SYSLOG ? "syslog" : "stderr",
               (unsigned long long)c->max_message_bytes, c->max_pending, c->max_keys,
               (unsigned long long)c->min_rotate_every, c->max_versions_kept, c->pkcs11_module,
               c->token_serial ? "token_serial" : "token_label", c->token_serial ? c->token_serial : c->token_label,
               c->pin_file ? c->pin_file : "(systemd credential 'pin')");
        kms_operations_format(c->owner_rights, rights, sizeof(rights));
        printf("[policy]\ndir = %s\nadmin_group = %s\nowner_rights = %s\n", c->policy_dir, c->admin_group, rights);
        printf("[tpm]\nenable = %s\ntcti = %s\nowner_auth_file = %s\n", c->tpm_enable ? "yes" : "no", c->tpm_tcti,
               c->tpm_owner_auth_file ? c->tpm_owner_auth_file : "(systemd credential 'tpm-owner-auth', or empty)");
}

int main(int argc, char **argv)
{
        enum { OPT_BUS = 256, OPT_BUS_ADDRESS, OPT_LOG_LEVEL, OPT_LOG_TARGET, OPT_CHECK, OPT_VERSION };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "bus", required_argument, NULL, OPT_BUS },
                { "bus-address", required_argument, NULL, OPT_BUS_ADDRESS },
                { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
                { "log-target", required_argument, NULL, OPT_LOG_TARGET },
                { "check-config", no_argument, NULL, OPT_CHECK },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, OPT_VERSION },
                {},
        };
        static struct kms_daemon daemon_state;
        bool sessions_ready = false;
        char *tpm_cred = NULL;
        struct kms_daemon *d = &daemon_state;
        const char *config_file = KMS_DEFAULT_CONFIG_FILE, *bus = NULL, *log_target = NULL;
        _cleanup_(freep) char *cred_pin = NULL;
        int log_level = -1, c, r, ret = 1;
        bool check_only = false;
        char err[1024] = "";
        sigset_t mask;

        harden();
        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0) {
                switch (c) {
                case 'c': config_file = optarg; break;
                case OPT_BUS:
                case OPT_BUS_ADDRESS: bus = optarg; break;
                case OPT_LOG_LEVEL:
                        log_level = kms_log_level_from_string(optarg);
                        if (log_level < 0) {
                                fprintf(stderr, "kmsd: unknown log level '%s'\n", optarg);
                                return 2;
                        }
                        break;
                case OPT_LOG_TARGET:
                        if (strcmp(optarg, "stderr") != 0 && strcmp(optarg, "syslog") != 0) {
                                fprintf(stderr, "kmsd: log target '%s' is not stderr or syslog\n", optarg);
                                return 2;
                        }
                        log_target = optarg;
                        break;
                case OPT_CHECK: check_only = true; break;
                case 'h': usage(stdout); return 0;
                case OPT_VERSION: printf("kmsd %s\n", KMS_VERSION); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "kmsd: unexpected argument '%s'\n", argv[optind]);
                return 2;
        }

        if (kms_config_init(&d->cfg) < 0) {
                fprintf(stderr, "kmsd: out of memory\n");
                return 1;
        }
        r = kms_config_load(&d->cfg, config_file, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "kmsd: %s\n", err);
                goto out;
        }
        if (bus) {
                free(d->cfg.bus);
                d->cfg.bus = strdup(bus);
        }
        if (log_level >= 0)
                d->cfg.log_level = log_level;
        if (log_target)
                d->cfg.log_target = strcmp(log_target, "syslog") == 0 ? KMS_LOG_SYSLOG : KMS_LOG_STDERR;
        if (!d->cfg.tpm_owner_auth_file) {
                const char *creds = secure_getenv("CREDENTIALS_DIRECTORY");
                if (creds && asprintf(&tpm_cred, "%s/tpm-owner-auth", creds) < 0)
                        tpm_cred = NULL;
                else if (tpm_cred && access(tpm_cred, F_OK) != 0) {
                        free(tpm_cred);
                        tpm_cred = NULL;
                }
        }
        if (!d->cfg.pin_file) {
                const char *creds = secure_getenv("CREDENTIALS_DIRECTORY");
                /* asprintf() leaves the pointer undefined on failure. */
                if (creds && asprintf(&cred_pin, "%s/pin", creds) < 0) {
                        cred_pin = NULL;
                        fprintf(stderr, "kmsd: out of memory\n");
                        goto out;
                }
                if (cred_pin && !(d->cfg.pin_file = strdup(cred_pin))) {
                        fprintf(stderr, "kmsd: out of memory\n");
                        goto out;
                }
        }
        if (check_only) {
                /* The policy files too: a broken one would stop kmsd. */
                r = kms_access_init(d, err, sizeof(err));
                if (r < 0) {
                        fprintf(stderr, "kmsd: %s\n", err);
                        goto out;
                }
                print_config(&d->cfg);
                printf("# policy: %zu rule(s)\n", kms_policy_n_rules(d->policy));
                ret = 0;
                goto out;
        }
        kms_log_setup(d->cfg.log_target, d->cfg.log_level, "kmsd");
        r = kms_access_init(d, err, sizeof(err));
        if (r < 0) {
                log_error("%s", err);
                goto out;
        }
        if (!d->cfg.pin_file) {
                log_error("no pin_file in [pkcs11] and no systemd credential 'pin' ($CREDENTIALS_DIRECTORY)");
                goto out;
        }

        /* Signals arrive through a signalfd on the bus thread; block them
         * before any thread starts so no worker takes them. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        sigdelset(&mask, SIGPIPE);
        d->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        d->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (d->signal_fd < 0 || d->wake_fd < 0) {
                log_error("cannot create signalfd/eventfd: %s", strerror(errno));
                goto out;
        }
#ifdef KMS_HAVE_TPM
        /* tpm2-tss prints every TPM error on stderr; kmsd translates them
         * and logs the decoded text at debug level itself. */
        if (d->cfg.log_level < LOG_DEBUG)
                setenv("TSS2_LOG", "all+NONE", 0);
#endif
        /* Session keys live in OpenSSL's secure heap: locked in memory,
         * out of core dumps. Before any thread starts. */
        r = kms_secure_heap_init(KMS_SESSION_SECURE_HEAP_BYTES);
        if (r == 1)
                log_warning("the secure heap for session keys could not be locked in memory (RLIMIT_MEMLOCK "
                            "below %u bytes?): session keys may be swapped",
                            KMS_SESSION_SECURE_HEAP_BYTES);
        else if (r < 0) {
                log_error("cannot set up the secure heap for session keys: %s", strerror(-r));
                goto out;
        }
        kms_sessions_init(&d->sessions);
        sessions_ready = true;
        /* The method table, from the API's domain files; a member declared
         * twice stops kmsd here. */
        r = kms_api_register(&d->registry, err, sizeof(err));
        if (r < 0) {
                log_error("the method table is broken: %s", err);
                goto out;
        }
        pthread_mutex_init(&d->watch_lock, NULL);
        kms_usage_init(&d->usage);
        kms_key_cache_init(&d->key_cache);
        kms_key_locks_init(&d->key_locks);
        d->started_ms = kms_now_mono_ms();
        if (!dbus_threads_init_default()) {
                log_error("cannot initialize libdbus threads");
                goto out;
        }

        r = make_state_dir(d->cfg.state_dir, err, sizeof(err));
        if (r < 0) {
                log_error("%s", err);
                goto out;
        }
        if (asprintf(&d->db_path, "%s/%s", d->cfg.state_dir, KMS_STORE_FILE) < 0) {
                d->db_path = NULL;
                goto out;
        }
        {
                /* Create or migrate the schema once, before the workers. */
                struct kms_store *s = NULL;
                r = kms_store_open(d->db_path, &s);
                if (r < 0) {
                        log_error("cannot open the database %s: %s", d->db_path, kms_store_strerror(r));
                        goto out;
                }
                /* A table that cannot be read would make reconciliation
                 * and every key operation fail: refuse to start instead. */
                r = kms_store_check(s, err, sizeof(err));
                kms_store_close(s);
                if (r < 0) {
                        log_error("refusing to start: %s: %s", d->db_path, err);
                        goto out;
                }
        }
        /* The bus thread's own connection, for key owners (access.c). */
        r = kms_store_open(d->db_path, &d->bus_store);
        if (r < 0) {
                log_error("cannot open the database %s: %s", d->db_path, kms_store_strerror(r));
                goto out;
        }
        /* The audit log, before anything worth recording can happen. */
        r = kms_audit_start(d, err, sizeof(err));
        if (r < 0) {
                log_error("%s", err);
                goto out;
        }

        {
                struct kms_pkcs11_config pc = {
                        .module = d->cfg.pkcs11_module,
                        .token_label = d->cfg.token_label,
                        .token_serial = d->cfg.token_serial,
                        .pin_file = d->cfg.pin_file,
                };
                r = kms_pkcs11_open(&pc, &d->backends[0], err, sizeof(err));
                if (r < 0) {
                        const struct kms_audit_event ev = {
                                .kind = "login_failed",
                                .uid = getuid(),
                                .pid = getpid(),
                                .exe = "kmsd",
                                .operation = "TokenLogin",
                                .result = kms_audit_result_name(r),
                                .details = err,
                        };

                        log_error("%s", err);
                        (void)kms_audit_log(d, &ev, true);
                        goto out;
                }
                d->n_backends = 1;
        }
        r = kms_audit_set_key(d, err, sizeof(err));
        if (r < 0) {
                log_error("%s", err);
                goto out;
        }
        if (d->cfg.tpm_enable) {
#ifdef KMS_HAVE_TPM
                struct kms_tpm_config tc = {
                        .tcti = d->cfg.tpm_tcti,
                        .owner_auth_file = d->cfg.tpm_owner_auth_file ? d->cfg.tpm_owner_auth_file : tpm_cred,
                        .db_path = d->db_path,
                        /* PKCS#11 keys are served without it; TPM keys
                         * work again once it is back. */
                        .allow_unreachable = true,
                };
                err[0] = '\0';
                r = kms_tpm_open(&tc, &d->backends[d->n_backends], err, sizeof(err));
                if (r < 0) {
                        log_error("TPM (%s): %s", d->cfg.tpm_tcti, err);
                        goto out;
                }
                d->n_backends++;
                if (err[0])
                        log_warning("TPM (%s) unreachable: %s; TPM keys fail until it is back", d->cfg.tpm_tcti, err);
                else
                        log_info("TPM backend on %s", d->cfg.tpm_tcti);
#else
                log_error("[tpm] enable = yes, but this kmsd was built without TPM support (libtss2-dev)");
                goto out;
#endif
        }
        /* Before any request: finish what a crash interrupted. */
        kms_lifecycle_reconcile(d);

        r = kms_pool_start(d, d->cfg.workers, kms_scheduler_poke);
        if (r < 0)
                goto out;
        r = kms_bus_open(d, err, sizeof(err));
        if (r < 0) {
                log_error("%s", err);
                kms_pool_stop(&d->pool);
                goto out;
        }
        /* After the bus: its work emits signals. Rotations that fell due
         * while kmsd was stopped are queued now. */
        r = kms_scheduler_start(d);
        if (r < 0) {
                log_error("cannot start the scheduler: %s", strerror(-r));
                kms_bus_close(d);
                kms_pool_stop(&d->pool);
                goto out;
        }
        log_info("kmsd %s ready on the %s bus as %s (token '%s', %u workers)", KMS_VERSION, d->cfg.bus,
                 "org.kmsd.KeyManager1", d->cfg.token_label ? d->cfg.token_label : d->cfg.token_serial,
                 d->cfg.workers);

        (void)kms_notify_ready();

        r = kms_bus_run(d);
        (void)kms_notify_stopping();
        atomic_store(&d->stopping, true);
        /* Requests already queued are answered; new ones get ShuttingDown. */
        kms_scheduler_stop(d);
        kms_pool_stop(&d->pool);
        /* The writer answers the last requests once their records are
         * written and adds the last checkpoint; the bus flushes after. */
        kms_audit_stop(d);
        kms_bus_close(d);
        ret = r < 0 ? 1 : 0;
        log_info("kmsd stopped");
out:
        kms_audit_stop(d); /* a no-op when stopped above or never started */
        for (unsigned b = 0; b < KMS_MAX_BACKENDS; b++)
                if (d->backends[b])
                        d->backends[b]->ops->free(d->backends[b]);
        kms_caller_cache_free(d);
        if (sessions_ready)
                kms_sessions_free(&d->sessions);
        if (d->policy)
                kms_access_free(d);
        kms_usage_free(&d->usage);
        kms_key_cache_free(&d->key_cache);
        kms_key_locks_free(&d->key_locks);
        free(d->db_path);
        kms_config_free(&d->cfg);
        free(tpm_cred);
        if (d->signal_fd > 0)
                close(d->signal_fd);
        if (d->wake_fd > 0)
                close(d->wake_fd);
        return ret;
}
