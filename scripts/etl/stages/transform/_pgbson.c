/*
 * etl._pgbson: PostgreSQL binary COPY rows -> BSON documents, in C.
 *
 * The transform's fast path (scripts/etl/fastpath.py). Python streams the output of
 * `COPY (SELECT ...) TO STDOUT (FORMAT binary)` through `encode()` a block at a time; each
 * complete tuple becomes one BSON document, built from a list of operations the Python side
 * derives from the mapping (one per document field). Only plain conversions live here; any
 * value that needs a policy (an infinite or out-of-range timestamp, a numeric wider than
 * Decimal128, a JSON key with `.` or a leading `$`, a JSON integer wider than 64 bits, ...)
 * makes the whole row "flagged": it is left out and its (tableoid, ctid) returned, and Python
 * transforms those rows again through the general path, which knows every policy. Flagging is
 * therefore always safe; it only costs time.
 *
 * The documents are byte-for-byte those of the general path (tests/test_fastpath.py compares
 * them): same field order, same BSON types, same rules for JSON numbers as libbson's JSON
 * reader (integers are int32 when they fit, else int64; anything with '.', 'e' or 'E' is a
 * double).
 *
 * Wire formats read (PostgreSQL's *send functions): int8, float8, numeric, bool, text,
 * date, timestamp[tz], uuid, bytea, jsonb (version byte + text), and one-type arrays of
 * text, int8 and bool.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    K_INT = 1,      /* int8 column; int32 when it fits, else int64 (a JSON number's rule) */
    K_LONG,         /* int8 column; always int64 */
    K_DOUBLE,       /* float8 */
    K_DECIMAL,      /* numeric -> Decimal128 */
    K_BOOL,         /* bool */
    K_STRING,       /* text */
    K_DATE_DAYS,    /* date -> UTC datetime */
    K_DATE_TS,      /* timestamp / timestamptz -> UTC datetime */
    K_UUID_STRING,  /* uuid -> "xxxxxxxx-xxxx-..." */
    K_UUID_BINARY,  /* uuid -> binary subtype 4 */
    K_BYTES,        /* bytea -> binary subtype 0 */
    K_JSONB,        /* jsonb -> document / array / scalar */
    K_ARRAY_STRING, /* text[] (any dimensions) */
    K_ARRAY_INT,    /* int8[]; elements int32 when they fit */
    K_ARRAY_BOOL,   /* bool[] */
    K_DOC_BEGIN,    /* opens an embedded document (a composite _id) */
    K_DOC_END,
    K_DECIMAL_34,   /* numeric -> Decimal128, flagged when its text is longer than 34 characters */
};

/* Counters returned to Python (the general path's names, see transform.py). */
enum { C_NUMERIC_NAN, C_NUMERIC_INF, C_DOUBLE_NAN, C_DOUBLE_INF, C_COUNT };

#define FLAG 1      /* the row needs the general path */
#define BAD (-1)    /* the stream is malformed: an exception is set */

#define MAX_DEPTH 90

