/* labtrack._hot: the C version of Run.log's common case, and the writer's scalars formatter
 * (format_rows: CSV lines with Python's repr of each value, computed without the GIL).
 *
 * Run (src/labtrack/_run.py) inherits from HotBase when this module is built. HotBase.log
 * handles the call a training loop makes every step -- a plain dict of str keys already
 * logged before, float or int values, no step or a plain int step (positional or step=) --
 * and hands every other call to the Python implementation, Run._log_py, unchanged. Both
 * append the same three doubles (step, value, time) to the series' array('d') in one call
 * (fromlist in Python, frombytes here), so the writer thread and the files do not know
 * which one ran.
 *
 * The fast path runs without releasing the GIL and without running Python code, so a signal
 * handler or another thread never sees half a call; the writer's column swap happens between
 * calls. Values are checked before anything is appended: a call is all or nothing.
 *
 * Built by hatch_build.py when a C compiler and the Python headers are present; without it
 * labtrack runs the pure Python path (about 3x slower per call, same results).
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE  /* strtod_l, newlocale */
#include <Python.h>
#include <structmember.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#ifdef Py_GIL_DISABLED
/* The fast path relies on the GIL (one scratch buffer, appends no other thread can split);
 * on a free-threaded build the compile fails and labtrack uses its Python path. */
#error "labtrack._hot needs the GIL"
#endif

typedef struct {
    PyObject_HEAD
    PyObject *cols;       /* name -> bound array('d').fromlist; a dict subclass once finished */
    PyObject *next_step;  /* int: the step a call without one records at */
    Py_ssize_t pending;   /* values logged since the writer last swapped the columns */
    Py_ssize_t eager_at;  /* when pending reaches this, wake the writer (0: never) */
} HotBase;

static PyObject *str_wake_writer;  /* "_wake_writer" */

static PyObject *str_log_py;  /* "_log_py" */

#define MAX_STEP 9007199254740992LL  /* 2**53: steps stay exact as float64 */
#define STACK_KEYS 32

static PyObject *
forward(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *meth = PyObject_GetAttr(self, str_log_py);
    if (meth == NULL)
        return NULL;
    PyObject *res = PyObject_Vectorcall(meth, args, nargs, kwnames);
    Py_DECREF(meth);
    return res;
}

/* array('d').frombytes, found once at import (NULL: not usable, use the bound fromlist). */
static PyTypeObject *array_type;
static PyCFunction array_frombytes;
static PyObject *scratch;  /* a 24-byte bytearray: the three doubles of one point */

/* Append (step, value, t) to the array behind a bound `fromlist`, as fromlist would.
 * frombytes copies the 24 bytes in one memcpy, where fromlist parses three float objects;
 * reusing one scratch buffer is safe: this runs with the GIL and runs no Python code. */
