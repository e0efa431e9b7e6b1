/*
 * etl._bsoncanon: the canonical form of a BSON document, in C.
 *
 * The content checksums (etl.checksums) hash each document's BSON with the keys of every
 * embedded document sorted bytewise, so a server that moves `_id` first or reorders fields
 * does not make equal documents look different, while BSON keeps types apart (an int32 5, an
 * int64 5 and a double 5.0 differ). Validation, backup and rollback checksum every document
 * they read; here that costs a copy of the bytes instead of a decode and a re-encode.
 *
 * The rules, which etl.checksums' pure-Python walk follows too (tests compare the two):
 *   - the elements of a document are sorted by key (bytewise, a prefix first);
 *   - arrays keep their order; their elements are canonicalised;
 *   - every other value, JavaScript code with scope included, is copied as it is.
 *
 * canonical(raw, skip=()) -> bytes   the canonical document; `skip` drops top-level keys
 * id_key(raw) -> bytes | None        the canonical {"_id": value} of a document, None without
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 100

typedef struct {
    const uint8_t *key;   /* the key, without its NUL */
    Py_ssize_t key_len;
    const uint8_t *start; /* the element: type byte, key, NUL, value */
    Py_ssize_t len;
    uint8_t type;
    const uint8_t *value;
    Py_ssize_t value_len;
} Element;

typedef struct {
    uint8_t *data;
    Py_ssize_t len, cap;
} Buffer;

static int grow(Buffer *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    uint8_t *data = PyMem_Realloc(b->data, cap);
    if (!data) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int put(Buffer *b, const void *src, Py_ssize_t n) {
    if (grow(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

static int32_t read_i32(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24));
}

static void write_i32(uint8_t *p, int32_t v) {
    uint32_t u = (uint32_t)v;
    p[0] = u & 0xff;
    p[1] = (u >> 8) & 0xff;
    p[2] = (u >> 16) & 0xff;
    p[3] = (u >> 24) & 0xff;
}

static int corrupt(const char *what) {
    PyErr_Format(PyExc_ValueError, "corrupt BSON: %s", what);
    return -1;
}

/* The size of a value of `type` at p (at most `room` bytes), or -1. */
static Py_ssize_t value_size(uint8_t type, const uint8_t *p, Py_ssize_t room) {
    Py_ssize_t n;
    switch (type) {
    case 0x01: case 0x09: case 0x11: case 0x12: n = 8; break;
    case 0x07: n = 12; break;
    case 0x08: n = 1; break;
    case 0x10: n = 4; break;
    case 0x13: n = 16; break;
    case 0x06: case 0x0A: case 0x7F: case 0xFF: n = 0; break;
    case 0x02: case 0x0D: case 0x0E:
        if (room < 4) return -1;
        n = 4 + (Py_ssize_t)read_i32(p);
        if (n < 5) return -1;
        break;
    case 0x03: case 0x04: case 0x0F:
        if (room < 4) return -1;
        n = (Py_ssize_t)read_i32(p);
        if (n < 5) return -1;
        break;
    case 0x05:
        if (room < 4) return -1;
        n = 5 + (Py_ssize_t)read_i32(p);
        if (n < 5) return -1;
        break;
    case 0x0B: {
        const uint8_t *end = p + room, *q = p;
        for (int part = 0; part < 2; part++) {
            while (q < end && *q) q++;
            if (q >= end) return -1;
            q++;
        }
        n = q - p;
        break;
    }
    case 0x0C:
        if (room < 4) return -1;
        n = 4 + (Py_ssize_t)read_i32(p);
        if (n < 5) return -1;
        n += 12;
        break;
    default:
        return -1;
    }
    return n <= room ? n : -1;
}

/* The elements of the document at doc (length len), into *out (PyMem-allocated). */
static Py_ssize_t elements(const uint8_t *doc, Py_ssize_t len, Element **out) {
    if (len < 5 || read_i32(doc) != len || doc[len - 1] != 0)
        return corrupt("bad document length");
    Py_ssize_t count = 0, cap = 16;
    Element *items = PyMem_Malloc(cap * sizeof(Element));
    if (!items) {
        PyErr_NoMemory();
        return -1;
    }
    const uint8_t *p = doc + 4, *end = doc + len - 1;
    while (p < end) {
        Element e;
        e.start = p;
        e.type = *p++;
        e.key = p;
        while (p < end && *p) p++;
        if (p >= end) {
            PyMem_Free(items);
            return corrupt("unterminated key");
        }
        e.key_len = p - e.key;
        p++;
        e.value = p;
        e.value_len = value_size(e.type, p, end - p);
        if (e.value_len < 0) {
            PyMem_Free(items);
            return corrupt("bad value");
        }
        p += e.value_len;
        e.len = p - e.start;
        if (count == cap) {
            cap *= 2;
            Element *more = PyMem_Realloc(items, cap * sizeof(Element));
            if (!more) {
                PyMem_Free(items);
                PyErr_NoMemory();
                return -1;
            }
            items = more;
        }
        items[count++] = e;
    }
    *out = items;
    return count;
}

static int by_key(const void *a, const void *b) {
    const Element *x = a, *y = b;
    Py_ssize_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    if (x->key_len != y->key_len)
        return x->key_len < y->key_len ? -1 : 1;
    /* equal keys (not valid BSON for a document, but possible): keep their order */
    return x->start < y->start ? -1 : (x->start > y->start);
}

static int emit_doc(Buffer *b, const uint8_t *doc, Py_ssize_t len, int sort, int depth,
                    PyObject *skip);

static int emit_element(Buffer *b, const Element *e, int depth) {
    if (e->type == 0x03 || e->type == 0x04) {
        Py_ssize_t head = e->value - e->start;
        if (put(b, e->start, head) < 0)
            return -1;
        return emit_doc(b, e->value, e->value_len, e->type == 0x03, depth + 1, NULL);
    }
    return put(b, e->start, e->len);
}

static int skipped(const Element *e, PyObject *skip) {
    if (!skip)
        return 0;
    Py_ssize_t n = PyTuple_GET_SIZE(skip);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyTuple_GET_ITEM(skip, i);
        if (PyBytes_GET_SIZE(k) == e->key_len && memcmp(PyBytes_AS_STRING(k), e->key, e->key_len) == 0)
            return 1;
    }
    return 0;
}

static int emit_doc(Buffer *b, const uint8_t *doc, Py_ssize_t len, int sort, int depth,
                    PyObject *skip) {
    if (depth > MAX_DEPTH) {
        PyErr_SetString(PyExc_ValueError, "BSON nested too deeply");
        return -1;
    }
    Element *items = NULL;
    Py_ssize_t count = elements(doc, len, &items);
    if (count < 0)
        return -1;
    if (sort && count > 1)
        qsort(items, count, sizeof(Element), by_key);
    Py_ssize_t at = b->len;
    uint8_t zero[4] = {0, 0, 0, 0};
    int rc = put(b, zero, 4);
    for (Py_ssize_t i = 0; rc == 0 && i < count; i++)
        if (!skipped(&items[i], skip))
            rc = emit_element(b, &items[i], depth);
    PyMem_Free(items);
    if (rc < 0 || put(b, zero, 1) < 0)
        return -1;
    write_i32(b->data + at, (int32_t)(b->len - at));
    return 0;
}

static PyObject *result(Buffer *b) {
    PyObject *out = PyBytes_FromStringAndSize((const char *)b->data, b->len);
    PyMem_Free(b->data);
    return out;
}

static PyObject *canonical(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"raw", "skip", NULL};
    Py_buffer raw;
    PyObject *skip = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|O", names, &raw, &skip))
        return NULL;
    PyObject *keys = NULL;
    if (skip && skip != Py_None) {
        PyObject *seq = PySequence_Tuple(skip);
        if (!seq) {
            PyBuffer_Release(&raw);
            return NULL;
        }
        Py_ssize_t n = PyTuple_GET_SIZE(seq);
        keys = PyTuple_New(n);
        for (Py_ssize_t i = 0; keys && i < n; i++) {
            PyObject *k = PyTuple_GET_ITEM(seq, i);
            PyObject *enc = PyUnicode_Check(k) ? PyUnicode_AsUTF8String(k) : NULL;
            if (!enc) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_TypeError, "skip holds field names (str)");
                Py_CLEAR(keys);
                break;
            }
            PyTuple_SET_ITEM(keys, i, enc);
        }
        Py_DECREF(seq);
        if (!keys) {
            PyBuffer_Release(&raw);
            return NULL;
        }
    }
    Buffer b = {NULL, 0, 0};
    int rc = emit_doc(&b, raw.buf, raw.len, 1, 0, keys);
    Py_XDECREF(keys);
    PyBuffer_Release(&raw);
    if (rc < 0) {
        PyMem_Free(b.data);
        return NULL;
    }
    return result(&b);
}

