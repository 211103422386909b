/* The view's facts, compact: ``RunFact`` and ``LedgerFact`` as one object each, without a Python object per field.

A big store holds millions of facts. As named tuples each was a tuple with its integers, times and input generations
as objects of their own: about 215 bytes and four allocations a run state, about 320 bytes and five a ledger entry,
each new byte a page the kernel zeroes at a start. Here a run fact is 80 bytes, a done ledger fact of two inputs 112,
one allocation each: integers and the input generations are held as 32- or 64-bit integers, times as UTC
microseconds, a done intent's two None fields as one empty slot, and each is made into its Python object when read.

Rules:
- **The same fact.** A field reads back equal to what was given, of the same type: an integer as an int, a time as
  a ``datetime`` in the shared ``datetime.UTC``, a bool as a bool. A value the layout cannot hold exactly (an int
  beyond 64 bits or of another type, a time in another zone or none, a ``datetime`` subclass) keeps every field as
  given (``odd``: the tuple of them, where the state or the status would be): nothing is converted, so no reader
  sees a difference.
- **A named tuple's manners.** Built with the same arguments and defaults as the named tuple of ``core/facts.py``,
  equal and hashed as the tuple of its fields, indexed, unpacked, copied and pickled like it, shown like it.
- **The named tuple's own members.** The properties and methods written in Python on the named tuple (``of``,
  ``started``, ``record``, ...) are adopted by the type (``adopt``): one definition, in Python. ``LedgerFact.input``
  is this module's (the planner asks it per upstream) and reads as the Python one does.
- Not tracked by the cyclic GC: a fact refers to enum members, strings, tuples of strings and a pydantic record,
  none of which refers back to a fact.
*/
#include "_facts.h"

#include <datetime.h>
#include <stddef.h>
#include <string.h>

static const char *const RUN_NAMES[RF_N] = {
    "state", "run_id", "clear_number", "rev", "source", "start_date", "end_date", "seen", "backfill",
};
static const char *const LEDGER_NAMES[LF_N] = {
    "status", "action", "run_id", "input_names", "input_revs", "mod_rev", "recorded_intent_rev", "trigger_count",
    "attempts", "last_error", "done_at", "full",
};

/* The named tuples' defaults, by field (NULL: required), set by ``adopt``. */
static PyObject *RunDefaults[RF_N], *LedgerDefaults[LF_N];
static int AdoptedRun, AdoptedLedger;

#define DAY_US INT64_C(86400000000)

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d) {
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

int64_t utc_micros(int y, int mo, int d, int h, int mi, int sec, int us) {
    return ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * INT64_C(60000000) + (int64_t)sec * 1000000 + us;
}

/* The ``datetime`` of ``at`` in the shared UTC; None for NO_TIME. */
static PyObject *time_object(int64_t at) {
    if (at == NO_TIME) Py_RETURN_NONE;
    int64_t days = floor_div(at, DAY_US), rest = at - days * DAY_US;
    int y, m, d;
    civil_from_days(days, &y, &m, &d);
    int us = (int)(rest % 1000000);
    rest /= 1000000;
    return PyDateTimeAPI->DateTime_FromDateAndTime(y, m, d, (int)(rest / 3600), (int)(rest / 60 % 60),
                                                   (int)(rest % 60), us, PyDateTime_TimeZone_UTC,
                                                   PyDateTimeAPI->DateTimeType);
}

/* **The same fact**: 1 and ``*out`` where ``value`` is exactly an int within 64 bits. */
static int held_int(PyObject *value, int64_t *out) {
    if (!PyLong_CheckExact(value)) return 0;
    int overflow;
    long long n = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || (n == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    *out = (int64_t)n;
    return 1;
}

/* **The same fact**: 1 and ``*out`` where ``value`` is exactly an int within 32 bits. */
static int held_int32(PyObject *value, int32_t *out) {
    int64_t n;
    if (!held_int(value, &n) || n < INT32_MIN || n > INT32_MAX) return 0;
    *out = (int32_t)n;
    return 1;
}

/* **The same fact**: 1 and ``*out`` where ``value`` is None or exactly a ``datetime`` in the shared UTC. */
static int held_time(PyObject *value, int64_t *out) {
    if (value == Py_None) {
        *out = NO_TIME;
        return 1;
    }
    if (!PyDateTime_CheckExact(value) || PyDateTime_DATE_GET_TZINFO(value) != PyDateTime_TimeZone_UTC ||
        PyDateTime_DATE_GET_FOLD(value) != 0)
        return 0;
    *out = utc_micros(PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value), PyDateTime_GET_DAY(value),
                      PyDateTime_DATE_GET_HOUR(value), PyDateTime_DATE_GET_MINUTE(value),
                      PyDateTime_DATE_GET_SECOND(value), PyDateTime_DATE_GET_MICROSECOND(value));
    return 1;
}

/* The fields of a call ``Type(*args, **kwds)`` into ``out`` (borrowed), as the named tuple's ``__new__`` takes them;
   -1: a TypeError. */
static int fields_of_call(const char *type, const char *const *names, PyObject **defaults, int n, PyObject *args,
                          PyObject *kwds, PyObject **out) {
    Py_ssize_t given = PyTuple_GET_SIZE(args);
    if (given > n) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", type, n, given);
        return -1;
    }
    for (int i = 0; i < n; i++) out[i] = i < given ? PyTuple_GET_ITEM(args, i) : NULL;
    if (kwds != NULL) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(kwds, &pos, &key, &value)) {
            int i = 0;
            for (; i < n; i++) {
                if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) break;
            }
            if (i == n) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R", type, key);
                return -1;
            }
            if (out[i] != NULL) {
                PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", type, names[i]);
                return -1;
            }
            out[i] = value;
        }
    }
    for (int i = 0; i < n; i++) {
        if (out[i] == NULL) out[i] = defaults[i];
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument: '%s'", type, names[i]);
            return -1;
        }
    }
    return 0;
}

