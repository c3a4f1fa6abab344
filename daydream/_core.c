/* daydream._core: the loops that touch every event or task one at a time.
 *
 * Everything else in daydream is columnar numpy; these loops carry state from one element to the
 * next (an open-event stack, a ready queue) and cannot be vectorised, so in Python they were most
 * of the run time of `daydream whatif` (0.5 s segmenting and 0.45 s replaying ns_resolution_a100's
 * 45k events on this project's CI machine). Each function here is a line-for-line port of the
 * Python it replaced; the Python side (graph/build.py, sim/__init__.py, trace/fast.py) prepares
 * and checks the numpy arrays and documents the model. Arrays arrive through the buffer protocol:
 * C-contiguous, of the item size named at each argument; anything else is a TypeError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

/* A borrowed view of one numpy array: pointer, length, and the Py_buffer to release. */
typedef struct {
    Py_buffer view;
    Py_ssize_t n;
    int held;
} Arr;

static int arr_get(PyObject *obj, Arr *a, Py_ssize_t itemsize, int writable, const char *what)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    a->held = 0;
    if (PyObject_GetBuffer(obj, &a->view, flags) < 0)
        return -1;
    a->held = 1;
    const char *fmt = a->view.format ? a->view.format : "B";
    while (*fmt && strchr("@=<>!", *fmt))
        fmt++;
    if (a->view.itemsize != itemsize || !*fmt || !strchr("bBhHiIlLqQnN?c", *fmt)) {
        PyErr_Format(PyExc_TypeError, "%s: expected integers of %zd bytes, got format '%s' of %zd bytes", what,
                     itemsize, a->view.format ? a->view.format : "B", a->view.itemsize);
        return -1;
    }
    a->n = a->view.len / itemsize;
    return 0;
}

static void arr_release(Arr *arrs, int count)
{
    for (int i = 0; i < count; i++)
        if (arrs[i].held) {
            PyBuffer_Release(&arrs[i].view);
            arrs[i].held = 0;
        }
}

#define I64(a) ((int64_t *)(a).view.buf)
#define I32(a) ((int32_t *)(a).view.buf)
#define I8(a) ((int8_t *)(a).view.buf)

/* A growable array of int64 rows, handed to Python as a bytearray (numpy reads it in place with
 * frombuffer, writable, no copy). vec_push sets MemoryError when it fails. */
typedef struct {
    PyObject *buf;        /* a bytearray, or NULL before the first row */
    Py_ssize_t len, cap;  /* in int64 items */
} Vec;

static int vec_push(Vec *v, const int64_t *row, Py_ssize_t width)
{
    if (v->len + width > v->cap) {
        Py_ssize_t cap = v->cap ? v->cap * 2 : 4096;
        while (cap < v->len + width)
            cap *= 2;
        if (!v->buf) {
            v->buf = PyByteArray_FromStringAndSize(NULL, cap * (Py_ssize_t)sizeof(int64_t));
            if (!v->buf)
                return -1;
        } else if (PyByteArray_Resize(v->buf, cap * (Py_ssize_t)sizeof(int64_t)) < 0) {
            return -1;
        }
        v->cap = cap;
    }
    memcpy((int64_t *)PyByteArray_AS_STRING(v->buf) + v->len, row, (size_t)width * sizeof(int64_t));
    v->len += width;
    return 0;
}

/* The rows as a bytearray of exactly their size (a new reference); the Vec is empty after. */
static PyObject *vec_take(Vec *v)
{
    PyObject *out = v->buf ? v->buf : PyByteArray_FromStringAndSize(NULL, 0);
    if (v->buf && PyByteArray_Resize(out, v->len * (Py_ssize_t)sizeof(int64_t)) < 0) {
        Py_DECREF(out);
        out = NULL;
    }
    v->buf = NULL;
    v->len = v->cap = 0;
    return out;
}

static void vec_free(Vec *v)
{
    Py_CLEAR(v->buf);
    v->len = v->cap = 0;
}

/* ---- segment: cut CPU threads into tasks (graph/build.py:_segment_threads) -------------------- */

enum { SEG_WIDTH = 9 };  /* start, end, kind, event, phase, layer, seq, op, thread */

typedef struct {         /* an open event: its (clipped) end, row and the attributes it hands down */
    int64_t end, row, phase, layer, seq, op;
} Open;

static const char segment_doc[] =
    "segment(rows, bounds, rank, ts, end, kind, name, corr, seq, name_phase, is_module, last_task,\n"
    "        codes) -> (segments: bytearray, nested: bytearray)\n\n"
    "rows: int64 CPU event rows, grouped by thread (bounds: int64 offsets, one more than threads) and\n"
    "sorted by (ts, -end, row) inside a thread. rank int32, ts/end/corr/seq int64, kind int8,\n"
    "name int32 per event; name_phase int8 and is_module int8 per name. last_task (int64, written)\n"
    "gets, per event, the task its time ends in. codes = (CPU_OP, RUNTIME, T_CPU, T_IDLE, T_RUNTIME,\n"
    "UNSET). Returns the task rows (9 int64 each: start, end, kind, event, phase, layer, seq, op,\n"
    "thread) and the runtime calls nested in another call (3 int64 each: rank, corr, task).";

