/* The settled check of a full pass in C: ``SettledWalk``, ``core.settled_pass``'s loop over every DAG of one
partition.

The sweep after a start (every partition planned) meets one (DAG, partition) pair per DAG and day, nearly all
settled: at the estate (5,000 DAGs x 365 days) 1.8 million of them, and the Python loop spent about a microsecond on
each (two mapping lookups, a dozen attribute reads, the upstreams' generations against the ledger's), 2 s of the
sweep's plan. Here the same lookups read the compact facts' fields in place; the order is read once
(``SettledWalk(order, success, done)``, then ``walk`` per partition), each DAG's slot found once in the view's shared
index, and the facts a few DAGs ahead are fetched into the cache while this one is judged (before that, ``perf`` put
most of the loop's time in the first touch of each fact).

Rules:
- **The Python loop's answers.** The same DAGs are passed over, in the same topological order, with the same
  freshness and generations by position; every other DAG is handed to ``act`` in turn, its action appended, exactly
  as ``_walk`` does. The Python loop stays the definition (and runs where the module is not built);
  ``tests/test_settled_walk.py`` holds the two to the same calls.
- **Unsure is act's.** A fact this loop cannot read in place (not a compact fact, or one holding its fields as given:
  ``RUN_ODD``, ``LEDGER_ODD``) is never judged here: its DAG goes to ``act``, which judges every DAG correctly. Passing
  fewer DAGs over changes the cost, never the answer.
- **Nothing kept but the order.** A walk holds the order and the index its slots came from; no fact survives a
  ``walk``, and a fact is read before ``act`` runs again (``act`` is Python code). A slot found in the index stays
  right (**The index only grows**, ``_slots.c``); a DAG without one then is looked up by its node.
- **Shared safely.** ``core.settled_pass`` keeps the last walk for the next pass, so two threads may walk with it (two
  views in one process). A walk finds slots without running Python code, and reads a fact by slot only where the
  mapping's index is the one its slots came from (checked at every read: ``act`` may let another thread find them in
  another index); else by node.
*/
#include "_native.h"

/* Freshness by position, as the Python loop's list holds it: None (judged by ``act``, or not at all), False, True. */
enum { UNJUDGED, STALE, FRESH };

/* How many DAGs ahead a walk fetches facts into the cache: enough to cover a miss to memory behind the work on one. */
#define AHEAD 8

/* An upstream of a DAG on the per-DAG path: its position in the order and its ledger input key (borrowed from the
   order, which the walk holds). */
typedef struct {
    Py_ssize_t at;
    PyObject *key;
} Upstream;

/* A DAG of the order (borrowed from it): its upstreams ``ups[first .. first + count)``, ``count`` -1 where it is not on
   the per-DAG path (None); its slot in ``index``, -1 where it had none. */
typedef struct {
    PyObject *node;
    Py_ssize_t first, count, slot;
} Position;

typedef struct {
    PyObject_HEAD
    PyObject *order, *success, *done;
    PyObject *index; /* the index the slots were found in; NULL: none yet */
    Py_ssize_t n;
    Position *at;
    Upstream *ups;
} WalkObject;

/* The value of ``node`` in a partition's mapping (a new reference), NULL where it has none (an error set only on an
   error): ``Slots`` by ``slot`` (-1: by node), dicts in place, any other mapping by its ``get``. */
static PyObject *lookup(PyObject *map, PyObject *node, Py_ssize_t slot) {
    PyObject *found;
    if (slots_check(map))
        found = slots_lookup_at(map, slot, node);
    else if (PyDict_CheckExact(map))
        found = PyDict_GetItemWithError(map, node);
    else {
        static PyObject *get = NULL; /* interned once: the name of ``get`` */
        if (get == NULL && (get = PyUnicode_InternFromString("get")) == NULL) return NULL;
        found = PyObject_CallMethodOneArg(map, get, node); /* one argument: a node is a tuple */
        if (found == Py_None) Py_CLEAR(found);
        return found;
    }
    return Py_XNewRef(found);
}

/* The fact of the DAG at ``i`` in ``map`` (as ``lookup``): by its slot where ``map`` is a ``Slots`` over the index
   the slots came from. */
