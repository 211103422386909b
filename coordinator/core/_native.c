/* The canonical run-state and done-ledger values read into their facts in C: core.canonical's fast path, faster.

A value whose bytes are in the strict subset this reads (compact JSON, the fields of the records, ASCII strings
without escapes, non-negative integers within 64 bits, times "YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+00:00)") becomes the
same fact ``RunFact.of`` / ``LedgerFact.of`` keeps of the pydantic record; any other value returns None and the caller
takes the slower paths, which decide and word everything (core.canonical's **Exactly equivalent or nothing**).

The facts are the compact ones of ``_facts.c``, filled here field by field: a time is kept as its microseconds and an
integer as itself, with no Python object made for either.

The field tables below are the records' fields; ``core.canonical`` compares them with the pydantic models at import,
so a field added to a record fails there until this reader knows it.
*/
#include "_native.h"

#include <string.h>

/* Kinds of field values. */
enum kind {
    K_STR,        /* a string */
    K_STR1,       /* a string of at least one character */
    K_STR_NULL,   /* a string or null */
    K_INT,        /* an integer >= 0 (what this reads of a 64-bit int; a negative one is declined) */
    K_INT1,       /* an integer >= 1 */
    K_INT_NULL,   /* an integer >= 0 or null */
    K_DT_NULL,    /* a UTC time or null */
    K_STATE,      /* a run state */
    K_ACTION,     /* a trigger action */
    K_DONE,       /* the status "done" */
    K_INPUTS,     /* {"name": generation, ...} */
    K_NULL_ONLY,  /* only null reads here (a withdrawn permit, an error's definition: the pydantic path's) */
};

typedef struct {
    const char *name;
    Py_ssize_t len;
    enum kind kind;
} field;

#define F(n, k) {n, sizeof(n) - 1, k}

/* RunRecord's fields, in its order. */
enum { R_STATE, R_RUN_ID, R_CLEAR, R_UPDATED, R_SOURCE, R_START, R_END, R_RUN_TYPE, R_RUN_AFTER, R_N };
static const field RUN_FIELDS[R_N] = {
    F("state", K_STATE),        F("run_id", K_STR1),        F("clear_number", K_INT),
    F("updated_at", K_DT_NULL), F("source", K_STR),         F("start_date", K_DT_NULL),
    F("end_date", K_DT_NULL),   F("run_type", K_STR_NULL),  F("run_after", K_DT_NULL),
};

/* TriggerRecord's fields, in its order. */
enum {
    L_STATUS, L_ACTION, L_RUN_ID, L_INPUTS, L_REASON, L_CAUSE, L_INTENT, L_REQUESTED, L_DONE_AT, L_WATCHER,
    L_ATTEMPTS, L_LAST_ERROR, L_PRIOR, L_COUNT, L_ERRORS, L_RETRY_AT, L_TRIED,
    L_WITHDRAWN, L_N
};
static const field LEDGER_FIELDS[L_N] = {
    F("status", K_DONE),          F("action", K_ACTION),         F("run_id", K_STR),
    F("inputs", K_INPUTS),        F("reason", K_STR),            F("cause_rev", K_INT),
    F("intent_rev", K_INT),       F("requested_at", K_DT_NULL),  F("done_at", K_DT_NULL),
    F("watcher", K_STR),          F("attempts", K_INT),          F("last_error", K_STR_NULL),
    F("prior_queued_at", K_STR_NULL), F("trigger_count", K_INT1), F("errors", K_INT_NULL),
    F("retry_at", K_DT_NULL),     F("tried_under", K_NULL_ONLY), F("withdrawn", K_NULL_ONLY),
};

/* Set by ``configure``: the done status and the default source. */
static PyObject *Done, *Unknown;
/* The run states and trigger actions: their values' bytes and members (``configure``). */
#define MAX_MEMBERS 8
typedef struct {
    int n;
    char value[MAX_MEMBERS][16];
    Py_ssize_t len[MAX_MEMBERS];
    PyObject *member[MAX_MEMBERS];
    int active[MAX_MEMBERS];
} members;
static members States, Actions;

typedef struct {
    const char *p, *end;
} cursor;

/* One field as read: where its value's bytes are, and what they say; nothing is a Python object yet (a field the fact
   does not keep costs no allocation). */
