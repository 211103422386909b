/* A partition's facts by DAG in an array, not a dict: ``Slots``, the view's per-partition mapping where compiled.

At the estate (5,000 DAGs x 365 days) the view held three dicts a partition (run states, ledger entries, the nodes
with a fact), each of 5,000 keys: about 147 KB apiece, 160 MB in all, and every fact of a snapshot inserted into two of
them. The DAGs are the same in every partition, so each is given a slot once, in an index the view's partitions share
(``index``: node -> slot; ``nodes``: slot -> node), and a partition where most DAGs have a fact holds an array of one
reference a slot: 40 KB for 5,000 DAGs, a store without a hash.

Rules:
- **A dict's manners.** Read and written as the dict it replaces: ``m[node]``, ``get``, ``in``, ``len``, ``pop``,
  iteration over the nodes, ``keys``/``values``/``items``, equality with any mapping of the same items, ``repr``.
  ``keys`` and ``values`` are lists and iteration walks a list of the nodes, each made whole before it is filled and
  filled without allocating (``dense_lists``), so that a reader on another thread (the HTTP listener counting the
  ledger) never sees it change under it (``FactIndex``' **Safe iteration**); ``items`` pairs such lists (a list of
  pairs, or ``zip`` of two listed in one go once dense: iterate it once).
- **Sparse until dense.** A partition starts as a dict and becomes an array once its facts are at least a quarter of
  the index's nodes (and ``DENSE_MIN``): an hourly or a segment partition that holds a few DAGs of many costs what
  its dict cost, never an array of every DAG. It stays an array after (a partition is emptied only as a whole).
- **Order.** A dict iterates in the order its nodes came; an array in the order of its slots (the order the index
  first saw the nodes). No reader depends on the order (the planner walks the graph's order and looks facts up).
- **The index only grows.** A node is given the next slot the first time any partition stores it, and keeps it: a
  slot names the same node in every partition.
- Tracked by the cyclic GC, as the dict it replaces is.
*/
#include "_native.h"

/* Facts in a partition before it may become an array: below this the dict is as small. */
#define DENSE_MIN 64

typedef struct {
    PyObject_HEAD
    PyObject *index;  /* dict: node -> slot (an int), shared by every partition of a view */
    PyObject *nodes;  /* list: slot -> node, the same */
    PyObject *sparse; /* the dict while sparse, else NULL */
    PyObject **dense; /* the array once dense (NULL: no fact in that slot), else NULL */
    Py_ssize_t room, count;
} SlotsObject;

static PyTypeObject SlotsType;

/* KeyError(node): wrapped, as a node is a tuple, which ``PyErr_SetObject`` would take as the error's arguments. */
static void key_error(PyObject *node) {
    PyObject *args = PyTuple_Pack(1, node);
    if (args == NULL) return;
    PyErr_SetObject(PyExc_KeyError, args);
    Py_DECREF(args);
}

int slots_check(PyObject *o) { return Py_IS_TYPE(o, &SlotsType); }

/* The slot of ``node`` in ``index`` and ``nodes``: -1 where it has none (``add``: given the next one), -2 on an
   error. */
static Py_ssize_t index_slot(PyObject *index, PyObject *nodes, PyObject *node, int add) {
    PyObject *found = PyDict_GetItemWithError(index, node);
    if (found != NULL) return PyLong_AsSsize_t(found);
    if (PyErr_Occurred()) return -2;
    if (!add) return -1;
    Py_ssize_t slot = PyList_GET_SIZE(nodes);
    PyObject *number = PyLong_FromSsize_t(slot);
    if (number == NULL) return -2;
    int failed = PyDict_SetItem(index, node, number) < 0 || PyList_Append(nodes, node) < 0;
    Py_DECREF(number);
    return failed ? -2 : slot;
}

Py_ssize_t slots_index_slot(PyObject *index, PyObject *nodes, PyObject *node) {
    return index_slot(index, nodes, node, 1);
}

static Py_ssize_t slot_of(SlotsObject *s, PyObject *node, int add) { return index_slot(s->index, s->nodes, node, add); }

