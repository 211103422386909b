/* A snapshot page's common keys into the view, in C: ``View.load_page``'s hot loop without the interpreter around it.

``load_fast(page, at, top, state) -> (at, top)`` takes the page's items from ``at`` on while each is a run state or a
done ledger entry of a DAG and partition the view knows, whose value the compiled reader reads, and adds its fact
exactly as ``View.load_page``'s loop does: into the partition's mapping of facts of its kind and the partition's
nodes (``Slots``, ``_slots.c``: at the DAG's slot), with the page's highest revision in ``top``. It stops at the first item that is anything else and returns its index:
the view's Python loop takes that one item (a key to parse or word as a problem, a value for msgspec or pydantic, a
backfill to index, a problem to clear), then calls this again after it. Rules:
- **Only what the loop would do.** Every test the Python loop makes is made here in the same order, on the same
  mappings (``state``: the view's own); any other case is the loop's. No fact is added that the loop would not add, and none
  differently (``tests/test_scale_load.py`` loads any pages both ways).
- **Triples or rows, the same.** ``page`` is a list of (key, value, mod_revision) triples, or a page as etcd sent it:
  ``(data, table)``, the response's bytes and a table of rows of five native int64s (the key's offset and length in
  ``data``, the value's, the mod revision; ``coordinator.etcd._range``'s ``read_page`` makes it). A row is read in
  place, with no Python object made for it, and loaded exactly as its triple would be (the key is taken only where it
  is ASCII, as a triple's key must be ASCII here; its ``str`` and revision are made only where the loop needs them).
- **Stored by partition.** The view's facts are mappings by partition, and a snapshot comes by key: a DAG's
  partitions one after another, so each fact went into another partition's mapping, each store a few cache misses
  (the mappings of the estate are a hundred MB and more). The loop adds each fact to its partition's list in
  ``Pending`` (the view's, in ``state``) instead, with its DAG's slot, and a partition's list goes into its mappings in
  one go, in its order, while they are in the cache: when it holds ``PENDING_BATCH`` facts, and at ``Pending.flush``
  (``View.end_load``, and before the Python loop takes an item). Each of the partition's mappings gets its keys in the
  order it would have got them one by one.
- **Nothing cached across calls.** The DAG of the last key and the partitions' slots are remembered within one call
  only: the loop's item between two calls may ``apply``, which may drop a partition's mapping. Only ``Pending`` keeps
  partitions' mappings across calls, each held until its facts are stored, and it is flushed before that item.
*/
#include "_native.h"

#include <string.h>

enum {
    S_RUNS, S_TRIGGERS, S_NODES, S_PARTS, S_RUNS_BY, S_LEDGER_BY, S_INDEX, S_PROBLEMS, S_BACKFILLS, S_NAMES, S_PENDING,
    S_SLOT_INDEX, S_SLOT_NODES, S_N
};

/* A partition's slot, by the key's last part: its mapping of facts of one kind and its nodes (borrowed: the view's
   dicts hold them for the whole call). */
typedef struct {
    const char *suffix; /* into a key of the page, which the page holds */
    Py_ssize_t len;
    uint64_t hash;
    PyObject *partition, *facts, *nodes; /* the view's partition string (``parts`` holds it) */
    Py_ssize_t group; /* its group in the view's ``Pending`` */
} slot_t;

#define SLOTS 2048 /* a power of two, more than a page's partitions of one kind */

typedef struct {
    slot_t at[SLOTS];
    int used;
} slots_t;

static slot_t *slot_find(slots_t *t, const char *s, Py_ssize_t n, uint64_t h) {
    for (size_t i = h & (SLOTS - 1);; i = (i + 1) & (SLOTS - 1)) {
        slot_t *e = &t->at[i];
        if (e->suffix == NULL || (e->hash == h && e->len == n && memcmp(e->suffix, s, (size_t)n) == 0)) return e;
    }
}

/* One item of the page, whichever its form: the key's and the value's bytes, the revision, and for a triple its
   objects (NULL for a row: made where needed). */
typedef struct {
    const char *key, *value;
    Py_ssize_t key_len, value_len;
    long long rev;
    PyObject *key_obj, *rev_obj;
} item_t;

typedef struct {
    PyObject *list;    /* triples, or NULL */
    const char *data;  /* a row's bytes */
    Py_ssize_t size;
    const int64_t *rows; /* five int64s a row */
    Py_ssize_t end;
} page_t;