/* 2000-01-01 (PostgreSQL's epoch) in milliseconds since 1970-01-01. */
#define PG_EPOCH_MS INT64_C(946684800000)
#define MIN_DAYS (-730119)   /* 0001-01-01 */
#define MAX_DAYS 2921939     /* 9999-12-31 */
#define US_PER_DAY INT64_C(86400000000)

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + extra)
        cap *= 2;
    char *d = PyMem_Realloc(b->data, (size_t)cap);
    if (!d) {
        PyErr_NoMemory();
        return BAD;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

static inline int put(Buf *b, const void *p, Py_ssize_t n) {
    if (buf_reserve(b, n))
        return BAD;
    memcpy(b->data + b->len, p, (size_t)n);
    b->len += n;
    return 0;
}

static inline int put_byte(Buf *b, unsigned char c) { return put(b, &c, 1); }

static inline int put_i32(Buf *b, int32_t v) {
    unsigned char s[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return put(b, s, 4);
}

static inline int put_i64(Buf *b, int64_t v) {
    unsigned char s[8];
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        s[i] = (unsigned char)(u >> (8 * i));
    return put(b, s, 8);
}

static inline void patch_i32(Buf *b, Py_ssize_t at, int32_t v) {
    unsigned char *s = (unsigned char *)b->data + at;
    s[0] = (unsigned char)v;
    s[1] = (unsigned char)(v >> 8);
    s[2] = (unsigned char)(v >> 16);
    s[3] = (unsigned char)(v >> 24);
}

/* An element header: type byte and key (a C string). */
static inline int put_head(Buf *b, unsigned char type, const char *key, Py_ssize_t klen) {
    if (buf_reserve(b, klen + 2))
        return BAD;
    b->data[b->len++] = (char)type;
    memcpy(b->data + b->len, key, (size_t)klen);
    b->len += klen;
    b->data[b->len++] = 0;
    return 0;
}

static inline int put_string(Buf *b, const char *s, Py_ssize_t n) {
    if (n > INT32_MAX - 1)
        return FLAG;
    if (put_i32(b, (int32_t)(n + 1)) || put(b, s, n) || put_byte(b, 0))
        return BAD;
    return 0;
}

/* Big-endian readers for the wire formats. */
static inline int16_t rd16(const unsigned char *p) { return (int16_t)((p[0] << 8) | p[1]); }
static inline int32_t rd32(const unsigned char *p) {
    return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
}
static inline int64_t rd64(const unsigned char *p) {
    return (int64_t)(((uint64_t)(uint32_t)rd32(p) << 32) | (uint32_t)rd32(p + 4));
}

/* Array keys "0", "1", ... */
static int index_key(char *out, Py_ssize_t i) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + i % 10);
        i /= 10;
    } while (i);
    for (int k = 0; k < n; k++)
        out[k] = tmp[n - 1 - k];
    out[n] = 0;
    return n;
}

static int malformed(const char *what) {
    PyErr_Format(PyExc_ValueError, "binary COPY stream: malformed %s", what);
    return BAD;
}

/* ------------------------------------------------------------------------------------------ */
/* numeric -> Decimal128 */

typedef unsigned __int128 u128;

static u128 POW10[39];

/* The length of numeric_out's text of a finite value: sign, integer digits, point, scale. */
static int numeric_text_length(int ndigits, int weight, uint16_t sign, uint16_t dscale, const unsigned char *p) {
    int n = sign == 0x4000 ? 1 : 0;
    if (weight < 0 || ndigits == 0) {
        n += 1;
    } else {
        int first = rd16(p + 8);
        n += 4 * weight + (first >= 1000 ? 4 : first >= 100 ? 3 : first >= 10 ? 2 : 1);
    }
    return n + (dscale ? 1 + dscale : 0);
}