static PyObject *odd_tuple(PyObject *const *fields, int n) {
    PyObject *odd = PyTuple_New(n);
    if (odd == NULL) return NULL;
    for (int i = 0; i < n; i++) PyTuple_SET_ITEM(odd, i, Py_NewRef(fields[i]));
    return odd;
}

/* ---- RunFact ---- */

static PyObject *run_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *v[RF_N];
    if (fields_of_call("RunFact", RUN_NAMES, RunDefaults, RF_N, args, kwds, v) < 0) return NULL;
    RunFactObject *f = PyObject_New(RunFactObject, &RunFactType);
    if (f == NULL) return NULL;
    f->state = f->run_id = f->source = NULL;
    f->backfill = v[RF_BACKFILL] == Py_True;
    if (!PyTuple_CheckExact(v[RF_STATE]) && held_int32(v[RF_CLEAR], &f->clear_number) && held_int(v[RF_REV], &f->rev) &&
        held_time(v[RF_START], &f->start) && held_time(v[RF_END], &f->end) && held_time(v[RF_SEEN], &f->seen) &&
        (v[RF_BACKFILL] == Py_True || v[RF_BACKFILL] == Py_False)) {
        f->state = Py_NewRef(v[RF_STATE]);
        f->run_id = Py_NewRef(v[RF_RUN_ID]);
        f->source = Py_NewRef(v[RF_SOURCE]);
    } else if ((f->state = odd_tuple(v, RF_N)) == NULL) {
        Py_DECREF(f);
        return NULL;
    }
    return (PyObject *)f;
}

static void run_dealloc(RunFactObject *f) {
    Py_XDECREF(f->state);
    Py_XDECREF(f->run_id);
    Py_XDECREF(f->source);
    PyObject_Free(f);
}

static PyObject *run_item(RunFactObject *f, Py_ssize_t i) {
    if (i < 0 || i >= RF_N) {
        PyErr_SetString(PyExc_IndexError, "tuple index out of range");
        return NULL;
    }
    PyObject *odd = RUN_ODD(f);
    if (odd != NULL) return Py_NewRef(PyTuple_GET_ITEM(odd, i));
    switch (i) {
    case RF_STATE: return Py_NewRef(f->state);
    case RF_RUN_ID: return Py_NewRef(f->run_id);
    case RF_CLEAR: return PyLong_FromLongLong(f->clear_number);
    case RF_REV: return PyLong_FromLongLong(f->rev);
    case RF_SOURCE: return Py_NewRef(f->source);
    case RF_START: return time_object(f->start);
    case RF_END: return time_object(f->end);
    case RF_SEEN: return time_object(f->seen);
    default: return PyBool_FromLong(f->backfill);
    }
}

static Py_ssize_t run_length(PyObject *self) { return RF_N; }