typedef struct {
    int present, null;
    const char *s; /* a string's characters (without the quotes), an inputs object's first byte */
    Py_ssize_t len;
    int64_t n;       /* an integer; a member's index */
    int y, mo, d, h, mi, sec, us; /* a time */
} slot;

/* A string without escapes, ASCII only; 0: declined. */
static int read_str(cursor *c, slot *out) {
    if (c->p >= c->end || *c->p != '"') return 0;
    const char *s = ++c->p;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') break;
        if (ch == '\\' || ch < 0x20 || ch >= 0x80) return 0;
        c->p++;
    }
    if (c->p >= c->end) return 0;
    out->s = s;
    out->len = c->p - s;
    c->p++;
    return 1;
}

/* A non-negative integer within 64 bits, no leading zero; -1: declined. */
static int64_t read_int(cursor *c) {
    const char *s = c->p;
    uint64_t n = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        uint64_t digit = (uint64_t)(*c->p - '0');
        if (n > ((uint64_t)INT64_MAX - digit) / 10) return -1; /* beyond 64 bits: pydantic's */
        n = n * 10 + digit;
        c->p++;
    }
    Py_ssize_t digits = c->p - s;
    if (digits == 0 || (digits > 1 && *s == '0')) return -1;
    /* a fraction or an exponent makes it a number pydantic reads otherwise */
    if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E')) return -1;
    return (int64_t)n;
}

static int digits(const char *s, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

static int days_in(int y, int mo) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) return 29;
    return days[mo - 1];
}

/* "YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+00:00)", a time that exists (what ``datetime`` accepts); 0: declined. */
static int read_time(cursor *c, slot *out) {
    if (c->p >= c->end || *c->p != '"') return 0;
    const char *s = c->p + 1;
    if (c->end - s < 21) return 0;
    int us = 0;
    if (!digits(s, 4, &out->y) || s[4] != '-' || !digits(s + 5, 2, &out->mo) || s[7] != '-' ||
        !digits(s + 8, 2, &out->d) || s[10] != 'T' || !digits(s + 11, 2, &out->h) || s[13] != ':' ||
        !digits(s + 14, 2, &out->mi) || s[16] != ':' || !digits(s + 17, 2, &out->sec))
        return 0;
    const char *t = s + 19;
    if (t < c->end && *t == '.') {
        t++;
        int n = 0;
        while (t < c->end && *t >= '0' && *t <= '9' && n < 7) {
            us = us * 10 + (*t - '0');
            t++;
            n++;
        }
        if (n == 0 || n > 6) return 0; /* core.canonical's **UTC times, six digits** */
        for (; n < 6; n++) us *= 10;
    }
    if (t < c->end && *t == 'Z') {
        t++;
    } else if (c->end - t >= 6 && memcmp(t, "+00:00", 6) == 0) {
        t += 6;
    } else {
        return 0;
    }
    if (t >= c->end || *t != '"') return 0;
    if (out->y < 1 || out->mo < 1 || out->mo > 12 || out->d < 1 || out->d > days_in(out->y, out->mo) ||
        out->h > 23 || out->mi > 59 || out->sec > 59)
        return 0; /* pydantic's to word */
    out->us = us;
    c->p = t + 1;
    return 1;
}

static int is_null(cursor *c) {
    if (c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0) {
        c->p += 4;
        return 1;
    }
    return 0;
}

/* {"name":int>=0,...}, no name twice; 0: declined. ``out`` keeps where it starts and how many inputs it holds. */
static int read_inputs(cursor *c, slot *out) {
    if (c->p >= c->end || *c->p != '{') return 0;
    out->s = c->p++;
    out->n = 0;
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        out->len = 2;
        return 1;
    }
    for (;;) {
        slot name = {0};
        if (!read_str(c, &name)) return 0;
        /* a repeated name: pydantic keeps the last value in the first's place; declined here */
        cursor back = {out->s + 1, name.s - 1};
        while (back.p < back.end) {
            slot seen;
            if (!read_str(&back, &seen)) return 0;
            if (seen.len == name.len && memcmp(seen.s, name.s, (size_t)name.len) == 0) return 0;
            back.p++; /* ':' */
            if (read_int(&back) < 0) return 0;
            back.p++; /* ',' */
        }
        if (c->p >= c->end || *c->p != ':') return 0;
        c->p++;
        if (read_int(c) < 0) return 0;
        out->n++;
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == '}') {
            c->p++;
            out->len = c->p - out->s;
            return 1;
        }
        return 0;
    }
}