static PyObject *segment(PyObject *self, PyObject *args)
{
    PyObject *o[12];
    long long k_cpu_op, k_runtime, t_cpu, t_idle, t_runtime, unset;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOO(LLLLLL)", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6],
                          &o[7], &o[8], &o[9], &o[10], &o[11], &k_cpu_op, &k_runtime, &t_cpu, &t_idle,
                          &t_runtime, &unset))
        return NULL;
    enum { ROWS, BOUNDS, RANK, TS, END, KIND, NAME, CORR, SEQ, NAME_PHASE, IS_MODULE, LAST_TASK, N_ARR };
    static const Py_ssize_t size[N_ARR] = {8, 8, 4, 8, 8, 1, 4, 8, 8, 1, 1, 8};
    static const char *what[N_ARR] = {"rows", "bounds", "rank", "ts", "end", "kind", "name", "corr", "seq",
                                      "name_phase", "is_module", "last_task"};
    Arr a[N_ARR];
    memset(a, 0, sizeof a);
    for (int i = 0; i < N_ARR; i++)
        if (arr_get(o[i], &a[i], size[i], i == LAST_TASK, what[i]) < 0) {
            arr_release(a, N_ARR);
            return NULL;
        }
    Py_ssize_t n_events = a[TS].n, n_names = a[NAME_PHASE].n;
    int ok = a[END].n == n_events && a[KIND].n == n_events && a[NAME].n == n_events && a[CORR].n == n_events &&
             a[SEQ].n == n_events && a[RANK].n == n_events && a[LAST_TASK].n == n_events &&
             a[IS_MODULE].n == n_names && a[BOUNDS].n >= 1;
    const int64_t *rows = I64(a[ROWS]), *bounds = I64(a[BOUNDS]);
    for (Py_ssize_t i = 0; ok && i < a[ROWS].n; i++)
        ok = rows[i] >= 0 && rows[i] < n_events && I32(a[NAME])[rows[i]] >= 0 && I32(a[NAME])[rows[i]] < n_names;
    for (Py_ssize_t i = 0; ok && i < a[BOUNDS].n; i++)
        ok = bounds[i] >= 0 && bounds[i] <= a[ROWS].n && (i == 0 || bounds[i] >= bounds[i - 1]);
    if (!ok) {
        arr_release(a, N_ARR);
        PyErr_SetString(PyExc_ValueError, "segment: array lengths or row indices do not match");
        return NULL;
    }
    const int32_t *rank = I32(a[RANK]), *name = I32(a[NAME]);
    const int64_t *ts = I64(a[TS]), *end = I64(a[END]), *corr = I64(a[CORR]), *seq = I64(a[SEQ]);
    const int8_t *kind = I8(a[KIND]), *name_phase = I8(a[NAME_PHASE]), *is_module = I8(a[IS_MODULE]);
    int64_t *last_task = I64(a[LAST_TASK]);

    Vec segs = {0}, nested = {0};
    Open *stack = NULL;
    Py_ssize_t depth = 0, stack_cap = 0;
    int failed = 0;
    int64_t thread = 0;
#define SEG(...) do { int64_t row_[SEG_WIDTH] = {__VA_ARGS__}; \
                      if (vec_push(&segs, row_, SEG_WIDTH) < 0) { failed = 1; goto done; } } while (0)
#define N_SEGS (segs.len / SEG_WIDTH)
    for (Py_ssize_t t = 0; t + 1 < a[BOUNDS].n; t++) {
        Py_ssize_t lo = bounds[t], hi = bounds[t + 1];
        if (lo == hi)
            continue;
        int64_t cursor = ts[rows[lo]], rt_until = -1, rt_task = -1, r_rank = rank[rows[lo]];
        depth = 0;
        for (Py_ssize_t i = lo; i < hi; i++) {
            int64_t r = rows[i], s = ts[r], e = end[r];
            if (s < rt_until) {  /* inside a runtime call: it is one task; remember nested launches */
                if (kind[r] == k_runtime && corr[r] >= 0) {
                    int64_t row_[3] = {r_rank, corr[r], rt_task};
                    if (vec_push(&nested, row_, 3) < 0) { failed = 1; goto done; }
                }
                continue;
            }
            while (depth && stack[depth - 1].end <= s) {  /* close events that ended before s */
                Open top = stack[--depth];
                if (top.end > cursor) {
                    SEG(cursor, top.end, t_cpu, top.row, top.phase, top.layer, top.seq, top.op, thread);
                    cursor = top.end;
                }
                last_task[top.row] = N_SEGS - 1;
            }
            if (s > cursor) {  /* the time up to s: the innermost open event's own work, or idle */
                if (depth) {
                    Open *p = &stack[depth - 1];
                    SEG(cursor, s, t_cpu, p->row, p->phase, p->layer, p->seq, p->op, thread);
                } else {
                    SEG(cursor, s, t_idle, -1, unset, -1, -1, -1, thread);
                }
                cursor = s;
            }
            Open parent = depth ? stack[depth - 1] : (Open){0, -1, unset, -1, -1, -1};
            if (depth && e > parent.end)
                e = parent.end;
            int64_t ph = name_phase[name[r]];
            if (ph == unset)
                ph = parent.phase;
            int64_t layer = is_module[name[r]] ? name[r] : parent.layer;
            int64_t sq = seq[r] >= 0 ? seq[r] : parent.seq;
            int64_t op = kind[r] == k_cpu_op ? r : parent.op;
            if (kind[r] == k_runtime) {
                int64_t s2 = s > cursor ? s : cursor;
                int64_t e2 = e > s2 ? e : s2;
                rt_task = N_SEGS;
                last_task[r] = rt_task;
                SEG(s2, e2, t_runtime, r, ph, layer, sq, op, thread);
                cursor = e2;
                rt_until = end[r];
            } else {
                if (depth == stack_cap) {
                    Py_ssize_t cap = stack_cap ? stack_cap * 2 : 64;
                    Open *grown = realloc(stack, (size_t)cap * sizeof(Open));
                    if (!grown) { failed = 1; goto done; }
                    stack = grown;
                    stack_cap = cap;
                }
                stack[depth++] = (Open){e, r, ph, layer, sq, op};
            }
        }
        while (depth) {
            Open top = stack[--depth];
            if (top.end > cursor) {
                SEG(cursor, top.end, t_cpu, top.row, top.phase, top.layer, top.seq, top.op, thread);
                cursor = top.end;
            }
            last_task[top.row] = N_SEGS - 1;
        }
        thread++;
    }
#undef SEG
#undef N_SEGS
done:
    free(stack);
    arr_release(a, N_ARR);
    if (failed) {
        vec_free(&segs);
        vec_free(&nested);
        return PyErr_Occurred() ? NULL : PyErr_NoMemory();
    }
    PyObject *s_bytes = vec_take(&segs), *n_bytes = vec_take(&nested);
    if (!s_bytes || !n_bytes) {
        Py_XDECREF(s_bytes);
        Py_XDECREF(n_bytes);
        return NULL;
    }
    return Py_BuildValue("(NN)", s_bytes, n_bytes);
}

/* ---- half-node order and replay (sim/__init__.py: half_node_order, simulate) ----------------- */
/* The graph the simulator runs: node 2i is task i's start, 2i+1 its end; the end of a task also
 * waits for its own start. Both functions take it as CSR arrays sorted by source node. */