static PyObject *run_get(PyObject *self, void *at) { return run_item((RunFactObject *)self, (Py_ssize_t)at); }

/* ---- LedgerFact ---- */

static PyObject *ledger_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *v[LF_N];
    if (fields_of_call("LedgerFact", LEDGER_NAMES, LedgerDefaults, LF_N, args, kwds, v) < 0) return NULL;
    PyObject *revs = v[LF_REVS];
    int held = PyTuple_CheckExact(revs);
    Py_ssize_t n = held ? PyTuple_GET_SIZE(revs) : 0;
    LedgerFactObject *f = PyObject_NewVar(LedgerFactObject, &LedgerFactType, n);
    if (f == NULL) return NULL;
    f->status = f->action = f->run_id = f->input_names = f->rest = NULL;
    for (Py_ssize_t i = 0; held && i < n; i++) held = held_int(PyTuple_GET_ITEM(revs, i), &f->revs[i]);
    if (held && !PyTuple_CheckExact(v[LF_STATUS]) && held_int(v[LF_MOD_REV], &f->mod_rev) &&
        held_int(v[LF_INTENT], &f->recorded_intent_rev) && held_int32(v[LF_COUNT], &f->trigger_count) &&
        held_int32(v[LF_ATTEMPTS], &f->attempts) && held_time(v[LF_DONE_AT], &f->done_at)) {
        if (v[LF_ERROR] != Py_None || v[LF_FULL] != Py_None) {
            f->rest = PyTuple_Pack(2, v[LF_ERROR], v[LF_FULL]);
            if (f->rest == NULL) {
                Py_DECREF(f);
                return NULL;
            }
        }
        f->status = Py_NewRef(v[LF_STATUS]);
        f->action = Py_NewRef(v[LF_ACTION]);
        f->run_id = Py_NewRef(v[LF_RUN_ID]);
        f->input_names = Py_NewRef(v[LF_NAMES]);
    } else if ((f->status = odd_tuple(v, LF_N)) == NULL) {
        Py_DECREF(f);
        return NULL;
    }
    return (PyObject *)f;
}

static void ledger_dealloc(LedgerFactObject *f) {
    Py_XDECREF(f->status);
    Py_XDECREF(f->action);
    Py_XDECREF(f->run_id);
    Py_XDECREF(f->input_names);
    Py_XDECREF(f->rest);
    PyObject_Free(f);
}

static PyObject *ledger_revs(LedgerFactObject *f) {
    Py_ssize_t n = Py_SIZE(f);
    PyObject *out = PyTuple_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *rev = PyLong_FromLongLong(f->revs[i]);
        if (rev == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, rev);
    }
    return out;
}

static PyObject *ledger_item(LedgerFactObject *f, Py_ssize_t i) {
    if (i < 0 || i >= LF_N) {
        PyErr_SetString(PyExc_IndexError, "tuple index out of range");
        return NULL;
    }
    PyObject *odd = LEDGER_ODD(f);
    if (odd != NULL) return Py_NewRef(PyTuple_GET_ITEM(odd, i));
    switch (i) {
    case LF_STATUS: return Py_NewRef(f->status);
    case LF_ACTION: return Py_NewRef(f->action);
    case LF_RUN_ID: return Py_NewRef(f->run_id);
    case LF_NAMES: return Py_NewRef(f->input_names);
    case LF_REVS: return ledger_revs(f);
    case LF_MOD_REV: return PyLong_FromLongLong(f->mod_rev);
    case LF_INTENT: return PyLong_FromLongLong(f->recorded_intent_rev);
    case LF_COUNT: return PyLong_FromLongLong(f->trigger_count);
    case LF_ATTEMPTS: return PyLong_FromLongLong(f->attempts);
    case LF_ERROR: return Py_NewRef(f->rest == NULL ? Py_None : PyTuple_GET_ITEM(f->rest, 0));
    case LF_DONE_AT: return time_object(f->done_at);
    default: return Py_NewRef(f->rest == NULL ? Py_None : PyTuple_GET_ITEM(f->rest, 1));
    }
}

static Py_ssize_t ledger_length(PyObject *self) { return LF_N; }

static PyObject *ledger_get(PyObject *self, void *at) { return ledger_item((LedgerFactObject *)self, (Py_ssize_t)at); }

/* input(name) -> int | None: ``input_revs[input_names.index(name)]``, None where ``index`` raises ValueError, as the
   named tuple's reads it; without building the generations' tuple. */