static int read_member(cursor *c, const members *m, slot *out) {
    slot s;
    if (!read_str(c, &s)) return 0;
    for (int i = 0; i < m->n; i++) {
        if (m->len[i] == s.len && memcmp(m->value[i], s.s, (size_t)s.len) == 0) {
            out->n = i;
            return 1;
        }
    }
    return 0;
}

/* One field's value into ``out``; 0: declined. */
static int read_value(cursor *c, enum kind kind, slot *out) {
    out->present = 1;
    switch (kind) {
    case K_STR:
        return read_str(c, out);
    case K_STR1:
        return read_str(c, out) && out->len > 0;
    case K_STR_NULL:
        return (out->null = is_null(c)) || read_str(c, out);
    case K_INT_NULL:
        if ((out->null = is_null(c))) return 1;
        /* fall through */
    case K_INT:
    case K_INT1:
        out->n = read_int(c);
        return out->n >= (kind == K_INT1 ? 1 : 0);
    case K_DT_NULL:
        return (out->null = is_null(c)) || read_time(c, out);
    case K_STATE:
        return read_member(c, &States, out);
    case K_ACTION:
        return read_member(c, &Actions, out);
    case K_DONE: {
        slot s;
        return read_str(c, &s) && s.len == 4 && memcmp(s.s, "done", 4) == 0;
    }
    case K_INPUTS:
        return read_inputs(c, out);
    case K_NULL_ONLY:
        return (out->null = is_null(c));
    }
    return 0;
}

/* The whole object into ``slots``: every key a field of ``fields`` at most once, nothing after it; 0: declined. */
static int read_object(const char *data, Py_ssize_t size, const field *fields, int n, slot *slots) {
    cursor c = {data, data + size};
    if (c.p >= c.end || *c.p != '{') return 0;
    c.p++;
    if (c.p < c.end && *c.p == '}') return c.p + 1 == c.end;
    int next = 0; /* the writers write the fields in order: the next one is tried first */
    for (;;) {
        if (c.p >= c.end || *c.p != '"') return 0;
        const char *k = c.p + 1;
        const char *q = memchr(k, '"', (size_t)(c.end - k));
        if (q == NULL) return 0;
        Py_ssize_t len = q - k;
        int i = next;
        if (!(i < n && fields[i].len == len && memcmp(fields[i].name, k, (size_t)len) == 0)) {
            for (i = 0; i < n && !(fields[i].len == len && memcmp(fields[i].name, k, (size_t)len) == 0); i++) {
            }
        }
        if (i == n || slots[i].present) return 0; /* an unknown field, or one said twice */
        next = i + 1;
        c.p = q + 1;
        if (c.p >= c.end || *c.p != ':') return 0;
        c.p++;
        if (!read_value(&c, fields[i].kind, &slots[i])) return 0;
        if (c.p < c.end && *c.p == ',') {
            c.p++;
            continue;
        }
        if (c.p < c.end && *c.p == '}') return c.p + 1 == c.end;
        return 0;
    }
}

/* The Python value of a read field, or ``dflt`` (a new reference) where it is absent or null; NULL: an error. */
static PyObject *str_of(const slot *s, PyObject *dflt) {
    if (!s->present || s->null) return Py_NewRef(dflt);
    return PyUnicode_FromStringAndSize(s->s, s->len);
}

/* The interned strings made last, by their bytes: a store's values repeat a few (a partition's run id in each DAG's
   run state, a source); one found here is neither made, hashed nor looked up in the interpreter's table again. */
#define INTERNED_CACHE 4096 /* a power of two */
static struct {
    uint64_t hash;
    PyObject *str; /* an interned ASCII ``str`` (held), or NULL */
} Interned[INTERNED_CACHE];

/* The interned ``str`` of a read field, or ``dflt`` (a new reference) where it is absent or null; NULL: an error. The
   reader reads ASCII strings only: one of the same bytes is the same string. */