static int
append_point(PyObject *fromlist, double step, double value, double t)
{
    PyObject *res;
    PyObject *arr = PyCFunction_Check(fromlist) ? PyCFunction_GET_SELF(fromlist) : NULL;
    if (array_frombytes != NULL && arr != NULL && Py_IS_TYPE(arr, array_type)) {
        double *b = (double *)PyByteArray_AS_STRING(scratch);
        b[0] = step;
        b[1] = value;
        b[2] = t;
        res = array_frombytes(arr, scratch);
    } else {
        PyObject *point = Py_BuildValue("[ddd]", step, value, t);
        if (point == NULL)
            return -1;
        res = PyObject_Vectorcall(fromlist, &point, 1, NULL);
        Py_DECREF(point);
    }
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

static int
find_array_frombytes(void)
{
    PyObject *mod = PyImport_ImportModule("array");
    if (mod == NULL)
        return -1;
    PyObject *type = PyObject_GetAttrString(mod, "array");
    Py_DECREF(mod);
    if (type == NULL)
        return -1;
    if (!PyType_Check(type)) {
        Py_DECREF(type);
        return 0;
    }
    array_type = (PyTypeObject *)type;  /* kept for the life of the process */
    for (PyMethodDef *m = array_type->tp_methods; m != NULL && m->ml_name != NULL; m++) {
        if (strcmp(m->ml_name, "frombytes") == 0 && (m->ml_flags & (METH_O | METH_KEYWORDS | METH_FASTCALL | METH_VARARGS | METH_NOARGS)) == METH_O)
            array_frombytes = m->ml_meth;
    }
    scratch = PyByteArray_FromStringAndSize(NULL, 24);
    return scratch == NULL ? -1 : 0;
}

static PyObject *
hot_log(HotBase *self, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *step_arg = NULL;
    if (kwnames != NULL) {  /* log(values, step=...) is common; anything else goes to Python */
        if (nargs != 1 || PyTuple_GET_SIZE(kwnames) != 1
                || PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "step") != 0)
            return forward((PyObject *)self, args, nargs, kwnames);
        step_arg = args[1];
    } else if (nargs < 1 || nargs > 2) {
        return forward((PyObject *)self, args, nargs, kwnames);
    } else if (nargs == 2) {
        step_arg = args[1];
    }
    PyObject *values = args[0];
    PyObject *cols = self->cols;
    if (!PyDict_CheckExact(values) || cols == NULL || !PyDict_CheckExact(cols))
        return forward((PyObject *)self, args, nargs, kwnames);

    PyObject *step_obj = (step_arg != NULL && step_arg != Py_None) ? step_arg : self->next_step;
    if (step_obj == NULL || !PyLong_CheckExact(step_obj))
        return forward((PyObject *)self, args, nargs, kwnames);
    int overflow = 0;
    long long step = PyLong_AsLongLongAndOverflow(step_obj, &overflow);
    if (overflow || step < 0 || step >= MAX_STEP)
        return forward((PyObject *)self, args, nargs, kwnames);

    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return forward((PyObject *)self, args, nargs, kwnames);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;

    /* First pass: every key known and every value a plain float or an int that fits. */
    Py_ssize_t n = PyDict_GET_SIZE(values);
    PyObject *stack_targets[STACK_KEYS];
    PyObject **targets = stack_targets;
    if (n > STACK_KEYS) {
        targets = PyMem_Malloc(sizeof(PyObject *) * (size_t)n);
        if (targets == NULL)
            return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(values, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key) || i >= n)
            goto slow;
        if (!PyFloat_CheckExact(value)) {
            if (!PyLong_CheckExact(value))
                goto slow;
            int ov = 0;
            long long iv = PyLong_AsLongLongAndOverflow(value, &ov);
            if (ov || iv > MAX_STEP || iv < -MAX_STEP)
                goto slow;  /* big ints: the Python path checks the float64 range */
        }
        PyObject *fromlist = PyDict_GetItemWithError(cols, key);
        if (fromlist == NULL) {
            if (PyErr_Occurred())
                goto done;
            goto slow;  /* a new series: its name is checked in Python */
        }
        targets[i++] = fromlist;
    }
    if (i != n)
        goto slow;

    /* Second pass: append. Nothing here runs Python code. */
    double step_d = (double)step;
    pos = 0;
    i = 0;
    int failed = 0;
    while (PyDict_Next(values, &pos, &key, &value)) {
        double v = PyFloat_CheckExact(value) ? PyFloat_AS_DOUBLE(value) : PyLong_AsDouble(value);
        if (append_point(targets[i++], step_d, v, now) < 0) {
            failed = 1;
            break;
        }
    }
    Py_ssize_t before = self->pending;
    self->pending += i;
    if (failed) {
        /* Out of memory part way: undo this call's points (Run._rollback), keep the error. */
        PyObject *type, *val, *tb;
        PyErr_Fetch(&type, &val, &tb);
        PyObject *r = PyObject_CallMethod((PyObject *)self, "_rollback", "OOLd", cols, values, step, now);
        Py_XDECREF(r);
        PyErr_Clear();
        PyErr_Restore(type, val, tb);
        goto done;
    }
    PyObject *next = PyLong_FromLongLong(step + 1);
    if (next == NULL)
        goto done;
    Py_XSETREF(self->next_step, next);
    if (self->eager_at > 0 && before < self->eager_at && self->pending >= self->eager_at) {
        /* Many values wait: ask the writer to format them now (once per batch, after the
         * points are recorded) rather than at its next interval or at finish(). */
        PyObject *r = PyObject_CallMethodNoArgs((PyObject *)self, str_wake_writer);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
    }
    result = Py_None;
    Py_INCREF(result);
    goto done;

slow:
    if (targets != stack_targets)
        PyMem_Free(targets);
    return forward((PyObject *)self, args, nargs, kwnames);
done:
    if (targets != stack_targets)
        PyMem_Free(targets);
    return result;
}

/* ---- format_rows: the CSV lines of a run's scalars file (docs/format.md) ----------------- */