static PyObject *ledger_input(PyObject *self, PyObject *name) {
    LedgerFactObject *f = (LedgerFactObject *)self;
    PyObject *odd = LEDGER_ODD(f);
    PyObject *names = odd != NULL ? PyTuple_GET_ITEM(odd, LF_NAMES) : f->input_names;
    PyObject *at = PyObject_CallMethod(names, "index", "O", name);
    if (at == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError)) return NULL;
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (odd != NULL) {
        PyObject *found = PyObject_GetItem(PyTuple_GET_ITEM(odd, LF_REVS), at);
        Py_DECREF(at);
        return found;
    }
    Py_ssize_t i = PyNumber_AsSsize_t(at, PyExc_IndexError);
    Py_DECREF(at);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (i < 0) i += Py_SIZE(f);
    if (i < 0 || i >= Py_SIZE(f)) {
        PyErr_SetString(PyExc_IndexError, "tuple index out of range");
        return NULL;
    }
    return PyLong_FromLongLong(f->revs[i]);
}

/* ---- What both share: **A named tuple's manners** ---- */

static int fact_size(PyObject *self) { return Py_TYPE(self) == &RunFactType ? RF_N : LF_N; }

static PyObject *fact_item(PyObject *self, Py_ssize_t i) {
    if (Py_TYPE(self) == &RunFactType) return run_item((RunFactObject *)self, i);
    return ledger_item((LedgerFactObject *)self, i);
}

static PyObject *as_tuple(PyObject *self) {
    int n = fact_size(self);
    PyObject *out = PyTuple_New(n);
    if (out == NULL) return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *item = fact_item(self, i);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, item);
    }
    return out;
}

static PyObject *fact_richcompare(PyObject *a, PyObject *b, int op) {
    if (Py_TYPE(a) != Py_TYPE(b)) Py_RETURN_NOTIMPLEMENTED;
    PyObject *left = as_tuple(a), *right = left == NULL ? NULL : as_tuple(b);
    PyObject *out = right == NULL ? NULL : PyObject_RichCompare(left, right, op);
    Py_XDECREF(left);
    Py_XDECREF(right);
    return out;
}

static Py_hash_t fact_hash(PyObject *self) {
    PyObject *items = as_tuple(self);
    if (items == NULL) return -1;
    Py_hash_t out = PyObject_Hash(items);
    Py_DECREF(items);
    return out;
}

static PyObject *fact_repr(PyObject *self) {
    int run = Py_TYPE(self) == &RunFactType, n = fact_size(self);
    const char *const *names = run ? RUN_NAMES : LEDGER_NAMES;
    PyObject *parts = PyList_New(0);
    if (parts == NULL) return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *item = fact_item(self, i);
        PyObject *part = item == NULL ? NULL : PyUnicode_FromFormat("%s=%R", names[i], item);
        Py_XDECREF(item);
        if (part == NULL || PyList_Append(parts, part) < 0) {
            Py_XDECREF(part);
            Py_DECREF(parts);
            return NULL;
        }
        Py_DECREF(part);
    }
    PyObject *sep = PyUnicode_FromString(", ");
    PyObject *body = sep == NULL ? NULL : PyUnicode_Join(sep, parts);
    Py_XDECREF(sep);
    Py_DECREF(parts);
    if (body == NULL) return NULL;
    PyObject *out = PyUnicode_FromFormat("%s(%U)", run ? "RunFact" : "LedgerFact", body);
    Py_DECREF(body);
    return out;
}

/* (type, fields): what ``copy`` and ``pickle`` rebuild it from. */
static PyObject *fact_reduce(PyObject *self, PyObject *unused) {
    PyObject *items = as_tuple(self);
    if (items == NULL) return NULL;
    return Py_BuildValue("(ON)", (PyObject *)Py_TYPE(self), items);
}