static PyObject *id_key(PyObject *self, PyObject *arg) {
    Py_buffer raw;
    if (PyObject_GetBuffer(arg, &raw, PyBUF_SIMPLE) < 0)
        return NULL;
    Element *items = NULL;
    Py_ssize_t count = elements(raw.buf, raw.len, &items);
    if (count < 0) {
        PyBuffer_Release(&raw);
        return NULL;
    }
    const Element *id = NULL;
    for (Py_ssize_t i = 0; i < count; i++)
        if (items[i].key_len == 3 && memcmp(items[i].key, "_id", 3) == 0) {
            id = &items[i];
            break;
        }
    PyObject *out = NULL;
    if (!id) {
        out = Py_None;
        Py_INCREF(out);
    } else {
        Buffer b = {NULL, 0, 0};
        uint8_t zero[4] = {0, 0, 0, 0};
        if (put(&b, zero, 4) == 0 && emit_element(&b, id, 0) == 0 && put(&b, zero, 1) == 0) {
            write_i32(b.data, (int32_t)b.len);
            out = result(&b);
        } else {
            PyMem_Free(b.data);
        }
    }
    PyMem_Free(items);
    PyBuffer_Release(&raw);
    return out;
}

static PyMethodDef methods[] = {
    {"canonical", (PyCFunction)(void (*)(void))canonical, METH_VARARGS | METH_KEYWORDS,
     "canonical(raw, skip=()) -> bytes: the document with the keys of every embedded document sorted."},
    {"id_key", id_key, METH_O, "id_key(raw) -> bytes | None: the canonical {\"_id\": value} of a document."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "etl._bsoncanon",
    "The canonical form of BSON documents (keys sorted), for content checksums.", -1, methods,
};

PyMODINIT_FUNC PyInit__bsoncanon(void) { return PyModule_Create(&module); }
