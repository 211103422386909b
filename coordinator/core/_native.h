/* What the compiled module's sources share: the reader of the store's values (``_native.c``), used by the loop that
   loads a snapshot page (``_load.c``), over the compact facts (``_facts.h``). */
#ifndef COORDINATOR_NATIVE_H
#define COORDINATOR_NATIVE_H

#include "_facts.h"

/* ``run_fact`` and ``done_ledger_fact`` of the module on a value's bytes, called from C: the fact, None (a value for
   the other paths) or NULL (an error set). */
PyObject *native_run_fact_of(const char *raw, Py_ssize_t size, int64_t rev);
PyObject *native_done_ledger_fact_of(const char *raw, Py_ssize_t size, int64_t mod_rev, PyObject *names);
/* The module function ``load_fast`` (``_load.c``), and the module's ``Pending`` type added by ``load_init``. */
PyObject *load_fast(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
int load_init(PyObject *module);

#endif