/* Room for slot ``slot`` in the array; -1: no memory. */
static int dense_reach(SlotsObject *s, Py_ssize_t slot) {
    if (slot < s->room) return 0;
    Py_ssize_t room = PyList_GET_SIZE(s->nodes); /* every node the index has: its DAGs are those of the graph */
    if (room < slot + 1) room = slot + 1;
    if (room < s->room + s->room / 4) room = s->room + s->room / 4; /* new DAGs one at a time: not a copy each */
    PyObject **dense = PyMem_Realloc(s->dense, (size_t)room * sizeof *dense);
    if (dense == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(dense + s->room, 0, (size_t)(room - s->room) * sizeof *dense);
    s->dense = dense;
    s->room = room;
    return 0;
}

/* **Sparse until dense**: the dict's items into the array, in slots; -1: an error (still sparse then). */
static int densify(SlotsObject *s) {
    PyObject *sparse = s->sparse, *node, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(sparse, &pos, &node, &value)) { /* every node its slot first: nothing half moved on an error */
        if (slot_of(s, node, 1) < 0) return -1;
    }
    if (dense_reach(s, PyList_GET_SIZE(s->nodes) - 1) < 0) return -1;
    pos = 0;
    while (PyDict_Next(sparse, &pos, &node, &value)) {
        s->dense[slot_of(s, node, 0)] = Py_NewRef(value);
    }
    s->count = PyDict_GET_SIZE(sparse);
    s->sparse = NULL;
    Py_DECREF(sparse);
    return 0;
}

PyObject *slots_new(PyObject *index, PyObject *nodes) {
    if (!PyDict_CheckExact(index) || !PyList_CheckExact(nodes)) {
        PyErr_SetString(PyExc_TypeError, "Slots(index: dict, nodes: list)");
        return NULL;
    }
    SlotsObject *s = PyObject_GC_New(SlotsObject, &SlotsType);
    if (s == NULL) return NULL;
    s->index = Py_NewRef(index);
    s->nodes = Py_NewRef(nodes);
    s->sparse = PyDict_New();
    s->dense = NULL;
    s->room = s->count = 0;
    if (s->sparse == NULL) {
        Py_DECREF(s);
        return NULL;
    }
    PyObject_GC_Track(s);
    return (PyObject *)s;
}

/* The value of ``node`` (borrowed), NULL where it has none (an error set only on an error). */
static PyObject *slots_find(SlotsObject *s, PyObject *node) {
    if (s->sparse != NULL) return PyDict_GetItemWithError(s->sparse, node);
    Py_ssize_t slot = slot_of(s, node, 0);
    return slot >= 0 && slot < s->room ? s->dense[slot] : NULL;
}

PyObject *slots_index(PyObject *self) { return ((SlotsObject *)self)->index; }

PyObject *slots_lookup_at(PyObject *self, Py_ssize_t slot, PyObject *node) {
    SlotsObject *s = (SlotsObject *)self;
    if (s->sparse != NULL) return PyDict_GetItemWithError(s->sparse, node);
    if (slot < 0) return slots_find(s, node);
    return slot < s->room ? s->dense[slot] : NULL;
}

PyObject *slots_peek(PyObject *self, Py_ssize_t slot) {
    SlotsObject *s = (SlotsObject *)self;
    return s->dense != NULL && slot >= 0 && slot < s->room ? s->dense[slot] : NULL;
}

int slots_set_at(PyObject *self, Py_ssize_t slot, PyObject *node, PyObject *value) {
    SlotsObject *s = (SlotsObject *)self;
    if (s->sparse != NULL) {
        if (PyDict_SetItem(s->sparse, node, value) < 0) return -1;
        Py_ssize_t n = PyDict_GET_SIZE(s->sparse);
        if (n >= DENSE_MIN && n * 4 >= PyList_GET_SIZE(s->nodes) + 1) return densify(s);
        return 0;
    }
    if (slot < 0) slot = slot_of(s, node, 1);
    if (slot < 0 || dense_reach(s, slot) < 0) return -1;
    PyObject *old = s->dense[slot];
    s->dense[slot] = Py_NewRef(value);
    if (old == NULL) s->count++;
    Py_XDECREF(old);
    return 0;
}