static int put_decimal(Buf *b, const unsigned char *p, int32_t len, int64_t *counters, int check_length) {
    if (len < 8)
        return malformed("numeric");
    int ndigits = rd16(p), weight = rd16(p + 2);
    uint16_t sign = (uint16_t)rd16(p + 4), dscale = (uint16_t)rd16(p + 6);
    uint64_t hi = 0, lo = 0;
    if (len != 8 + 2 * ndigits || ndigits < 0)
        return malformed("numeric");
    if (check_length && (sign == 0x0000 || sign == 0x4000)
        && numeric_text_length(ndigits, weight, sign, dscale, p) > 34)
        return FLAG; /* the general path rounds (and counts) what Decimal128 cannot hold */
    if (sign == 0xC000) {
        counters[C_NUMERIC_NAN]++;
        hi = UINT64_C(0x7C00000000000000);
    } else if (sign == 0xD000 || sign == 0xF000) {
        counters[C_NUMERIC_INF]++;
        hi = sign == 0xD000 ? UINT64_C(0x7800000000000000) : UINT64_C(0xF800000000000000);
    } else if (sign == 0x0000 || sign == 0x4000) {
        /* coefficient = value * 10^dscale, exponent = -dscale: the Decimal128 of the text. */
        u128 coef = 0;
        if (dscale > 6176)
            return FLAG;
        for (int i = 0; i < ndigits; i++) {
            int d = rd16(p + 8 + 2 * i);
            if (d < 0 || d > 9999)
                return malformed("numeric digit");
            if (!d)
                continue;
            int e = 4 * (weight - i) + dscale;
            if (e >= 34)
                return FLAG;
            u128 term;
            if (e >= 0) {
                term = (u128)d * POW10[e];
            } else {
                if (e < -4 || d % (int)POW10[-e])
                    return FLAG; /* digits beyond the scale: let the general path decide */
                term = (u128)(d / (int)POW10[-e]);
            }
            coef += term;
            if (coef >= POW10[34])
                return FLAG;
        }
        uint64_t biased = (uint64_t)(6176 - dscale);
        lo = (uint64_t)coef;
        hi = (uint64_t)(coef >> 64) | (biased << 49) | (sign == 0x4000 ? UINT64_C(1) << 63 : 0);
    } else {
        return malformed("numeric sign");
    }
    if (put_i64(b, (int64_t)lo) || put_i64(b, (int64_t)hi))
        return BAD;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* JSON text (jsonb) -> BSON, with libbson's JSON reader's rules */

typedef struct {
    const char *p;
    const char *end;
    Buf *b;
} Json;

static inline void skip_ws(Json *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int hex4(const char *p, const char *end, unsigned *out) {
    if (end - p < 4)
        return FLAG;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return FLAG;
    }
    *out = v;
    return 0;
}

/* Decodes the string at j->p (just after the opening quote) onto the buffer. `is_key`: no
 * NUL, no '.', no leading '$' (else FLAG). */
static int json_string_body(Json *j, int is_key) {
    Buf *b = j->b;
    Py_ssize_t start = b->len;
    for (;;) {
        const char *q = j->p;
        while (q < j->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
            q++;
        if (q > j->p && put(b, j->p, q - j->p))
            return BAD;
        j->p = q;
        if (q >= j->end)
            return FLAG;
        if (*q == '"') {
            j->p++;
            break;
        }
        if ((unsigned char)*q < 0x20)
            return FLAG;
        /* an escape */
        if (j->end - q < 2)
            return FLAG;
        char c = q[1];
        j->p = q + 2;
        unsigned char out;
        switch (c) {
        case '"': out = '"'; break;
        case '\\': out = '\\'; break;
        case '/': out = '/'; break;
        case 'b': out = '\b'; break;
        case 'f': out = '\f'; break;
        case 'n': out = '\n'; break;
        case 'r': out = '\r'; break;
        case 't': out = '\t'; break;
        case 'u': {
            unsigned cp;
            if (hex4(j->p, j->end, &cp))
                return FLAG;
            j->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' || hex4(j->p + 2, j->end, &lo)
                    || lo < 0xDC00 || lo > 0xDFFF)
                    return FLAG;
                j->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return FLAG;
            }
            if (cp == 0)
                return FLAG; /* NUL: a policy of the general path */
            unsigned char u[4];
            int n;
            if (cp < 0x80) { u[0] = (unsigned char)cp; n = 1; }
            else if (cp < 0x800) { u[0] = (unsigned char)(0xC0 | (cp >> 6)); u[1] = (unsigned char)(0x80 | (cp & 0x3F)); n = 2; }
            else if (cp < 0x10000) { u[0] = (unsigned char)(0xE0 | (cp >> 12)); u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); u[2] = (unsigned char)(0x80 | (cp & 0x3F)); n = 3; }
            else { u[0] = (unsigned char)(0xF0 | (cp >> 18)); u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F)); u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (unsigned char)(0x80 | (cp & 0x3F)); n = 4; }
            if (put(b, u, n))
                return BAD;
            continue;
        }
        default:
            return FLAG;
        }
        if (put_byte(b, out))
            return BAD;
    }
    if (is_key) {
        Py_ssize_t n = b->len - start;
        const char *k = b->data + start;
        if ((n > 0 && k[0] == '$') || memchr(k, '.', (size_t)n))
            return FLAG;
    }
    return 0;
}

static int json_value(Json *j, const char *key, Py_ssize_t klen, int depth);

/* The body of a document or array whose element header is already written. */
static int json_container(Json *j, int is_object, int depth) {
    Buf *b = j->b;
    Py_ssize_t at = b->len;
    if (put_i32(b, 0))
        return BAD;
    j->p++; /* '{' or '[' */
    skip_ws(j);
    char close = is_object ? '}' : ']';
    Py_ssize_t index = 0;
    if (j->p < j->end && *j->p == close) {
        j->p++;
    } else {
        for (;;) {
            int rc;
            if (is_object) {
                skip_ws(j);
                if (j->p >= j->end || *j->p != '"')
                    return FLAG;
                /* The key is decoded onto the buffer after a placeholder type byte, then the
                 * value decides the type. */
                Py_ssize_t type_at = b->len;
                if (put_byte(b, 0))
                    return BAD;
                j->p++;
                rc = json_string_body(j, 1);
                if (rc)
                    return rc;
                if (memchr(b->data + type_at + 1, 0, (size_t)(b->len - type_at - 1)))
                    return FLAG;
                if (put_byte(b, 0))
                    return BAD;
                skip_ws(j);
                if (j->p >= j->end || *j->p != ':')
                    return FLAG;
                j->p++;
                /* json_value writes its own header: pass the type position instead */
                rc = json_value(j, NULL, type_at, depth + 1);
            } else {
                char k[24];
                int kl = index_key(k, index++);
                rc = json_value(j, k, kl, depth + 1);
            }
            if (rc)
                return rc;
            skip_ws(j);
            if (j->p >= j->end)
                return FLAG;
            if (*j->p == ',') {
                j->p++;
                continue;
            }
            if (*j->p == close) {
                j->p++;
                break;
            }
            return FLAG;
        }
    }
    if (put_byte(b, 0))
        return BAD;
    if (b->len - at > INT32_MAX)
        return FLAG;
    patch_i32(b, at, (int32_t)(b->len - at));
    return 0;
}

