/* What the compiled module's sources share: the reader of the store's values (``_native.c``), used by the loop that
   loads a snapshot page (``_load.c``), over the compact facts (``_facts.h``). */
#ifndef COORDINATOR_NATIVE_H
#define COORDINATOR_NATIVE_H

#include "_facts.h"

/* ``run_fact(raw, rev)`` and ``done_ledger_fact(raw, mod_rev, names)`` of the module, called from C. */
PyObject *native_run_fact(PyObject *const *args, Py_ssize_t nargs);
PyObject *native_done_ledger_fact(PyObject *const *args, Py_ssize_t nargs);
/* The module function ``load_fast`` (``_load.c``). */
PyObject *load_fast(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

#endif