static int slots_delete(SlotsObject *s, PyObject *node) {
    if (s->sparse != NULL) return PyDict_DelItem(s->sparse, node);
    Py_ssize_t slot = slot_of(s, node, 0);
    if (slot == -2) return -1;
    if (slot < 0 || slot >= s->room || s->dense[slot] == NULL) {
        key_error(node);
        return -1;
    }
    PyObject *old = s->dense[slot];
    s->dense[slot] = NULL;
    s->count--;
    Py_DECREF(old);
    return 0;
}

static Py_ssize_t slots_len(SlotsObject *s) { return s->sparse != NULL ? PyDict_GET_SIZE(s->sparse) : s->count; }

static PyObject *slots_subscript(SlotsObject *s, PyObject *node) {
    PyObject *found = slots_find(s, node);
    if (found != NULL) return Py_NewRef(found);
    if (!PyErr_Occurred()) key_error(node);
    return NULL;
}

static int slots_ass_subscript(SlotsObject *s, PyObject *node, PyObject *value) {
    return value == NULL ? slots_delete(s, node) : slots_set_at((PyObject *)s, -1, node, value);
}

static int slots_contains(SlotsObject *s, PyObject *node) {
    if (s->sparse != NULL) return PyDict_Contains(s->sparse, node);
    PyObject *found = slots_find(s, node);
    return found != NULL ? 1 : PyErr_Occurred() ? -1 : 0;
}

/* New lists of a dense partition's nodes and of its values (either may be unasked: NULL), in slot order, pair by pair
   (**A dict's manners**). Both are made at the partition's count before either is filled: making a list may set off
   the cyclic GC, whose callbacks and finalizers are Python code, where the interpreter may hand the GIL to the thread
   that writes this partition. So the count is read again after, and the lists made again if it moved; filling them
   allocates nothing, so no other thread runs until they are whole. 0, or -1 on an error. */
static int dense_lists(SlotsObject *s, PyObject **nodes, PyObject **values) {
    for (;;) {
        Py_ssize_t count = s->count;
        PyObject *keys = NULL, *vals = NULL;
        if ((nodes != NULL && (keys = PyList_New(count)) == NULL) ||
            (values != NULL && (vals = PyList_New(count)) == NULL)) {
            Py_XDECREF(keys);
            return -1;
        }
        if (count != s->count) { /* written while the lists were made: make them again at its new count */
            Py_XDECREF(keys);
            Py_XDECREF(vals);
            continue;
        }
        Py_ssize_t at = 0;
        for (Py_ssize_t i = 0; i < s->room && at < count; i++) {
            PyObject *value = s->dense[i];
            if (value == NULL) continue;
            if (keys != NULL) PyList_SET_ITEM(keys, at, Py_NewRef(PyList_GET_ITEM(s->nodes, i)));
            if (vals != NULL) PyList_SET_ITEM(vals, at, Py_NewRef(value));
            at++;
        }
        if (at != count) { /* the count names the array's facts: a list with holes would crash its reader */
            Py_XDECREF(keys);
            Py_XDECREF(vals);
            PyErr_SetString(PyExc_SystemError, "Slots: count does not match its array");
            return -1;
        }
        if (nodes != NULL) *nodes = keys;
        if (values != NULL) *values = vals;
        return 0;
    }
}

/* A new list of the nodes (0) or of the values (1). (``PyDict_Keys`` and ``PyDict_Values`` make theirs whole first, as
   ``dense_lists`` does.) */
static PyObject *slots_list(SlotsObject *s, int what) {
    if (s->sparse != NULL) return what == 0 ? PyDict_Keys(s->sparse) : PyDict_Values(s->sparse);
    PyObject *out = NULL;
    if (dense_lists(s, what == 0 ? &out : NULL, what == 1 ? &out : NULL) < 0) return NULL;
    return out;
}