/* Writes one element. With key == NULL, the header was already written at offset `klen` with
 * a placeholder type byte (object members); otherwise `key` is written here. */
static int json_value(Json *j, const char *key, Py_ssize_t klen, int depth) {
    Buf *b = j->b;
    if (depth > MAX_DEPTH)
        return FLAG;
    skip_ws(j);
    if (j->p >= j->end)
        return FLAG;
    Py_ssize_t type_at;
    if (key) {
        type_at = b->len;
        if (put_head(b, 0, key, klen))
            return BAD;
    } else {
        type_at = klen;
    }
    char c = *j->p;
    if (c == '{' || c == '[') {
        b->data[type_at] = c == '{' ? 0x03 : 0x04;
        return json_container(j, c == '{', depth);
    }
    if (c == '"') {
        b->data[type_at] = 0x02;
        Py_ssize_t at = b->len;
        if (put_i32(b, 0))
            return BAD;
        j->p++;
        int rc = json_string_body(j, 0);
        if (rc)
            return rc;
        if (put_byte(b, 0))
            return BAD;
        if (b->len - at - 4 > INT32_MAX)
            return FLAG;
        patch_i32(b, at, (int32_t)(b->len - at - 4));
        return 0;
    }
    if (j->end - j->p >= 4 && memcmp(j->p, "true", 4) == 0) {
        j->p += 4;
        b->data[type_at] = 0x08;
        return put_byte(b, 1) ? BAD : 0;
    }
    if (j->end - j->p >= 5 && memcmp(j->p, "false", 5) == 0) {
        j->p += 5;
        b->data[type_at] = 0x08;
        return put_byte(b, 0) ? BAD : 0;
    }
    if (j->end - j->p >= 4 && memcmp(j->p, "null", 4) == 0) {
        j->p += 4;
        b->data[type_at] = 0x0A;
        return 0;
    }
    /* a number */
    const char *q = j->p;
    int is_double = 0;
    while (q < j->end && ((*q >= '0' && *q <= '9') || *q == '-' || *q == '+' || *q == '.' || *q == 'e' || *q == 'E')) {
        if (*q == '.' || *q == 'e' || *q == 'E')
            is_double = 1;
        q++;
    }
    Py_ssize_t n = q - j->p;
    if (!is_double && n <= 18) {
        /* the common case, without strtoll: at most 18 digits cannot overflow */
        const char *d = j->p;
        int neg = *d == '-';
        d += neg;
        if (d == q)
            return FLAG;
        int64_t v = 0;
        for (; d < q; d++) {
            if (*d < '0' || *d > '9')
                return FLAG;
            v = v * 10 + (*d - '0');
        }
        if (neg)
            v = -v;
        j->p = q;
        if (v >= INT32_MIN && v <= INT32_MAX) {
            b->data[type_at] = 0x10;
            return put_i32(b, (int32_t)v) ? BAD : 0;
        }
        b->data[type_at] = 0x12;
        return put_i64(b, v) ? BAD : 0;
    }
    char tmp[64];
    if (n == 0 || n >= (Py_ssize_t)sizeof(tmp))
        return FLAG;
    memcpy(tmp, j->p, (size_t)n);
    tmp[n] = 0;
    j->p = q;
    char *endp;
    errno = 0;
    if (is_double) {
        double v = strtod(tmp, &endp);
        if (*endp || errno || !isfinite(v))
            return FLAG;
        b->data[type_at] = 0x01;
        int64_t bits;
        memcpy(&bits, &v, 8);
        return put_i64(b, bits) ? BAD : 0;
    }
    long long v = strtoll(tmp, &endp, 10);
    if (*endp || errno)
        return FLAG;
    if (v >= INT32_MIN && v <= INT32_MAX) {
        b->data[type_at] = 0x10;
        return put_i32(b, (int32_t)v) ? BAD : 0;
    }
    b->data[type_at] = 0x12;
    return put_i64(b, (int64_t)v) ? BAD : 0;
}

