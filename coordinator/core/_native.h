/* What the compiled module's sources share: the reader of the store's values (``_native.c``), used by the loop that
   loads a snapshot page (``_load.c``), over the compact facts (``_facts.h``); and the hash both use for their
   caches. */
#ifndef COORDINATOR_NATIVE_H
#define COORDINATOR_NATIVE_H

#include "_facts.h"

#include <string.h>

/* Eight bytes of ``s`` as one word, in the machine's order. */
static inline uint64_t word_at(const char *s) {
    uint64_t w;
    memcpy(&w, s, sizeof w);
    return w;
}

/* A hash of ``n`` bytes, a word at a time, for the compiled caches' slots (the loop's partitions by a key's last
   part, the interned run ids and sources): every key of a snapshot is hashed two or three times, and a byte at a time
   (FNV-1a: a multiply per byte, each waiting for the last) cost a few per cent of the load's CPU. Each slot is
   checked by its bytes, so only speed depends on the hash. */
static inline uint64_t bytes_hash(const char *s, Py_ssize_t n) {
    const uint64_t mul = 0xff51afd7ed558ccdULL;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n;
    for (; n >= 8; s += 8, n -= 8) h = (h ^ word_at(s)) * mul;
    if (n > 0) {
        uint64_t w = 0;
        memcpy(&w, s, (size_t)n);
        h = (h ^ w) * mul;
    }
    h ^= h >> 32; /* the slots are the low bits: mix the high ones down */
    h *= mul;
    return h ^ (h >> 29);
}

/* ``run_fact`` and ``done_ledger_fact`` of the module on a value's bytes, called from C: the fact, None (a value for
   the other paths) or NULL (an error set). */
PyObject *native_run_fact_of(const char *raw, Py_ssize_t size, int64_t rev);
PyObject *native_done_ledger_fact_of(const char *raw, Py_ssize_t size, int64_t mod_rev, PyObject *names);
/* The module function ``load_fast`` (``_load.c``), and the module's ``Pending`` type added by ``load_init``. */
PyObject *load_fast(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
int load_init(PyObject *module);
/* The module's ``Slots`` type (``_slots.c``), a partition's facts by DAG: a new empty one over a view's shared index
   (``index``: node -> slot, ``nodes``: slot -> node), whether an object is one, the slot of a node in an index (given
   the next one where it has none; -2: an error), and ``slots[node] = value`` where ``node`` has ``slot`` (-1: look it
   up). */
int slots_init(PyObject *module);
PyObject *slots_new(PyObject *index, PyObject *nodes);
int slots_check(PyObject *o);
Py_ssize_t slots_index_slot(PyObject *index, PyObject *nodes, PyObject *node);
int slots_set_at(PyObject *slots, Py_ssize_t slot, PyObject *node, PyObject *value);
/* A ``Slots``' index (borrowed); the value of ``node`` (borrowed; NULL where it has none, an error set only on an
   error) where ``slot`` is its slot in that index (-1: look it up); the value in ``slot`` of a dense one, unchecked
   and borrowed, NULL where none or sparse (to prefetch). */
PyObject *slots_index(PyObject *slots);
PyObject *slots_lookup_at(PyObject *slots, Py_ssize_t slot, PyObject *node);
PyObject *slots_peek(PyObject *slots, Py_ssize_t slot);
/* The module's ``SettledWalk`` type (``_settled.c``), ``core.settled_pass``'s loop over every DAG of a partition. */
int settled_init(PyObject *module);

#endif