static PyObject *interned(const slot *s, PyObject *dflt) {
    if (!s->present || s->null) return Py_NewRef(dflt);
    uint64_t h = bytes_hash(s->s, s->len);
    PyObject **seen = &Interned[h & (INTERNED_CACHE - 1)].str;
    if (*seen != NULL && Interned[h & (INTERNED_CACHE - 1)].hash == h && PyUnicode_GET_LENGTH(*seen) == s->len &&
        memcmp(PyUnicode_DATA(*seen), s->s, (size_t)s->len) == 0)
        return Py_NewRef(*seen);
    PyObject *out = str_of(s, dflt);
    if (out == NULL) return NULL;
    PyUnicode_InternInPlace(&out);
    if (PyUnicode_IS_COMPACT_ASCII(out)) {
        Py_XSETREF(*seen, Py_NewRef(out));
        Interned[h & (INTERNED_CACHE - 1)].hash = h;
    }
    return out;
}

static int64_t int_of(const slot *s, int64_t dflt) { return s->present && !s->null ? s->n : dflt; }

static int64_t time_of(const slot *s) {
    if (!s->present || s->null) return NO_TIME;
    return utc_micros(s->y, s->mo, s->d, s->h, s->mi, s->sec, s->us);
}

/* The last inputs' names and their interned tuple (the pages come a DAG at a time: its entries name the same inputs),
   with the dict they were interned in (held, so that its address names it). */
static char *LastNames;
static Py_ssize_t LastNamesLen, LastNamesCap;
static PyObject *LastNamesTuple, *LastNamesDict;

/* The inputs' names, interned in ``names`` as ``LedgerFact.of`` does (a new tuple), with their generations written
   into ``revs`` (as many as the inputs); -1: an error. The inputs were read whole by ``read_inputs``: this walks them
   again without checking. */
static int inputs_of(const slot *s, PyObject *names, PyObject **keys, int64_t *revs) {
    Py_ssize_t n = s->present ? (Py_ssize_t)s->n : 0;
    *keys = NULL;
    if (n == 0) {
        *keys = PyTuple_New(0);
        return *keys == NULL ? -1 : 0;
    }
    const char *from = s->s + 1, *end = s->s + s->len;
    /* The generations; the names compared with the last inputs' (each followed by '"', which no name holds). */
    cursor c = {from, end};
    int same = LastNamesDict == names && LastNamesTuple != NULL && PyTuple_GET_SIZE(LastNamesTuple) == n;
    Py_ssize_t at = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        slot name = {0};
        read_str(&c, &name);
        c.p++; /* ':' */
        revs[i] = read_int(&c);
        c.p++; /* ',' or '}' */
        if (same && (at + name.len + 1 > LastNamesLen || memcmp(LastNames + at, name.s, (size_t)name.len) != 0 ||
                     LastNames[at + name.len] != '"'))
            same = 0;
        at += name.len + 1;
    }
    if (same && at == LastNamesLen) {
        *keys = Py_NewRef(LastNamesTuple);
        return 0;
    }
    PyObject *fresh = PyTuple_New(n);
    if (fresh == NULL) return -1;
    if (at > LastNamesCap) {
        char *grown = PyMem_Realloc(LastNames, (size_t)at);
        if (grown == NULL) {
            Py_DECREF(fresh);
            PyErr_NoMemory();
            return -1;
        }
        LastNames = grown;
        LastNamesCap = at;
    }
    cursor again = {from, end};
    Py_ssize_t to = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        slot name = {0};
        read_str(&again, &name);
        again.p++;
        read_int(&again);
        again.p++;
        PyObject *key = PyUnicode_FromStringAndSize(name.s, name.len);
        if (key == NULL) {
            Py_DECREF(fresh);
            return -1;
        }
        PyTuple_SET_ITEM(fresh, i, key);
        memcpy(LastNames + to, name.s, (size_t)name.len);
        LastNames[to + name.len] = '"';
        to += name.len + 1;
    }
    PyObject *shared = PyDict_SetDefault(names, fresh, fresh);
    Py_DECREF(fresh);
    if (shared == NULL) {
        LastNamesLen = 0;
        Py_CLEAR(LastNamesTuple);
        return -1;
    }
    *keys = Py_NewRef(shared);
    LastNamesLen = to;
    Py_XSETREF(LastNamesTuple, Py_NewRef(shared));
    Py_XSETREF(LastNamesDict, Py_NewRef(names));
    return 0;
}