/* Whether ``n`` bytes are ASCII: eight at a time (every key of a snapshot is tested). */
static int ascii(const char *s, Py_ssize_t n) {
    uint64_t high = 0;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) high |= word_at(s + i);
    for (; i < n; i++) high |= (unsigned char)s[i];
    return (high & 0x8080808080808080ULL) == 0;
}

/* Item ``i`` of the page as the loop reads it; 0: an item to leave to the Python loop (as a triple it could not
   load either: not a triple of an ASCII ``str``, ``bytes`` and an ``int`` within 64 bits). */
static int item_at(const page_t *page, Py_ssize_t i, item_t *it) {
    if (page->list == NULL) {
        const int64_t *r = page->rows + 5 * i;
        if (r[0] < 0 || r[1] < 0 || r[2] < 0 || r[3] < 0 || r[0] + r[1] > page->size || r[2] + r[3] > page->size)
            return 0;
        *it = (item_t){page->data + r[0], page->data + r[2], (Py_ssize_t)r[1], (Py_ssize_t)r[3], (long long)r[4],
                       NULL, NULL};
        return ascii(it->key, it->key_len);
    }
    PyObject *item = PyList_GET_ITEM(page->list, i);
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 3) return 0;
    PyObject *key = PyTuple_GET_ITEM(item, 0), *value = PyTuple_GET_ITEM(item, 1), *rev = PyTuple_GET_ITEM(item, 2);
    if (!PyUnicode_CheckExact(key) || !PyUnicode_IS_COMPACT_ASCII(key) || !PyLong_CheckExact(rev) ||
        !PyBytes_Check(value))
        return 0; /* a value of another type, a revision beyond int64: the compiled reader's None, the loop's */
    long long r = PyLong_AsLongLong(rev);
    if (r == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    *it = (item_t){(const char *)PyUnicode_DATA(key), PyBytes_AS_STRING(value), PyUnicode_GET_LENGTH(key),
                   PyBytes_GET_SIZE(value), r, key, rev};
    return 1;
}

/* The partition's mapping ``by[key]``, made empty where missing as the view makes one (``PartitionMaps.fresh``: a
   ``Slots`` over the view's ``index`` and ``nodes``) (borrowed); NULL: an error. */
static PyObject *mapping_in(PyObject *by, PyObject *key, PyObject *index, PyObject *nodes) {
    PyObject *found = PyDict_GetItemWithError(by, key);
    if (found != NULL || PyErr_Occurred()) return found;
    PyObject *fresh = slots_new(index, nodes);
    if (fresh == NULL) return NULL;
    int failed = PyDict_SetItem(by, key, fresh);
    Py_DECREF(fresh); /* ``by`` holds it */
    return failed ? NULL : fresh;
}

/* ``m[node] = value`` into a partition's mapping: a ``Slots``, or a dict (a view copied, whose ``Slots`` were copied
   as dicts); -1: an error. */
static int mapping_set(PyObject *m, Py_ssize_t slot, PyObject *node, PyObject *value) {
    if (slots_check(m)) return slots_set_at(m, slot, node, value);
    return PyDict_CheckExact(m) ? PyDict_SetItem(m, node, value) : PyObject_SetItem(m, node, value);
}

/* ``d.pop(k, None)``; -1: an error. */
static int pop_key(PyObject *d, PyObject *k) {
    int has = PyDict_Contains(d, k);
    return has <= 0 ? has : PyDict_DelItem(d, k);
}


/* ---- Pending: facts kept by partition until they go into its mappings together (**Stored by partition**) ---- */

#define PENDING_BATCH 1024 /* facts of one partition stored together: its mappings stay in the cache */

/* A fact to store, its node and the node's slot (``Slots``); the fact's kind (0 run states, 1 ledger entries) in the
   low bit of its address, which an object's alignment leaves free: 24 bytes a fact while it waits. */
typedef struct {
    PyObject *node;
    uintptr_t fact;
    Py_ssize_t slot;
} pair_t;

#define PAIR_FACT(e) ((PyObject *)((e)->fact & ~(uintptr_t)1))
#define PAIR_KIND(e) ((int)((e)->fact & 1))

/* How many pairs ahead ``group_store`` asks for a fact's memory: about a memory latency's worth of stores. */
#define PREFETCH_AHEAD 8
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH_FOR_WRITE(addr) __builtin_prefetch((addr), 1, 3)
#else
#define PREFETCH_FOR_WRITE(addr) ((void)(addr))
#endif