static int csr_ok(const int64_t *ptr, const int64_t *dst, Py_ssize_t nodes, Py_ssize_t m)
{
    for (Py_ssize_t i = 0; i < nodes; i++)
        if (ptr[i] < 0 || ptr[i] > ptr[i + 1] || ptr[i + 1] > m)
            return 0;
    for (Py_ssize_t k = 0; k < m; k++)
        if (dst[k] < 0 || dst[k] >= nodes)
            return 0;
    return 1;
}

static const char order_doc[] =
    "order(ptr, dst, indeg, out) -> nodes placed\n\n"
    "One topological order of the half-node graph (Kahn), shared by the simulator and the graph\n"
    "transforms. ptr (int64, 2n+1): offsets of each node's out-edges in dst (int64, sorted by source\n"
    "node). indeg (int64, 2n; consumed): in-edges per node, each end counting its own start. out\n"
    "(int64, 2n; written): the nodes in order. Ready starts are taken in task order; a task's end is\n"
    "taken right after its start unless end edges still hold it. Returns how many nodes were placed\n"
    "(2n unless the graph has a cycle).";

static PyObject *order(PyObject *self, PyObject *args)
{
    PyObject *o[4];
    if (!PyArg_ParseTuple(args, "OOOO", &o[0], &o[1], &o[2], &o[3]))
        return NULL;
    enum { PTR, DST, INDEG, OUT, N_ARR };
    static const char *what[N_ARR] = {"ptr", "dst", "indeg", "out"};
    Arr a[N_ARR];
    memset(a, 0, sizeof a);
    for (int i = 0; i < N_ARR; i++)
        if (arr_get(o[i], &a[i], 8, i == INDEG || i == OUT, what[i]) < 0) {
            arr_release(a, N_ARR);
            return NULL;
        }
    Py_ssize_t nodes = a[INDEG].n, m = a[DST].n;
    const int64_t *ptr = I64(a[PTR]), *dst = I64(a[DST]);
    if (a[PTR].n != nodes + 1 || a[OUT].n != nodes || nodes % 2 || !csr_ok(ptr, dst, nodes, m)) {
        arr_release(a, N_ARR);
        PyErr_SetString(PyExc_ValueError, "order: array lengths or edge targets do not match");
        return NULL;
    }
    int64_t *indeg = I64(a[INDEG]), *out = I64(a[OUT]);
    int64_t *queue = malloc((size_t)(nodes ? nodes : 1) * sizeof(int64_t));
    if (!queue) {
        arr_release(a, N_ARR);
        return PyErr_NoMemory();
    }
    Py_ssize_t head = 0, tail = 0, done = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < nodes; i += 2)
        if (indeg[i] == 0)
            queue[tail++] = i;
    while (head < tail) {  /* the queue grows while we walk it */
        int64_t node = queue[head++];
        for (;;) {
            out[done++] = node;
            for (int64_t k = ptr[node]; k < ptr[node + 1]; k++)
                if (--indeg[dst[k]] == 0)
                    queue[tail++] = dst[k];
            if (node & 1)
                break;
            node += 1;  /* take the task's end at once unless end edges still hold it */
            if (--indeg[node])
                break;
        }
    }
    Py_END_ALLOW_THREADS
    free(queue);
    arr_release(a, N_ARR);
    return PyLong_FromSsize_t(done);
}

static const char replay_doc[] =
    "replay(ptr, dst, delay, order, dur, best, pred, time, no_release) -> None\n\n"
    "Longest path over the half-node graph, walked in `order` (int64, 2n: a topological order, as\n"
    "order() returns it). ptr/dst as for order(); delay (int64, one per dst). dur (int64, n). best\n"
    "(int64, 2n; consumed): the release time of each start (no_release: none) and no_release for\n"
    "ends. pred and time (int64, 2n; written): the node that decided each node (-1: none; ties go to\n"
    "the predecessor walked first) and its time.";

static PyObject *replay(PyObject *self, PyObject *args)
{
    PyObject *o[8];
    long long no_release;
    if (!PyArg_ParseTuple(args, "OOOOOOOOL", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7],
                          &no_release))
        return NULL;
    enum { PTR, DST, DELAY, ORDER, DUR, BEST, PRED, TIME, N_ARR };
    static const char *what[N_ARR] = {"ptr", "dst", "delay", "order", "dur", "best", "pred", "time"};
    Arr a[N_ARR];
    memset(a, 0, sizeof a);
    for (int i = 0; i < N_ARR; i++)
        if (arr_get(o[i], &a[i], 8, i == BEST || i == PRED || i == TIME, what[i]) < 0) {
            arr_release(a, N_ARR);
            return NULL;
        }
    Py_ssize_t n = a[DUR].n, m = a[DST].n, nodes = 2 * n;
    const int64_t *ptr = I64(a[PTR]), *dst = I64(a[DST]), *delay = I64(a[DELAY]), *dur = I64(a[DUR]);
    const int64_t *walk = I64(a[ORDER]);
    int ok = a[PTR].n == nodes + 1 && a[DELAY].n == m && a[ORDER].n == nodes && a[BEST].n == nodes &&
             a[PRED].n == nodes && a[TIME].n == nodes && csr_ok(ptr, dst, nodes, m);
    for (Py_ssize_t i = 0; ok && i < nodes; i++)
        ok = walk[i] >= 0 && walk[i] < nodes;
    if (!ok) {
        arr_release(a, N_ARR);
        PyErr_SetString(PyExc_ValueError, "replay: array lengths, edge targets or order do not match");
        return NULL;
    }
    int64_t *best = I64(a[BEST]), *pred = I64(a[PRED]), *time = I64(a[TIME]);
    int overflow = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < nodes && !overflow; i++) {
        int64_t node = walk[i], v = best[node];
        if (node & 1) {  /* an end: its start plus the duration, or later if end edges hold it */
            int64_t own;
            if (__builtin_add_overflow(time[node - 1], dur[node >> 1], &own)) { overflow = 1; break; }
            if (own >= v) {
                v = own;
                pred[node] = -1;
            }
        } else if (v == no_release) {  /* a start with no start edge and no release: time zero */
            v = 0;
        }
        time[node] = v;
        for (int64_t k = ptr[node]; k < ptr[node + 1]; k++) {
            int64_t d = dst[k], w;
            if (__builtin_add_overflow(v, delay[k], &w)) { overflow = 1; break; }
            if (w > best[d]) {
                best[d] = w;
                pred[d] = node;
            }
        }
    }
    Py_END_ALLOW_THREADS
    arr_release(a, N_ARR);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "replay: a simulated time does not fit in 64 bits");
        return NULL;
    }
    Py_RETURN_NONE;
}