static PyObject *slots_keys(SlotsObject *s, PyObject *unused) { return slots_list(s, 0); }
static PyObject *slots_values(SlotsObject *s, PyObject *unused) { return slots_list(s, 1); }

/* The (node, value) pairs: a sparse one's as ``PyDict_Items`` (a list of pairs, made whole first); a dense one's as
   ``zip`` of its nodes and its values, both listed in one go by ``dense_lists`` (**A dict's manners**: a snapshot,
   each node with its own value): one pair object reused while the caller lets go of each, as a dict's items are,
   where a list of pairs made one tuple a node (5,000 a partition, every pass over the run states), enough new objects
   to set off the cyclic GC again and again (``deadline.learning`` walks every partition's items: a quarter slower with
   a list). */
static PyObject *slots_items(SlotsObject *s, PyObject *unused) {
    if (s->sparse != NULL) return PyDict_Items(s->sparse);
    PyObject *nodes, *values;
    if (dense_lists(s, &nodes, &values) < 0) return NULL;
    PyObject *out = PyObject_CallFunctionObjArgs((PyObject *)&PyZip_Type, nodes, values, NULL);
    Py_DECREF(nodes);
    Py_DECREF(values);
    return out;
}

static PyObject *slots_iter(SlotsObject *s) {
    PyObject *nodes = slots_list(s, 0);
    if (nodes == NULL) return NULL;
    PyObject *it = PyObject_GetIter(nodes);
    Py_DECREF(nodes);
    return it;
}

/* The items as a new dict (equality, ``repr``, ``copy``, pickling). */
static PyObject *slots_dict(SlotsObject *s, PyObject *unused) {
    if (s->sparse != NULL) return PyDict_Copy(s->sparse);
    PyObject *out = PyDict_New();
    for (Py_ssize_t i = 0; out != NULL && i < s->room; i++) {
        if (s->dense[i] != NULL && PyDict_SetItem(out, PyList_GET_ITEM(s->nodes, i), s->dense[i]) < 0) Py_CLEAR(out);
    }
    return out;
}

static PyObject *slots_get(SlotsObject *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(node, default=None)");
        return NULL;
    }
    PyObject *found = slots_find(s, args[0]);
    if (found != NULL) return Py_NewRef(found);
    if (PyErr_Occurred()) return NULL;
    return Py_NewRef(nargs == 2 ? args[1] : Py_None);
}

static PyObject *slots_pop(SlotsObject *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "pop(node[, default])");
        return NULL;
    }
    PyObject *found = slots_find(s, args[0]);
    if (found == NULL) {
        if (PyErr_Occurred()) return NULL;
        if (nargs == 2) return Py_NewRef(args[1]);
        key_error(args[0]);
        return NULL;
    }
    Py_INCREF(found);
    if (slots_delete(s, args[0]) < 0) {
        Py_DECREF(found);
        return NULL;
    }
    return found;
}

/* The object and its array (a sparse one's dict is an object of its own, counted as a dict's keys are not). */
static PyObject *slots_sizeof(SlotsObject *s, PyObject *unused) {
    return PyLong_FromSsize_t((Py_ssize_t)sizeof *s + s->room * (Py_ssize_t)sizeof(PyObject *));
}

static PyObject *slots_reduce(SlotsObject *s, PyObject *unused) {
    /* Pickled and copied as the dict it stands for: the copy keeps every item, read the same way. */
    PyObject *items = slots_dict(s, NULL);
    if (items == NULL) return NULL;
    PyObject *out = Py_BuildValue("(O(O))", (PyObject *)&PyDict_Type, items);
    Py_DECREF(items);
    return out;
}

static PyObject *slots_richcompare(SlotsObject *s, PyObject *other, int op) {
    if ((op != Py_EQ && op != Py_NE) || !(PyDict_Check(other) || slots_check(other))) Py_RETURN_NOTIMPLEMENTED;
    PyObject *mine = slots_dict(s, NULL);
    PyObject *theirs = slots_check(other) ? slots_dict((SlotsObject *)other, NULL) : Py_NewRef(other);
    PyObject *out = mine == NULL || theirs == NULL ? NULL : PyObject_RichCompare(mine, theirs, op);
    Py_XDECREF(mine);
    Py_XDECREF(theirs);
    return out;
}

