/* One page of etcd's range read, from the protobuf bytes gRPC received straight into what a load keeps of it.

etcd's ``RangeResponse`` (rpc.proto) is read field by field in the wire format protobuf defines: the header's
revision, ``more``, ``count``, and per ``KeyValue`` where its key, its value and its mod revision lie in the page's
bytes (a table of rows), without protobuf's message objects in between and without a Python object per key. A load's
compiled loop (``core/_load.c``) reads the rows in place; ``items`` makes the (key, value, mod_revision) triples of the
rows anything else reads (the key as ``str``, decoded as ``coordinator.etcd.types.decode`` does). Any field it does
not read is skipped by its wire type; a message it cannot read exactly as protobuf does (a group, a field it reads
with another wire type, a truncated field) returns None, and the caller parses the same bytes with protobuf, which
reads or rejects them as before (``coordinator.etcd.range_page``'s rule **Exactly protobuf's reading**).
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef struct {
    const uint8_t *p, *end;
} cursor;

/* A varint (at most 10 bytes, as protobuf reads them: bits past 64 are dropped); 0 when truncated or too long. */
static int varint(cursor *c, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 70 && c->p < c->end; shift += 7) {
        uint8_t b = *c->p++;
        if (shift < 64) v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

/* A length-delimited field's bytes; 0 when its length runs past the message. */
static int delimited(cursor *c, cursor *out) {
    uint64_t n;
    if (!varint(c, &n) || n > (uint64_t)(c->end - c->p)) return 0;
    out->p = c->p;
    out->end = c->p + n;
    c->p += n;
    return 1;
}

/* Skips a field this does not read; 0 for a group (wire types 3 and 4) or a truncated field. */
static int skip(cursor *c, unsigned wire) {
    uint64_t ignored;
    cursor inner;
    switch (wire) {
    case 0: return varint(c, &ignored);
    case 1: if (c->end - c->p < 8) return 0; c->p += 8; return 1;
    case 2: return delimited(c, &inner);
    case 5: if (c->end - c->p < 4) return 0; c->p += 4; return 1;
    default: return 0;
    }
}

/* The next field's number and wire type; 0 at the end or on a tag protobuf rejects (a field number of 0 or past
   2**29 - 1, a tag beyond 32 bits). */
static int tag(cursor *c, uint64_t *field, unsigned *wire) {
    uint64_t t;
    if (c->p >= c->end || !varint(c, &t) || (t >> 3) == 0 || t > 0xFFFFFFFFu) return 0;
    *field = t >> 3;
    *wire = (unsigned)(t & 7);
    return 1;
}

/* ResponseHeader: its revision (field 3) if present; the last one wins, as protobuf merges repeated messages. */
static int header(cursor c, int64_t *revision) {
    uint64_t field, v;
    unsigned wire;
    while (c.p < c.end) {
        if (!tag(&c, &field, &wire)) return 0;
        if (field == 3) {
            if (wire != 0 || !varint(&c, &v)) return 0;
            *revision = (int64_t)v;
        } else if (!skip(&c, wire)) {
            return 0;
        }
    }
    return 1;
}

/* Where one item lies in the page's bytes: a row of the table ``read_page`` gives (five native int64s). */
typedef struct {
    int64_t key_at, key_len, value_at, value_len, mod_rev;
} entry;

/* KeyValue: its key (1), mod_revision (3) and value (5), each the last given, as a row of the table; 0: a message to
   leave to protobuf. */
static int row(cursor c, const uint8_t *base, entry *out) {
    cursor key = {c.p, c.p}, value = {c.p, c.p}, got;
    int64_t mod_rev = 0;
    uint64_t field, v;
    unsigned wire;
    while (c.p < c.end) {
        if (!tag(&c, &field, &wire)) return 0;
        if (field == 1 || field == 5) {
            if (wire != 2 || !delimited(&c, &got)) return 0;
            if (field == 1) key = got;
            else value = got;
        } else if (field == 3) {
            if (wire != 0 || !varint(&c, &v)) return 0;
            mod_rev = (int64_t)v;
        } else if (!skip(&c, wire)) {
            return 0;
        }
    }
    *out = (entry){key.p - base, key.end - key.p, value.p - base, value.end - value.p, mod_rev};
    return 1;
}

/* read_page(data: bytes) -> (revision, more, count, table: bytes) | None: the table's rows say where each item
   (a ``KeyValue``) lies in ``data``, in order; ``items`` makes them the triples. */
static PyObject *read_page(PyObject *self, PyObject *data) {
    (void)self;
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "read_page(data: bytes)");
        return NULL;
    }
    const uint8_t *base = (const uint8_t *)PyBytes_AS_STRING(data);
    cursor c = {base, base + PyBytes_GET_SIZE(data)};
    int64_t revision = 0, count = 0;
    int more = 0;
    Py_ssize_t n = 0, room = 1024;
    entry *rows = PyMem_Malloc((size_t)room * sizeof(entry));
    if (rows == NULL) return PyErr_NoMemory();
    uint64_t field, v;
    unsigned wire;
    cursor inner;
    while (c.p < c.end) {
        if (!tag(&c, &field, &wire)) goto decline;
        if (field == 1 || field == 2) {
            if (wire != 2 || !delimited(&c, &inner)) goto decline;
            if (field == 1) {
                if (!header(inner, &revision)) goto decline;
                continue;
            }
            if (n == room) {
                entry *grown = PyMem_Realloc(rows, (size_t)(room *= 2) * sizeof(entry));
                if (grown == NULL) {
                    PyMem_Free(rows);
                    return PyErr_NoMemory();
                }
                rows = grown;
            }
            if (!row(inner, base, &rows[n++])) goto decline;
        } else if (field == 3 || field == 4) {
            if (wire != 0 || !varint(&c, &v)) goto decline;
            if (field == 3) more = v != 0;
            else count = (int64_t)v;
        } else if (!skip(&c, wire)) {
            goto decline;
        }
    }
    PyObject *table = PyBytes_FromStringAndSize((const char *)rows, n * (Py_ssize_t)sizeof(entry));
    PyMem_Free(rows);
    if (table == NULL) return NULL;
    return Py_BuildValue("(LNLN)", (long long)revision, PyBool_FromLong(more), (long long)count, table);