/* ---- scan: a Kineto `traceEvents` array straight into columns (trace/fast.py) ---------------- */
/* A JSON reader that keeps nothing but what the events table needs: for each complete event ('X')
 * its kind, name, ids, times and the core args (correlation, external id, device, stream, sequence
 * number, forward thread), plus the byte span of its `args` object so that the rest (shapes, grid)
 * is decoded on demand. Spans of the few other events daydream reads (instant, metadata, fwdbwd
 * flows) come back for Python to decode. Anything unexpected makes the whole scan return None and
 * the caller takes the generic path, so this reader never has to be lenient. */

typedef struct {
    const char *p, *end, *base;
    int depth;
    int check_utf8;  /* the buffer holds bytes >= 0x80: strings must be checked */
} Cur;

/* Whether any byte is >= 0x80 (most traces are pure ASCII and skip every UTF-8 check). */
static int any_high_byte(const char *s, Py_ssize_t len)
{
    uint64_t high = 0, word;
    Py_ssize_t i = 0;
    for (; i + 8 <= len; i += 8) {
        memcpy(&word, s + i, 8);
        high |= word;
    }
    for (; i < len; i++)
        high |= (unsigned char)s[i];
    return (high & 0x8080808080808080ULL) != 0;
}

enum { SCAN_OK = 0, SCAN_ODD = 1, SCAN_ERR = 2 };  /* ERR: a Python exception is set */
enum { V_ABSENT, V_NULL, V_BOOL, V_INT, V_FLOAT, V_STRING, V_OTHER };

typedef struct {            /* one scalar JSON value as read */
    int type;
    int64_t i;              /* V_INT, V_BOOL */
    double d;               /* V_INT (as double), V_FLOAT */
    const char *s;          /* V_STRING: the characters between the quotes */
    Py_ssize_t len;
    int escaped;            /* the string holds backslash escapes */
} Val;

static inline void skip_ws(Cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

/* Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF), as JSON requires. */
static int valid_utf8(const unsigned char *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n;) {
        unsigned char b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        int len = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || i + len > n)
            return 0;
        uint32_t cp = b & (0x7F >> len);
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
                cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

static int read_string(Cur *c, Val *v)  /* at the opening quote */
{
    const char *start = c->p + 1, *p = start;
    for (;;) {  /* the closing quote is the first one not escaped by an odd run of backslashes */
        const char *q = memchr(p, '"', (size_t)(c->end - p));
        if (!q)
            return SCAN_ODD;
        const char *b = q;
        while (b > start && b[-1] == '\\')
            b--;
        if ((q - b) % 2 == 0) {
            p = q;
            break;
        }
        p = q + 1;
    }
    v->type = V_STRING;
    v->s = start;
    v->len = p - start;
    Py_ssize_t len = p - start;
    v->escaped = memchr(start, '\\', (size_t)len) != NULL;
    if (c->check_utf8 && any_high_byte(start, len) && !valid_utf8((const unsigned char *)start, len))
        return SCAN_ODD;  /* not JSON: the generic path says so */
    c->p = p + 1;
    return SCAN_OK;
}

/* Byte strings seen before -> the integer they mapped to (a name's code, a category's kind), so a
 * name repeated a million times is turned into a Python str once. Keys point into the scanned
 * buffer, which outlives the table. */
typedef struct {
    const char *s;
    Py_ssize_t len;
    int64_t value;
} Slot;

typedef struct {
    Slot *slots;
    size_t cap, used;  /* cap: a power of two */
} Seen;

static uint64_t hash_bytes(const char *s, Py_ssize_t len)
{
    uint64_t h = 1469598103934665603ULL;  /* FNV-1a */
    for (Py_ssize_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static Slot *seen_find(Seen *t, const char *s, Py_ssize_t len)
{
    if (!t->cap)
        return NULL;
    size_t i = hash_bytes(s, len) & (t->cap - 1);
    while (t->slots[i].s && !(t->slots[i].len == len && !memcmp(t->slots[i].s, s, (size_t)len)))
        i = (i + 1) & (t->cap - 1);
    return &t->slots[i];
}

static int seen_put(Seen *t, const char *s, Py_ssize_t len, int64_t value)
{
    if (2 * (t->used + 1) > t->cap) {  /* keep at most half full */
        Seen grown = {calloc(t->cap ? 2 * t->cap : 256, sizeof(Slot)), t->cap ? 2 * t->cap : 256, 0};
        if (!grown.slots)
            return -1;
        for (size_t i = 0; i < t->cap; i++)
            if (t->slots[i].s)
                *seen_find(&grown, t->slots[i].s, t->slots[i].len) = t->slots[i], grown.used++;
        free(t->slots);
        *t = grown;
    }
    Slot *slot = seen_find(t, s, len);
    if (!slot->s)
        t->used++;
    *slot = (Slot){s, len, value};
    return 0;
}

/* A JSON number as a double whatever the process's locale (an embedding program may have set one
 * with a decimal comma): glibc's strtod_l in the "C" locale, else CPython's own parser, which is
 * locale-free but slower on the 19-digit times of nanosecond traces. */
#if defined(__GLIBC__)
#include <locale.h>
static double c_strtod(const char *buf)
{
    static locale_t c_locale;
    if (!c_locale)
        c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    return c_locale ? strtod_l(buf, NULL, c_locale) : PyOS_string_to_double(buf, NULL, NULL);
}
#else
static double c_strtod(const char *buf)
{
    return PyOS_string_to_double(buf, NULL, NULL);
}
#endif

static int read_number(Cur *c, Val *v)
{
    const char *p = c->p, *start = p;
    int is_int = 1, digits = 0;
    if (p < c->end && *p == '-')
        p++;
    while (p < c->end && *p >= '0' && *p <= '9') {
        p++;
        digits++;
    }
    if (!digits)
        return SCAN_ODD;
    const char *frac = NULL;
    int frac_digits = 0;
    if (p < c->end && *p == '.') {
        is_int = 0;
        frac = ++p;
        while (p < c->end && *p >= '0' && *p <= '9')
            p++;
        frac_digits = (int)(p - frac);
    }
    if (p < c->end && (*p == 'e' || *p == 'E')) {
        frac = NULL;  /* exponents take the general parser */
        is_int = 0;
        p++;
        if (p < c->end && (*p == '+' || *p == '-'))
            p++;
        while (p < c->end && *p >= '0' && *p <= '9')
            p++;
    }
    c->p = p;
    if (is_int && digits <= 19) {  /* exact while it fits in 64 bits */
        uint64_t x = 0;
        for (const char *q = start + (*start == '-'); q < p; q++)
            x = x * 10 + (uint64_t)(*q - '0');
        if (x <= (uint64_t)INT64_MAX) {
            v->type = V_INT;
            v->i = *start == '-' ? -(int64_t)x : (int64_t)x;
            v->d = (double)v->i;
            return SCAN_OK;
        }
    }
    /* Clinger's fast path, the usual form of Kineto's times ("1712345678.125"): the digits as an
     * integer below 2^53 divided by an exact power of ten up to 1e22 is the correctly rounded
     * double, the same value the general parser gives. */
    static const double pow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    if (frac && frac_digits >= 1 && digits + frac_digits <= 19 && frac_digits <= 22) {
        uint64_t m = 0;
        for (const char *q = start + (*start == '-'); q < p; q++)
            if (*q != '.')
                m = m * 10 + (uint64_t)(*q - '0');
        if (m < ((uint64_t)1 << 53)) {
            v->type = V_FLOAT;
            v->d = (double)m / pow10[frac_digits];
            if (*start == '-')
                v->d = -v->d;
            return SCAN_OK;
        }
    }
    char buf[128];  /* a terminated copy for the locale-independent parser */
    if (p - start >= (Py_ssize_t)sizeof buf)
        return SCAN_ODD;
    memcpy(buf, start, (size_t)(p - start));
    buf[p - start] = 0;
    v->d = c_strtod(buf);
    if (v->d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return SCAN_ODD;
    }
    if (is_int) {  /* a big integer: Python keeps it exact, daydream's range checks reject it */
        v->type = V_INT;
        v->i = INT64_MAX;
    } else {
        v->type = V_FLOAT;
    }
    return SCAN_OK;
}

static int skip_value(Cur *c);

/* Opening a container at its bracket: 1 if a member follows, 0 if it closes at once (consumed). */
static int open_container(Cur *c, char close)
{
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return 0;
    }
    return 1;
}

/* Inside an object: the next key and the colon after it. */
static int read_key(Cur *c, Val *key)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p != '"' || read_string(c, key))
        return SCAN_ODD;
    skip_ws(c);
    if (c->p >= c->end || *c->p != ':')
        return SCAN_ODD;
    c->p++;
    return SCAN_OK;
}

