/*
 * moge_config.c - the token budget from model.pt's model_config. See moge.h.
 *
 * model.pt is torch.save({'model_config': {...}, 'model': state_dict})
 * (MG:moge/model/v1.py:208-236). The config is plain Python values, which the
 * checkpoint layer drops (it keeps tensors), so data.pkl is unpickled again
 * here (common/pickle.h: restricted, nothing executed) and the dict read.
 * MoGeModel.__init__ (MG:v1.py:166-171) turns the legacy trained_area_range
 * into num_tokens_range = [lo // 196, hi // 196]; infer() then takes
 * int(lo + (9 / 9) * (hi - lo)) = hi at the default resolution_level 9
 * (MG:v1.py:338-340).
 */
#include "moge.h"

#include "ckpt.h"
#include "err.h"
#include "log.h"
#include "pickle.h"
#include "torchzip.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* dict[key] for a PK_DICT with string keys, or NULL. */
static const struct pk_value *dict_get(const struct pk_value *d, const char *key)
{
    if (!d || d->type != PK_DICT)
        return NULL;
    for (int i = 0; i + 1 < d->n; i += 2) {
        const struct pk_value *k = d->items[i];
        if (k->type == PK_STR && k->len == strlen(key) && !memcmp(k->s, key, k->len))
            return d->items[i + 1];
    }
    return NULL;
}

/* The second number of a 2-item list/tuple of ints or floats; false otherwise. */
static bool range_hi(const struct pk_value *v, double *hi)
{
    if (!v || (v->type != PK_LIST && v->type != PK_TUPLE) || v->n != 2)
        return false;
    const struct pk_value *x = v->items[1];
    if (x->type == PK_INT)
        *hi = (double)x->i;
    else if (x->type == PK_FLOAT)
        *hi = x->f;
    else
        return false;
    return true;
}

int moge_config_num_tokens(const char *path, int *num_tokens)
{
    struct ckpt c;
    struct pickle pk;
    struct stat st;
    const uint8_t *pkl;
    size_t len;
    char *file = strdup(path);
    int rc;

    memset(&pk, 0, sizeof(pk));
    ASSERT(file);
    if (stat(file, &st) != 0) {               /* "FILE:KEY": the key is not ours to read */
        char *colon = strrchr(file, ':');
        if (colon)
            *colon = '\0';
    }
    rc = ckpt_open(&c, file, 0);
    if (rc)
        goto out_free;                        /* logged by ckpt_open */
    if (c.format != CKPT_TORCHZIP) {
        rc = S3D_ENOTFOUND;                   /* safetensors: no Python config */
        goto out_close;
    }
    rc = torchzip_record(&c, "data.pkl", &pkl, &len);
    if (rc) {
        log_error("%s: %s; HINT: is this MoGe's model.pt?", file, c.err);
        goto out_close;
    }
    rc = pickle_load(&pk, pkl, len);
    if (rc) {
        log_error("%s: data.pkl: %s", file, pk.err);
        goto out_close;
    }
    const struct pk_value *cfg = dict_get(pk.root, "model_config");
    double hi;
    if (range_hi(dict_get(cfg, "num_tokens_range"), &hi)) {
        *num_tokens = (int)hi;
    } else if (range_hi(dict_get(cfg, "trained_area_range"), &hi)) {
        *num_tokens = (int)((long long)hi / 196);    /* Python int // 14 ** 2 */
    } else {
        rc = S3D_ENOTFOUND;
        goto out_pickle;
    }
    if (*num_tokens < 1) {
        log_error("%s: model_config gives a token budget of %d; HINT: the checkpoint's "
                  "model_config is broken, pass num_tokens explicitly", file, *num_tokens);
        rc = S3D_EFORMAT;
    }
out_pickle:
    pickle_free(&pk);
out_close:
    ckpt_close(&c);
out_free:
    free(file);
    return rc;
}
