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

/* A run fact: 80 bytes with its object header (pymalloc's sizes go by 16). Where a field does not fit the layout (an
   int not exactly an int or beyond the field's width: 32 bits for ``clear_number``, 64 for the revision; a time not
   in the shared UTC; a backfill that is not a bool; a state given as a tuple), ``state`` holds every field as given,
   a tuple (``RUN_ODD``), and the other fields are unused. */
typedef struct {
    PyObject_HEAD
    PyObject *state, *run_id, *source;
    int64_t rev, start, end, seen;
    int32_t clear_number;
    char backfill;
} RunFactObject;

/* A ledger fact; the input generations are held inline (``ob_size`` of them): 112 bytes with two. ``last_error`` and
   ``full`` (None in nearly every fact: a done intent's) are ``rest``, NULL for both None, else the tuple of the two.
   ``status`` holds every field as given where one does not fit, as a run fact's ``state`` does (``LEDGER_ODD``;
   ``trigger_count`` and ``attempts`` are 32 bits wide). */
typedef struct {
    PyObject_VAR_HEAD
    PyObject *status, *action, *run_id, *input_names, *rest;
    int64_t mod_rev, recorded_intent_rev, done_at;
    int32_t trigger_count, attempts;
    int64_t revs[1];
} LedgerFactObject;

/* The fields as given, a tuple, where one did not fit the layout; NULL where they are held in it. No state or status
   held in the layout is a tuple: one given as a tuple makes the fact odd. */
#define RUN_ODD(f) (PyTuple_CheckExact((f)->state) ? (f)->state : NULL)
#define LEDGER_ODD(f) (PyTuple_CheckExact((f)->status) ? (f)->status : NULL)

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