static PyObject *slots_repr(SlotsObject *s) {
    PyObject *items = slots_dict(s, NULL);
    if (items == NULL) return NULL;
    PyObject *out = PyUnicode_FromFormat("Slots(%R)", items);
    Py_DECREF(items);
    return out;
}

static PyObject *slots_py_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *index, *nodes;
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs)) || !PyArg_ParseTuple(args, "OO:Slots", &index, &nodes)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "Slots(index: dict, nodes: list)");
        return NULL;
    }
    return slots_new(index, nodes);
}

static int slots_traverse(SlotsObject *s, visitproc visit, void *arg) {
    Py_VISIT(s->index);
    Py_VISIT(s->nodes);
    Py_VISIT(s->sparse);
    for (Py_ssize_t i = 0; i < s->room; i++) Py_VISIT(s->dense[i]);
    return 0;
}

static int slots_clear(SlotsObject *s) {
    Py_CLEAR(s->index);
    Py_CLEAR(s->nodes);
    Py_CLEAR(s->sparse);
    if (s->dense != NULL) {
        PyObject **dense = s->dense;
        Py_ssize_t room = s->room;
        s->dense = NULL;
        s->room = s->count = 0;
        for (Py_ssize_t i = 0; i < room; i++) Py_XDECREF(dense[i]);
        PyMem_Free(dense);
    }
    return 0;
}

static void slots_dealloc(SlotsObject *s) {
    PyObject_GC_UnTrack(s);
    slots_clear(s);
    PyObject_GC_Del(s);
}

static PyMappingMethods slots_as_mapping = {
    .mp_length = (lenfunc)slots_len,
    .mp_subscript = (binaryfunc)slots_subscript,
    .mp_ass_subscript = (objobjargproc)slots_ass_subscript,
};

static PySequenceMethods slots_as_sequence = {.sq_contains = (objobjproc)slots_contains};

static PyMethodDef slots_methods[] = {
    {"get", (PyCFunction)(void (*)(void))slots_get, METH_FASTCALL, "The value of a node, or the default."},
    {"pop", (PyCFunction)(void (*)(void))slots_pop, METH_FASTCALL, "Remove a node and give its value (or default)."},
    {"keys", (PyCFunction)slots_keys, METH_NOARGS, "A list of the nodes."},
    {"values", (PyCFunction)slots_values, METH_NOARGS, "A list of the values."},
    {"items", (PyCFunction)slots_items, METH_NOARGS, "The (node, value) pairs, listed first: iterate once."},
    {"copy", (PyCFunction)slots_dict, METH_NOARGS, "The items as a new dict."},
    {"__reduce__", (PyCFunction)slots_reduce, METH_NOARGS, "Pickled as the dict of its items."},
    {"__sizeof__", (PyCFunction)slots_sizeof, METH_NOARGS, "Bytes held: the object and its array."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SlotsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "coordinator.core._native.Slots",
    .tp_doc = "A partition's facts by DAG: a dict while few, then an array by the view's shared slots.",
    .tp_basicsize = sizeof(SlotsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = slots_py_new,
    .tp_dealloc = (destructor)slots_dealloc,
    .tp_traverse = (traverseproc)slots_traverse,
    .tp_clear = (inquiry)slots_clear,
    .tp_richcompare = (richcmpfunc)slots_richcompare,
    .tp_repr = (reprfunc)slots_repr,
    .tp_iter = (getiterfunc)slots_iter,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_methods = slots_methods,
    .tp_as_mapping = &slots_as_mapping,
    .tp_as_sequence = &slots_as_sequence,
};

int slots_init(PyObject *module) {
    if (PyType_Ready(&SlotsType) < 0) return -1;
    return PyModule_AddObjectRef(module, "Slots", (PyObject *)&SlotsType);
}