/* After a member: 1 if another follows (comma consumed), 0 at the closing bracket (consumed), -1
 * for anything else. */
static int next_member(Cur *c, char close)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ',') {
        c->p++;
        return 1;
    }
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return 0;
    }
    return -1;
}

static int skip_container(Cur *c, char close)
{
    if (++c->depth > 512)
        return SCAN_ODD;
    for (int more = open_container(c, close); more > 0; ) {
        Val key;
        int rc;
        if (close == '}' && read_key(c, &key))
            return SCAN_ODD;
        if ((rc = skip_value(c)))
            return rc;
        if ((more = next_member(c, close)) < 0)
            return SCAN_ODD;
    }
    c->depth--;
    return SCAN_OK;
}

static int literal(Cur *c, const char *word, Py_ssize_t n)
{
    if (c->end - c->p < n || memcmp(c->p, word, (size_t)n))
        return SCAN_ODD;
    c->p += n;
    return SCAN_OK;
}

/* Read a scalar into v, or skip a container (v->type = V_OTHER). */
static int read_value(Cur *c, Val *v)
{
    skip_ws(c);
    if (c->p >= c->end)
        return SCAN_ODD;
    switch (*c->p) {
    case '"': return read_string(c, v);
    case '{': v->type = V_OTHER; return skip_container(c, '}');
    case '[': v->type = V_OTHER; return skip_container(c, ']');
    case 't': v->type = V_BOOL; v->i = 1; return literal(c, "true", 4);
    case 'f': v->type = V_BOOL; v->i = 0; return literal(c, "false", 5);
    case 'n': v->type = V_NULL; return literal(c, "null", 4);
    default: return read_number(c, v);
    }
}

static int skip_value(Cur *c)
{
    Val v;
    return read_value(c, &v);
}

static inline int key_is(const Val *k, const char *word)
{
    Py_ssize_t n = (Py_ssize_t)strlen(word);
    return !k->escaped && k->len == n && !memcmp(k->s, word, (size_t)n);
}

#define INT62 ((int64_t)1 << 62)

/* Microseconds to integer nanoseconds exactly as numpy's round(float64(x) * 1000) does. */
static int to_ns(const Val *v, int64_t *out)
{
    if (v->type != V_INT && v->type != V_FLOAT)
        return SCAN_ODD;
    double ns = rint(v->d * 1000.0);
    if (!(ns > -(double)INT62 && ns < (double)INT62))
        return SCAN_ODD;
    *out = (int64_t)ns;
    return SCAN_OK;
}

typedef struct {
    PyObject *names_dict, *names_list;   /* the name interner (events.py:_Interner) */
    PyObject *ids_dict, *to_id;          /* non-integer pid/tid -> id, through to_id(value) */
    PyObject *kinds_dict, *kind_of;      /* category -> kind (-1: skip), through kind_of(cat) */
    PyObject *ints_dict, *int_of;        /* odd integer-arg strings -> int or None, through int_of */
    PyObject *decode_str;                /* decode_str(b'"..."') -> str, for escaped strings */
    Seen names, kinds;                   /* the same, by the raw bytes of unescaped strings */
} Scan;

static PyObject *make_str(Scan *sc, const Val *v)
{
    if (!v->escaped)
        return PyUnicode_DecodeUTF8(v->s, v->len, NULL);
    PyObject *raw = PyBytes_FromStringAndSize(v->s - 1, v->len + 2);
    if (!raw)
        return NULL;
    PyObject *out = PyObject_CallOneArg(sc->decode_str, raw);
    Py_DECREF(raw);
    return out;
}