decline:
    PyMem_Free(rows);
    Py_RETURN_NONE;
}

/* The triple of one row: the key as ``str`` (decoded as ``coordinator.etcd.types.decode`` does), the value, the mod
   revision; NULL: an error set. */
static PyObject *triple(const char *base, const entry *e) {
    PyObject *k = PyUnicode_DecodeUTF8(base + e->key_at, (Py_ssize_t)e->key_len, "surrogateescape");
    PyObject *b = PyBytes_FromStringAndSize(base + e->value_at, (Py_ssize_t)e->value_len);
    PyObject *r = PyLong_FromLongLong(e->mod_rev);
    if (k == NULL || b == NULL || r == NULL) {
        Py_XDECREF(k);
        Py_XDECREF(b);
        Py_XDECREF(r);
        return NULL;
    }
    PyObject *t = PyTuple_New(3);
    if (t == NULL) {
        Py_DECREF(k);
        Py_DECREF(b);
        Py_DECREF(r);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, k);
    PyTuple_SET_ITEM(t, 1, b);
    PyTuple_SET_ITEM(t, 2, r);
    return t;
}

/* items(data, table, start, stop) -> the triples of rows start..stop (0 <= start <= stop <= rows). */
static PyObject *items(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *data, *table;
    Py_ssize_t start, stop;
    if (!PyArg_ParseTuple(args, "O!O!nn", &PyBytes_Type, &data, &PyBytes_Type, &table, &start, &stop)) return NULL;
    Py_ssize_t rows = PyBytes_GET_SIZE(table) / (Py_ssize_t)sizeof(entry);
    if (PyBytes_GET_SIZE(table) % (Py_ssize_t)sizeof(entry) || start < 0 || stop < start || stop > rows) {
        PyErr_SetString(PyExc_ValueError, "items: a table of read_page's rows, 0 <= start <= stop <= rows");
        return NULL;
    }
    const entry *at = (const entry *)PyBytes_AS_STRING(table);
    const char *base = PyBytes_AS_STRING(data);
    for (Py_ssize_t i = start; i < stop; i++) { /* a table of other bytes must not read past them */
        if (at[i].key_at < 0 || at[i].key_len < 0 || at[i].value_at < 0 || at[i].value_len < 0 ||
            at[i].key_at + at[i].key_len > PyBytes_GET_SIZE(data) ||
            at[i].value_at + at[i].value_len > PyBytes_GET_SIZE(data)) {
            PyErr_SetString(PyExc_ValueError, "items: a row lies outside the page's bytes");
            return NULL;
        }
    }
    PyObject *out = PyList_New(stop - start);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = start; i < stop; i++) {
        PyObject *t = triple(base, &at[i]);
        if (t == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i - start, t);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"read_page", read_page, METH_O, "A RangeResponse's revision, more, count and the table of where its items lie."},
    {"items", items, METH_VARARGS, "The (key, value, mod_revision) triples of rows of a page's table."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_range", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__range(void) { return PyModule_Create(&module); }
