/*
 * _state_setup.c - compiled into the binding: the setup of every Python
 * state, as the state table calls it.
 *
 * A state in the transaction has its setup run once per message, so this
 * crossing is the per-message cost of a Python state.  cffi's generic
 * callback builds an argument tuple and a cdata object per pointer on
 * each call; here C calls the binding's Python entry directly with the
 * state's registration and the address of the delivery context, and
 * Python keeps the connection's cdata objects from one call to the next.
 * That is why this file, unlike the rest of the binding, uses Python's C
 * API (the limited API cffi builds against): the binding is CPython's.
 *
 * The loop and registration run on the library's owner thread only, and
 * state ids are never reused, so the table below is indexed by id without
 * a lock; each call takes the GIL, which the loop runs without.
 */
#include <stdbool.h>
#include <stdio.h>

/* Python's entry, its error handler, and each Python state's registration
 * object, by state id; strong references, set by the binding. */
static PyObject *py_setup_entry;
static PyObject *py_setup_onerror;
static PyObject *py_setup_owner[SMTP_MAX_STATES];

void smtpstate_py_bind_setup_entry(void *entry, void *onerror)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *old_entry = py_setup_entry, *old_onerror = py_setup_onerror;

    Py_XINCREF((PyObject *)entry);
    Py_XINCREF((PyObject *)onerror);
    py_setup_entry = entry;
    py_setup_onerror = onerror;
    Py_XDECREF(old_entry);
    Py_XDECREF(old_onerror);
    PyGILState_Release(gil);
}

int smtpstate_py_bind_setup(int state_id, void *registration)
{
    PyGILState_STATE gil;
    PyObject *old;

    if (state_id <= 0 || state_id >= SMTP_MAX_STATES)
        return -1;
    gil = PyGILState_Ensure();
    old = py_setup_owner[state_id];
    Py_XINCREF((PyObject *)registration);
    py_setup_owner[state_id] = registration;
    Py_XDECREF(old);
    PyGILState_Release(gil);
    return 0;
}

/* An exception escaped the entry (an interrupt between two of its lines,
 * or a bug in it).  The error handler keeps an interrupt, as cffi's
 * onerror would, and answers None for anything else, which is then
 * reported as unraisable; so is an error in the handler itself. */
static void py_setup_escaped(void)
{
    PyObject *type, *value, *tb, *kept;

    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    kept = PyObject_CallFunctionObjArgs(py_setup_onerror, type,
                                        value ? value : Py_None,
                                        tb ? tb : Py_None, NULL);
    if (kept == Py_None) {
        PyErr_Restore(type, value, tb);
        type = value = tb = NULL;
    }
    Py_XDECREF(kept);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (PyErr_Occurred())
        PyErr_WriteUnraisable(py_setup_entry);
}

/*
 * The record's setup.  A record without a bound registration does nothing,
 * as a record the binding did not build has no Python behind it.  The
 * clock is not passed: Python does not use it.
 */
static int smtpstate_py_setup(const smtp_state *self, delivery_construct *dc,
                              connection_handle *connh, struct timeval *now)
{
    PyGILState_STATE gil;
    PyObject *owner, *address, *answer;
    long rc = SMTP_ESTATE;
    bool escaped;
    char reason[SMTP_STATE_NAME_MAX + 64];

    (void)now;
    if (self->id <= 0 || self->id >= SMTP_MAX_STATES || !Py_IsInitialized())
        return 0;
    /* Python finds the handle and the connection through the context. */
    if (dc == NULL || dc->conn_handle != connh || connh->conn == NULL)
        return SMTP_ESTATE;
    gil = PyGILState_Ensure();
    owner = py_setup_owner[self->id];
    if (owner == NULL || py_setup_entry == NULL ||
        py_setup_onerror == NULL) {
        PyGILState_Release(gil);
        return 0;
    }
    address = PyLong_FromVoidPtr(dc);
    if (address != NULL) {
        answer = PyObject_CallFunctionObjArgs(py_setup_entry, owner, address,
                                              NULL);
        Py_DECREF(address);
        if (answer != NULL) {
            rc = PyLong_AsLong(answer);
            Py_DECREF(answer);
        }
    }
    escaped = PyErr_Occurred() != NULL;
    if (escaped) {
        py_setup_escaped();
        rc = SMTP_ESTATE;
    }
    PyGILState_Release(gil);
    /* The engine follows a jump the setup made before the exception
     * whatever the answer: only a failed connection sends nothing more,
     * as for an exception the entry contained. */
    if (escaped) {
        snprintf(reason, sizeof reason, "the setup of state %s raised "
                 "outside its own handling", self->name);
        smtp_conn_fail(connh->conn, SMTP_ESTATE, reason);
    }
    return (int)rc;
}