/* The run state's fact of a value's bytes; None: a value for the other paths; NULL: an error set. */
PyObject *native_run_fact_of(const char *raw, Py_ssize_t size, int64_t rev) {
    if (!facts_adopted()) Py_RETURN_NONE; /* facts not yet adopted: the other paths' */
    slot s[R_N];
    memset(s, 0, sizeof s);
    if (!read_object(raw, size, RUN_FIELDS, R_N, s) ||
        !s[R_STATE].present || !s[R_RUN_ID].present)
        Py_RETURN_NONE;
    int state = (int)s[R_STATE].n;
    int start = s[R_START].present && !s[R_START].null, end = s[R_END].present && !s[R_END].null;
    /* RunFact.of: ``updated_at`` is kept only where it stands in for a missing date */
    int seen = !(start && (end || States.active[state]));
    const slot *type = &s[R_RUN_TYPE];
    int64_t clear_number = int_of(&s[R_CLEAR], 0);
    if (clear_number > INT32_MAX) Py_RETURN_NONE; /* wider than the fact holds it: the other paths' (an odd fact) */
    RunFactObject *f = PyObject_New(RunFactObject, &RunFactType);
    if (f == NULL) return NULL;
    f->state = Py_NewRef(States.member[state]);
    f->run_id = interned(&s[R_RUN_ID], Py_None);
    f->source = interned(&s[R_SOURCE], Unknown);
    f->clear_number = (int32_t)clear_number;
    f->rev = rev;
    f->start = time_of(&s[R_START]);
    f->end = time_of(&s[R_END]);
    f->seen = seen ? time_of(&s[R_UPDATED]) : NO_TIME;
    f->backfill = type->present && !type->null && type->len == 8 && memcmp(type->s, "backfill", 8) == 0;
    if (f->run_id == NULL || f->source == NULL) {
        Py_DECREF(f);
        return NULL;
    }
    return (PyObject *)f;
}

/* The done ledger entry's fact of a value's bytes (``names``: the input names' interning dict); as
   ``native_run_fact_of``. */
PyObject *native_done_ledger_fact_of(const char *raw, Py_ssize_t size, int64_t mod_rev, PyObject *names) {
    if (!facts_adopted()) Py_RETURN_NONE;
    slot s[L_N];
    memset(s, 0, sizeof s);
    if (!read_object(raw, size, LEDGER_FIELDS, L_N, s) ||
        !s[L_STATUS].present || !s[L_ACTION].present || !s[L_RUN_ID].present)
        Py_RETURN_NONE;
    Py_ssize_t n = s[L_INPUTS].present ? (Py_ssize_t)s[L_INPUTS].n : 0;
    int64_t count = int_of(&s[L_COUNT], 1), attempts = int_of(&s[L_ATTEMPTS], 0);
    /* wider than the fact holds them: the other paths' (an odd fact) */
    if (count > INT32_MAX || attempts > INT32_MAX) Py_RETURN_NONE;
    LedgerFactObject *f = PyObject_NewVar(LedgerFactObject, &LedgerFactType, n);
    if (f == NULL) return NULL;
    f->input_names = f->rest = NULL;
    f->status = Py_NewRef(Done);
    f->action = Py_NewRef(Actions.member[s[L_ACTION].n]);
    f->run_id = interned(&s[L_RUN_ID], Py_None);
    f->mod_rev = mod_rev;
    f->recorded_intent_rev = int_of(&s[L_INTENT], 0);
    f->trigger_count = (int32_t)count;
    f->attempts = (int32_t)attempts;
    f->done_at = time_of(&s[L_DONE_AT]);
    const slot *error = &s[L_LAST_ERROR];
    if (error->present && !error->null) { /* ``rest``: (last_error, full), full None for a done intent */
        PyObject *text = str_of(error, Py_None);
        f->rest = text == NULL ? NULL : PyTuple_Pack(2, text, Py_None);
        Py_XDECREF(text);
        if (f->rest == NULL) {
            Py_DECREF(f);
            return NULL;
        }
    }
    if (f->run_id == NULL || inputs_of(&s[L_INPUTS], names, &f->input_names, f->revs) < 0) {
        Py_DECREF(f);
        return NULL;
    }
    return (PyObject *)f;
}