/* The general path's own test (transform._jsonb_plain) for a jsonb text it cannot pass
 * through: any backslash, or some quote followed by a run of non-quotes and `": `, where the
 * run starts with `$` or holds `.`. Those values go through Python there (key policies) and are
 * appended to the document, so the row is flagged here to keep the documents identical. */
static int jsonb_needs_general(const char *s, Py_ssize_t n) {
    if (memchr(s, '\\', (size_t)n))
        return 1;
    if (!memchr(s, '$', (size_t)n) && !memchr(s, '.', (size_t)n))
        return 0;
    const char *end = s + n;
    for (const char *q = memchr(s, '"', (size_t)n); q; ) {
        const char *r = q + 1;
        const char *close = r < end ? memchr(r, '"', (size_t)(end - r)) : NULL;
        if (!close)
            return 0;
        if (end - close >= 3 && close[1] == ':' && close[2] == ' '
            && ((r < close && *r == '$') || memchr(r, '.', (size_t)(close - r)) || memchr(r, '\\', (size_t)(close - r))))
            return 1;
        q = close;
    }
    return 0;
}

static int put_jsonb(Buf *b, const char *key, Py_ssize_t klen, const unsigned char *p, int32_t len) {
    if (len < 1 || p[0] != 1)
        return malformed("jsonb");
    if (jsonb_needs_general((const char *)p + 1, len - 1))
        return FLAG;
    Json j = {(const char *)p + 1, (const char *)p + len, b};
    int rc = json_value(&j, key, klen, 0);
    if (rc)
        return rc;
    skip_ws(&j);
    return j.p == j.end ? 0 : FLAG;
}

/* ------------------------------------------------------------------------------------------ */
/* arrays (to_json's shape: nested lists, lower bounds ignored) */

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    int kind;
} ArrayCursor;

static int array_level(Buf *b, ArrayCursor *c, const int32_t *dims, int ndim, int level) {
    Py_ssize_t at = b->len;
    if (put_i32(b, 0))
        return BAD;
    for (int32_t i = 0; i < dims[level]; i++) {
        char k[24];
        int kl = index_key(k, i);
        if (level + 1 < ndim) {
            if (put_head(b, 0x04, k, kl))
                return BAD;
            int rc = array_level(b, c, dims, ndim, level + 1);
            if (rc)
                return rc;
            continue;
        }
        if (c->end - c->p < 4)
            return malformed("array element");
        int32_t len = rd32(c->p);
        c->p += 4;
        if (len == -1) {
            if (put_head(b, 0x0A, k, kl))
                return BAD;
            continue;
        }
        if (len < 0 || c->end - c->p < len)
            return malformed("array element");
        const unsigned char *v = c->p;
        c->p += len;
        if (c->kind == K_ARRAY_STRING) {
            if (put_head(b, 0x02, k, kl))
                return BAD;
            int rc = put_string(b, (const char *)v, len);
            if (rc)
                return rc;
        } else if (c->kind == K_ARRAY_INT) {
            if (len != 8)
                return malformed("int8 element");
            int64_t x = rd64(v);
            if (x >= INT32_MIN && x <= INT32_MAX) {
                if (put_head(b, 0x10, k, kl) || put_i32(b, (int32_t)x))
                    return BAD;
            } else if (put_head(b, 0x12, k, kl) || put_i64(b, x)) {
                return BAD;
            }
        } else {
            if (len != 1)
                return malformed("bool element");
            if (put_head(b, 0x08, k, kl) || put_byte(b, v[0] ? 1 : 0))
                return BAD;
        }
    }
    if (put_byte(b, 0))
        return BAD;
    patch_i32(b, at, (int32_t)(b->len - at));
    return 0;
}