/* After make_str failed: bytes that are not UTF-8 are odd (the generic path reports them), any
 * other failure is an error. */
static int str_failed(void)
{
    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        return SCAN_ERR;
    PyErr_Clear();
    return SCAN_ODD;
}

/* cache[key], computed as fn(key) on the first ask (a borrowed reference; NULL on error). */
static PyObject *cached(PyObject *cache, PyObject *fn, PyObject *key)
{
    PyObject *hit = PyDict_GetItemWithError(cache, key);
    if (hit || PyErr_Occurred())
        return hit;
    hit = PyObject_CallOneArg(fn, key);
    if (!hit || PyDict_SetItem(cache, key, hit) < 0) {
        Py_XDECREF(hit);
        return NULL;
    }
    Py_DECREF(hit);  /* the cache holds it */
    return hit;
}

/* A Python int as a C integer. */
static int int_value(PyObject *num, int64_t *out)
{
    *out = PyLong_AsLongLong(num);
    return (*out == -1 && PyErr_Occurred()) ? SCAN_ERR : SCAN_OK;
}

/* cached(cache, fn, key) as a C integer. */
static int cached_call(PyObject *cache, PyObject *fn, PyObject *key, int64_t *out)
{
    PyObject *hit = cached(cache, fn, key);
    return hit ? int_value(hit, out) : SCAN_ERR;
}

static int thread_id(Scan *sc, const Val *v, int64_t *out)  /* events.py:_int_id */
{
    if (v->type == V_INT && v->i > -INT62 && v->i < INT62) {
        *out = v->i;
        return SCAN_OK;
    }
    if (v->type == V_FLOAT && v->d > -(double)INT62 && v->d < (double)INT62) {
        *out = (int64_t)v->d;
        return SCAN_OK;
    }
    if (v->type != V_STRING)
        return SCAN_ODD;
    PyObject *key = make_str(sc, v);
    if (!key)
        return str_failed();
    int rc = cached_call(sc->ids_dict, sc->to_id, key, out);
    Py_DECREF(key);
    return rc;
}

/* An integer arg as events.py:_as_int reads it: ints, floats (truncated) and integer strings
 * inside +-2^62, anything else the default. Strings other than plain digits go to int_of (Python's
 * int() judges them; None: not an integer), once per distinct string. */
static int as_int(Scan *sc, const Val *v, int64_t dflt, int64_t *out)
{
    switch (v->type) {
    case V_INT:
        *out = (v->i > -INT62 && v->i < INT62) ? v->i : dflt;
        return SCAN_OK;
    case V_FLOAT:
        *out = (v->d > -(double)INT62 && v->d < (double)INT62) ? (int64_t)v->d : dflt;
        return SCAN_OK;
    case V_STRING:
        break;
    default:
        *out = dflt;
        return SCAN_OK;
    }
    const char *p = v->s, *e = v->s + v->len;
    int neg = p < e && *p == '-', plain = !v->escaped && e - p - neg >= 1 && e - p - neg <= 18;
    int64_t x = 0;
    for (p += neg; plain && p < e; p++) {
        plain = *p >= '0' && *p <= '9';
        x = x * 10 + (*p - '0');
    }
    if (plain) {
        *out = neg ? -x : x;
        return SCAN_OK;
    }
    PyObject *key = make_str(sc, v);
    if (!key)
        return str_failed();
    PyObject *hit = cached(sc->ints_dict, sc->int_of, key);
    Py_DECREF(key);
    if (!hit)
        return SCAN_ERR;
    if (hit == Py_None) {
        *out = dflt;
        return SCAN_OK;
    }
    return int_value(hit, out);
}

enum { COL_KIND, COL_NAME, COL_PID, COL_TID, COL_DEVICE, COL_STREAM, COL_TS, COL_DUR, COL_CORR, COL_EXT,
       COL_SEQ, COL_FWD, COL_ARGS_START, COL_ARGS_END, N_COLS };

/* The args a `[memory]` instant event is read for, in the memory table's column order. */
static const char *const MEMORY_KEYS[] = {"Bytes", "Total Allocated", "Total Reserved", "Device Type",
                                          "Device Id", "Addr"};
enum { N_MEMORY_KEYS = 6 };

/* The args of an event that gives none (before its args, or after a later "args": null). */
static void reset_args(int64_t *row, Val *memory, int64_t absent)
{
    row[COL_CORR] = row[COL_EXT] = row[COL_SEQ] = row[COL_FWD] = -1;
    row[COL_DEVICE] = row[COL_STREAM] = absent;
    row[COL_ARGS_START] = row[COL_ARGS_END] = -1;
    for (int k = 0; k < N_MEMORY_KEYS; k++)
        memory[k].type = V_ABSENT;
}

/* The core args of one event; `absent` marks a device/stream the event does not give. An object
 * replaces whatever an earlier "args" of the same event said, as a later key does in a dict. */
static int read_args(Scan *sc, Cur *c, int64_t *row, Val *memory, int64_t absent, int *odd)
{
    Val ext1 = {V_ABSENT}, ext2 = {V_ABSENT};
    Val v;
    reset_args(row, memory, absent);
    row[COL_ARGS_START] = c->p - c->base;
    for (int more = open_container(c, '}'); more > 0; ) {
        Val key;
        int rc;
        if (read_key(c, &key) || key.escaped)
            return SCAN_ODD;
        if ((rc = read_value(c, &v)))
            return rc;
        if (key_is(&key, "correlation")) rc = as_int(sc, &v, -1, &row[COL_CORR]);
        else if (key_is(&key, "External id")) ext1 = v;
        else if (key_is(&key, "external id")) ext2 = v;
        else if (key_is(&key, "device")) rc = as_int(sc, &v, absent, &row[COL_DEVICE]);
        else if (key_is(&key, "stream")) rc = as_int(sc, &v, absent, &row[COL_STREAM]);
        else if (key_is(&key, "Sequence number")) rc = as_int(sc, &v, -1, &row[COL_SEQ]);
        else if (key_is(&key, "Fwd thread id")) rc = as_int(sc, &v, -1, &row[COL_FWD]);
        else
            for (int k = 0; k < N_MEMORY_KEYS; k++)
                if (key_is(&key, MEMORY_KEYS[k]))
                    memory[k] = v;
        if (rc == SCAN_ERR)
            return rc;
        if (rc == SCAN_ODD)  /* odd only for a complete event; other events keep parsing */
            *odd = 1;
        if ((more = next_member(c, '}')) < 0)
            return SCAN_ODD;
    }
    row[COL_ARGS_END] = c->p - c->base;
    const Val *ext = ext1.type != V_ABSENT ? &ext1 : &ext2;  /* a given "External id", even null, wins */
    int rc = as_int(sc, ext, -1, &row[COL_EXT]);
    if (rc == SCAN_ODD)
        *odd = 1;
    return rc == SCAN_ERR ? rc : SCAN_OK;
}

