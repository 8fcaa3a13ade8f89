/* p11-probe: an independent look at the private key objects in a PKCS#11
 * token, for tests/integration/token-attrs.sh. pkcs11-tool prints neither
 * CKA_PRIVATE nor CKA_TOKEN and reports success on `--read-object --type
 * privkey` without reading anything, so this small tool asks the module
 * directly. It shares no code with kmsd: only the PKCS#11 header of p11-kit.
 *
 * usage: p11-probe MODULE TOKEN_LABEL PIN_FILE [LABEL]
 *
 * Prints one line per private key object (only those labelled LABEL if
 * given):
 *   label=L id=HEX token=1 private=1 sensitive=1 extractable=0
 *   always_sensitive=1 never_extractable=1 value=CKR_ATTRIBUTE_SENSITIVE
 * where value= is what C_GetAttributeValue answers for the secret part
 * (CKA_VALUE for EC, CKA_PRIVATE_EXPONENT for RSA): "readable" if the
 * token handed it out. Exit 0 on success, 1 on any PKCS#11 failure. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

static const char *rv_name(CK_RV rv)
{
        switch (rv) {
        case CKR_OK: return "CKR_OK";
        case CKR_ATTRIBUTE_SENSITIVE: return "CKR_ATTRIBUTE_SENSITIVE";
        case CKR_ATTRIBUTE_TYPE_INVALID: return "CKR_ATTRIBUTE_TYPE_INVALID";
        case CKR_PIN_INCORRECT: return "CKR_PIN_INCORRECT";
        case CKR_TOKEN_NOT_PRESENT: return "CKR_TOKEN_NOT_PRESENT";
        default: return "CKR_other";
        }
}

static int read_pin(const char *path, char *buf, size_t size)
{
        FILE *f = fopen(path, "re");
        size_t n;

        if (!f)
                return -1;
        n = fread(buf, 1, size - 1, f);
        fclose(f);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                n--;
        buf[n] = '\0';
        return n > 0 ? 0 : -1;
}

static int bool_attr(CK_FUNCTION_LIST_PTR p, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t)
{
        CK_BBOOL v = CK_FALSE;
        CK_ATTRIBUTE a = { t, &v, sizeof(v) };

        if (p->C_GetAttributeValue(s, o, &a, 1) != CKR_OK)
                return -1;
        return v == CK_TRUE;
}

static void probe_object(CK_FUNCTION_LIST_PTR p, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, const char *want)
{
        unsigned char label[256] = { 0 }, id[128] = { 0 }, secret[2048];
        CK_KEY_TYPE kt = 0;
        CK_ATTRIBUTE a[] = {
                { CKA_LABEL, label, sizeof(label) - 1 },
                { CKA_ID, id, sizeof(id) },
                { CKA_KEY_TYPE, &kt, sizeof(kt) },
        };
        CK_ATTRIBUTE sec = { kt == CKK_RSA ? CKA_PRIVATE_EXPONENT : CKA_VALUE, secret, sizeof(secret) };
        CK_RV rv;

        if (p->C_GetAttributeValue(s, o, a, 3) != CKR_OK)
                return;
        label[a[0].ulValueLen < sizeof(label) ? a[0].ulValueLen : sizeof(label) - 1] = '\0';
        if (want && strcmp((char *)label, want) != 0)
                return;
        sec.type = kt == CKK_RSA ? CKA_PRIVATE_EXPONENT : CKA_VALUE;
        rv = p->C_GetAttributeValue(s, o, &sec, 1);

        printf("label=%s id=", (char *)label);
        for (CK_ULONG i = 0; i < a[1].ulValueLen && i < sizeof(id); i++)
                printf("%02x", id[i]);
        printf(" keytype=%s token=%d private=%d sensitive=%d extractable=%d always_sensitive=%d"
               " never_extractable=%d value=%s\n",
               kt == CKK_RSA ? "rsa" : kt == CKK_EC ? "ec" : "other", bool_attr(p, s, o, CKA_TOKEN),
               bool_attr(p, s, o, CKA_PRIVATE), bool_attr(p, s, o, CKA_SENSITIVE),
               bool_attr(p, s, o, CKA_EXTRACTABLE), bool_attr(p, s, o, CKA_ALWAYS_SENSITIVE),
               bool_attr(p, s, o, CKA_NEVER_EXTRACTABLE), rv == CKR_OK ? "readable" : rv_name(rv));
        explicit_bzero(secret, sizeof(secret));
}

int main(int argc, char **argv)
{
        CK_C_GetFunctionList get_list;
        CK_FUNCTION_LIST_PTR p = NULL;
        CK_SLOT_ID slots[64];
        CK_ULONG nslots = 64;
        CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_ATTRIBUTE tmpl = { CKA_CLASS, &cls, sizeof(cls) };
        CK_OBJECT_HANDLE objs[256];
        CK_ULONG nobjs = 0;
        char pin[256];
        void *h;
        CK_RV rv;
        int ret = 1;

        if (argc < 4 || argc > 5) {
                fprintf(stderr, "usage: p11-probe MODULE TOKEN_LABEL PIN_FILE [LABEL]\n");
                return 2;
        }
        if (read_pin(argv[3], pin, sizeof(pin)) < 0) {
                fprintf(stderr, "p11-probe: cannot read PIN from %s\n", argv[3]);
                return 1;
        }
        h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
                fprintf(stderr, "p11-probe: %s\n", dlerror());
                return 1;
        }
        get_list = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
        if (!get_list || get_list(&p) != CKR_OK || p->C_Initialize(NULL) != CKR_OK) {
                fprintf(stderr, "p11-probe: cannot initialize %s\n", argv[1]);
                return 1;
        }
        rv = p->C_GetSlotList(CK_TRUE, slots, &nslots);
        if (rv != CKR_OK)
                goto out;
        for (CK_ULONG i = 0; i < nslots && s == CK_INVALID_HANDLE; i++) {
                CK_TOKEN_INFO ti;
                char label[33];
                size_t n = sizeof(ti.label);

                if (p->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
                        continue;
                memcpy(label, ti.label, n);
                while (n > 0 && label[n - 1] == ' ')
                        n--;
                label[n] = '\0';
                if (strcmp(label, argv[2]) == 0 &&
                    p->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
                        s = CK_INVALID_HANDLE;
        }
        if (s == CK_INVALID_HANDLE) {
                fprintf(stderr, "p11-probe: no token labelled '%s'\n", argv[2]);
                goto out;
        }
        rv = p->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
        explicit_bzero(pin, sizeof(pin));
        if (rv != CKR_OK) {
                fprintf(stderr, "p11-probe: C_Login: %s\n", rv_name(rv));
                goto out;
        }
        if (p->C_FindObjectsInit(s, &tmpl, 1) != CKR_OK || p->C_FindObjects(s, objs, 256, &nobjs) != CKR_OK) {
                fprintf(stderr, "p11-probe: C_FindObjects failed\n");
                goto out;
        }
        p->C_FindObjectsFinal(s);
        for (CK_ULONG i = 0; i < nobjs; i++)
                probe_object(p, s, objs[i], argc == 5 ? argv[4] : NULL);
        ret = 0;
out:
        if (s != CK_INVALID_HANDLE) {
                p->C_Logout(s);
                p->C_CloseSession(s);
        }
        p->C_Finalize(NULL);
        return ret;
}