static int put_array(Buf *b, int kind, const unsigned char *p, int32_t len) {
    if (len < 12)
        return malformed("array");
    int32_t ndim = rd32(p);
    if (ndim < 0 || ndim > 6 || len < 12 + 8 * ndim)
        return malformed("array");
    int32_t dims[6];
    for (int i = 0; i < ndim; i++) {
        dims[i] = rd32(p + 12 + 8 * i);
        if (dims[i] < 0)
            return malformed("array");
    }
    ArrayCursor c = {p + 12 + 8 * ndim, p + len, kind};
    if (ndim == 0) {
        /* an empty array */
        if (put_i32(b, 5) || put_byte(b, 0))
            return BAD;
        return 0;
    }
    int rc = array_level(b, &c, dims, ndim, 0);
    if (rc)
        return rc;
    return c.p == c.end ? 0 : malformed("array");
}

/* ------------------------------------------------------------------------------------------ */
/* one field */

static const char HEX[] = "0123456789abcdef";

static int put_field(Buf *b, int kind, const char *key, Py_ssize_t klen, const unsigned char *v, int32_t len,
                     int64_t *counters) {
    if (len == -1)
        return put_head(b, 0x0A, key, klen);
    switch (kind) {
    case K_INT:
    case K_LONG: {
        if (len != 8)
            return malformed("int8");
        int64_t x = rd64(v);
        if (kind == K_INT && x >= INT32_MIN && x <= INT32_MAX)
            return put_head(b, 0x10, key, klen) || put_i32(b, (int32_t)x) ? BAD : 0;
        return put_head(b, 0x12, key, klen) || put_i64(b, x) ? BAD : 0;
    }
    case K_DOUBLE: {
        if (len != 8)
            return malformed("float8");
        int64_t bits = rd64(v);
        double d;
        memcpy(&d, &bits, 8);
        if (isnan(d)) {
            counters[C_DOUBLE_NAN]++;
            bits = INT64_C(0x7FF8000000000000); /* the NaN the general path's "NaN" text reads as */
        }
        else if (isinf(d))
            counters[C_DOUBLE_INF]++;
        return put_head(b, 0x01, key, klen) || put_i64(b, bits) ? BAD : 0;
    }
    case K_DECIMAL:
    case K_DECIMAL_34: {
        Py_ssize_t mark = b->len;
        if (put_head(b, 0x13, key, klen))
            return BAD;
        int rc = put_decimal(b, v, len, counters, kind == K_DECIMAL_34);
        if (rc == FLAG)
            b->len = mark;
        return rc;
    }
    case K_BOOL:
        if (len != 1)
            return malformed("bool");
        return put_head(b, 0x08, key, klen) || put_byte(b, v[0] ? 1 : 0) ? BAD : 0;
    case K_STRING:
        if (put_head(b, 0x02, key, klen))
            return BAD;
        return put_string(b, (const char *)v, len);
    case K_DATE_DAYS: {
        if (len != 4)
            return malformed("date");
        int32_t days = rd32(v);
        if (days < MIN_DAYS || days > MAX_DAYS)
            return FLAG; /* infinity or outside years 1-9999: a policy */
        return put_head(b, 0x09, key, klen) || put_i64(b, PG_EPOCH_MS + (int64_t)days * 86400000) ? BAD : 0;
    }
    case K_DATE_TS: {
        if (len != 8)
            return malformed("timestamp");
        int64_t us = rd64(v);
        if (us < (int64_t)MIN_DAYS * US_PER_DAY || us >= (int64_t)(MAX_DAYS + 1) * US_PER_DAY)
            return FLAG;
        int64_t ms = us >= 0 ? us / 1000 : -((-us + 999) / 1000); /* floor */
        return put_head(b, 0x09, key, klen) || put_i64(b, PG_EPOCH_MS + ms) ? BAD : 0;
    }
    case K_UUID_STRING: {
        if (len != 16)
            return malformed("uuid");
        char s[36];
        int o = 0;
        for (int i = 0; i < 16; i++) {
            if (i == 4 || i == 6 || i == 8 || i == 10)
                s[o++] = '-';
            s[o++] = HEX[v[i] >> 4];
            s[o++] = HEX[v[i] & 15];
        }
        if (put_head(b, 0x02, key, klen))
            return BAD;
        return put_string(b, s, 36);
    }
    case K_UUID_BINARY:
        if (len != 16)
            return malformed("uuid");
        return put_head(b, 0x05, key, klen) || put_i32(b, 16) || put_byte(b, 4) || put(b, v, 16) ? BAD : 0;
    case K_BYTES:
        return put_head(b, 0x05, key, klen) || put_i32(b, len) || put_byte(b, 0) || put(b, v, len) ? BAD : 0;
    case K_JSONB: {
        Py_ssize_t mark = b->len;
        int rc = put_jsonb(b, key, klen, v, len);
        if (rc == FLAG)
            b->len = mark;
        return rc;
    }
    case K_ARRAY_STRING:
    case K_ARRAY_INT:
    case K_ARRAY_BOOL: {
        Py_ssize_t mark = b->len;
        if (put_head(b, 0x04, key, klen))
            return BAD;
        int rc = put_array(b, kind, v, len);
        if (rc == FLAG)
            b->len = mark;
        return rc;
    }
    }
    PyErr_Format(PyExc_ValueError, "unknown field kind %d", kind);
    return BAD;
}