/* The revision a compact fact holds of ``rev``; 0: not an int64 (the other paths'). */
static int revision_of(PyObject *rev, int64_t *out) {
    if (!PyLong_CheckExact(rev)) return 0;
    *out = PyLong_AsLongLong(rev);
    if (*out == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* run_fact(raw: bytes, rev: int) -> RunFact | None */
static PyObject *run_fact(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "run_fact(raw: bytes, rev: int)");
        return NULL;
    }
    int64_t rev;
    /* a buffer of another type, a revision the compact fact does not hold: the other paths' */
    if (!PyBytes_Check(args[0]) || !revision_of(args[1], &rev)) Py_RETURN_NONE;
    return native_run_fact_of(PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), rev);
}

/* done_ledger_fact(raw: bytes, mod_rev: int, names: dict) -> LedgerFact | None */
static PyObject *done_ledger_fact(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "done_ledger_fact(raw: bytes, mod_rev: int, names: dict)");
        return NULL;
    }
    int64_t mod_rev;
    if (!PyBytes_Check(args[0]) || !revision_of(args[1], &mod_rev)) Py_RETURN_NONE; /* as ``run_fact`` */
    return native_done_ledger_fact_of(PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), mod_rev, args[2]);
}

/* A members table from {value: member}, with the active ones flagged; -1: an error. */
static int members_of(PyObject *by_value, PyObject *active, members *out) {
    if (PyDict_GET_SIZE(by_value) > MAX_MEMBERS) {
        PyErr_SetString(PyExc_ValueError, "configure: too many members");
        return -1;
    }
    Py_ssize_t pos = 0;
    PyObject *value, *member;
    int i = 0;
    while (PyDict_Next(by_value, &pos, &value, &member)) {
        Py_ssize_t len;
        const char *text = PyUnicode_AsUTF8AndSize(value, &len);
        if (text == NULL) return -1;
        if (len >= 16) {
            PyErr_SetString(PyExc_ValueError, "configure: a member's value is too long");
            return -1;
        }
        memcpy(out->value[i], text, (size_t)len);
        out->len[i] = len;
        Py_XSETREF(out->member[i], Py_NewRef(member));
        int on = active == NULL ? 0 : PySet_Contains(active, member);
        if (on < 0) return -1;
        out->active[i] = on;
        i++;
    }
    out->n = i;
    return 0;
}

/* configure(states, actions, active, done): what the facts' enum fields are made of. */
static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *st, *ac, *act, *dn;
    if (!PyArg_ParseTuple(args, "O!O!O!O", &PyDict_Type, &st, &PyDict_Type, &ac, &PyFrozenSet_Type, &act, &dn))
        return NULL;
    if (members_of(st, act, &States) < 0 || members_of(ac, NULL, &Actions) < 0) return NULL;
    Py_XSETREF(Done, Py_NewRef(dn));
    if (Unknown == NULL) {
        Unknown = PyUnicode_InternFromString("unknown");
        if (Unknown == NULL) return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *fields_of(const field *fields, int n) {
    PyObject *out = PyTuple_New(n);
    if (out == NULL) return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *name = PyUnicode_FromStringAndSize(fields[i].name, fields[i].len);
        if (name == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, name);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS, "Say what the facts are made of (once, at import)."},
    {"adopt", facts_adopt, METH_VARARGS, "Give a compact fact type its named tuple's defaults and members."},
    {"load_fast", (PyCFunction)(void (*)(void))load_fast, METH_FASTCALL,
     "Load a snapshot page's common keys into the view, up to the first that is not."},
    {"run_fact", (PyCFunction)(void (*)(void))run_fact, METH_FASTCALL, "The fact of a canonical run-state value."},
    {"done_ledger_fact", (PyCFunction)(void (*)(void))done_ledger_fact, METH_FASTCALL,
     "The fact of a canonical done ledger value."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (facts_init(m) < 0 || load_init(m) < 0 || slots_init(m) < 0 || settled_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyObject *run = fields_of(RUN_FIELDS, R_N), *ledger = fields_of(LEDGER_FIELDS, L_N);
    if (run == NULL || ledger == NULL || PyModule_AddObject(m, "RUN_FIELDS", run) < 0 ||
        PyModule_AddObject(m, "LEDGER_FIELDS", ledger) < 0) {
        Py_XDECREF(run);
        Py_XDECREF(ledger);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