/* One partition's facts to store: into ``facts[kind]`` by node, and the node into ``nodes`` (the view's mappings, owned
   here so that none is freed and its address taken by another while facts wait for it). */
typedef struct {
    PyObject *nodes, *facts[2];
    pair_t *pairs;
    Py_ssize_t n, room;
} group_t;

typedef struct {
    PyObject_HEAD
    group_t *groups;
    Py_ssize_t n, room;
    Py_ssize_t *map; /* open addressing by ``nodes``' address: a group's index + 1, 0 free */
    size_t map_size;
    Py_ssize_t pending;
} PendingObject;

static size_t map_at(const PendingObject *p, const PyObject *nodes) {
    size_t h = ((size_t)nodes >> 4) * 11400714819323198485ULL;
    for (size_t i = h & (p->map_size - 1);; i = (i + 1) & (p->map_size - 1)) {
        Py_ssize_t g = p->map[i];
        if (g == 0 || p->groups[g - 1].nodes == nodes) return i;
    }
}

/* Stores a group's facts in order, then empties it; -1: an error (the rest of its facts released). */
static int group_store(PendingObject *p, group_t *g) {
    int failed = 0;
    for (Py_ssize_t i = 0; i < g->n; i++) {
        pair_t *e = &g->pairs[i];
        /* A fact waited here while the other partitions' facts were read (at the estate tens of MB later): it is no
           longer in the cache, and storing it writes its reference count. Ask for the facts a few pairs ahead, so
           that each is there when its turn comes instead of a miss apiece. */
        if (i + PREFETCH_AHEAD < g->n) PREFETCH_FOR_WRITE(PAIR_FACT(&g->pairs[i + PREFETCH_AHEAD]));
        if (!failed && (mapping_set(g->facts[PAIR_KIND(e)], e->slot, e->node, PAIR_FACT(e)) < 0 ||
                        mapping_set(g->nodes, e->slot, e->node, Py_None) < 0))
            failed = 1;
        Py_DECREF(e->node);
        Py_DECREF(PAIR_FACT(e));
    }
    p->pending -= g->n;
    g->n = 0;
    return failed ? -1 : 0;
}

static void group_release(group_t *g) {
    Py_CLEAR(g->nodes);
    Py_CLEAR(g->facts[0]);
    Py_CLEAR(g->facts[1]);
    PyMem_Free(g->pairs);
    g->pairs = NULL;
}

/* Empties the store: every group's facts into its mappings (``store``) or dropped; -1: an error. */
static int pending_empty(PendingObject *p, int store) {
    int failed = 0;
    for (Py_ssize_t i = 0; i < p->n; i++) {
        group_t *g = &p->groups[i];
        if (store && !failed) {
            failed = group_store(p, g) < 0;
        } else {
            for (Py_ssize_t j = 0; j < g->n; j++) {
                Py_DECREF(g->pairs[j].node);
                Py_DECREF(PAIR_FACT(&g->pairs[j]));
            }
            p->pending -= g->n;
            g->n = 0;
        }
        group_release(g);
    }
    p->n = 0;
    if (p->map != NULL) memset(p->map, 0, p->map_size * sizeof *p->map);
    return failed ? -1 : 0;
}

/* The group of a partition's ``nodes`` mapping, made where missing (its facts mapping of ``kind`` recorded); NULL: no
   memory. */
static group_t *pending_group(PendingObject *p, PyObject *nodes, PyObject *facts, int kind) {
    if (p->map == NULL || (size_t)(p->n + 1) * 2 > p->map_size) { /* grow the map: at most half full */
        size_t size = p->map_size ? p->map_size * 2 : 1024;
        Py_ssize_t *map = PyMem_Calloc(size, sizeof *map);
        if (map == NULL) return NULL;
        PyMem_Free(p->map);
        p->map = map;
        p->map_size = size;
        for (Py_ssize_t i = 0; i < p->n; i++) p->map[map_at(p, p->groups[i].nodes)] = i + 1;
    }
    size_t at = map_at(p, nodes);
    group_t *g;
    if (p->map[at] != 0) {
        g = &p->groups[p->map[at] - 1];
    } else {
        if (p->n == p->room) {
            Py_ssize_t room = p->room ? p->room * 2 : 64;
            group_t *groups = PyMem_Realloc(p->groups, (size_t)room * sizeof *groups);
            if (groups == NULL) return NULL;
            p->groups = groups;
            p->room = room;
        }
        g = &p->groups[p->n++];
        *g = (group_t){Py_NewRef(nodes), {NULL, NULL}, NULL, 0, 0};
        p->map[at] = p->n;
    }
    if (g->facts[kind] == NULL) g->facts[kind] = Py_NewRef(facts);
    return g;
}