/* ------------------------------------------------------------------------------------------ */
/* the module function */

typedef struct {
    int kind;
    int column;
    const char *key;
    Py_ssize_t klen;
} Op;

#define MAX_COLUMNS 1600 /* PostgreSQL's own limit */

PyDoc_STRVAR(encode_doc,
"encode(data, ops, ncolumns, flag_columns) -> (bson, consumed, documents, flagged, counters, done)\n\n"
"Encodes the complete tuples of `data` (binary COPY, after the header) as BSON documents.\n"
"`ops`: tuple of (kind, column, key) per document field; `ncolumns`: fields per tuple;\n"
"`flag_columns`: how many trailing columns identify a row (tableoid, ctid) for `flagged`.\n"
"`consumed` is where the first incomplete tuple starts; `done` is true at the trailer.\n"
"`flagged` lists the identifying columns (raw bytes) of rows left out for the general path.\n"
"`counters`: (numeric NaN, numeric +-Infinity, double NaN, double +-Infinity) seen.");

static PyObject *encode(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer in;
    PyObject *ops_obj;
    int ncols, nflag;
    if (!PyArg_ParseTuple(args, "y*O!ii", &in, &PyTuple_Type, &ops_obj, &ncols, &nflag))
        return NULL;
    PyObject *result = NULL, *flagged = NULL;
    Op *ops = NULL;
    Buf out = {0};
    Py_ssize_t nops = PyTuple_GET_SIZE(ops_obj);
    if (ncols < 1 || ncols > MAX_COLUMNS || nflag < 0 || nflag > ncols) {
        PyErr_SetString(PyExc_ValueError, "bad column count");
        goto done;
    }
    ops = PyMem_Calloc((size_t)(nops ? nops : 1), sizeof(Op));
    if (!ops) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < nops; i++) {
        PyObject *t = PyTuple_GET_ITEM(ops_obj, i);
        if (!PyArg_ParseTuple(t, "iiy#", &ops[i].kind, &ops[i].column, &ops[i].key, &ops[i].klen))
            goto done;
        if (ops[i].kind < K_INT || ops[i].kind > K_DECIMAL_34
            || (ops[i].kind != K_DOC_BEGIN && ops[i].kind != K_DOC_END && (ops[i].column < 0 || ops[i].column >= ncols))
            || (Py_ssize_t)strlen(ops[i].key) != ops[i].klen) {
            PyErr_Format(PyExc_ValueError, "bad operation %zd", i);
            goto done;
        }
    }
    flagged = PyList_New(0);
    if (!flagged)
        goto done;

    const unsigned char *base = in.buf, *p = base, *end = base + in.len;
    const unsigned char *vals[MAX_COLUMNS];
    int32_t lens[MAX_COLUMNS];
    Py_ssize_t docs = 0;
    int64_t counters[C_COUNT] = {0};
    int finished = 0;
    Py_ssize_t stack[MAX_DEPTH];

    while (end - p >= 2) {
        int16_t nf = rd16(p);
        if (nf == -1) {
            p += 2;
            finished = 1;
            break;
        }
        if (nf != ncols) {
            PyErr_Format(PyExc_ValueError, "binary COPY stream: %d fields in a row, expected %d", nf, ncols);
            goto done;
        }
        const unsigned char *q = p + 2;
        int complete = 1;
        for (int c = 0; c < ncols; c++) {
            if (end - q < 4) {
                complete = 0;
                break;
            }
            int32_t len = rd32(q);
            q += 4;
            if (len == -1) {
                vals[c] = NULL;
                lens[c] = -1;
                continue;
            }
            if (len < 0) {
                malformed("field length");
                goto done;
            }
            if (end - q < len) {
                complete = 0;
                break;
            }
            vals[c] = q;
            lens[c] = len;
            q += len;
        }
        if (!complete)
            break;
        p = q;

        Py_ssize_t doc_at = out.len;
        int depth = 0, rc = 0;
        int64_t row_counters[C_COUNT] = {0};
        if (put_i32(&out, 0)) {
            goto done;
        }
        for (Py_ssize_t i = 0; i < nops && !rc; i++) {
            Op *op = &ops[i];
            if (op->kind == K_DOC_BEGIN) {
                if (depth >= MAX_DEPTH) {
                    PyErr_SetString(PyExc_ValueError, "operations nested too deep");
                    goto done;
                }
                if (put_head(&out, 0x03, op->key, op->klen))
                    goto done;
                stack[depth++] = out.len;
                rc = put_i32(&out, 0);
            } else if (op->kind == K_DOC_END) {
                if (!depth) {
                    PyErr_SetString(PyExc_ValueError, "unbalanced operations");
                    goto done;
                }
                Py_ssize_t at = stack[--depth];
                rc = put_byte(&out, 0);
                if (!rc)
                    patch_i32(&out, at, (int32_t)(out.len - at));
            } else {
                rc = put_field(&out, op->kind, op->key, op->klen, vals[op->column], lens[op->column], row_counters);
            }
        }
        if (rc == BAD)
            goto done;
        if (rc == FLAG) {
            out.len = doc_at;
            PyObject *ident = PyTuple_New(nflag);
            if (!ident)
                goto done;
            for (int k = 0; k < nflag; k++) {
                int c = ncols - nflag + k;
                PyObject *v = lens[c] < 0 ? Py_NewRef(Py_None)
                                          : PyBytes_FromStringAndSize((const char *)vals[c], lens[c]);
                if (!v) {
                    Py_DECREF(ident);
                    goto done;
                }
                PyTuple_SET_ITEM(ident, k, v);
            }
            int err = PyList_Append(flagged, ident);
            Py_DECREF(ident);
            if (err)
                goto done;
            continue;
        }
        if (put_byte(&out, 0))
            goto done;
        if (out.len - doc_at > INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "document too large");
            goto done;
        }
        patch_i32(&out, doc_at, (int32_t)(out.len - doc_at));
        docs++;
        for (int k = 0; k < C_COUNT; k++)
            counters[k] += row_counters[k]; /* a flagged row is counted by the general path */
    }
    {
        PyObject *bytes = PyBytes_FromStringAndSize(out.data ? out.data : "", out.len);
        if (!bytes)
            goto done;
        result = Py_BuildValue("(NnnO(LLLL)O)", bytes, (Py_ssize_t)(p - base), docs, flagged,
                               (long long)counters[0], (long long)counters[1], (long long)counters[2],
                               (long long)counters[3], finished ? Py_True : Py_False);
    }