/* Write v >= 0 in decimal at p; return the end. */
static char *
put_uint(char *p, unsigned long long v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* A time in seconds rounded to milliseconds, as "<s>.<mmm>"; _writer.format_time is the same. */
static char *
put_time(char *p, double t)
{
    double ms = floor(t * 1000.0 + 0.5);
    if (!(fabs(ms) < 9e18)) {  /* NaN or absurd: never from time.time(), but never UB */
        memcpy(p, "nan", 3);
        return p + 3;
    }
    long long m = (long long)ms;
    unsigned long long a;
    if (m < 0) {
        *p++ = '-';
        a = (unsigned long long)(-m);
    } else {
        a = (unsigned long long)m;
    }
    p = put_uint(p, a / 1000);
    unsigned long long frac = a % 1000;
    *p++ = '.';
    *p++ = (char)('0' + frac / 100);
    *p++ = (char)('0' + frac / 10 % 10);
    *p++ = (char)('0' + frac % 10);
    return p;
}

/* Python's repr of a float64, for 1e-5 <= |v| < 1e17 (and 0, inf, nan), without the GIL.
 *
 * repr is the shortest decimal that reads back as v, the nearest to v among those (ties to
 * an even last digit). Here, exactly, with 128-bit integers: v = m * 2^e is scaled by 10^q so
 * that it has 17 digits before the point; for p = 1, 2, ... digits, the two p-digit decimals
 * around v are tested against v's rounding interval (half an ulp either side, a quarter ulp
 * below a power of two; the ends count when m is even, as a parser rounds half to even).
 * Returns the length written at `out`, or -1 where the caller must use PyOS_double_to_string
 * (tests/test_writer.py compares both on many values).
 */
typedef unsigned __int128 u128;

static const unsigned long long POW10[20] = {
    1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL, 100000000ULL,
    1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL, 10000000000000ULL,
    100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL, 100000000000000000ULL,
    1000000000000000000ULL, 10000000000000000000ULL,
};

static u128 POW10_128[22];  /* filled at import */

static int
fast_repr(double v, char *out)
{
    char *p = out;
    if (v != v) {
        memcpy(out, "nan", 3);
        return 3;
    }
    if (v == 0.0) {
        if (signbit(v)) {
            memcpy(out, "-0.0", 4);
            return 4;
        }
        memcpy(out, "0.0", 3);
        return 3;
    }
    if (isinf(v)) {
        if (v < 0) {
            memcpy(out, "-inf", 4);
            return 4;
        }
        memcpy(out, "inf", 3);
        return 3;
    }
    double a = fabs(v);
    if (a < 1e-5 || a >= 1e17)
        return -1;
    unsigned long long bits;
    memcpy(&bits, &a, 8);
    int biased = (int)(bits >> 52);
    unsigned long long frac = bits & ((1ULL << 52) - 1);
    unsigned long long m = frac | (1ULL << 52);
    int e = biased - 1075;
    int lower_quarter = (frac == 0 && biased > 1);  /* the gap below a power of two is half */
    int inclusive = (m % 2 == 0);

    int k = (int)floor(log10(a));
    u128 V = 0, Lo = 0, Hi = 0, D = 1, N = 0;
    int sh = 0;  /* D = 2^sh */
    for (int attempt = 0; attempt < 3; attempt++) {
        int q = 16 - k;
        if (q < 0 || q > 21)
            return -1;
        u128 t = POW10_128[q];
        if (e - 2 >= 0) {
            u128 unit = ((u128)1 << (e - 2)) * t;  /* a quarter ulp, scaled */
            V = (u128)(4 * m) * unit;
            Hi = V + 2 * unit;
            Lo = V - (lower_quarter ? 1 : 2) * unit;
            D = 1;
            sh = 0;
        } else {
            V = (u128)(4 * m) * t;
            Hi = V + 2 * t;
            Lo = V - (lower_quarter ? 1 : 2) * t;
            sh = 2 - e;
            D = (u128)1 << sh;
        }
        N = V >> sh;
        if (N < (u128)POW10[16])
            k--;
        else if (N >= (u128)POW10[17])
            k++;
        else
            break;
    }
    if (N < (u128)POW10[16] || N >= (u128)POW10[17])
        return -1;

    /* In units of 10^-q: the smallest and largest integers x with x * D inside the interval. */
    u128 lo_ceil = (Lo + D - 1) >> sh, hi_floor = Hi >> sh;
    unsigned long long lo_b = (unsigned long long)(inclusive || lo_ceil * D != Lo ? lo_ceil : lo_ceil + 1);
    unsigned long long hi_b = (unsigned long long)(inclusive || hi_floor * D != Hi ? hi_floor : hi_floor - 1);
    unsigned long long n64 = (unsigned long long)N;
    /* The largest j such that a multiple of 10^j lies in [lo_b, hi_b]: the shortest digits.
     * A multiple of 10^j is one of 10^(j-1) too, so the test is monotone in j. */
    int jlo = 0, jhi = 16;
    if (hi_b / POW10[0] * POW10[0] < lo_b)
        return -1;
    while (jlo < jhi) {
        int mid = (jlo + jhi + 1) / 2;
        if (hi_b / POW10[mid] * POW10[mid] >= lo_b)
            jlo = mid;
        else
            jhi = mid - 1;
    }
    int j = jlo;
    unsigned long long P = POW10[j];
    unsigned long long c = n64 / P;
    unsigned long long x_lo = c * P, x_hi = x_lo + P;
    int lo_ok = x_lo >= lo_b, hi_ok = x_hi <= hi_b;
    unsigned long long pick;
    if (lo_ok && hi_ok) {  /* both: the nearer to v, ties to an even last digit */
        u128 r = (u128)(n64 - x_lo) * D + (V - N * D);
        u128 up = (u128)P * D - r;
        pick = r < up ? c : r > up ? c + 1 : (c % 2 == 0 ? c : c + 1);
    } else if (lo_ok) {
        pick = c;
    } else if (hi_ok) {
        pick = c + 1;
    } else {
        return -1;  /* cannot happen: level j has a multiple in the interval */
    }
    unsigned long long digits = pick;
    int exp10 = j - (16 - k);  /* the value is digits * 10^exp10 */
    int found = 1;
    if (!found || digits == 0)
        return -1;
    while (digits % 10 == 0) {
        digits /= 10;
        exp10++;
    }
    char ds[24];
    int n = 0;
    {
        char tmp[24];
        unsigned long long d = digits;
        while (d) {
            tmp[n++] = (char)('0' + d % 10);
            d /= 10;
        }
        for (int i = 0; i < n; i++)
            ds[i] = tmp[n - 1 - i];
    }
    int decpt = n + exp10;  /* the value is 0.ds * 10^decpt */
    if (v < 0)
        *p++ = '-';
    if (decpt <= -4 || decpt > 16) {
        *p++ = ds[0];
        if (n > 1) {
            *p++ = '.';
            memcpy(p, ds + 1, (size_t)(n - 1));
            p += n - 1;
        }
        int x = decpt - 1;
        *p++ = 'e';
        *p++ = x < 0 ? '-' : '+';
        if (x < 0)
            x = -x;
        if (x >= 100)
            *p++ = (char)('0' + x / 100);
        *p++ = (char)('0' + x / 10 % 10);
        *p++ = (char)('0' + x % 10);
    } else if (decpt <= 0) {
        *p++ = '0';
        *p++ = '.';
        for (int i = 0; i < -decpt; i++)
            *p++ = '0';
        memcpy(p, ds, (size_t)n);
        p += n;
    } else if (decpt >= n) {
        memcpy(p, ds, (size_t)n);
        p += n;
        for (int i = 0; i < decpt - n; i++)
            *p++ = '0';
        *p++ = '.';
        *p++ = '0';
    } else {
        memcpy(p, ds, (size_t)decpt);
        p += decpt;
        *p++ = '.';
        memcpy(p, ds + decpt, (size_t)(n - decpt));
        p += n - decpt;
    }
    return (int)(p - out);
}

PyDoc_STRVAR(repr_float_doc,
"repr_float($module, v, /)\n--\n\n"
"repr(v) for a float, by the formatter format_rows uses (for tests).");

static PyObject *
repr_float(PyObject *module, PyObject *arg)
{
    double v = PyFloat_AsDouble(arg);
    if (v == -1.0 && PyErr_Occurred())
        return NULL;
    char buf[32];
    int len = fast_repr(v, buf);
    if (len >= 0)
        return PyUnicode_FromStringAndSize(buf, len);
    char *r = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (r == NULL)
        return NULL;
    PyObject *res = PyUnicode_FromString(r);
    PyMem_Free(r);
    return res;
}

PyDoc_STRVAR(format_rows_doc,
"format_rows($module, col, /)\n--\n\n"
"CSV lines 'step,value,time' of the (step, value, time) triples in an array('d'):\n"
"the step as an integer, the value as Python's repr of the float, the time with three\n"
"decimals. The same bytes as _writer.format_rows_py, much faster, mostly without the GIL.");

/* ---- format_many: every series of one flush, on two threads, with their statistics ----- */

typedef struct {
    Py_buffer view;
    PyObject *out;        /* bytes, preallocated with room for every line */
    Py_ssize_t n;         /* rows */
    Py_ssize_t len;       /* bytes written */
    int needs_gil;        /* the worker met a value only Python can format: redo it */
    double sum, lo, hi;   /* over finite values (sum) and non-NaN values (lo, hi) */
    Py_ssize_t finite;
} Job;

/* Format one job. `save` is the calling Python thread's state while it runs without the GIL
 * (it can take the GIL back for a value fast_repr does not handle), or NULL on the worker
 * thread, which then gives the job up (needs_gil) for the calling thread to do. */
static int
format_job(Job *job, PyThreadState **save)
{
    const double *d = (const double *)job->view.buf;
    char *start = PyBytes_AS_STRING(job->out), *p = start;
    double sum = 0.0, lo = INFINITY, hi = -INFINITY;
    Py_ssize_t finite = 0;
    for (Py_ssize_t i = 0; i < job->n; i++) {
        double step = d[3 * i], value = d[3 * i + 1], t = d[3 * i + 2];
        if (step >= 0 && step < (double)MAX_STEP)
            p = put_uint(p, (unsigned long long)step);
        else {
            memcpy(p, "-1", 2);
            p += 2;
        }
        *p++ = ',';
        int len = fast_repr(value, p);
        if (len >= 0) {
            p += len;
        } else if (save == NULL) {
            job->needs_gil = 1;
            return 0;
        } else {
            PyEval_RestoreThread(*save);
            char *r = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
            if (r != NULL) {
                size_t rl = strlen(r);
                memcpy(p, r, rl > 24 ? 24 : rl);
                p += rl > 24 ? 24 : rl;
                PyMem_Free(r);
            }
            *save = PyEval_SaveThread();
            if (r == NULL)
                return -1;
        }
        *p++ = ',';
        p = put_time(p, t);
        *p++ = '\n';
        if (isfinite(value)) {
            sum += value;
            finite++;
        }
        if (value == value) {
            if (value < lo)
                lo = value;
            if (value > hi)
                hi = value;
        }
    }
    job->len = p - start;
    job->sum = sum;
    job->lo = lo;
    job->hi = hi;
    job->finite = finite;
    job->needs_gil = 0;
    return 0;
}

static PyObject *
format_rows(PyObject *module, PyObject *arg)
{
    Job job = {0};
    if (PyObject_GetBuffer(arg, &job.view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (job.view.itemsize != 8 || job.view.format == NULL || strcmp(job.view.format, "d") != 0) {
        PyBuffer_Release(&job.view);
        PyErr_SetString(PyExc_TypeError, "format_rows() takes an array('d')");
        return NULL;
    }
    job.n = job.view.len / 8 / 3;
    /* A line: step <= 16 digits, a repr <= 24 chars, a time <= 24: 72 with the separators. */
    job.out = PyBytes_FromStringAndSize(NULL, job.n * 72);
    if (job.out == NULL) {
        PyBuffer_Release(&job.view);
        return NULL;
    }
    /* Nobody else holds `out` yet and `view` stays exported: format without the GIL. */
    PyThreadState *save = PyEval_SaveThread();
    int failed = format_job(&job, &save) < 0;
    PyEval_RestoreThread(save);
    PyBuffer_Release(&job.view);
    if (failed || _PyBytes_Resize(&job.out, job.len) < 0) {
        Py_XDECREF(job.out);
        return NULL;
    }
    return job.out;
}

typedef struct {
    Job *jobs;
    Py_ssize_t *idx;
    Py_ssize_t count;
} WorkerArgs;

static void *
format_worker(void *arg)
{
    WorkerArgs *w = (WorkerArgs *)arg;
    for (Py_ssize_t k = 0; k < w->count; k++)
        format_job(&w->jobs[w->idx[k]], NULL);
    return NULL;
}

PyDoc_STRVAR(format_many_doc,
"format_many($module, cols, /)\n--\n\n"
"format_rows for each array('d') in a list, on two threads when there is enough to do, and\n"
"each column's statistics: a list of (bytes, sum of finite values, finite count, min, max\n"
"of non-NaN values).");

static PyObject *
format_many(PyObject *module, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "format_many() takes a list of array('d')");
    if (seq == NULL)
        return NULL;
    Py_ssize_t m = PySequence_Fast_GET_SIZE(seq);
    Job *jobs = PyMem_Calloc((size_t)(m ? m : 1), sizeof(Job));
    Py_ssize_t *idx = PyMem_Calloc((size_t)(m ? m : 1), sizeof(Py_ssize_t));
    PyObject *result = NULL;
    Py_ssize_t ready = 0, total = 0;
    if (jobs == NULL || idx == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    for (; ready < m; ready++) {
        Job *job = &jobs[ready];
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, ready), &job->view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
            goto out;
        if (job->view.itemsize != 8 || job->view.format == NULL || strcmp(job->view.format, "d") != 0) {
            PyBuffer_Release(&job->view);
            PyErr_SetString(PyExc_TypeError, "format_many() takes a list of array('d')");
            goto out;
        }
        job->n = job->view.len / 8 / 3;
        job->out = PyBytes_FromStringAndSize(NULL, job->n * 72);
        if (job->out == NULL) {
            PyBuffer_Release(&job->view);
            goto out;
        }
        total += job->n;
    }
    /* Two groups of about equal rows: the worker thread takes the second. */
    Py_ssize_t na = 0, nb = 0, rows_a = 0, rows_b = 0;
    int two = total >= 20000 && m >= 2;
    for (Py_ssize_t k = 0; k < m; k++) {
        if (two && rows_b < rows_a) {
            idx[m - 1 - nb++] = k;
            rows_b += jobs[k].n;
        } else {
            idx[na++] = k;
            rows_a += jobs[k].n;
        }
    }
    WorkerArgs w = {jobs, idx + m - nb, nb};
    int failed = 0;
    PyThreadState *save = PyEval_SaveThread();
    pthread_t tid;
    int started = nb > 0 && pthread_create(&tid, NULL, format_worker, &w) == 0;
    for (Py_ssize_t k = 0; k < na && !failed; k++)
        failed = format_job(&jobs[idx[k]], &save) < 0;
    if (started)
        pthread_join(tid, NULL);
    for (Py_ssize_t k = 0; k < nb && !failed; k++) {  /* not started, or given up */
        Job *job = &jobs[w.idx[k]];
        if (!started || job->needs_gil)
            failed = format_job(job, &save) < 0;
    }
    PyEval_RestoreThread(save);
    if (failed)
        goto out;
    result = PyList_New(m);
    if (result == NULL)
        goto out;
    for (Py_ssize_t k = 0; k < m; k++) {
        Job *job = &jobs[k];
        if (_PyBytes_Resize(&job->out, job->len) < 0) {
            Py_CLEAR(result);
            goto out;
        }
        PyObject *item = Py_BuildValue("(Odndd)", job->out, job->sum, job->finite, job->lo, job->hi);
        if (item == NULL) {
            Py_CLEAR(result);
            goto out;
        }
        PyList_SET_ITEM(result, k, item);
    }
out:
    for (Py_ssize_t k = 0; k < ready; k++) {
        PyBuffer_Release(&jobs[k].view);
        Py_XDECREF(jobs[k].out);
    }
    PyMem_Free(jobs);
    PyMem_Free(idx);
    Py_DECREF(seq);
    return result;
}

/* ---- parse_step_value: the reader's side of format_rows ------------------------------- */

static locale_t c_locale;  /* strtod_l in "C": a program's LC_NUMERIC must not change parsing */

/* The exact value of a plain decimal, without strtod. What labtrack writes (Python's repr:
 * "0.0009999998333333417", "1e-05", "-2.5e+17") is at most 17 significant digits with a
 * decimal exponent in a small range, where the correctly rounded double can be computed with
 * 128-bit integers: w * 10^q is w * 5^q * 2^q, and for q < 0 the quotient (w << s) / 5^-q
 * keeps 63 or 64 bits, its remainder saying whether anything was cut. Rounding to 53 bits,
 * ties to even, then gives what strtod gives (glibc's strtod is correctly rounded), and
 * w <= 2^53 with |q| <= 22 is one exact division or product. Anything else (nan, inf, hex,
 * more than 19 significant digits, |q| > 27, a leading '+', ...) returns 0 and the caller
 * asks strtod_l, as before. tests/test_hot.py compares both bit for bit.
 *
 * Returns 1 with *out set and *after_out at the first byte after the number, which is
 * `stop` (the caller's field separator) or the function returns 0. */

static unsigned long long POW5_64[28];  /* 5^0 .. 5^27 (5^27 < 2^63); filled at import */
static const double POW10_F64[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
    1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};  /* all exact */

static inline int
bitlen128(u128 x)
{
    unsigned long long hi = (unsigned long long)(x >> 64);
    if (hi)
        return 128 - __builtin_clzll(hi);
    unsigned long long lo = (unsigned long long)x;
    return lo ? 64 - __builtin_clzll(lo) : 0;
}

/* Round m (more than 53 bits, or not) to the nearest double times 2^e2; `sticky`: nonzero
 * bits were cut below m. */
static inline double
round_to_double(u128 m, int e2, int sticky)
{
    int bl = bitlen128(m);
    if (bl <= 53)
        return ldexp((double)(unsigned long long)m, e2);  /* exact (sticky is 0 here) */
    int d = bl - 53;
    unsigned long long mant = (unsigned long long)(m >> d);
    u128 rem = m & ((((u128)1) << d) - 1);
    u128 half = ((u128)1) << (d - 1);
    if (rem > half || (rem == half && (sticky || (mant & 1))))
        mant++;
    int e = e2 + d;  /* the value is mant * 2^e, mant in [2^52, 2^53] */
    if (mant >> 53) {
        mant >>= 1;
        e++;
    }
    /* The callers' range (|q| <= 27, w < 10^19) keeps the biased exponent in [1, 2046]:
     * the bits of a normal double, built directly. */
    unsigned long long bits = ((unsigned long long)(e + 52 + 1023) << 52) | (mant & ((1ULL << 52) - 1));
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* Eight ASCII digits at p as their number, or -1 when any of the eight is not a digit.
 * All eight bytes at once: each byte is 0x30-0x39 exactly when its high nibble is 3 both
 * before and after adding 6; then digit pairs, quads and the eight are combined by
 * multiplying (the byte order is little-endian: the first digit is the lowest byte). */
static inline long long
eight_digits(const char *p)
{
    unsigned long long x;
    memcpy(&x, p, 8);
    if (((x & 0xF0F0F0F0F0F0F0F0ULL) | (((x + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4))
            != 0x3333333333333333ULL)
        return -1;
    x -= 0x3030303030303030ULL;
    x = x * 10 + (x >> 8);  /* each even byte: two digits (0-99) */
    x = (((x & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32)))
         + (((x >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32)))) >> 32;
    return (long long)x;
}

/* How many digits `v` (< 10^8) has without its leading zeros: 0 for 0. */
static inline int
digits_of(long long v)
{
    int n = 0;
    while (v) {
        v /= 10;
        n++;
    }
    return n;
}

/* Digits at p (up to end) into w, eight at a time while they last; *nd counts the
 * significant ones (never more than 19: the caller's check), *count every one read. */
static inline const char *
digits_into(const char *p, const char *end, unsigned long long *w, int *nd, int *count)
{
    long long chunk;
    while (end - p >= 8 && *nd + 8 <= 19 && (chunk = eight_digits(p)) >= 0) {
        *nd += *w ? 8 : digits_of(chunk);
        *w = *w * 100000000ULL + (unsigned long long)chunk;
        *count += 8;
        p += 8;
    }
    return p;
}

static int
fast_decimal(const char *p, const char *end, char stop, double *out, const char **after_out)
{
    int neg = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9')
        return 0;
    unsigned long long w = 0;
    int nd = 0;   /* significant digits in w */
    int q = 0;    /* decimal exponent: the value is w * 10^q */
    int read = 0;
    p = digits_into(p, end, &w, &nd, &read);
    while (p < end && *p >= '0' && *p <= '9') {
        if (w || *p != '0') {
            if (++nd > 19)
                return 0;
            w = w * 10 + (unsigned long long)(*p - '0');
        }
        p++;
    }
    if (p < end && *p == '.') {
        p++;
        read = 0;
        p = digits_into(p, end, &w, &nd, &read);
        q -= read;
        while (p < end && *p >= '0' && *p <= '9') {
            if (w || *p != '0') {
                if (++nd > 19)
                    return 0;
                w = w * 10 + (unsigned long long)(*p - '0');
            }
            q--;
            p++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = 0;
        if (p < end && (*p == '-' || *p == '+')) {
            eneg = *p == '-';
            p++;
        }
        int e = 0, ed = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (++ed > 4)
                return 0;
            e = e * 10 + (*p - '0');
            p++;
        }
        if (ed == 0)
            return 0;
        q += eneg ? -e : e;
    }
    if (p >= end || *p != stop)
        return 0;
    double v;
    if (w == 0) {
        v = 0.0;
    } else if (w <= (1ULL << 53) && q >= -22 && q <= 22) {
        /* Both operands exact, so one IEEE operation rounds correctly (Clinger). */
        v = q < 0 ? (double)w / POW10_F64[-q] : (double)w * POW10_F64[q];
    } else if (q >= 0) {
        if (q > 27)
            return 0;
        v = round_to_double((u128)w * POW5_64[q], q, 0);
    } else {
        if (q < -27)
            return 0;
        unsigned long long den = POW5_64[-q];
        /* num = w << s has 63 + bitlen(den) bits: the quotient has 63 or 64 (a single
         * 128-by-64 division), which is 10 or 11 more than a double keeps. */
        int s = 63 + (64 - __builtin_clzll(den)) - (64 - __builtin_clzll(w));
        u128 num = ((u128)w) << s;
        u128 quo = num / den;
        int sticky = (num - quo * den) != 0;
        v = round_to_double(quo, -s + q, sticky);
    }
    *out = neg ? -v : v;
    *after_out = p;
    return 1;
}

PyDoc_STRVAR(parse_step_value_doc,
"parse_step_value($module, buf, /)\n--\n\n"
"The step and value columns of 'step,value,time' lines after the header line, as two\n"
"bytearrays of int64 and float64. Raises ValueError at anything labtrack does not write\n"
"(a blank line, a quote, a missing field, a torn last line): read such files another way.");

/* The shortest line there is: "0,0,0\n". A region of B bytes holds at most B / 6 good lines
 * before its first bad one, so that much room never overflows. */
#define MIN_LINE 6

typedef struct {
    const char *p;      /* the first line */
    const char *end;    /* just after the region's last newline */
    long long *steps;   /* room for (end - p) / MIN_LINE + 1 lines */
    double *values;
    Py_ssize_t n;       /* out: the lines parsed */
    Py_ssize_t bad;     /* out: the first line that is not 'step,value,time', or -1 */
} ParseArgs;

static void *
parse_worker(void *arg)
{
    ParseArgs *w = (ParseArgs *)arg;
    const char *p = w->p;
    Py_ssize_t i = 0;
    for (; p < w->end; i++) {
        const char *line_end = memchr(p, '\n', (size_t)(w->end - p));  /* found: end follows one */
        /* step: an optional minus and 1-18 digits */
        int neg = 0;
        if (*p == '-') {
            neg = 1;
            p++;
        }
        long long s = 0;
        int digits = 0;
        while (p < line_end && *p >= '0' && *p <= '9' && digits < 19) {
            s = s * 10 + (*p++ - '0');
            digits++;
        }
        if (digits == 0 || digits > 18 || p >= line_end || *p != ',') {
            w->bad = i;
            break;
        }
        p++;
        /* value: what strtod reads (digits, exponents, nan, inf), up to the next comma */
        if (p >= line_end || *p == ',' || *p == ' ' || *p == '\t') {
            w->bad = i;
            break;
        }
        const char *after;
        double v;
        if (!fast_decimal(p, line_end, ',', &v, &after)) {
            char *a2;
            v = strtod_l(p, &a2, c_locale);
            after = a2;
        }
        if (after == p || after >= line_end || *after != ',') {
            w->bad = i;
            break;
        }
        /* time: present, one field only */
        p = after + 1;
        if (p >= line_end || memchr(p, ',', (size_t)(line_end - p)) != NULL) {
            w->bad = i;
            break;
        }
        w->steps[i] = neg ? -s : s;
        w->values[i] = v;
        p = line_end + 1;
    }
    w->n = i;
    return NULL;
}

static PyObject *
parse_step_value(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *p = (const char *)view.buf, *end = p + view.len;
    static const char header[] = "step,value,time\n";
    if (view.len < (Py_ssize_t)(sizeof(header) - 1) || memcmp(p, header, sizeof(header) - 1) != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "not a series: no 'step,value,time' header line");
        return NULL;
    }
    p += sizeof(header) - 1;
    /* Whole lines only: a torn last line (no newline yet) is not read. */
    const char *last = end > p ? memrchr(p, '\n', (size_t)(end - p)) : NULL;
    end = last ? last + 1 : p;
    /* No counting pass: room for the most lines the bytes can hold, in two regions (one per
     * thread), shrunk to what was parsed at the end; untouched room costs no memory. */
    const char *q = end;
    if (end - p >= (1 << 20)) {  /* ~25,000 lines and more: split in two at a newline */
        q = memchr(p + (end - p) / 2, '\n', (size_t)(end - (p + (end - p) / 2))) + 1;
    }
    Py_ssize_t room_a = (q - p) / MIN_LINE + 1, room_b = (end - q) / MIN_LINE + 1;
    PyObject *steps = PyByteArray_FromStringAndSize(NULL, (room_a + room_b) * 8);
    PyObject *values = PyByteArray_FromStringAndSize(NULL, (room_a + room_b) * 8);
    if (steps == NULL || values == NULL) {
        Py_XDECREF(steps);
        Py_XDECREF(values);
        PyBuffer_Release(&view);
        return NULL;
    }
    long long *st = (long long *)PyByteArray_AS_STRING(steps);
    double *va = (double *)PyByteArray_AS_STRING(values);
    ParseArgs a = {p, q, st, va, 0, -1}, b = {q, end, st + room_a, va + room_a, 0, -1};
    pthread_t tid;
    int started = 0;
    Py_BEGIN_ALLOW_THREADS
    /* Two halves on two threads when there is enough to do (the number parse is most of it). */
    if (q < end) {
        started = pthread_create(&tid, NULL, parse_worker, &b) == 0;
        if (!started)
            a.end = end;  /* one thread, all of it (room_a + room_b is room for all) */
    }
    parse_worker(&a);
    if (started) {
        pthread_join(tid, NULL);
        if (a.bad < 0 && b.n) {
            memmove(st + a.n, st + room_a, (size_t)b.n * 8);
            memmove(va + a.n, va + room_a, (size_t)b.n * 8);
        }
    }
    Py_END_ALLOW_THREADS
    Py_ssize_t bad = a.bad >= 0 ? a.bad : (started && b.bad >= 0 ? a.n + b.bad : -1);
    Py_ssize_t n = a.n + (started ? b.n : 0);
    PyBuffer_Release(&view);
    if (bad >= 0) {
        Py_DECREF(steps);
        Py_DECREF(values);
        PyErr_Format(PyExc_ValueError, "line %zd after the header is not 'step,value,time'", bad + 1);
        return NULL;
    }
    if (PyByteArray_Resize(steps, n * 8) < 0 || PyByteArray_Resize(values, n * 8) < 0) {
        Py_DECREF(steps);
        Py_DECREF(values);
        return NULL;
    }
    return Py_BuildValue("(NN)", steps, values);
}

static int
hot_traverse(HotBase *self, visitproc visit, void *arg)
{
    Py_VISIT(self->cols);
    Py_VISIT(self->next_step);
    return 0;
}

static int
hot_clear(HotBase *self)
{
    Py_CLEAR(self->cols);
    Py_CLEAR(self->next_step);
    return 0;
}

static void
hot_dealloc(HotBase *self)
{
    PyObject_GC_UnTrack(self);
    hot_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(log_doc,
"log($self, values, step=None, /)\n--\n\n"
"Record scalar values at a step (default: one past the last step).\n\n"
"Args:\n"
"    values: series name -> int, float, bool, numpy scalar or 0-d torch tensor.\n"
"    step: a whole number >= 0; later calls without a step continue from it.\n\n"
"Raises:\n"
"    LabtrackTypeError: a value or key of a type that cannot be recorded.\n"
"    LabtrackNameError: a name with '..', a leading '/', or control characters.\n"
"    RunStateError: the run is finished.\n\n"
"Example:\n"
"    >>> run.log({\"train/loss\": 0.25, \"acc\": 0.9}, step=10)\n");

static PyMethodDef hot_methods[] = {
    {"log", (PyCFunction)(void (*)(void))hot_log, METH_FASTCALL | METH_KEYWORDS, log_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef hot_members[] = {
    {"_cols", T_OBJECT, offsetof(HotBase, cols), 0, NULL},
    {"_next_step", T_OBJECT, offsetof(HotBase, next_step), 0, NULL},
    {"_pending", T_PYSSIZET, offsetof(HotBase, pending), 0, NULL},
    {"_eager_at", T_PYSSIZET, offsetof(HotBase, eager_at), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject HotBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "labtrack._hot.HotBase",
    .tp_doc = "The C fast path of Run.log (see labtrack/_hot.c).",
    .tp_basicsize = sizeof(HotBase),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)hot_dealloc,
    .tp_traverse = (traverseproc)hot_traverse,
    .tp_clear = (inquiry)hot_clear,
    .tp_methods = hot_methods,
    .tp_members = hot_members,
};

static PyMethodDef module_methods[] = {
    {"format_rows", (PyCFunction)format_rows, METH_O, format_rows_doc},
    {"repr_float", (PyCFunction)repr_float, METH_O, repr_float_doc},
    {"format_many", (PyCFunction)format_many, METH_O, format_many_doc},
    {"parse_step_value", (PyCFunction)parse_step_value, METH_O, parse_step_value_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef hot_module = {
    PyModuleDef_HEAD_INIT, "labtrack._hot", "The C fast paths of Run.log and the writer.", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__hot(void)
{
    if (PyType_Ready(&HotBaseType) < 0)
        return NULL;
    if (find_array_frombytes() < 0)
        return NULL;
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (c_locale == (locale_t)0) {
        PyErr_SetString(PyExc_OSError, "newlocale(\"C\") failed");
        return NULL;
    }
    POW5_64[0] = 1;
    for (int i = 1; i < 28; i++)
        POW5_64[i] = POW5_64[i - 1] * 5;
    POW10_128[0] = 1;
    for (int i = 1; i < 22; i++)
        POW10_128[i] = POW10_128[i - 1] * 10;
    str_log_py = PyUnicode_InternFromString("_log_py");
    if (str_log_py == NULL)
        return NULL;
    str_wake_writer = PyUnicode_InternFromString("_wake_writer");
    if (str_wake_writer == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&hot_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&HotBaseType);
    if (PyModule_AddObject(m, "HotBase", (PyObject *)&HotBaseType) < 0) {
        Py_DECREF(&HotBaseType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
