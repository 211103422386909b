/* One page of etcd's range read, from the protobuf bytes gRPC received straight into what a load keeps of it.

etcd's ``RangeResponse`` (rpc.proto) is read field by field in the wire format protobuf defines: the header's
revision, ``more``, ``count``, and per ``KeyValue`` its key (as ``str``, decoded as ``coordinator.etcd.types.decode``
does), its value (``bytes``) and its mod revision: the triple a load's item sink takes, without protobuf's message
objects in between. Any field it does not read is skipped by its wire type; a message it cannot read exactly as
protobuf does (a group, a field it reads with another wire type, a truncated field) returns None, and the caller parses
the same bytes with protobuf, which reads or rejects them as before (``coordinator.etcd.range_page``'s rule
**Exactly protobuf's reading**).
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

/* KeyValue: its key (1), mod_revision (3) and value (5), each the last given; the triple, or NULL (an error set:
   out of memory; no error set: a message to leave to protobuf). */
static PyObject *triple(cursor c) {
    cursor key = {NULL, NULL}, value = {NULL, NULL}, got;
    int64_t mod_rev = 0;
    uint64_t field, v;
    unsigned wire;
    while (c.p < c.end) {
        if (!tag(&c, &field, &wire)) return NULL;
        if (field == 1 || field == 5) {
            if (wire != 2 || !delimited(&c, &got)) return NULL;
            if (field == 1) key = got;
            else value = got;
        } else if (field == 3) {
            if (wire != 0 || !varint(&c, &v)) return NULL;
            mod_rev = (int64_t)v;
        } else if (!skip(&c, wire)) {
            return NULL;
        }
    }
    PyObject *k = PyUnicode_DecodeUTF8((const char *)key.p, key.end - key.p, "surrogateescape");
    PyObject *b = PyBytes_FromStringAndSize((const char *)value.p, value.end - value.p);
    PyObject *r = PyLong_FromLongLong(mod_rev);
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

/* read_page(data: bytes) -> (revision, more, count, [(key, value, mod_revision), ...]) | None */
static PyObject *read_page(PyObject *self, PyObject *data) {
    (void)self;
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "read_page(data: bytes)");
        return NULL;
    }
    cursor c = {(const uint8_t *)PyBytes_AS_STRING(data), (const uint8_t *)PyBytes_AS_STRING(data) + PyBytes_GET_SIZE(data)};
    int64_t revision = 0, count = 0;
    int more = 0;
    PyObject *items = PyList_New(0);
    if (items == NULL) return NULL;
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
            PyObject *t = triple(inner);
            if (t == NULL) goto decline;
            int appended = PyList_Append(items, t);
            Py_DECREF(t);
            if (appended < 0) goto fail;
        } else if (field == 3 || field == 4) {
            if (wire != 0 || !varint(&c, &v)) goto decline;
            if (field == 3) more = v != 0;
            else count = (int64_t)v;
        } else if (!skip(&c, wire)) {
            goto decline;
        }
    }
    return Py_BuildValue("(LNLN)", (long long)revision, PyBool_FromLong(more), (long long)count, items);
decline:
    if (PyErr_Occurred()) goto fail; /* out of memory in a triple: raised, not declined */
    Py_DECREF(items);
    Py_RETURN_NONE;
fail:
    Py_DECREF(items);
    return NULL;
}

static PyMethodDef methods[] = {
    {"read_page", read_page, METH_O, "A RangeResponse's revision, more, count and (key, value, mod_revision) triples."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_range", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__range(void) { return PyModule_Create(&module); }