done:
    Py_XDECREF(flagged);
    PyMem_Free(ops);
    PyMem_Free(out.data);
    PyBuffer_Release(&in);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS, encode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "etl._pgbson",
    "PostgreSQL binary COPY rows -> BSON documents (the transform's fast path).", -1, methods,
};

PyMODINIT_FUNC PyInit__pgbson(void) {
    POW10[0] = 1;
    for (int i = 1; i < 39; i++)
        POW10[i] = POW10[i - 1] * 10;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    static const struct { const char *name; int value; } K[] = {
        {"INT", K_INT}, {"LONG", K_LONG}, {"DOUBLE", K_DOUBLE}, {"DECIMAL", K_DECIMAL}, {"BOOL", K_BOOL},
        {"STRING", K_STRING}, {"DATE_DAYS", K_DATE_DAYS}, {"DATE_TS", K_DATE_TS},
        {"UUID_STRING", K_UUID_STRING}, {"UUID_BINARY", K_UUID_BINARY}, {"BYTES", K_BYTES},
        {"JSONB", K_JSONB}, {"ARRAY_STRING", K_ARRAY_STRING}, {"ARRAY_INT", K_ARRAY_INT},
        {"ARRAY_BOOL", K_ARRAY_BOOL}, {"DOC_BEGIN", K_DOC_BEGIN}, {"DOC_END", K_DOC_END},
        {"DECIMAL_34", K_DECIMAL_34},
    };
    for (size_t i = 0; i < sizeof(K) / sizeof(K[0]); i++)
        if (PyModule_AddIntConstant(m, K[i].name, K[i].value) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    return m;
}