static PyObject *fact_at(WalkObject *w, PyObject *map, Py_ssize_t i) {
    Py_ssize_t slot = slots_check(map) && slots_index(map) == w->index ? w->at[i].slot : -1;
    return lookup(map, w->at[i].node, slot);
}

/* The slots of the order's DAGs in ``index`` (-1: none yet); -1: an error. */
static int find_slots(WalkObject *w, PyObject *index) {
    if (!PyDict_Check(index)) return 0;
    for (Py_ssize_t i = 0; i < w->n; i++) {
        PyObject *slot = PyDict_GetItemWithError(index, w->at[i].node);
        if (slot == NULL && PyErr_Occurred()) return -1;
        w->at[i].slot = slot == NULL ? -1 : PyLong_AsSsize_t(slot);
        if (w->at[i].slot == -1 && PyErr_Occurred()) return -1;
    }
    Py_XSETREF(w->index, Py_NewRef(index));
    return 0;
}

/* The facts of the DAG at ``i`` in the two mappings, fetched into the cache where they are in a dense ``Slots``. */
static void prefetch(WalkObject *w, PyObject *runs, PyObject *ledgers, Py_ssize_t i) {
#if defined(__GNUC__) || defined(__clang__)
    Py_ssize_t slot = w->at[i].slot;
    PyObject *run = slots_check(runs) && slots_index(runs) == w->index ? slots_peek(runs, slot) : NULL;
    PyObject *ledger = slots_check(ledgers) && slots_index(ledgers) == w->index ? slots_peek(ledgers, slot) : NULL;
    if (run != NULL) __builtin_prefetch(run);
    if (ledger != NULL) {
        __builtin_prefetch(ledger);
        __builtin_prefetch((char *)ledger + 64); /* its revisions: the second line */
    }
#endif
}

/* A compact run fact read in place: its state (borrowed from the fact) and revision; 0 where it is not one. */
static int run_fields(PyObject *fact, PyObject **state, int64_t *rev) {
    if (!Py_IS_TYPE(fact, &RunFactType) || RUN_ODD((RunFactObject *)fact) != NULL) return 0;
    *state = ((RunFactObject *)fact)->state;
    *rev = ((RunFactObject *)fact)->rev;
    return 1;
}

/* A compact ledger fact in place; NULL where it is not one. */
static LedgerFactObject *ledger_of(PyObject *fact) {
    if (fact == NULL || !Py_IS_TYPE(fact, &LedgerFactType) || LEDGER_ODD((LedgerFactObject *)fact) != NULL) return NULL;
    return (LedgerFactObject *)fact;
}

/* The generation the upstream at ``j`` counts with: 1 and ``*gen`` set where it is fresh as this loop can tell, 0
   where it is not (or cannot be told here), -1 on an error. */
static int upstream_gen(WalkObject *w, PyObject *runs, PyObject *known, const signed char *fresh, const int64_t *gens,
                        Py_ssize_t j, int64_t *gen) {
    if (fresh[j] == FRESH) {
        *gen = gens[j];
        return 1;
    }
    if (fresh[j] == STALE) return 0;
    /* judged by ``act`` (its memo), or not yet: ``act``'s */
    PyObject *memo = lookup(known, w->at[j].node, -1);
    if (memo == NULL) return PyErr_Occurred() ? -1 : 0;
    int truth = PyObject_IsTrue(memo);
    Py_DECREF(memo);
    if (truth <= 0) return truth;
    PyObject *fact = fact_at(w, runs, j), *state;
    if (fact == NULL) return PyErr_Occurred() ? -1 : 0;
    int read = run_fields(fact, &state, gen);
    Py_DECREF(fact);
    return read;
}

/* Whether the non-root DAG at ``i``, which succeeded at ``rev`` after its last intent (``ledger``, NULL: none),
   consumed each upstream at the generation it records (semantics `fresh-consumed`), each upstream fresh; -1 on an
   error. */
