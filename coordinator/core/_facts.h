/* The view's facts in a compact layout (``_facts.c``), shared with the reader of the store's values (``_native.c``),
   which fills them straight from a value's bytes. */
#ifndef COORDINATOR_FACTS_H
#define COORDINATOR_FACTS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* ``RunFact``'s and ``LedgerFact``'s fields, in the named tuples' order (``core/facts.py``; ``adopt`` checks it). */
enum { RF_STATE, RF_RUN_ID, RF_CLEAR, RF_REV, RF_SOURCE, RF_START, RF_END, RF_SEEN, RF_BACKFILL, RF_N };
enum {
    LF_STATUS, LF_ACTION, LF_RUN_ID, LF_NAMES, LF_REVS, LF_MOD_REV, LF_INTENT, LF_COUNT, LF_ATTEMPTS, LF_ERROR,
    LF_DONE_AT, LF_FULL, LF_N
};

/* A time as UTC microseconds since 1970; this for None. */
#define NO_TIME INT64_MIN

/* A run fact. ``odd`` is NULL, or the fields as given (a tuple) where one does not fit the layout: an int beyond 64
   bits or not exactly an int, a time not in the shared UTC, a backfill that is not a bool. The fields below are
   then unused. */
typedef struct {
    PyObject_HEAD
    PyObject *odd;
    PyObject *state, *run_id, *source;
    int64_t clear_number, rev, start, end, seen;
    char backfill;
} RunFactObject;

/* A ledger fact; the input generations are held inline (``ob_size`` of them). ``odd`` as for a run fact. */
typedef struct {
    PyObject_VAR_HEAD
    PyObject *odd;
    PyObject *status, *action, *run_id, *input_names, *last_error, *full;
    int64_t mod_rev, recorded_intent_rev, trigger_count, attempts, done_at;
    int64_t revs[1];
} LedgerFactObject;

extern PyTypeObject RunFactType, LedgerFactType;

/* Readies the two types and adds them to ``module``; -1: an error. */
int facts_init(PyObject *module);
/* Whether ``adopt`` took both named tuples' members, so that these types are ``core.facts``' (the reader makes them
   only then). */
int facts_adopted(void);
/* The module function ``adopt`` (``_facts.c``). */
PyObject *facts_adopt(PyObject *self, PyObject *args);
/* The microseconds since 1970 of a UTC time whose fields exist. */
int64_t utc_micros(int y, int mo, int d, int h, int mi, int sec, int us);

#endif