/* The code of an event name in the table's interner (names_dict/names_list), adding it if new. */
static int intern_name(Scan *sc, const Val *name, int64_t *code)
{
    Slot *hit = name->escaped ? NULL : seen_find(&sc->names, name->s, name->len);
    if (hit && hit->s) {
        *code = hit->value;
        return SCAN_OK;
    }
    PyObject *s = make_str(sc, name);
    if (!s)
        return str_failed();
    PyObject *known = PyDict_GetItemWithError(sc->names_dict, s);
    if (known) {
        *code = PyLong_AsLongLong(known);
    } else if (PyErr_Occurred()) {
        Py_DECREF(s);
        return SCAN_ERR;
    } else {
        *code = PyList_GET_SIZE(sc->names_list);
        PyObject *num = PyLong_FromLongLong(*code);
        if (!num || PyDict_SetItem(sc->names_dict, s, num) < 0 || PyList_Append(sc->names_list, s) < 0) {
            Py_XDECREF(num);
            Py_DECREF(s);
            return SCAN_ERR;
        }
        Py_DECREF(num);
    }
    Py_DECREF(s);
    if (*code == -1 && PyErr_Occurred())
        return SCAN_ERR;
    if (!name->escaped && seen_put(&sc->names, name->s, name->len, *code) < 0) {
        PyErr_NoMemory();
        return SCAN_ERR;
    }
    return SCAN_OK;
}

/* The event kind of a category (-1: skip the event): kind_of decides, once per distinct category. */
static int category_kind(Scan *sc, const Val *cat, int64_t *kind)
{
    if (cat->type == V_ABSENT || cat->type == V_NULL)
        return cached_call(sc->kinds_dict, sc->kind_of, Py_None, kind);
    if (cat->type != V_STRING)
        return SCAN_ODD;
    Slot *hit = cat->escaped ? NULL : seen_find(&sc->kinds, cat->s, cat->len);
    if (hit && hit->s) {
        *kind = hit->value;
        return SCAN_OK;
    }
    PyObject *key = make_str(sc, cat);
    if (!key)
        return str_failed();
    int rc = cached_call(sc->kinds_dict, sc->kind_of, key, kind);
    Py_DECREF(key);
    if (rc)
        return rc;
    if (!cat->escaped && seen_put(&sc->kinds, cat->s, cat->len, *kind) < 0) {
        PyErr_NoMemory();
        return SCAN_ERR;
    }
    return SCAN_OK;
}

/* One element of traceEvents. */
static int scan_event(Scan *sc, Cur *c, Vec *cols, Vec *others, Vec *flows, Vec *memory_rows,
                      int64_t absent)
{
    int64_t row[N_COLS];
    Val memory[N_MEMORY_KEYS];
    Val v, ph = {V_ABSENT}, cat = {V_ABSENT}, name = {V_ABSENT}, pid = {V_ABSENT}, tid = {V_ABSENT},
        ts = {V_ABSENT}, dur = {V_ABSENT}, id = {V_ABSENT};
    int has_args = 0, rc;
    skip_ws(c);
    if (c->p >= c->end || *c->p != '{')
        return SCAN_ODD;
    const char *obj_start = c->p;
    reset_args(row, memory, absent);
    for (int more = open_container(c, '}'); more > 0; ) {
        Val key;
        if (read_key(c, &key) || key.escaped)
            return SCAN_ODD;
        skip_ws(c);
        if (key_is(&key, "args") && c->p < c->end && *c->p == '{') {
            int odd = 0;
            if ((rc = read_args(sc, c, row, memory, absent, &odd)))
                return rc;
            has_args = odd ? -1 : 1;
        } else {
            if ((rc = read_value(c, &v)))
                return rc;
            if (key_is(&key, "args")) {
                if (v.type != V_NULL) {
                    has_args = -1;  /* args that are not an object: the generic path's call */
                } else {  /* a later "args": null replaces an earlier object */
                    has_args = 0;
                    reset_args(row, memory, absent);
                }
            }
            else if (key_is(&key, "ph")) ph = v;
            else if (key_is(&key, "cat")) cat = v;
            else if (key_is(&key, "name")) name = v;
            else if (key_is(&key, "pid")) pid = v;
            else if (key_is(&key, "tid")) tid = v;
            else if (key_is(&key, "ts")) ts = v;
            else if (key_is(&key, "dur")) dur = v;
            else if (key_is(&key, "id")) id = v;
        }
        if ((more = next_member(c, '}')) < 0)
            return SCAN_ODD;
    }
    if (ph.type == V_STRING && ph.escaped)
        return SCAN_ODD;
    if (ph.type != V_STRING || ph.len != 1)
        return SCAN_OK;  /* not an event daydream reads */
    char p0 = ph.s[0];
    if (p0 != 'X') {
        if ((p0 == 's' || p0 == 'f') && cat.type == V_STRING && cat.escaped)
            return SCAN_ODD;
        if ((p0 == 's' || p0 == 'f') && cat.type == V_STRING && key_is(&cat, "fwdbwd")) {
            /* a forward -> backward flow: id, start or finish, thread and time */
            int64_t flow[5] = {-1, p0 == 's', 0, 0, 0};
            if ((rc = as_int(sc, &id, -1, &flow[0])) || (rc = thread_id(sc, &pid, &flow[2])) ||
                    (rc = thread_id(sc, &tid, &flow[3])) || (rc = to_ns(&ts, &flow[4])))
                return rc;
            if (vec_push(flows, flow, 5) < 0)
                return SCAN_ERR;
            return SCAN_OK;
        }
        if (p0 == 'M') {  /* thread ids as the generic path meets them, so odd ones get the same codes */
            int64_t unused;
            if (pid.type != V_INT && (rc = thread_id(sc, &pid, &unused)))
                return rc;
            if (tid.type != V_INT && name.type == V_STRING && key_is(&name, "thread_name") &&
                    (rc = thread_id(sc, &tid, &unused)))
                return rc;
        }
        if ((p0 == 'i' || p0 == 'I') && name.type == V_STRING && name.escaped)
            return SCAN_ODD;
        if ((p0 == 'i' || p0 == 'I') && name.type == V_STRING && key_is(&name, "[memory]")) {
            /* an allocator counter: time, then the args in MEMORY_KEYS order (Bytes defaults to 0) */
            int64_t mem_row[1 + N_MEMORY_KEYS];
            if (has_args < 0 || (rc = to_ns(&ts, &mem_row[0])))
                return SCAN_ODD;
            for (int k = 0; k < N_MEMORY_KEYS; k++)
                if ((rc = as_int(sc, &memory[k], k == 0 ? 0 : -1, &mem_row[1 + k])))
                    return rc;
            if (vec_push(memory_rows, mem_row, 1 + N_MEMORY_KEYS) < 0)
                return SCAN_ERR;
            return SCAN_OK;
        }
        if (p0 == 'M') {
            int64_t span[2] = {obj_start - c->base, c->p - c->base};
            if (vec_push(others, span, 2) < 0)
                return SCAN_ERR;
        }
        return SCAN_OK;
    }
    if (has_args < 0 || name.type != V_STRING)
        return SCAN_ODD;
    int64_t kind;
    if ((rc = category_kind(sc, &cat, &kind)))
        return rc;
    if (kind < 0)
        return SCAN_OK;  /* a skipped category */
    row[COL_KIND] = kind;
    if ((rc = to_ns(&ts, &row[COL_TS])))
        return rc;
    if (dur.type == V_ABSENT)
        row[COL_DUR] = 0;
    else if ((rc = to_ns(&dur, &row[COL_DUR])))
        return rc;  /* a negative duration is kept: EventTable.finish leaves the event out, and says so */
    if ((rc = thread_id(sc, &pid, &row[COL_PID])) || (rc = thread_id(sc, &tid, &row[COL_TID])))
        return rc;
    if ((rc = intern_name(sc, &name, &row[COL_NAME])))
        return rc;
    if (vec_push(cols, row, N_COLS) < 0)
        return SCAN_ERR;
    return SCAN_OK;
}