static int consumed_all(WalkObject *w, Py_ssize_t i, LedgerFactObject *ledger, int64_t rev, PyObject *runs,
                        PyObject *known, const signed char *fresh, const int64_t *gens) {
    PyObject *names = NULL;
    if (ledger != NULL) {
        int64_t since = ledger->recorded_intent_rev ? ledger->recorded_intent_rev : ledger->mod_rev;
        if (rev <= since) return 0; /* triggered since it succeeded: ``act`` says so */
        names = ledger->input_names;
        if (!PyTuple_Check(names)) return 0;
    }
    const Position *p = &w->at[i];
    if (p->count == 0) return 0;
    for (const Upstream *u = w->ups + p->first; u < w->ups + p->first + p->count; u++) {
        int64_t gen;
        int found = upstream_gen(w, runs, known, fresh, gens, u->at, &gen);
        if (found <= 0) return found;
        Py_ssize_t at = -1, size = names == NULL ? 0 : PyTuple_GET_SIZE(names);
        for (Py_ssize_t k = 0; k < size; k++) { /* ``names.index(key)``: the first equal name */
            PyObject *name = PyTuple_GET_ITEM(names, k);
            int equal = name == u->key ? 1 : PyObject_RichCompareBool(name, u->key, Py_EQ);
            if (equal < 0) return -1;
            if (equal) {
                at = k;
                break;
            }
        }
        if (at >= 0) {
            if (at >= Py_SIZE(ledger) || ledger->revs[at] != gen) return 0;
        } else if (rev <= gen)
            return 0;
    }
    return 1;
}

/* The DAG at ``i``: 1 where it is passed over (``fresh``/``gens`` set as the Python loop sets them), 0 where it is
   ``act``'s, -1 on an error. */
static int settled(WalkObject *w, Py_ssize_t i, PyObject *runs, PyObject *ledgers, PyObject *known,
                   signed char *fresh, int64_t *gens) {
    if (w->at[i].count < 0) return 0;
    PyObject *fact = fact_at(w, runs, i);
    if (fact == NULL && PyErr_Occurred()) return -1;
    PyObject *ledger_fact = fact_at(w, ledgers, i);
    if (ledger_fact == NULL && PyErr_Occurred()) {
        Py_XDECREF(fact);
        return -1;
    }
    PyObject *state = NULL;
    int64_t rev = 0;
    int readable = fact != NULL && run_fields(fact, &state, &rev);
    LedgerFactObject *ledger = ledger_of(ledger_fact);
    int done = ledger_fact == NULL || (ledger != NULL && ledger->status == w->done), result = 0;
    if (w->at[i].count == 0) { /* a root: fresh exactly when it succeeded (semantics `root-fresh`) */
        if (fact != NULL && !readable)
            fresh[i] = UNJUDGED; /* unsure: ``act`` judges it, and its memo answers for it */
        else if (readable && state == w->success) {
            fresh[i] = FRESH;
            gens[i] = rev;
        } else
            fresh[i] = STALE;
        result = fresh[i] != UNJUDGED && done; /* ``act``: a root never acts while its ledger is done (or none) */
    } else if (readable && state == w->success && done) {
        result = consumed_all(w, i, ledger, rev, runs, known, fresh, gens);
        if (result == 1) {
            fresh[i] = FRESH;
            gens[i] = rev;
        }
    }
    Py_XDECREF(fact);
    Py_XDECREF(ledger_fact);
    return result;
}

static PyObject *walk_walk(WalkObject *w, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "walk(runs, ledgers, known, act, actions)");
        return NULL;
    }
    PyObject *runs = args[0], *ledgers = args[1], *known = args[2], *act = args[3], *actions = args[4];
    if (!PyList_Check(actions)) {
        PyErr_SetString(PyExc_TypeError, "walk: actions is a list");
        return NULL;
    }
    if (slots_check(runs) && slots_index(runs) != w->index && find_slots(w, slots_index(runs)) < 0) return NULL;
    signed char *fresh = PyMem_Calloc(w->n ? (size_t)w->n : 1, sizeof *fresh); /* UNJUDGED is 0 */
    int64_t *gens = PyMem_Calloc(w->n ? (size_t)w->n : 1, sizeof *gens);
    if (fresh == NULL || gens == NULL) {
        PyMem_Free(fresh);
        PyMem_Free(gens);
        return PyErr_NoMemory();
    }
    PyObject *result = Py_None;
    for (Py_ssize_t i = 0; i < w->n; i++) {
        if (i + AHEAD < w->n) prefetch(w, runs, ledgers, i + AHEAD);
        int passed = settled(w, i, runs, ledgers, known, fresh, gens);
        if (passed < 0) {
            result = NULL;
            break;
        }
        if (passed) continue;
        PyObject *action = PyObject_CallOneArg(act, w->at[i].node);
        if (action == NULL || (action != Py_None && PyList_Append(actions, action) < 0)) {
            Py_XDECREF(action);
            result = NULL;
            break;
        }
        Py_DECREF(action);
    }
    PyMem_Free(fresh);
    PyMem_Free(gens);
    return Py_XNewRef(result);
}