static PyMethodDef run_methods[] = {
    {"__reduce__", fact_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef ledger_methods[] = {
    {"__reduce__", fact_reduce, METH_NOARGS, NULL},
    {"input", ledger_input, METH_O, "The recorded generation of input ``name`` (None: not recorded)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef run_getset[RF_N + 1], ledger_getset[LF_N + 1];

static PySequenceMethods run_sequence = {.sq_length = run_length, .sq_item = (ssizeargfunc)run_item};
static PySequenceMethods ledger_sequence = {.sq_length = ledger_length, .sq_item = (ssizeargfunc)ledger_item};

PyTypeObject RunFactType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "coordinator.core.facts.RunFact",
    .tp_basicsize = sizeof(RunFactObject),
    .tp_dealloc = (destructor)run_dealloc,
    .tp_repr = fact_repr,
    .tp_as_sequence = &run_sequence,
    .tp_hash = fact_hash,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The latest run state of one (DAG, partition) and the revision it was written at (compact).",
    .tp_richcompare = fact_richcompare,
    .tp_methods = run_methods,
    .tp_getset = run_getset,
    .tp_new = run_new,
};

PyTypeObject LedgerFactType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "coordinator.core.facts.LedgerFact",
    .tp_basicsize = offsetof(LedgerFactObject, revs),
    .tp_itemsize = sizeof(int64_t),
    .tp_dealloc = (destructor)ledger_dealloc,
    .tp_repr = fact_repr,
    .tp_as_sequence = &ledger_sequence,
    .tp_hash = fact_hash,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The last trigger intent recorded for one (DAG, partition) (compact).",
    .tp_richcompare = fact_richcompare,
    .tp_methods = ledger_methods,
    .tp_getset = ledger_getset,
    .tp_new = ledger_new,
};

static void fill_getset(PyGetSetDef *out, const char *const *names, int n, getter get) {
    for (int i = 0; i < n; i++) {
        out[i].name = names[i];
        out[i].get = get;
        out[i].closure = (void *)(Py_ssize_t)i;
    }
}

int facts_init(PyObject *module) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return -1;
    fill_getset(run_getset, RUN_NAMES, RF_N, run_get);
    fill_getset(ledger_getset, LEDGER_NAMES, LF_N, ledger_get);
    if (PyType_Ready(&RunFactType) < 0 || PyType_Ready(&LedgerFactType) < 0) return -1;
    if (PyModule_AddObjectRef(module, "RunFact", (PyObject *)&RunFactType) < 0 ||
        PyModule_AddObjectRef(module, "LedgerFact", (PyObject *)&LedgerFactType) < 0)
        return -1;
    return 0;
}

int facts_adopted(void) { return AdoptedRun && AdoptedLedger; }

/* adopt(compact, fields, defaults, members) -> bool: **The named tuple's own members**. ``compact`` takes the named
   tuple's defaults and members (a member this module defines stays its own) when ``fields`` are its fields in its
   order; False, and nothing changed, when they are not (a module built from an older source). */
PyObject *facts_adopt(PyObject *self, PyObject *args) {
    PyObject *type, *fields, *defaults, *members;
    if (!PyArg_ParseTuple(args, "OO!O!O!", &type, &PyTuple_Type, &fields, &PyDict_Type, &defaults, &PyDict_Type,
                          &members))
        return NULL;
    int run = type == (PyObject *)&RunFactType;
    if (!run && type != (PyObject *)&LedgerFactType) {
        PyErr_SetString(PyExc_TypeError, "adopt: RunFact or LedgerFact");
        return NULL;
    }
    const char *const *names = run ? RUN_NAMES : LEDGER_NAMES;
    int n = run ? RF_N : LF_N;
    if (PyTuple_GET_SIZE(fields) != n) Py_RETURN_FALSE;
    for (int i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(fields, i);
        if (!PyUnicode_Check(name) || PyUnicode_CompareWithASCIIString(name, names[i]) != 0) Py_RETURN_FALSE;
    }
    PyObject **slots = run ? RunDefaults : LedgerDefaults;
    for (int i = 0; i < n; i++) {
        PyObject *found = PyDict_GetItemString(defaults, names[i]);
        Py_XSETREF(slots[i], Py_XNewRef(found));
    }
    PyObject *dict = ((PyTypeObject *)type)->tp_dict;
    Py_ssize_t pos = 0;
    PyObject *name, *member;
    while (PyDict_Next(members, &pos, &name, &member)) {
        if (PyDict_SetDefault(dict, name, member) == NULL) return NULL;
    }
    if (PyDict_SetItemString(dict, "_fields", fields) < 0 || PyDict_SetItemString(dict, "__match_args__", fields) < 0)
        return NULL;
    PyType_Modified((PyTypeObject *)type);
    *(run ? &AdoptedRun : &AdoptedLedger) = 1;
    Py_RETURN_TRUE;
}