static const char scan_doc[] =
    "scan(events, names_dict, names_list, ids_dict, to_id, kinds_dict, kind_of, ints_dict, int_of,\n"
    "     decode_str, absent)\n"
    "    -> (columns, others, flows, memory: bytearrays) or None\n\n"
    "events: the bytes of a traceEvents JSON array. Columns: 14 int64 per complete event (kind, name,\n"
    "pid, tid, device, stream, ts, dur, corr, ext, seq, fwd_tid, args_start, args_end); times in ns,\n"
    "device/stream `absent` where args do not give them, args_start/end the byte span of the args\n"
    "object (-1: none). Names are interned into names_dict/names_list; non-integer pid/tid go through\n"
    "to_id, categories through kind_of (-1: skip) and integer args written as odd strings through\n"
    "int_of (None: not an integer), each cached in the dict beside it; escaped strings through\n"
    "decode_str. Others: (start, end) byte spans of metadata events. Flows: 5 int64 per fwdbwd flow\n"
    "event (id, 1 for a start, pid, tid, ts in ns). Memory: 7 int64 per [memory] instant event (ts\n"
    "in ns, Bytes, Total Allocated, Total Reserved, Device Type, Device Id, Addr).\n"
    "None when the array holds anything the generic path must judge.";

static PyObject *scan(PyObject *self, PyObject *args)
{
    PyObject *buf_obj;
    Scan sc;
    long long absent;
    if (!PyArg_ParseTuple(args, "OO!O!O!OO!OO!OOL", &buf_obj, &PyDict_Type, &sc.names_dict, &PyList_Type,
                          &sc.names_list, &PyDict_Type, &sc.ids_dict, &sc.to_id, &PyDict_Type, &sc.kinds_dict,
                          &sc.kind_of, &PyDict_Type, &sc.ints_dict, &sc.int_of, &sc.decode_str, &absent))
        return NULL;
    sc.names = (Seen){0};
    sc.kinds = (Seen){0};
    Arr buf;
    if (arr_get(buf_obj, &buf, 1, 0, "events") < 0) {
        arr_release(&buf, 1);
        return NULL;
    }
    Cur c = {buf.view.buf, (const char *)buf.view.buf + buf.n, buf.view.buf, 0,
             any_high_byte(buf.view.buf, buf.n)};
    Vec cols = {0}, others = {0}, flows = {0}, memory_rows = {0};
    int rc = SCAN_OK;
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '[') {
        rc = SCAN_ODD;
    } else {
        for (int more = open_container(&c, ']'); more > 0 && rc == SCAN_OK; ) {
            if ((rc = scan_event(&sc, &c, &cols, &others, &flows, &memory_rows, absent)) == SCAN_OK &&
                    (more = next_member(&c, ']')) < 0)
                rc = SCAN_ODD;
        }
        skip_ws(&c);
        if (rc == SCAN_OK && c.p != c.end)
            rc = SCAN_ODD;
    }
    arr_release(&buf, 1);
    free(sc.names.slots);
    free(sc.kinds.slots);
    if (rc != SCAN_OK) {
        vec_free(&cols);
        vec_free(&others);
        vec_free(&flows);
        vec_free(&memory_rows);
        if (rc == SCAN_ERR)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *a = vec_take(&cols), *b = vec_take(&others), *f = vec_take(&flows), *m = vec_take(&memory_rows);
    if (!a || !b || !f || !m) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        Py_XDECREF(f);
        Py_XDECREF(m);
        return NULL;
    }
    return Py_BuildValue("(NNNN)", a, b, f, m);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, scan_doc},
    {"segment", segment, METH_VARARGS, segment_doc},
    {"order", order, METH_VARARGS, order_doc},
    {"replay", replay, METH_VARARGS, replay_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "daydream._core",
    "Compiled inner loops of daydream (trace scan, thread segmentation, replay); see _core.c.", -1, methods,
};

PyMODINIT_FUNC PyInit__core(void)
{
    return PyModule_Create(&module);
}