/* Adds a fact (its reference taken) to its group, storing the group's when it holds a batch; -1: an error. */
static int pending_add(PendingObject *p, group_t *g, PyObject *node, Py_ssize_t slot, PyObject *fact, int kind) {
    if (g->n == g->room) { /* doubling up to a batch, which never grows past it */
        Py_ssize_t room = g->room ? g->room * 2 : 16;
        pair_t *pairs = PyMem_Realloc(g->pairs, (size_t)room * sizeof *pairs);
        if (pairs == NULL) {
            Py_DECREF(fact);
            PyErr_NoMemory();
            return -1;
        }
        g->pairs = pairs;
        g->room = room;
    }
    g->pairs[g->n++] = (pair_t){Py_NewRef(node), (uintptr_t)fact | (uintptr_t)kind, slot};
    p->pending++;
    return g->n >= PENDING_BATCH ? group_store(p, g) : 0;
}

static PyObject *pending_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    if (PyTuple_GET_SIZE(args) || (kwargs != NULL && PyDict_GET_SIZE(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "Pending() takes no arguments");
        return NULL;
    }
    PendingObject *p = (PendingObject *)type->tp_alloc(type, 0);
    return (PyObject *)p; /* every field zero: empty */
}

static void pending_dealloc(PendingObject *p) {
    PyObject_GC_UnTrack(p);
    pending_empty(p, 0);
    PyMem_Free(p->groups);
    PyMem_Free(p->map);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static int pending_traverse(PendingObject *p, visitproc visit, void *arg) {
    for (Py_ssize_t i = 0; i < p->n; i++) {
        group_t *g = &p->groups[i];
        Py_VISIT(g->nodes);
        Py_VISIT(g->facts[0]);
        Py_VISIT(g->facts[1]);
        for (Py_ssize_t j = 0; j < g->n; j++) {
            Py_VISIT(g->pairs[j].node);
            Py_VISIT(PAIR_FACT(&g->pairs[j]));
        }
    }
    return 0;
}

static int pending_clear_refs(PendingObject *p) {
    pending_empty(p, 0);
    return 0;
}

static PyObject *pending_flush(PendingObject *p, PyObject *unused) {
    if (pending_empty(p, 1) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *pending_drop(PendingObject *p, PyObject *unused) {
    pending_empty(p, 0);
    Py_RETURN_NONE;
}

static Py_ssize_t pending_len(PendingObject *p) { return p->pending; }

static PyMethodDef pending_methods[] = {
    {"flush", (PyCFunction)pending_flush, METH_NOARGS, "Store every fact kept into its partition's mappings, in order."},
    {"drop", (PyCFunction)pending_drop, METH_NOARGS, "Forget every fact kept (a load starting over)."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods pending_as_sequence = {.sq_length = (lenfunc)pending_len};

static PyTypeObject PendingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "coordinator.core._native.Pending",
    .tp_doc = "Facts a page's compiled loop read, kept by partition until stored together (**Stored by partition**).",
    .tp_basicsize = sizeof(PendingObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = pending_new,
    .tp_dealloc = (destructor)pending_dealloc,
    .tp_traverse = (traverseproc)pending_traverse,
    .tp_clear = (inquiry)pending_clear_refs,
    .tp_methods = pending_methods,
    .tp_as_sequence = &pending_as_sequence,
};

int load_init(PyObject *module) {
    if (PyType_Ready(&PendingType) < 0) return -1;
    return PyModule_AddObjectRef(module, "Pending", (PyObject *)&PendingType);
}

PyObject *load_fast(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    page_t page = {NULL, NULL, 0, NULL, 0};
    int rows = nargs == 4 && PyTuple_CheckExact(args[0]) && PyTuple_GET_SIZE(args[0]) == 2 &&
               PyBytes_CheckExact(PyTuple_GET_ITEM(args[0], 0)) && PyBytes_CheckExact(PyTuple_GET_ITEM(args[0], 1)) &&
               PyBytes_GET_SIZE(PyTuple_GET_ITEM(args[0], 1)) % (5 * sizeof(int64_t)) == 0;
    if (nargs != 4 || !(rows || PyList_CheckExact(args[0])) || !PyTuple_CheckExact(args[3]) ||
        PyTuple_GET_SIZE(args[3]) != S_N) {
        PyErr_SetString(PyExc_TypeError,
                        "load_fast(page: list | tuple[bytes, bytes], at: int, top: int, state: tuple)");
        return NULL;
    }
    if (rows) {
        PyObject *data = PyTuple_GET_ITEM(args[0], 0), *table = PyTuple_GET_ITEM(args[0], 1);
        page.data = PyBytes_AS_STRING(data);
        page.size = PyBytes_GET_SIZE(data);
        page.rows = (const int64_t *)PyBytes_AS_STRING(table); /* bytes' storage is aligned for any C type */
        page.end = PyBytes_GET_SIZE(table) / (Py_ssize_t)(5 * sizeof(int64_t));
    } else {
        page.list = args[0];
        page.end = PyList_GET_SIZE(args[0]);
    }
    PyObject *const *st = &PyTuple_GET_ITEM(args[3], 0);
    Py_ssize_t at = PyLong_AsSsize_t(args[1]);
    long long top = PyLong_AsLongLong(args[2]);
    if ((at == -1 || top == -1) && PyErr_Occurred()) return NULL;
    if (at < 0) {
        PyErr_SetString(PyExc_ValueError, "load_fast: at >= 0");
        return NULL;
    }
    for (int i = 0; i < S_N; i++) {
        int ok = i == S_PENDING      ? Py_IS_TYPE(st[i], &PendingType)
                 : i == S_SLOT_NODES ? PyList_CheckExact(st[i])
                 : i > S_TRIGGERS    ? PyDict_CheckExact(st[i])
                                     : PyUnicode_CheckExact(st[i]) && PyUnicode_IS_COMPACT_ASCII(st[i]);
        if (!ok) {
            PyErr_SetString(PyExc_TypeError, "load_fast: state is (runs, triggers: ASCII strings, then eight dicts, a "
                                             "Pending, the slots' index: a dict and a list)");
            return NULL;
        }
    }
    PendingObject *pending = (PendingObject *)st[S_PENDING];
    const char *bases[2] = {(const char *)PyUnicode_DATA(st[S_RUNS]), (const char *)PyUnicode_DATA(st[S_TRIGGERS])};
    Py_ssize_t base_len[2] = {PyUnicode_GET_LENGTH(st[S_RUNS]), PyUnicode_GET_LENGTH(st[S_TRIGGERS])};
    slots_t *slots = PyMem_Calloc(2, sizeof(slots_t)); /* run states', ledger entries' */
    if (slots == NULL) return PyErr_NoMemory();
    const char *last = NULL; /* the last key's "{base}{instance}/{dag_id}", when it named a known DAG */
    Py_ssize_t last_len = 0;
    int kind = 0; /* of the last key: 0 run states, 1 ledger entries */
    PyObject *node = NULL; /* borrowed: ``nodes`` holds it */
    Py_ssize_t node_slot = -1; /* its slot in the partitions' mappings (``Slots``) */
    int failed = 0;
    Py_ssize_t end = page.end;
    item_t it;
    for (; at < end; at++) {
        if (!item_at(&page, at, &it)) break;
        const char *k = it.key;
        Py_ssize_t n = it.key_len;
        const char *slash = memrchr(k, '/', (size_t)n);
        if (slash == NULL) break;
        Py_ssize_t head = slash - k;
        if (last == NULL || head != last_len || memcmp(k, last, (size_t)head) != 0) {
            last = NULL;
            for (kind = 0; kind < 2; kind++) {
                if (n >= base_len[kind] && memcmp(k, bases[kind], (size_t)base_len[kind]) == 0) break;
            }
            if (kind == 2) break;
            /* "{instance}/{dag_id}" between the base and the last '/', exactly one '/' inside */
            const char *from = k + base_len[kind];
            if (slash < from) break;
            const char *mid = memchr(from, '/', (size_t)(slash - from));
            if (mid == NULL || memchr(mid + 1, '/', (size_t)(slash - mid - 1)) != NULL) break;
            PyObject *parts = Py_BuildValue("(s#s#)", from, (Py_ssize_t)(mid - from), mid + 1,
                                            (Py_ssize_t)(slash - mid - 1));
            if (parts == NULL) {
                failed = 1;
                break;
            }
            node = PyDict_GetItemWithError(st[S_NODES], parts);
            Py_DECREF(parts);
            if (node == NULL) {
                failed = PyErr_Occurred() != NULL;
                break;
            }
            node_slot = slots_index_slot(st[S_SLOT_INDEX], st[S_SLOT_NODES], node);
            if (node_slot < 0) {
                failed = 1;
                break;
            }
            last = k;
            last_len = head;
        }
        const char *suffix = slash + 1;
        Py_ssize_t suffix_len = n - head - 1;
        if (PyDict_GET_SIZE(st[S_PROBLEMS]) > 0) {
            PyObject *key = it.key_obj != NULL ? Py_NewRef(it.key_obj) : PyUnicode_DecodeASCII(k, n, NULL);
            int known = key == NULL ? -1 : PyDict_Contains(st[S_PROBLEMS], key);
            Py_XDECREF(key);
            if (known != 0) {
                failed = known < 0;
                break; /* ``apply`` clears the problem or words it again */
            }
        }
        slots_t *mine = &slots[kind];
        uint64_t h = bytes_hash(suffix, suffix_len);
        slot_t *slot = slot_find(mine, suffix, suffix_len, h);
        PyObject *fact;
        if (kind == 0) fact = native_run_fact_of(it.value, it.value_len, it.rev);
        else fact = native_done_ledger_fact_of(it.value, it.value_len, it.rev, st[S_NAMES]);
        if (fact == NULL) {
            failed = 1;
            break;
        }
        if (fact == Py_None) {
            Py_DECREF(fact); /* msgspec's or pydantic's to read: the loop's */
            break;
        }
        if (slot->suffix == NULL) {
            PyObject *text = PyUnicode_FromStringAndSize(suffix, suffix_len);
            PyObject *partition = text == NULL ? NULL : PyDict_GetItemWithError(st[S_PARTS], text);
            Py_XDECREF(text);
            if (partition == NULL) {
                failed = PyErr_Occurred() != NULL;
                Py_DECREF(fact);
                break; /* a part not seen valid yet: ``apply`` validates it */
            }
            PyObject *facts =
                mapping_in(st[kind == 0 ? S_RUNS_BY : S_LEDGER_BY], partition, st[S_SLOT_INDEX], st[S_SLOT_NODES]);
            PyObject *nodes =
                facts == NULL ? NULL : mapping_in(st[S_INDEX], partition, st[S_SLOT_INDEX], st[S_SLOT_NODES]);
            if (nodes == NULL) {
                failed = 1;
                Py_DECREF(fact);
                break;
            }
            group_t *group = pending_group(pending, nodes, facts, kind);
            if (group == NULL) {
                PyErr_NoMemory();
                failed = 1;
                Py_DECREF(fact);
                break;
            }
            if (mine->used >= SLOTS / 2) { /* full enough: start over (a lookup more, never a wrong slot) */
                memset(mine, 0, sizeof *mine);
                slot = slot_find(mine, suffix, suffix_len, h);
            }
            *slot = (slot_t){suffix, suffix_len, h, partition, facts, nodes, group - pending->groups};
            mine->used++;
        }
        long long mod_rev = kind == 0 ? ((RunFactObject *)fact)->rev : ((LedgerFactObject *)fact)->mod_rev;
        /* As the loop (``_apply_run``): a backfill's fact is indexed, any other drops an earlier one's (looked up only
           while there are any: most stores have none). */
        int backfill = kind == 0 && ((RunFactObject *)fact)->backfill;
        if (backfill || (kind == 0 && PyDict_GET_SIZE(st[S_BACKFILLS]) > 0)) {
            PyObject *at_key = PyTuple_Pack(2, node, slot->partition);
            PyObject *rev = !backfill ? NULL : it.rev_obj != NULL ? Py_NewRef(it.rev_obj) : PyLong_FromLongLong(it.rev);
            int done = at_key == NULL || (backfill && rev == NULL) ? -1
                       : backfill ? PyDict_SetItem(st[S_BACKFILLS], at_key, rev)
                                  : pop_key(st[S_BACKFILLS], at_key);
            Py_XDECREF(at_key);
            Py_XDECREF(rev);
            if (done < 0) {
                Py_DECREF(fact);
                failed = 1;
                break;
            }
        }
        if (pending_add(pending, &pending->groups[slot->group], node, node_slot, fact, kind) < 0) { /* the fact's reference */
            failed = 1;
            break;
        }
        if (mod_rev > top) top = mod_rev;
    }
    PyMem_Free(slots);
    if (failed) return NULL;
    return Py_BuildValue("(nL)", at, top);
}