/* ``SettledWalk(order, success, done)``: the order read into arrays (a TypeError or ValueError where it is not
   ``Graph.pass_order``'s shape). */
static PyObject *walk_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *order, *success, *done;
    if (!PyArg_ParseTuple(args, "O!OO:SettledWalk", &PyTuple_Type, &order, &success, &done)) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(order), nups = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *entry = PyTuple_GET_ITEM(order, i);
        if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 2 ||
            (PyTuple_GET_ITEM(entry, 1) != Py_None && !PyTuple_CheckExact(PyTuple_GET_ITEM(entry, 1)))) {
            PyErr_Format(PyExc_TypeError, "SettledWalk: entry %zd of the order is not (node, upstreams or None)", i);
            return NULL;
        }
        if (PyTuple_GET_ITEM(entry, 1) != Py_None) nups += PyTuple_GET_SIZE(PyTuple_GET_ITEM(entry, 1));
    }
    WalkObject *w = (WalkObject *)type->tp_alloc(type, 0);
    if (w == NULL) return NULL;
    w->order = Py_NewRef(order);
    w->success = Py_NewRef(success);
    w->done = Py_NewRef(done);
    w->n = n;
    w->at = PyMem_Calloc(n ? (size_t)n : 1, sizeof *w->at);
    w->ups = PyMem_Calloc(nups ? (size_t)nups : 1, sizeof *w->ups);
    if (w->at == NULL || w->ups == NULL) {
        Py_DECREF(w);
        return PyErr_NoMemory();
    }
    Py_ssize_t next = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *entry = PyTuple_GET_ITEM(order, i), *ups = PyTuple_GET_ITEM(entry, 1);
        Position *p = &w->at[i];
        p->node = PyTuple_GET_ITEM(entry, 0);
        p->slot = -1;
        p->first = next;
        p->count = ups == Py_None ? -1 : PyTuple_GET_SIZE(ups);
        for (Py_ssize_t u = 0; u < p->count; u++, next++) {
            PyObject *up = PyTuple_GET_ITEM(ups, u);
            Py_ssize_t at = PyTuple_CheckExact(up) && PyTuple_GET_SIZE(up) == 3 ? PyLong_AsSsize_t(PyTuple_GET_ITEM(up, 0))
                                                                               : -2;
            if (at == -1 && PyErr_Occurred()) {
                Py_DECREF(w);
                return NULL;
            }
            if (at < 0 || at >= i) { /* an upstream comes before its DAG in a topological order */
                PyErr_Format(PyExc_ValueError,
                             "SettledWalk: upstream %zd of entry %zd is not (an earlier position, node, input key)", u,
                             i);
                Py_DECREF(w);
                return NULL;
            }
            w->ups[next].at = at;
            w->ups[next].key = PyTuple_GET_ITEM(up, 2);
        }
    }
    return (PyObject *)w;
}

static void walk_dealloc(WalkObject *w) {
    Py_XDECREF(w->order);
    Py_XDECREF(w->success);
    Py_XDECREF(w->done);
    Py_XDECREF(w->index);
    PyMem_Free(w->at);
    PyMem_Free(w->ups);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyMethodDef walk_methods[] = {
    {"walk", (PyCFunction)(void (*)(void))walk_walk, METH_FASTCALL,
     "walk(runs, ledgers, known, act, actions): one partition's DAGs in order, the settled passed over."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WalkType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "coordinator.core._native.SettledWalk",
    .tp_doc = "A full pass's order read once, walked per partition: the settled DAGs passed over, the others act's.",
    .tp_basicsize = sizeof(WalkObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = walk_new,
    .tp_dealloc = (destructor)walk_dealloc,
    .tp_methods = walk_methods,
};

int settled_init(PyObject *module) {
    if (PyType_Ready(&WalkType) < 0) return -1;
    return PyModule_AddObjectRef(module, "SettledWalk", (PyObject *)&WalkType);
}
