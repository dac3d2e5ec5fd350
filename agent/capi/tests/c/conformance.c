/*
 * conformance.c: the C conformance program of libSaCkpt.
 *
 * Every exported function's success path and its error table (the SAF CKPT
 * B.02.02 function list with the order of checks: NULL pointers and bad enum
 * values before handles), B.01 and B.02 clients, dispatch through poll() on
 * the selection object, the asynchronous open and synchronize callbacks, and
 * the arrival callback seen from a second library handle.
 *
 * Written for the ckpt project. It prints one line per failed check and ends
 * with "N passed, N failed"; the exit status is 0 only when nothing failed.
 * Run it with CKPT_DIR set to a fresh directory.
 */

#define _POSIX_C_SOURCE 200809L

#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <saCkpt.h>
#include <ckpt/ckpt_ext.h>
#include <opensaf/cpsv_papi.h>

/* ------------------------------------------------------------------------ */
/* Checks.                                                                  */
/* ------------------------------------------------------------------------ */

static int passed;
static int failed;
static const char *group = "";

static const char *rc_name(SaAisErrorT rc)
{
    static const char *names[] = {
        "0?", "SA_AIS_OK", "LIBRARY", "VERSION", "INIT", "TIMEOUT", "TRY_AGAIN",
        "INVALID_PARAM", "NO_MEMORY", "BAD_HANDLE", "BUSY", "ACCESS", "NOT_EXIST",
        "NAME_TOO_LONG", "EXIST", "NO_SPACE", "INTERRUPT", "NAME_NOT_FOUND",
        "NO_RESOURCES", "NOT_SUPPORTED", "BAD_OPERATION", "FAILED_OPERATION",
        "MESSAGE_ERROR", "QUEUE_FULL", "QUEUE_NOT_AVAILABLE", "BAD_FLAGS", "TOO_BIG",
        "NO_SECTIONS", "NO_OP", "REPAIR_PENDING", "NO_BINDINGS", "UNAVAILABLE"};
    if ((int)rc >= 0 && (size_t)rc < sizeof names / sizeof names[0])
        return names[rc];
    return "unknown";
}

static void check_at(int ok, int line, const char *what)
{
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL [%s] line %d: %s\n", group, line, what);
    }
}

static void expect_at(SaAisErrorT got, SaAisErrorT want, int line, const char *call)
{
    if (got == want) {
        passed++;
    } else {
        failed++;
        printf("FAIL [%s] line %d: %s returned %s (%d), expected %s\n", group, line, call,
               rc_name(got), (int)got, rc_name(want));
    }
}

#define CHECK(cond) check_at(!!(cond), __LINE__, #cond)
#define EXPECT(call, want) expect_at((call), (want), __LINE__, #call)

#define OK SA_AIS_OK
#define INVALID SA_AIS_ERR_INVALID_PARAM
#define BAD_HANDLE SA_AIS_ERR_BAD_HANDLE

/* Handle values nobody ever obtained. */
static const SaUint64T garbage[] = {0, 1ULL << 40, 0xdeadbeefcafe1234ULL, UINT64_MAX};
#define N_GARBAGE (sizeof garbage / sizeof garbage[0])

/* ------------------------------------------------------------------------ */
/* Helpers.                                                                 */
/* ------------------------------------------------------------------------ */

static SaNameT name_of(const char *text)
{
    SaNameT n;
    memset(&n, 0, sizeof n);
    n.length = (SaUint16T)strlen(text);
    memcpy(n.value, text, n.length);
    return n;
}

static SaTimeT now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (SaTimeT)ts.tv_sec * SA_TIME_ONE_SECOND + ts.tv_nsec;
}

static SaCkptSectionIdT sid(const char *text)
{
    SaCkptSectionIdT id;
    id.idLen = (SaUint16T)strlen(text);
    id.id = id.idLen ? (SaUint8T *)text : NULL; /* "" is the default section id */
    return id;
}

static SaCkptCheckpointCreationAttributesT attrs_of(SaCkptCheckpointCreationFlagsT flags,
                                                    SaUint32T max_sections)
{
    SaCkptCheckpointCreationAttributesT a;
    a.creationFlags = flags;
    a.checkpointSize = (SaSizeT)max_sections * 1024;
    a.retentionDuration = 0;
    a.maxSections = max_sections;
    a.maxSectionSize = 1024;
    a.maxSectionIdSize = 16;
    return a;
}

static SaCkptHandleT init_lib(SaUint8T major, const SaCkptCallbacksT *callbacks)
{
    SaVersionT v = {'B', major, 1};
    SaCkptHandleT h = 0;
    EXPECT(saCkptInitialize(&h, callbacks, &v), OK);
    CHECK(h != 0);
    return h;
}

static SaCkptCheckpointHandleT open_ck(SaCkptHandleT lib, const char *name,
                                       SaCkptCheckpointCreationFlagsT cflags,
                                       SaUint32T max_sections,
                                       SaCkptCheckpointOpenFlagsT oflags)
{
    SaNameT n = name_of(name);
    SaCkptCheckpointCreationAttributesT a = attrs_of(cflags, max_sections);
    SaCkptCheckpointHandleT ck = 0;
    EXPECT(saCkptCheckpointOpen(lib, &n, (oflags & SA_CKPT_CHECKPOINT_CREATE) ? &a : NULL,
                                oflags, SA_TIME_MAX, &ck),
           OK);
    CHECK(ck != 0);
    return ck;
}

#define CRW (SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ | SA_CKPT_CHECKPOINT_WRITE)
#define RO SA_CKPT_CHECKPOINT_READ
#define WO SA_CKPT_CHECKPOINT_WRITE

static void create_section(SaCkptCheckpointHandleT ck, const char *id, const char *data)
{
    SaCkptSectionIdT s = sid(id);
    SaCkptSectionCreationAttributesT sa = {&s, SA_TIME_END};
    EXPECT(saCkptSectionCreate(ck, &sa, data, strlen(data)), OK);
}

static int write_text(SaCkptCheckpointHandleT ck, const char *id, SaOffsetT offset,
                      const char *text)
{
    SaCkptIOVectorElementT e;
    memset(&e, 0, sizeof e);
    e.sectionId = sid(id);
    e.dataBuffer = (void *)text;
    e.dataSize = strlen(text);
    e.dataOffset = offset;
    return saCkptCheckpointWrite(ck, &e, 1, NULL);
}

/* Reads the whole section into buf (NUL-terminated); returns the read size or -1. */
static long read_text(SaCkptCheckpointHandleT ck, SaCkptSectionIdT id, char *buf, size_t size)
{
    SaCkptIOVectorElementT e;
    memset(&e, 0, sizeof e);
    e.sectionId = id;
    e.dataBuffer = buf;
    e.dataSize = size - 1;
    if (saCkptCheckpointRead(ck, &e, 1, NULL) != OK)
        return -1;
    buf[e.readSize] = 0;
    return (long)e.readSize;
}

static void sleep_ms(long ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

/* Whether fd polls readable within ms milliseconds. */
static int readable(SaSelectionObjectT fd, int ms)
{
    struct pollfd p;
    p.fd = (int)fd;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/* ------------------------------------------------------------------------ */
/* Library life cycle.                                                      */
/* ------------------------------------------------------------------------ */

static void test_initialize(void)
{
    SaCkptHandleT h = 0, h2 = 0;
    SaVersionT v;
    SaCkptCallbacksT none = {NULL, NULL};
    group = "saCkptInitialize";

    v = (SaVersionT){'B', 2, 2};
    EXPECT(saCkptInitialize(NULL, NULL, &v), INVALID);
    EXPECT(saCkptInitialize(&h, NULL, NULL), INVALID);
    EXPECT(saCkptInitialize(NULL, NULL, NULL), INVALID);

    v = (SaVersionT){'B', 2, 2};
    EXPECT(saCkptInitialize(&h, NULL, &v), OK);
    CHECK(h != 0);
    CHECK(v.releaseCode == 'B' && v.majorVersion == 2 && v.minorVersion == 2);

    /* B.01 requests are granted with the highest version of the release. */
    v = (SaVersionT){'B', 1, 1};
    EXPECT(saCkptInitialize(&h2, &none, &v), OK);
    CHECK(h2 != 0 && h2 != h);
    CHECK(v.releaseCode == 'B' && v.majorVersion == 2 && v.minorVersion == 2);
    EXPECT(saCkptFinalize(h2), OK);
    v = (SaVersionT){'B', 1, 0};
    EXPECT(saCkptInitialize(&h2, NULL, &v), OK);
    CHECK(v.majorVersion == 2 && v.minorVersion == 2);
    EXPECT(saCkptFinalize(h2), OK);
    /* Any major up to the highest supported is granted, 0 included. */
    v = (SaVersionT){'B', 0, 0};
    EXPECT(saCkptInitialize(&h2, NULL, &v), OK);
    CHECK(v.majorVersion == 2 && v.minorVersion == 2);
    EXPECT(saCkptFinalize(h2), OK);
    /* The minor version is ignored on input. */
    v = (SaVersionT){'B', 2, 9};
    EXPECT(saCkptInitialize(&h2, NULL, &v), OK);
    EXPECT(saCkptFinalize(h2), OK);

    /* Unsupported versions: VERSION, and the version that would be accepted. */
    {
        static const SaVersionT bad[] = {{'A', 1, 1}, {'C', 1, 1}, {'B', 3, 1}, {'b', 2, 2}};
        size_t i;
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            SaCkptHandleT never = 0;
            v = bad[i];
            EXPECT(saCkptInitialize(&never, NULL, &v), SA_AIS_ERR_VERSION);
            CHECK(v.releaseCode == 'B' && v.majorVersion == 2 && v.minorVersion == 2);
            CHECK(never == 0);
        }
    }
    EXPECT(saCkptFinalize(h), OK);
}

static void test_selection_object_and_finalize(void)
{
    SaCkptHandleT h = init_lib(2, NULL);
    SaSelectionObjectT fd = 0;
    size_t i;
    group = "saCkptSelectionObjectGet/saCkptFinalize";

    EXPECT(saCkptSelectionObjectGet(h, NULL), INVALID);
    EXPECT(saCkptSelectionObjectGet(0, NULL), INVALID); /* NULL before the handle */
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptSelectionObjectGet(garbage[i], &fd), BAD_HANDLE);
    EXPECT(saCkptSelectionObjectGet(h, &fd), OK);
    CHECK(fd > 0 && fd < (1u << 20));
    CHECK(!readable(fd, 0)); /* nothing pending */

    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptFinalize(garbage[i]), BAD_HANDLE);
    EXPECT(saCkptFinalize(h), OK);
    EXPECT(saCkptFinalize(h), BAD_HANDLE);
    EXPECT(saCkptSelectionObjectGet(h, &fd), BAD_HANDLE);
    EXPECT(saCkptDispatch(h, SA_DISPATCH_ALL), BAD_HANDLE);
}

static void *blocking_dispatch(void *arg)
{
    SaCkptHandleT h = *(SaCkptHandleT *)arg;
    static SaAisErrorT rc;
    rc = saCkptDispatch(h, SA_DISPATCH_BLOCKING);
    return &rc;
}

static void test_dispatch(void)
{
    SaCkptHandleT h = init_lib(2, NULL);
    size_t i;
    pthread_t t;
    void *rc = NULL;
    group = "saCkptDispatch";

    /* Bad flag values are refused before the handle is looked at. */
    EXPECT(saCkptDispatch(h, (SaDispatchFlagsT)0), INVALID);
    EXPECT(saCkptDispatch(h, (SaDispatchFlagsT)4), INVALID);
    EXPECT(saCkptDispatch(h, (SaDispatchFlagsT)-1), INVALID);
    EXPECT(saCkptDispatch(0, (SaDispatchFlagsT)7), INVALID);
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptDispatch(garbage[i], SA_DISPATCH_ONE), BAD_HANDLE);
    /* Nothing pending: ONE and ALL return at once. */
    EXPECT(saCkptDispatch(h, SA_DISPATCH_ONE), OK);
    EXPECT(saCkptDispatch(h, SA_DISPATCH_ALL), OK);

    /* BLOCKING returns OK once another thread finalizes the handle. */
    CHECK(pthread_create(&t, NULL, blocking_dispatch, &h) == 0);
    sleep_ms(100);
    EXPECT(saCkptFinalize(h), OK);
    CHECK(pthread_join(t, &rc) == 0);
    CHECK(rc != NULL && *(SaAisErrorT *)rc == OK);
}

/* ------------------------------------------------------------------------ */
/* Open, close, unlink.                                                     */
/* ------------------------------------------------------------------------ */

static void test_open(void)
{
    SaCkptHandleT h = init_lib(2, NULL);
    SaCkptHandleT h01 = init_lib(1, NULL);
    SaNameT n = name_of("safCkpt=open");
    SaNameT bare = name_of("open_bare");
    SaNameT empty = name_of("");
    SaNameT too_long = name_of("safCkpt=x");
    SaCkptCheckpointCreationAttributesT a = attrs_of(SA_CKPT_WR_ACTIVE_REPLICA, 4);
    SaCkptCheckpointCreationAttributesT bad;
    SaCkptCheckpointHandleT ck = 0, ck2 = 0, never = 0;
    size_t i;
    group = "saCkptCheckpointOpen";

    too_long.length = SA_MAX_NAME_LENGTH + 1;

    /* NULL pointers and malformed names: INVALID_PARAM, before the handle. */
    EXPECT(saCkptCheckpointOpen(h, NULL, &a, CRW, SA_TIME_MAX, &ck), INVALID);
    EXPECT(saCkptCheckpointOpen(h, &n, &a, CRW, SA_TIME_MAX, NULL), INVALID);
    EXPECT(saCkptCheckpointOpen(0, NULL, &a, CRW, SA_TIME_MAX, &ck), INVALID);
    EXPECT(saCkptCheckpointOpen(h, &empty, &a, CRW, SA_TIME_MAX, &ck), INVALID);
    EXPECT(saCkptCheckpointOpen(h, &too_long, &a, CRW, SA_TIME_MAX, &ck), INVALID);
    /* CREATE needs attributes; attributes need CREATE. */
    EXPECT(saCkptCheckpointOpen(h, &n, NULL, CRW, SA_TIME_MAX, &ck), INVALID);
    EXPECT(saCkptCheckpointOpen(h, &n, &a, RO, SA_TIME_MAX, &ck), INVALID);
    /* Open flags. */
    EXPECT(saCkptCheckpointOpen(h, &n, NULL, 0, SA_TIME_MAX, &ck), SA_AIS_ERR_BAD_FLAGS);
    EXPECT(saCkptCheckpointOpen(h, &n, NULL, 8, SA_TIME_MAX, &ck), SA_AIS_ERR_BAD_FLAGS);
    EXPECT(saCkptCheckpointOpen(0, &n, NULL, 8, SA_TIME_MAX, &ck), SA_AIS_ERR_BAD_FLAGS);
    /* Creation attributes. */
    bad = a;
    bad.creationFlags = 0;
    EXPECT(saCkptCheckpointOpen(h, &n, &bad, CRW, SA_TIME_MAX, &ck), INVALID);
    bad.creationFlags = SA_CKPT_CHECKPOINT_COLLOCATED;
    EXPECT(saCkptCheckpointOpen(h, &n, &bad, CRW, SA_TIME_MAX, &ck), INVALID);
    bad.creationFlags = SA_CKPT_WR_ALL_REPLICAS | SA_CKPT_WR_ACTIVE_REPLICA;
    EXPECT(saCkptCheckpointOpen(h, &n, &bad, CRW, SA_TIME_MAX, &ck), INVALID);
    bad.creationFlags = SA_CKPT_WR_ACTIVE_REPLICA | 0x100;
    EXPECT(saCkptCheckpointOpen(h, &n, &bad, CRW, SA_TIME_MAX, &ck), INVALID);
    bad = a;
    bad.checkpointSize = (SaSizeT)a.maxSections * a.maxSectionSize + 1;
    EXPECT(saCkptCheckpointOpen(h, &n, &bad, CRW, SA_TIME_MAX, &ck), INVALID);
    EXPECT(saCkptCheckpointOpen(0, &n, &bad, CRW, SA_TIME_MAX, &ck), INVALID);
    EXPECT(saCkptCheckpointOpen(h, &n, &a, CRW, -1, &ck), INVALID);
    /* B.02 names are DNs starting with safCkpt=; B.01 clients may use bare names. */
    EXPECT(saCkptCheckpointOpen(h, &bare, &a, CRW, SA_TIME_MAX, &ck), INVALID);
    EXPECT(saCkptCheckpointOpen(h01, &bare, &a, CRW, SA_TIME_MAX, &ck), OK);
    EXPECT(saCkptCheckpointClose(ck), OK);

    /* Bad handles, with valid arguments. */
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptCheckpointOpen(garbage[i], &n, &a, CRW, SA_TIME_MAX, &never), BAD_HANDLE);
    CHECK(never == 0);

    /* No such checkpoint. */
    EXPECT(saCkptCheckpointOpen(h, &n, NULL, RO, SA_TIME_MAX, &ck), SA_AIS_ERR_NOT_EXIST);

    /* Create, then open again with the same, and with other, attributes. */
    EXPECT(saCkptCheckpointOpen(h, &n, &a, CRW, SA_TIME_MAX, &ck), OK);
    CHECK(ck != 0);
    EXPECT(saCkptCheckpointOpen(h, &n, &a, CRW, SA_TIME_MAX, &ck2), OK);
    CHECK(ck2 != 0 && ck2 != ck);
    EXPECT(saCkptCheckpointClose(ck2), OK);
    EXPECT(saCkptCheckpointOpen(h, &n, NULL, RO, 0, &ck2), OK);
    EXPECT(saCkptCheckpointClose(ck2), OK);
    bad = a;
    bad.maxSectionIdSize = 8;
    EXPECT(saCkptCheckpointOpen(h, &n, &bad, CRW, SA_TIME_MAX, &ck2), SA_AIS_ERR_EXIST);
    /* The retention duration takes part in the match for B.01 clients only. */
    bad = a;
    bad.retentionDuration = SA_TIME_ONE_SECOND;
    EXPECT(saCkptCheckpointOpen(h, &n, &bad, CRW, SA_TIME_MAX, &ck2), OK);
    EXPECT(saCkptCheckpointClose(ck2), OK);
    EXPECT(saCkptCheckpointOpen(h01, &n, &bad, CRW, SA_TIME_MAX, &ck2), SA_AIS_ERR_EXIST);
    EXPECT(saCkptCheckpointOpen(h01, &n, &a, CRW, SA_TIME_MAX, &ck2), OK);
    EXPECT(saCkptCheckpointClose(ck2), OK);

    /* A handle opened for reading only cannot write. */
    EXPECT(saCkptCheckpointOpen(h, &n, NULL, RO, SA_TIME_MAX, &ck2), OK);
    create_section(ck, "s", "data");
    EXPECT(write_text(ck2, "s", 0, "x"), SA_AIS_ERR_ACCESS);
    EXPECT(write_text(ck, "s", 0, "x"), OK);

    /* Checkpoint handles are not library handles and the other way round. */
    EXPECT(saCkptCheckpointOpen(ck, &n, NULL, RO, SA_TIME_MAX, &ck2), BAD_HANDLE);
    EXPECT(saCkptCheckpointClose(h), BAD_HANDLE);

    EXPECT(saCkptCheckpointUnlink(h, &n), OK);
    EXPECT(saCkptFinalize(h), OK);
    EXPECT(saCkptFinalize(h01), OK);
    /* Open through a finalized handle. */
    EXPECT(saCkptCheckpointOpen(h, &n, &a, CRW, SA_TIME_MAX, &ck2), BAD_HANDLE);
}

static void test_close_and_stale_handles(void)
{
    SaCkptHandleT h = init_lib(2, NULL);
    SaNameT n = name_of("safCkpt=close");
    SaCkptCheckpointHandleT ck = open_ck(h, "safCkpt=close", SA_CKPT_WR_ACTIVE_REPLICA, 4, CRW);
    SaCkptCheckpointHandleT ck2 = open_ck(h, "safCkpt=close", 0, 4, SA_CKPT_CHECKPOINT_READ);
    SaCkptSectionIterationHandleT it = 0;
    SaCkptSectionDescriptorT d;
    SaCkptCheckpointDescriptorT st;
    char buf[64];
    size_t i;
    group = "saCkptCheckpointClose";

    create_section(ck, "a", "alpha");
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptCheckpointClose(garbage[i]), BAD_HANDLE);

    /* A closed handle is stale everywhere; its iterations die with it. */
    EXPECT(saCkptSectionIterationInitialize(ck2, SA_CKPT_SECTIONS_ANY, 0, &it), OK);
    EXPECT(saCkptCheckpointClose(ck2), OK);
    EXPECT(saCkptCheckpointClose(ck2), BAD_HANDLE);
    EXPECT(saCkptCheckpointStatusGet(ck2, &st), BAD_HANDLE);
    CHECK(read_text(ck2, sid("a"), buf, sizeof buf) == -1);
    EXPECT(saCkptSectionIterationNext(it, &d), BAD_HANDLE);
    EXPECT(saCkptSectionIterationFinalize(it), BAD_HANDLE);
    /* The other handle to the same checkpoint still works. */
    CHECK(read_text(ck, sid("a"), buf, sizeof buf) == 5 && strcmp(buf, "alpha") == 0);

    /* Finalizing the library makes its checkpoint and iteration handles stale. */
    group = "stale handles after saCkptFinalize";
    EXPECT(saCkptSectionIterationInitialize(ck, SA_CKPT_SECTIONS_ANY, 0, &it), OK);
    EXPECT(saCkptFinalize(h), OK);
    EXPECT(saCkptCheckpointClose(ck), BAD_HANDLE);
    EXPECT(write_text(ck, "a", 0, "x"), BAD_HANDLE);
    EXPECT(saCkptCheckpointStatusGet(ck, &st), BAD_HANDLE);
    EXPECT(saCkptActiveReplicaSet(ck), BAD_HANDLE);
    EXPECT(saCkptCheckpointSynchronize(ck, SA_TIME_MAX), BAD_HANDLE);
    EXPECT(saCkptSectionIterationNext(it, &d), BAD_HANDLE);
    EXPECT(saCkptSectionIterationFinalize(it), BAD_HANDLE);

    /* The checkpoint had retention 0: it is gone with its last opener. */
    h = init_lib(2, NULL);
    EXPECT(saCkptCheckpointOpen(h, &n, NULL, RO, SA_TIME_MAX, &ck), SA_AIS_ERR_NOT_EXIST);
    EXPECT(saCkptFinalize(h), OK);
}

static void test_unlink(void)
{
    SaCkptHandleT h = init_lib(2, NULL);
    SaNameT n = name_of("safCkpt=unlink");
    SaNameT empty = name_of("");
    SaCkptCheckpointHandleT ck = open_ck(h, "safCkpt=unlink", SA_CKPT_WR_ACTIVE_REPLICA, 4, CRW);
    SaCkptCheckpointHandleT ck2 = 0;
    char buf[64];
    size_t i;
    group = "saCkptCheckpointUnlink";

    create_section(ck, "old", "old instance");
    EXPECT(saCkptCheckpointUnlink(h, NULL), INVALID);
    EXPECT(saCkptCheckpointUnlink(0, NULL), INVALID);
    EXPECT(saCkptCheckpointUnlink(h, &empty), INVALID);
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptCheckpointUnlink(garbage[i], &n), BAD_HANDLE);
    EXPECT(saCkptCheckpointUnlink(h, &n), OK);
    EXPECT(saCkptCheckpointUnlink(h, &n), SA_AIS_ERR_NOT_EXIST);
    /* The name is gone; the open handle keeps the old instance. */
    EXPECT(saCkptCheckpointOpen(h, &n, NULL, RO, SA_TIME_MAX, &ck2), SA_AIS_ERR_NOT_EXIST);
    CHECK(read_text(ck, sid("old"), buf, sizeof buf) == 12);
    /* Open with CREATE makes a new instance. */
    ck2 = open_ck(h, "safCkpt=unlink", SA_CKPT_WR_ACTIVE_REPLICA, 4, CRW);
    CHECK(read_text(ck2, sid("old"), buf, sizeof buf) == -1);
    EXPECT(saCkptCheckpointUnlink(h, &n), OK);
    EXPECT(saCkptFinalize(h), OK);
}

/* ------------------------------------------------------------------------ */
/* Retention, active replica, status.                                       */
/* ------------------------------------------------------------------------ */

static void test_retention(void)
{
    SaCkptHandleT h = init_lib(2, NULL);
    SaCkptHandleT h01 = init_lib(1, NULL);
    SaNameT n = name_of("safCkpt=retention");
    SaCkptCheckpointHandleT ck = open_ck(h, "safCkpt=retention", SA_CKPT_WR_ACTIVE_REPLICA, 4, CRW);
    SaCkptCheckpointHandleT ro = open_ck(h, "safCkpt=retention", 0, 4, RO);
    SaCkptCheckpointHandleT ro01 = open_ck(h01, "safCkpt=retention", 0, 4, RO);
    SaCkptCheckpointDescriptorT st;
    size_t i;
    group = "saCkptCheckpointRetentionDurationSet";

    EXPECT(saCkptCheckpointRetentionDurationSet(ck, -1), INVALID);
    EXPECT(saCkptCheckpointRetentionDurationSet(0, -1), INVALID);
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptCheckpointRetentionDurationSet(garbage[i], 5), BAD_HANDLE);
    EXPECT(saCkptCheckpointRetentionDurationSet(ck, 7 * SA_TIME_ONE_SECOND), OK);
    EXPECT(saCkptCheckpointStatusGet(ck, &st), OK);
    CHECK(st.checkpointCreationAttributes.retentionDuration == 7 * SA_TIME_ONE_SECOND);
    /* B.02 needs WRITE; B.01 did not check it. */
    EXPECT(saCkptCheckpointRetentionDurationSet(ro, 0), SA_AIS_ERR_ACCESS);
    EXPECT(saCkptCheckpointRetentionDurationSet(ro01, 0), OK);
    /* After unlink: BAD_OPERATION. */
    EXPECT(saCkptCheckpointUnlink(h, &n), OK);
    EXPECT(saCkptCheckpointRetentionDurationSet(ck, 0), SA_AIS_ERR_BAD_OPERATION);
    EXPECT(saCkptFinalize(h), OK);
    EXPECT(saCkptFinalize(h01), OK);
}

static void test_active_replica(void)
{
    SaCkptHandleT h = init_lib(2, NULL);
    SaCkptCheckpointHandleT plain =
        open_ck(h, "safCkpt=plain", SA_CKPT_WR_ACTIVE_REPLICA, 1, CRW);
    SaCkptCheckpointHandleT all =
        open_ck(h, "safCkpt=all", SA_CKPT_WR_ALL_REPLICAS | SA_CKPT_CHECKPOINT_COLLOCATED, 1, CRW);
    SaCkptCheckpointHandleT col = open_ck(
        h, "safCkpt=collocated", SA_CKPT_WR_ACTIVE_REPLICA | SA_CKPT_CHECKPOINT_COLLOCATED, 1, CRW);
    SaCkptCheckpointHandleT col_ro = open_ck(h, "safCkpt=collocated", 0, 1, RO);
    SaCkptSectionIdT def = SA_CKPT_DEFAULT_SECTION_ID;
    SaCkptCheckpointDescriptorT st;
    SaCkptIOVectorElementT e;
    char buf[32];
    size_t i;
    group = "saCkptActiveReplicaSet";

    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptActiveReplicaSet(garbage[i]), BAD_HANDLE);
    EXPECT(saCkptActiveReplicaSet(plain), SA_AIS_ERR_BAD_OPERATION);
    EXPECT(saCkptActiveReplicaSet(all), SA_AIS_ERR_BAD_OPERATION);
    EXPECT(saCkptActiveReplicaSet(col_ro), SA_AIS_ERR_ACCESS);
    /* Collocated and asynchronous: no active replica until one is set. */
    EXPECT(write_text(col, "", 0, "x"), SA_AIS_ERR_NOT_EXIST);
    EXPECT(saCkptCheckpointStatusGet(col, &st), SA_AIS_ERR_NOT_EXIST);
    EXPECT(saCkptCheckpointSynchronize(col, SA_TIME_MAX), SA_AIS_ERR_NOT_EXIST);
    CHECK(read_text(col, def, buf, sizeof buf) == -1);

    /* ckptCheckpointReadLocal reads this node's replica even then. */
    group = "ckptCheckpointReadLocal";
    memset(&e, 0, sizeof e);
    e.sectionId = def;
    EXPECT(ckptCheckpointReadLocal(col, &e, 1, NULL), OK);
    CHECK(e.readSize == 0 && e.dataBuffer == NULL);

    group = "saCkptActiveReplicaSet";
    EXPECT(saCkptActiveReplicaSet(col), OK);
    EXPECT(write_text(col, "", 0, "local!"), OK);
    EXPECT(saCkptCheckpointStatusGet(col, &st), OK);
    CHECK(read_text(col_ro, def, buf, sizeof buf) == 6 && strcmp(buf, "local!") == 0);

    group = "ckptCheckpointReadLocal";
    {
        SaUint32T idx = 42;
        memset(buf, 0, sizeof buf);
        memset(&e, 0, sizeof e);
        e.sectionId = def;
        e.dataBuffer = buf;
        e.dataSize = sizeof buf;
        EXPECT(ckptCheckpointReadLocal(col_ro, &e, 1, &idx), OK);
        CHECK(e.readSize == 6 && memcmp(buf, "local!", 6) == 0 && idx == 0);
        /* A buffer the library allocates. */
        memset(&e, 0, sizeof e);
        e.sectionId = def;
        e.dataOffset = 2;
        EXPECT(ckptCheckpointReadLocal(col_ro, &e, 1, NULL), OK);
        CHECK(e.readSize == 4 && e.dataBuffer != NULL &&
              memcmp(e.dataBuffer, "cal!", 4) == 0);
        EXPECT(saCkptIOVectorElementDataFree(col_ro, e.dataBuffer), OK);
        /* The same errors as a read. */
        EXPECT(ckptCheckpointReadLocal(col_ro, NULL, 1, NULL), INVALID);
        for (i = 0; i < N_GARBAGE; i++)
            EXPECT(ckptCheckpointReadLocal(garbage[i], &e, 1, NULL), BAD_HANDLE);
        memset(&e, 0, sizeof e);
        e.sectionId = def;
        e.dataOffset = 7; /* past the end (6) */
        EXPECT(ckptCheckpointReadLocal(col_ro, &e, 1, NULL), INVALID);
        e.dataOffset = 6; /* the end: nothing to read */
        EXPECT(ckptCheckpointReadLocal(col_ro, &e, 1, NULL), OK);
        CHECK(e.readSize == 0 && e.dataBuffer == NULL);
        e.dataOffset = 1024; /* maxSectionSize */
        EXPECT(ckptCheckpointReadLocal(col_ro, &e, 1, NULL), INVALID);
    }
    EXPECT(saCkptFinalize(h), OK);
}

static void test_status(void)
{
    SaCkptHandleT h = init_lib(2, NULL);
    SaCkptHandleT h01 = init_lib(1, NULL);
    SaCkptCheckpointHandleT ck = open_ck(h, "safCkpt=status", SA_CKPT_WR_ACTIVE_REPLICA, 8, CRW);
    SaCkptCheckpointHandleT wo = open_ck(h, "safCkpt=status", 0, 8, WO);
    SaCkptCheckpointHandleT ck01 = open_ck(h01, "safCkpt=status", 0, 8, RO);
    SaCkptCheckpointHandleT wo01 = open_ck(h01, "safCkpt=status", 0, 8, WO);
    union {
        SaCkptCheckpointDescriptorT d;
        unsigned char b[80];
    } u;
    SaUint32T n32, m32;
    size_t i;
    int untouched;
    group = "saCkptCheckpointStatusGet";

    EXPECT(saCkptCheckpointStatusGet(ck, NULL), INVALID);
    EXPECT(saCkptCheckpointStatusGet(0, NULL), INVALID);
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptCheckpointStatusGet(garbage[i], &u.d), BAD_HANDLE);

    create_section(ck, "one", "12345");
    create_section(ck, "two", "1234567890");

    /* B.02: the 64-byte descriptor, memoryUsed an SaSizeT at offset 56. */
    memset(u.b, 0xAB, sizeof u.b);
    EXPECT(saCkptCheckpointStatusGet(ck, &u.d), OK);
    CHECK(sizeof(SaCkptCheckpointDescriptorT) == 64);
    CHECK(u.d.numberOfSections == 2);
    CHECK(u.d.memoryUsed == 15);
    CHECK(u.d.checkpointCreationAttributes.creationFlags == SA_CKPT_WR_ACTIVE_REPLICA);
    CHECK(u.d.checkpointCreationAttributes.maxSections == 8);
    CHECK(u.d.checkpointCreationAttributes.maxSectionSize == 1024);
    CHECK(u.d.checkpointCreationAttributes.maxSectionIdSize == 16);
    CHECK(u.d.checkpointCreationAttributes.checkpointSize == 8 * 1024);
    for (untouched = 1, i = 64; i < sizeof u.b; i++)
        untouched &= u.b[i] == 0xAB;
    CHECK(untouched);

    /* B.01: the 56-byte descriptor, memoryUsed a 32-bit count at offset 52; not a byte more. */
    memset(u.b, 0xAB, sizeof u.b);
    EXPECT(saCkptCheckpointStatusGet(ck01, &u.d), OK);
    memcpy(&n32, u.b + 48, 4);
    memcpy(&m32, u.b + 52, 4);
    CHECK(n32 == 2);
    CHECK(m32 == 15);
    CHECK(u.d.checkpointCreationAttributes.maxSections == 8);
    for (untouched = 1, i = 56; i < sizeof u.b; i++)
        untouched &= u.b[i] == 0xAB;
    CHECK(untouched);

    /* The default section counts. */
    {
        SaCkptCheckpointHandleT one =
            open_ck(h, "safCkpt=status1", SA_CKPT_WR_ACTIVE_REPLICA, 1, CRW);
        EXPECT(write_text(one, "", 0, "abc"), OK);
        EXPECT(saCkptCheckpointStatusGet(one, &u.d), OK);
        CHECK(u.d.numberOfSections == 1 && u.d.memoryUsed == 3);
    }

    /* B.02 needs READ; B.01 did not check it. */
    EXPECT(saCkptCheckpointStatusGet(wo, &u.d), SA_AIS_ERR_ACCESS);
    EXPECT(saCkptCheckpointStatusGet(wo01, &u.d), OK);

    EXPECT(saCkptFinalize(h), OK);
    EXPECT(saCkptFinalize(h01), OK);
}

/* ------------------------------------------------------------------------ */
/* Sections.                                                                */
/* ------------------------------------------------------------------------ */

static void test_section_create(void)
{
    SaCkptHandleT h = init_lib(2, NULL);
    SaCkptHandleT h01 = init_lib(1, NULL);
    SaCkptCheckpointHandleT ck = open_ck(h, "safCkpt=sections", SA_CKPT_WR_ACTIVE_REPLICA, 3, CRW);
    SaCkptCheckpointHandleT ro = open_ck(h, "safCkpt=sections", 0, 3, RO);
    SaCkptCheckpointHandleT one = open_ck(h, "safCkpt=one", SA_CKPT_WR_ACTIVE_REPLICA, 1, CRW);
    SaCkptCheckpointHandleT ck01 = open_ck(h01, "sections01", SA_CKPT_WR_ACTIVE_REPLICA, 3, CRW);
    SaCkptSectionIdT s = sid("fixed"), gen = SA_CKPT_GENERATED_SECTION_ID;
    SaCkptSectionCreationAttributesT sa = {&s, SA_TIME_END};
    SaUint8T byte = 'x';
    static char big[2048];
    char buf[64];
    size_t i;
    group = "saCkptSectionCreate";

    /* NULL and malformed arguments, before the handle. */
    EXPECT(saCkptSectionCreate(ck, NULL, "d", 1), INVALID);
    EXPECT(saCkptSectionCreate(0, NULL, "d", 1), INVALID);
    sa.sectionId = NULL;
    EXPECT(saCkptSectionCreate(ck, &sa, "d", 1), INVALID);
    sa.sectionId = &s;
    s.idLen = 0;
    s.id = &byte;
    EXPECT(saCkptSectionCreate(ck, &sa, "d", 1), INVALID);
    EXPECT(saCkptSectionCreate(0, &sa, "d", 1), INVALID);
    s.idLen = 3;
    s.id = NULL;
    EXPECT(saCkptSectionCreate(ck, &sa, "d", 1), INVALID);
    s = sid("fixed");
    EXPECT(saCkptSectionCreate(ck, &sa, NULL, 1), INVALID);
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptSectionCreate(garbage[i], &sa, "d", 1), BAD_HANDLE);

    /* Success; then the id exists. */
    EXPECT(saCkptSectionCreate(ck, &sa, "initial", 7), OK);
    CHECK(s.idLen == 5 && memcmp(s.id, "fixed", 5) == 0); /* a given id is left alone */
    CHECK(read_text(ck, s, buf, sizeof buf) == 7 && strcmp(buf, "initial") == 0);
    EXPECT(saCkptSectionCreate(ck, &sa, "again", 5), SA_AIS_ERR_EXIST);
    EXPECT(saCkptSectionCreate(ro, &sa, "again", 5), SA_AIS_ERR_ACCESS);
    /* Only the default section lives in a checkpoint with maxSections 1. */
    EXPECT(saCkptSectionCreate(one, &sa, "x", 1), SA_AIS_ERR_EXIST);
    /* Limits. */
    s = sid("a-very-long-section-id");
    EXPECT(saCkptSectionCreate(ck, &sa, "x", 1), INVALID); /* idLen > maxSectionIdSize */
    s = sid("big");
    EXPECT(saCkptSectionCreate(ck, &sa, big, sizeof big), INVALID); /* > maxSectionSize */
    sa.expirationTime = now_ns() - SA_TIME_ONE_SECOND;
    EXPECT(saCkptSectionCreate(ck, &sa, "x", 1), INVALID); /* already expired */
    sa.expirationTime = SA_TIME_END;
    /* NULL data of size 0 is an empty section. */
    s = sid("empty");
    EXPECT(saCkptSectionCreate(ck, &sa, NULL, 0), OK);

    /* A generated id (B.02): written back, freed with saCkptSectionIdFree. */
    sa.sectionId = &gen;
    EXPECT(saCkptSectionCreate(ck, &sa, "g", 1), OK);
    CHECK(gen.idLen > 0 && gen.id != NULL);
    CHECK(read_text(ck, gen, buf, sizeof buf) == 1);
    /* maxSections (3) reached. */
    {
        SaCkptSectionIdT more = SA_CKPT_GENERATED_SECTION_ID;
        SaCkptSectionCreationAttributesT msa = {&more, SA_TIME_END};
        EXPECT(saCkptSectionCreate(ck, &msa, "n", 1), SA_AIS_ERR_NO_SPACE);
    }
    group = "saCkptSectionIdFree";
    EXPECT(saCkptSectionIdFree(ck, NULL), INVALID);
    EXPECT(saCkptSectionIdFree(0, NULL), INVALID);
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptSectionIdFree(garbage[i], gen.id), BAD_HANDLE);
    EXPECT(saCkptSectionIdFree(ck, gen.id), OK);

    /* A generated id (B.01): the client frees it with free(). */
    group = "saCkptSectionCreate B.01";
    gen = (SaCkptSectionIdT)SA_CKPT_GENERATED_SECTION_ID;
    EXPECT(saCkptSectionCreate(ck01, &sa, "g01", 3), OK);
    CHECK(gen.idLen > 0 && gen.id != NULL);
    CHECK(read_text(ck01, gen, buf, sizeof buf) == 3 && strcmp(buf, "g01") == 0);
    free(gen.id);

    EXPECT(saCkptFinalize(h), OK);
    EXPECT(saCkptFinalize(h01), OK);
}

static void test_section_delete_and_expiration(void)
{
    SaCkptHandleT h = init_lib(2, NULL);
    SaCkptCheckpointHandleT ck = open_ck(h, "safCkpt=delete", SA_CKPT_WR_ACTIVE_REPLICA, 4, CRW);
    SaCkptCheckpointHandleT ro = open_ck(h, "safCkpt=delete", 0, 4, RO);
    SaCkptCheckpointHandleT one = open_ck(h, "safCkpt=delete1", SA_CKPT_WR_ACTIVE_REPLICA, 1, CRW);
    SaCkptSectionIdT a = sid("a"), missing = sid("missing"), def = SA_CKPT_DEFAULT_SECTION_ID;
    SaCkptSectionIdT bad = {2, NULL};
    SaTimeT later = now_ns() + SA_TIME_ONE_HOUR;
    char buf[16];
    size_t i;
    group = "saCkptSectionDelete";

    create_section(ck, "a", "A");
    create_section(ck, "b", "B");
    EXPECT(saCkptSectionDelete(ck, NULL), INVALID);
    EXPECT(saCkptSectionDelete(0, NULL), INVALID);
    EXPECT(saCkptSectionDelete(ck, &bad), INVALID);
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptSectionDelete(garbage[i], &a), BAD_HANDLE);
    EXPECT(saCkptSectionDelete(one, &def), INVALID); /* the default section */
    EXPECT(saCkptSectionDelete(ck, &missing), SA_AIS_ERR_NOT_EXIST);
    EXPECT(saCkptSectionDelete(ck, &def), SA_AIS_ERR_NOT_EXIST); /* none when maxSections > 1 */
    EXPECT(saCkptSectionDelete(ro, &a), SA_AIS_ERR_ACCESS);
    EXPECT(saCkptSectionDelete(ck, &a), OK);
    CHECK(read_text(ck, a, buf, sizeof buf) == -1);
    EXPECT(saCkptSectionDelete(ck, &a), SA_AIS_ERR_NOT_EXIST);

    group = "saCkptSectionExpirationTimeSet";
    a = sid("b");
    EXPECT(saCkptSectionExpirationTimeSet(ck, NULL, later), INVALID);
    EXPECT(saCkptSectionExpirationTimeSet(0, NULL, later), INVALID);
    EXPECT(saCkptSectionExpirationTimeSet(ck, &bad, later), INVALID);
    EXPECT(saCkptSectionExpirationTimeSet(0, &a, -1), INVALID);
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptSectionExpirationTimeSet(garbage[i], &a, later), BAD_HANDLE);
    EXPECT(saCkptSectionExpirationTimeSet(one, &def, later), INVALID);
    EXPECT(saCkptSectionExpirationTimeSet(ck, &missing, later), SA_AIS_ERR_NOT_EXIST);
    EXPECT(saCkptSectionExpirationTimeSet(ro, &a, later), SA_AIS_ERR_ACCESS);
    EXPECT(saCkptSectionExpirationTimeSet(ck, &a, -5), INVALID);
    EXPECT(saCkptSectionExpirationTimeSet(ck, &a, later), OK);
    {
        SaCkptSectionIterationHandleT it;
        SaCkptSectionDescriptorT d;
        EXPECT(saCkptSectionIterationInitialize(ck, SA_CKPT_SECTIONS_ANY, 0, &it), OK);
        EXPECT(saCkptSectionIterationNext(it, &d), OK);
        CHECK(d.expirationTime == later);
        EXPECT(saCkptSectionIterationFinalize(it), OK);
    }
    /* A section goes when its expiration time comes, whether anyone looks or not. */
    {
        SaCkptSectionIdT soon = sid("soon");
        SaCkptSectionCreationAttributesT sa = {&soon, now_ns() + 100 * SA_TIME_ONE_MILLISECOND};
        SaCkptCheckpointDescriptorT st;
        EXPECT(saCkptSectionCreate(ck, &sa, "short-lived", 11), OK);
        CHECK(read_text(ck, soon, buf, sizeof buf) == 11);
        sleep_ms(250);
        CHECK(read_text(ck, soon, buf, sizeof buf) == -1);
        EXPECT(saCkptCheckpointStatusGet(ck, &st), OK);
        CHECK(st.numberOfSections == 1); /* "b" only */
    }
    /* A time already past expires the section now. */
    EXPECT(saCkptSectionExpirationTimeSet(ck, &a, now_ns() - SA_TIME_ONE_SECOND), OK);
    CHECK(read_text(ck, a, buf, sizeof buf) == -1);
    EXPECT(saCkptFinalize(h), OK);
}

static void test_iteration(void)
{
    SaCkptHandleT h = init_lib(2, NULL);
    SaCkptCheckpointHandleT ck = open_ck(h, "safCkpt=iterate", SA_CKPT_WR_ACTIVE_REPLICA, 8, CRW);
    SaCkptCheckpointHandleT wo = open_ck(h, "safCkpt=iterate", 0, 8, WO);
    SaCkptCheckpointHandleT one = open_ck(h, "safCkpt=iterate1", SA_CKPT_WR_ACTIVE_REPLICA, 1, CRW);
    SaCkptSectionIterationHandleT it = 0, never = 0;
    SaCkptSectionDescriptorT d;
    SaTimeT later = now_ns() + SA_TIME_ONE_HOUR;
    int seen_a = 0, seen_bb = 0, seen_ccc = 0, others = 0, n;
    size_t i;
    group = "saCkptSectionIterationInitialize";

    create_section(ck, "a", "1");
    create_section(ck, "bb", "22");
    {
        SaCkptSectionIdT s = sid("ccc");
        SaCkptSectionCreationAttributesT sa = {&s, later};
        EXPECT(saCkptSectionCreate(ck, &sa, "333", 3), OK);
    }

    EXPECT(saCkptSectionIterationInitialize(ck, SA_CKPT_SECTIONS_ANY, 0, NULL), INVALID);
    EXPECT(saCkptSectionIterationInitialize(ck, (SaCkptSectionsChosenT)0, 0, &it), INVALID);
    EXPECT(saCkptSectionIterationInitialize(ck, (SaCkptSectionsChosenT)6, 0, &it), INVALID);
    EXPECT(saCkptSectionIterationInitialize(0, (SaCkptSectionsChosenT)6, 0, &it), INVALID);
    EXPECT(saCkptSectionIterationInitialize(ck, SA_CKPT_SECTIONS_LEQ_EXPIRATION_TIME, -1, &it),
           INVALID);
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptSectionIterationInitialize(garbage[i], SA_CKPT_SECTIONS_ANY, 0, &never),
               BAD_HANDLE);
    CHECK(never == 0);
    EXPECT(saCkptSectionIterationInitialize(wo, SA_CKPT_SECTIONS_ANY, 0, &it), SA_AIS_ERR_ACCESS);

    /* ANY: every section exactly once, with its id, size and state. */
    group = "saCkptSectionIterationNext";
    EXPECT(saCkptSectionIterationInitialize(ck, SA_CKPT_SECTIONS_ANY, 0, &it), OK);
    CHECK(it != 0);
    EXPECT(saCkptSectionIterationNext(it, NULL), INVALID);
    for (n = 0; n < 10 && saCkptSectionIterationNext(it, &d) == OK; n++) {
        CHECK(d.sectionState == SA_CKPT_SECTION_VALID);
        CHECK(d.lastUpdate > 0);
        if (d.sectionId.idLen == 1 && memcmp(d.sectionId.id, "a", 1) == 0)
            seen_a++, CHECK(d.sectionSize == 1 && d.expirationTime == SA_TIME_END);
        else if (d.sectionId.idLen == 2 && memcmp(d.sectionId.id, "bb", 2) == 0)
            seen_bb++, CHECK(d.sectionSize == 2);
        else if (d.sectionId.idLen == 3 && memcmp(d.sectionId.id, "ccc", 3) == 0)
            seen_ccc++, CHECK(d.sectionSize == 3 && d.expirationTime == later);
        else
            others++;
    }
    CHECK(seen_a == 1 && seen_bb == 1 && seen_ccc == 1 && others == 0 && n == 3);
    EXPECT(saCkptSectionIterationNext(it, &d), SA_AIS_ERR_NO_SECTIONS);
    group = "saCkptSectionIterationFinalize";
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptSectionIterationFinalize(garbage[i]), BAD_HANDLE);
    EXPECT(saCkptSectionIterationFinalize(it), OK);
    EXPECT(saCkptSectionIterationFinalize(it), BAD_HANDLE);
    EXPECT(saCkptSectionIterationNext(it, &d), BAD_HANDLE);
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptSectionIterationNext(garbage[i], &d), BAD_HANDLE);
    /* A checkpoint handle is not an iteration handle. */
    EXPECT(saCkptSectionIterationNext(ck, &d), BAD_HANDLE);

    /* FOREVER, LEQ and GEQ choose by expiration time. */
    group = "saCkptSectionIteration filters";
    EXPECT(saCkptSectionIterationInitialize(ck, SA_CKPT_SECTIONS_FOREVER, 0, &it), OK);
    for (n = 0; saCkptSectionIterationNext(it, &d) == OK && n < 10; n++)
        CHECK(d.expirationTime == SA_TIME_END);
    CHECK(n == 2);
    EXPECT(saCkptSectionIterationFinalize(it), OK);
    EXPECT(saCkptSectionIterationInitialize(ck, SA_CKPT_SECTIONS_LEQ_EXPIRATION_TIME, later, &it),
           OK);
    for (n = 0; saCkptSectionIterationNext(it, &d) == OK && n < 10; n++)
        CHECK(d.sectionId.idLen == 3);
    CHECK(n == 1);
    EXPECT(saCkptSectionIterationFinalize(it), OK);
    EXPECT(saCkptSectionIterationInitialize(ck, SA_CKPT_SECTIONS_GEQ_EXPIRATION_TIME, later + 1,
                                            &it),
           OK);
    for (n = 0; saCkptSectionIterationNext(it, &d) == OK && n < 10; n++)
        CHECK(d.expirationTime == SA_TIME_END);
    CHECK(n == 2);
    EXPECT(saCkptSectionIterationFinalize(it), OK);
    EXPECT(saCkptSectionIterationInitialize(ck, SA_CKPT_SECTIONS_CORRUPTED, 0, &it), OK);
    EXPECT(saCkptSectionIterationNext(it, &d), SA_AIS_ERR_NO_SECTIONS);
    EXPECT(saCkptSectionIterationFinalize(it), OK);

    /* The default section has the empty id. */
    EXPECT(saCkptSectionIterationInitialize(one, SA_CKPT_SECTIONS_ANY, 0, &it), OK);
    EXPECT(saCkptSectionIterationNext(it, &d), OK);
    CHECK(d.sectionId.idLen == 0 && d.sectionId.id == NULL);
    EXPECT(saCkptSectionIterationNext(it, &d), SA_AIS_ERR_NO_SECTIONS);
    EXPECT(saCkptSectionIterationFinalize(it), OK);

    EXPECT(saCkptFinalize(h), OK);
}

/* ------------------------------------------------------------------------ */
/* Data.                                                                    */
/* ------------------------------------------------------------------------ */

static void test_write(void)
{
    SaCkptHandleT h = init_lib(2, NULL);
    SaCkptCheckpointHandleT ck = open_ck(h, "safCkpt=write", SA_CKPT_WR_ACTIVE_REPLICA, 4, CRW);
    SaCkptCheckpointHandleT ro = open_ck(h, "safCkpt=write", 0, 4, RO);
    SaCkptCheckpointHandleT one = open_ck(h, "safCkpt=write1", SA_CKPT_WR_ACTIVE_REPLICA, 1, CRW);
    SaCkptIOVectorElementT v[3];
    SaUint32T idx;
    SaCkptSectionIdT def = SA_CKPT_DEFAULT_SECTION_ID;
    static char big[1025];
    char buf[64];
    size_t i;
    group = "saCkptCheckpointWrite";

    create_section(ck, "a", "aaaa");
    create_section(ck, "b", "bbbb");
    memset(v, 0, sizeof v);
    v[0].sectionId = sid("a");
    v[0].dataBuffer = "AA";
    v[0].dataSize = 2;
    v[0].dataOffset = 1;
    v[1].sectionId = sid("b");
    v[1].dataBuffer = "BBBBBB";
    v[1].dataSize = 6;
    v[1].dataOffset = 0;

    EXPECT(saCkptCheckpointWrite(ck, NULL, 1, &idx), INVALID);
    EXPECT(saCkptCheckpointWrite(0, NULL, 1, &idx), INVALID);
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptCheckpointWrite(garbage[i], v, 2, NULL), BAD_HANDLE);
    EXPECT(saCkptCheckpointWrite(ro, v, 2, NULL), SA_AIS_ERR_ACCESS);

    /* Success leaves erroneousVectorIndex alone; sections grow. */
    idx = 77;
    EXPECT(saCkptCheckpointWrite(ck, v, 2, &idx), OK);
    CHECK(idx == 77);
    CHECK(read_text(ck, sid("a"), buf, sizeof buf) == 4 && strcmp(buf, "aAAa") == 0);
    CHECK(read_text(ck, sid("b"), buf, sizeof buf) == 6 && strcmp(buf, "BBBBBB") == 0);

    /* All or nothing: the failing element is named and nothing is written. */
    v[0].dataBuffer = "zz";
    v[1].sectionId = sid("missing");
    EXPECT(saCkptCheckpointWrite(ck, v, 2, &idx), SA_AIS_ERR_NOT_EXIST);
    CHECK(idx == 1);
    CHECK(read_text(ck, sid("a"), buf, sizeof buf) == 4 && strcmp(buf, "aAAa") == 0);
    v[1].sectionId = sid("b");
    v[1].dataBuffer = big;
    v[1].dataSize = sizeof big; /* > maxSectionSize */
    EXPECT(saCkptCheckpointWrite(ck, v, 2, &idx), INVALID);
    CHECK(idx == 1);
    v[1].dataSize = 10;
    v[1].dataOffset = 1020; /* offset + size > maxSectionSize */
    EXPECT(saCkptCheckpointWrite(ck, v, 2, &idx), SA_AIS_ERR_NO_RESOURCES);
    CHECK(idx == 1);
    CHECK(read_text(ck, sid("a"), buf, sizeof buf) == 4 && strcmp(buf, "aAAa") == 0);
    v[1].dataOffset = 0;
    /* Malformed elements are refused before the handle, with their index. */
    v[1].dataBuffer = NULL;
    EXPECT(saCkptCheckpointWrite(0, v, 2, &idx), INVALID);
    CHECK(idx == 1);
    v[1].dataBuffer = "x";
    v[1].dataSize = 1;
    v[0].sectionId.id = NULL;
    EXPECT(saCkptCheckpointWrite(ck, v, 2, &idx), INVALID);
    CHECK(idx == 0);
    v[0].sectionId = sid("a");
    /* The default section of a maxSections-1 checkpoint; none in the other one. */
    v[2].sectionId = def;
    v[2].dataBuffer = "default";
    v[2].dataSize = 7;
    EXPECT(saCkptCheckpointWrite(one, &v[2], 1, NULL), OK);
    CHECK(read_text(one, def, buf, sizeof buf) == 7 && strcmp(buf, "default") == 0);
    EXPECT(saCkptCheckpointWrite(ck, &v[2], 1, &idx), SA_AIS_ERR_NOT_EXIST);
    CHECK(idx == 0);
    /* checkpointSize is enforced: NO_RESOURCES beyond it. */
    {
        SaNameT small = name_of("safCkpt=write-small");
        SaCkptCheckpointCreationAttributesT a = attrs_of(SA_CKPT_WR_ACTIVE_REPLICA, 4);
        SaCkptCheckpointHandleT sm = 0;
        a.checkpointSize = 10;
        EXPECT(saCkptCheckpointOpen(h, &small, &a, CRW, SA_TIME_MAX, &sm), OK);
        create_section(sm, "x", "12345678");
        {
            SaCkptSectionIdT y = sid("y");
            SaCkptSectionCreationAttributesT sa = {&y, SA_TIME_END};
            EXPECT(saCkptSectionCreate(sm, &sa, "12345678", 8), SA_AIS_ERR_NO_RESOURCES);
        }
        EXPECT(write_text(sm, "x", 8, "abc"), SA_AIS_ERR_NO_RESOURCES);
        EXPECT(write_text(sm, "x", 8, "ab"), OK);
    }
    /* Zero elements write nothing. */
    EXPECT(saCkptCheckpointWrite(ck, v, 0, NULL), OK);

    group = "saCkptSectionOverwrite";
    {
        SaCkptSectionIdT a = sid("a"), missing = sid("missing"), bad = {0, (SaUint8T *)"x"};
        EXPECT(saCkptSectionOverwrite(ck, NULL, "x", 1), INVALID);
        EXPECT(saCkptSectionOverwrite(0, NULL, "x", 1), INVALID);
        EXPECT(saCkptSectionOverwrite(ck, &bad, "x", 1), INVALID);
        EXPECT(saCkptSectionOverwrite(ck, &a, NULL, 1), INVALID);
        EXPECT(saCkptSectionOverwrite(0, &a, NULL, 1), INVALID);
        for (i = 0; i < N_GARBAGE; i++)
            EXPECT(saCkptSectionOverwrite(garbage[i], &a, "x", 1), BAD_HANDLE);
        EXPECT(saCkptSectionOverwrite(ro, &a, "x", 1), SA_AIS_ERR_ACCESS);
        EXPECT(saCkptSectionOverwrite(ck, &missing, "x", 1), SA_AIS_ERR_NOT_EXIST);
        EXPECT(saCkptSectionOverwrite(ck, &a, big, sizeof big), INVALID);
        /* The size becomes dataSize. */
        EXPECT(saCkptSectionOverwrite(ck, &a, "xy", 2), OK);
        CHECK(read_text(ck, a, buf, sizeof buf) == 2 && strcmp(buf, "xy") == 0);
        EXPECT(saCkptSectionOverwrite(one, &def, "d2", 2), OK);
        CHECK(read_text(one, def, buf, sizeof buf) == 2 && strcmp(buf, "d2") == 0);
    }
    EXPECT(saCkptFinalize(h), OK);
}

static void test_read(void)
{
    SaCkptHandleT h = init_lib(2, NULL);
    SaCkptHandleT h01 = init_lib(1, NULL);
    SaCkptCheckpointHandleT ck = open_ck(h, "safCkpt=read", SA_CKPT_WR_ACTIVE_REPLICA, 4, CRW);
    SaCkptCheckpointHandleT wo = open_ck(h, "safCkpt=read", 0, 4, WO);
    SaCkptCheckpointHandleT ck01 = open_ck(h01, "safCkpt=read", 0, 4, RO);
    SaCkptIOVectorElementT v[2];
    SaUint32T idx;
    char buf[64], buf2[64];
    static char big[2048];
    size_t i;
    group = "saCkptCheckpointRead";

    create_section(ck, "a", "0123456789");
    create_section(ck, "b", "");
    memset(v, 0, sizeof v);
    v[0].sectionId = sid("a");
    v[0].dataBuffer = buf;
    v[0].dataSize = 4;
    v[0].dataOffset = 3;
    v[1].sectionId = sid("a");
    v[1].dataBuffer = buf2;
    v[1].dataSize = sizeof buf2;
    v[1].dataOffset = 8;

    EXPECT(saCkptCheckpointRead(ck, NULL, 1, &idx), INVALID);
    EXPECT(saCkptCheckpointRead(0, NULL, 1, &idx), INVALID);
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptCheckpointRead(garbage[i], v, 2, NULL), BAD_HANDLE);
    EXPECT(saCkptCheckpointRead(wo, v, 2, NULL), SA_AIS_ERR_ACCESS);

    /* readSize = min(dataSize, size - offset); the index is 0 after success. */
    idx = 99;
    EXPECT(saCkptCheckpointRead(ck, v, 2, &idx), OK);
    CHECK(idx == 0);
    CHECK(v[0].readSize == 4 && memcmp(buf, "3456", 4) == 0);
    CHECK(v[1].readSize == 2 && memcmp(buf2, "89", 2) == 0);

    /* Errors name the failing element. */
    v[1].dataOffset = 11; /* past the end (10) */
    EXPECT(saCkptCheckpointRead(ck, v, 2, &idx), INVALID);
    CHECK(idx == 1);
    v[1].dataOffset = 10; /* the end: nothing to read */
    EXPECT(saCkptCheckpointRead(ck, v, 2, &idx), OK);
    CHECK(v[1].readSize == 0);
    v[1].sectionId = sid("nope");
    EXPECT(saCkptCheckpointRead(ck, v, 2, &idx), SA_AIS_ERR_NOT_EXIST);
    CHECK(idx == 1);
    v[1].sectionId = sid("a");
    v[1].dataOffset = 0;
    v[1].dataBuffer = big;
    v[1].dataSize = sizeof big; /* > maxSectionSize */
    EXPECT(saCkptCheckpointRead(ck, v, 2, &idx), INVALID);
    CHECK(idx == 1);
    v[1].dataSize = 0; /* a caller's buffer of size 0 */
    EXPECT(saCkptCheckpointRead(ck, v, 2, &idx), INVALID);
    CHECK(idx == 1);
    v[1].sectionId.id = NULL; /* malformed id: before the handle */
    EXPECT(saCkptCheckpointRead(0, v, 2, &idx), INVALID);
    CHECK(idx == 1);

    /* dataBuffer NULL: the library allocates exactly the bytes read (B.02 frees with
     * saCkptIOVectorElementDataFree). */
    group = "saCkptCheckpointRead allocating";
    memset(v, 0, sizeof v);
    v[0].sectionId = sid("a");
    v[0].dataOffset = 6;
    v[0].dataSize = 1; /* ignored */
    v[1].sectionId = sid("b"); /* empty: nothing allocated */
    EXPECT(saCkptCheckpointRead(ck, v, 2, NULL), OK);
    CHECK(v[0].readSize == 4 && v[0].dataBuffer != NULL &&
          memcmp(v[0].dataBuffer, "6789", 4) == 0);
    CHECK(v[1].readSize == 0 && v[1].dataBuffer == NULL);
    group = "saCkptIOVectorElementDataFree";
    EXPECT(saCkptIOVectorElementDataFree(ck, NULL), INVALID);
    EXPECT(saCkptIOVectorElementDataFree(0, NULL), INVALID);
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptIOVectorElementDataFree(garbage[i], v[0].dataBuffer), BAD_HANDLE);
    EXPECT(saCkptIOVectorElementDataFree(ck, v[0].dataBuffer), OK);

    /* A failed call frees what it allocated. */
    group = "saCkptCheckpointRead allocating";
    memset(v, 0, sizeof v);
    v[0].sectionId = sid("a");
    v[1].sectionId = sid("nope");
    EXPECT(saCkptCheckpointRead(ck, v, 2, &idx), SA_AIS_ERR_NOT_EXIST);
    CHECK(idx == 1 && v[0].dataBuffer == NULL);

    /* B.01: the client frees the buffer with free(). */
    memset(v, 0, sizeof v);
    v[0].sectionId = sid("a");
    EXPECT(saCkptCheckpointRead(ck01, v, 1, NULL), OK);
    CHECK(v[0].readSize == 10 && v[0].dataBuffer != NULL &&
          memcmp(v[0].dataBuffer, "0123456789", 10) == 0);
    free(v[0].dataBuffer);

    EXPECT(saCkptFinalize(h), OK);
    EXPECT(saCkptFinalize(h01), OK);
}

/* ------------------------------------------------------------------------ */
/* Synchronize and the asynchronous callbacks.                              */
/* ------------------------------------------------------------------------ */

static int open_calls;
static SaInvocationT open_invocation;
static SaCkptCheckpointHandleT open_handle;
static SaAisErrorT open_error;

static void on_open(SaInvocationT invocation, SaCkptCheckpointHandleT handle, SaAisErrorT error)
{
    open_calls++;
    open_invocation = invocation;
    open_handle = handle;
    open_error = error;
}

static int sync_calls;
static SaInvocationT sync_invocation;
static SaAisErrorT sync_error;

static void on_sync(SaInvocationT invocation, SaAisErrorT error)
{
    sync_calls++;
    sync_invocation = invocation;
    sync_error = error;
}

/* Polls the selection object until it is readable, then dispatches ONE. */
static int dispatch_when_ready(SaCkptHandleT h, int ms)
{
    SaSelectionObjectT fd;
    if (saCkptSelectionObjectGet(h, &fd) != OK || !readable(fd, ms))
        return 0;
    return saCkptDispatch(h, SA_DISPATCH_ONE) == OK;
}

static void test_open_async(void)
{
    SaCkptCallbacksT cb = {on_open, on_sync};
    SaCkptHandleT h = init_lib(2, &cb);
    SaCkptHandleT plain = init_lib(2, NULL);
    SaNameT n = name_of("safCkpt=async");
    SaNameT missing = name_of("safCkpt=async-missing");
    SaCkptCheckpointCreationAttributesT a = attrs_of(SA_CKPT_WR_ACTIVE_REPLICA, 4);
    size_t i;
    group = "saCkptCheckpointOpenAsync";

    EXPECT(saCkptCheckpointOpenAsync(h, 1, NULL, &a, CRW), INVALID);
    EXPECT(saCkptCheckpointOpenAsync(0, 1, NULL, &a, CRW), INVALID);
    EXPECT(saCkptCheckpointOpenAsync(h, 1, &n, NULL, CRW), INVALID);
    EXPECT(saCkptCheckpointOpenAsync(h, 1, &n, &a, 0), SA_AIS_ERR_BAD_FLAGS);
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptCheckpointOpenAsync(garbage[i], 1, &n, &a, CRW), BAD_HANDLE);
    /* No open callback registered. */
    EXPECT(saCkptCheckpointOpenAsync(plain, 1, &n, &a, CRW), SA_AIS_ERR_INIT);

    /* Success: the callback runs from dispatch, after poll() says so. */
    open_calls = 0;
    EXPECT(saCkptCheckpointOpenAsync(h, 0x1234, &n, &a, CRW), OK);
    CHECK(dispatch_when_ready(h, 5000));
    CHECK(open_calls == 1 && open_invocation == 0x1234 && open_error == OK && open_handle != 0);
    EXPECT(write_text(open_handle, "", 0, "x"), SA_AIS_ERR_NOT_EXIST); /* no default section */
    create_section(open_handle, "s", "opened asynchronously");
    EXPECT(saCkptCheckpointClose(open_handle), OK);

    /* Failure arrives through the callback too, with handle 0. */
    open_calls = 0;
    EXPECT(saCkptCheckpointOpenAsync(h, 77, &missing, NULL, RO), OK);
    CHECK(dispatch_when_ready(h, 5000));
    CHECK(open_calls == 1 && open_invocation == 77 && open_error == SA_AIS_ERR_NOT_EXIST &&
          open_handle == 0);

    EXPECT(saCkptFinalize(h), OK);
    EXPECT(saCkptFinalize(plain), OK);
}

static void test_synchronize(void)
{
    SaCkptCallbacksT cb = {on_open, on_sync};
    SaCkptHandleT h = init_lib(2, &cb);
    SaCkptHandleT plain = init_lib(2, NULL);
    SaCkptCheckpointHandleT ck = open_ck(h, "safCkpt=sync", SA_CKPT_WR_ACTIVE_REPLICA, 4, CRW);
    SaCkptCheckpointHandleT ro = open_ck(h, "safCkpt=sync", 0, 4, RO);
    SaCkptCheckpointHandleT all = open_ck(h, "safCkpt=sync-all", SA_CKPT_WR_ALL_REPLICAS, 4, CRW);
    SaCkptCheckpointHandleT noc = open_ck(plain, "safCkpt=sync", 0, 4, CRW & ~SA_CKPT_CHECKPOINT_CREATE);
    SaSelectionObjectT fd;
    size_t i;
    group = "saCkptCheckpointSynchronize";

    EXPECT(saCkptCheckpointSynchronize(ck, -1), INVALID);
    EXPECT(saCkptCheckpointSynchronize(0, -1), INVALID);
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptCheckpointSynchronize(garbage[i], SA_TIME_MAX), BAD_HANDLE);
    EXPECT(saCkptCheckpointSynchronize(all, SA_TIME_MAX), SA_AIS_ERR_BAD_OPERATION);
    EXPECT(saCkptCheckpointSynchronize(ro, SA_TIME_MAX), SA_AIS_ERR_ACCESS);
    EXPECT(saCkptCheckpointSynchronize(ck, SA_TIME_MAX), OK);
    EXPECT(saCkptCheckpointSynchronize(ck, 0), OK);

    group = "saCkptCheckpointSynchronizeAsync";
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(saCkptCheckpointSynchronizeAsync(garbage[i], 1), BAD_HANDLE);
    EXPECT(saCkptCheckpointSynchronizeAsync(noc, 1), SA_AIS_ERR_INIT);
    EXPECT(saCkptCheckpointSynchronizeAsync(all, 1), SA_AIS_ERR_BAD_OPERATION);
    EXPECT(saCkptCheckpointSynchronizeAsync(ro, 1), SA_AIS_ERR_ACCESS);

    /* Two pending callbacks: ONE runs one, ALL the rest; poll() sees them pending. */
    sync_calls = 0;
    EXPECT(saCkptSelectionObjectGet(h, &fd), OK);
    CHECK(!readable(fd, 0));
    EXPECT(saCkptCheckpointSynchronizeAsync(ck, 501), OK);
    EXPECT(saCkptCheckpointSynchronizeAsync(ck, 502), OK);
    CHECK(readable(fd, 5000));
    EXPECT(saCkptDispatch(h, SA_DISPATCH_ONE), OK);
    CHECK(sync_calls == 1 && sync_invocation == 501 && sync_error == OK);
    CHECK(readable(fd, 0));
    EXPECT(saCkptDispatch(h, SA_DISPATCH_ALL), OK);
    CHECK(sync_calls == 2 && sync_invocation == 502 && sync_error == OK);
    CHECK(!readable(fd, 0));

    /* Closing the checkpoint cancels its pending callbacks. */
    EXPECT(saCkptCheckpointSynchronizeAsync(ck, 503), OK);
    EXPECT(saCkptCheckpointClose(ck), OK);
    EXPECT(saCkptDispatch(h, SA_DISPATCH_ALL), OK);
    CHECK(sync_calls == 2);

    EXPECT(saCkptFinalize(h), OK);
    EXPECT(saCkptFinalize(plain), OK);
}

/* ------------------------------------------------------------------------ */
/* The arrival callback (opensaf/cpsv_papi.h).                              */
/* ------------------------------------------------------------------------ */

static int arrival_calls;
static SaCkptCheckpointHandleT arrival_handle;
static SaUint32T arrival_count;
static char arrival_id[32];
static SaSizeT arrival_size;
static SaOffsetT arrival_offset;
static int arrival_no_data;
static char arrival_read[64];

static void on_arrival(SaCkptCheckpointHandleT handle, SaCkptIOVectorElementT *v, SaUint32T n)
{
    SaCkptIOVectorElementT r;
    arrival_calls++;
    arrival_handle = handle;
    arrival_count = n;
    if (n == 0 || v == NULL)
        return;
    memset(arrival_id, 0, sizeof arrival_id);
    if (v[0].sectionId.idLen < sizeof arrival_id)
        memcpy(arrival_id, v[0].sectionId.id, v[0].sectionId.idLen);
    arrival_size = v[0].dataSize;
    arrival_offset = v[0].dataOffset;
    arrival_no_data = v[0].dataBuffer == NULL && v[0].readSize == 0;
    /* The callback reads what arrived, through the handle it was given. */
    memset(&r, 0, sizeof r);
    r.sectionId = v[0].sectionId;
    r.dataBuffer = arrival_read;
    r.dataSize = sizeof arrival_read - 1;
    if (saCkptCheckpointRead(handle, &r, 1, NULL) == OK)
        arrival_read[r.readSize] = 0;
}

static void test_arrival(void)
{
    SaCkptHandleT writer = init_lib(2, NULL);
    SaCkptHandleT reader = init_lib(2, NULL);
    SaCkptCheckpointHandleT w = open_ck(writer, "safCkpt=arrival", SA_CKPT_WR_ACTIVE_REPLICA, 4, CRW);
    SaCkptCheckpointHandleT r;
    SaSelectionObjectT fd;
    int spins;
    size_t i;
    group = "ncsCkptRegisterCkptArrivalCallback";

    create_section(w, "sec", "....");
    EXPECT(ncsCkptRegisterCkptArrivalCallback(reader, NULL), INVALID);
    EXPECT(ncsCkptRegisterCkptArrivalCallback(0, NULL), INVALID);
    for (i = 0; i < N_GARBAGE; i++)
        EXPECT(ncsCkptRegisterCkptArrivalCallback(garbage[i], on_arrival), BAD_HANDLE);
    EXPECT(ncsCkptRegisterCkptArrivalCallback(reader, on_arrival), OK);
    r = open_ck(reader, "safCkpt=arrival", 0, 4, RO);
    EXPECT(saCkptSelectionObjectGet(reader, &fd), OK);

    arrival_calls = 0;
    EXPECT(write_text(w, "sec", 2, "arrived"), OK);
    for (spins = 0; arrival_calls == 0 && spins < 50; spins++)
        if (readable(fd, 100))
            EXPECT(saCkptDispatch(reader, SA_DISPATCH_ALL), OK);
    CHECK(arrival_calls >= 1);
    CHECK(arrival_handle == r);
    CHECK(arrival_count == 1);
    CHECK(strcmp(arrival_id, "sec") == 0);
    CHECK(arrival_offset == 2 && arrival_size == 7);
    CHECK(arrival_no_data);
    CHECK(strcmp(arrival_read, "..arrived") == 0);

    EXPECT(saCkptFinalize(reader), OK);
    EXPECT(ncsCkptRegisterCkptArrivalCallback(reader, on_arrival), BAD_HANDLE);
    EXPECT(saCkptFinalize(writer), OK);
}


/* ------------------------------------------------------------------------ */
/* Threads: handles closed and finalized under concurrent use.              */
/* ------------------------------------------------------------------------ */

struct hammer {
    SaCkptCheckpointHandleT ck;
    int unexpected; /* return codes other than OK and BAD_HANDLE */
    int bad_handles;
    SaAisErrorT last_unexpected;
    int which;
};

static void *hammer_thread(void *arg)
{
    struct hammer *w = arg;
    int i;
    for (i = 0; i < 200000 && w->bad_handles < 50; i++) {
        char buf[16];
        SaCkptIOVectorElementT e;
        SaCkptCheckpointDescriptorT st;
        SaCkptSectionIterationHandleT it;
        SaAisErrorT rc[4];
        int k;
        memset(&e, 0, sizeof e);
        e.sectionId = sid("s");
        e.dataBuffer = buf;
        e.dataSize = sizeof buf;
        rc[0] = saCkptCheckpointRead(w->ck, &e, 1, NULL);
        rc[1] = write_text(w->ck, "s", 0, "hammer");
        rc[2] = saCkptCheckpointStatusGet(w->ck, &st);
        rc[3] = saCkptSectionIterationInitialize(w->ck, SA_CKPT_SECTIONS_ANY, 0, &it);
        if (rc[3] == OK) {
            SaCkptSectionDescriptorT d;
            SaAisErrorT n = saCkptSectionIterationNext(it, &d);
            SaAisErrorT f = saCkptSectionIterationFinalize(it);
            if ((n != OK && n != BAD_HANDLE) || (f != OK && f != BAD_HANDLE)) {
                w->unexpected++;
                w->last_unexpected = n != OK && n != BAD_HANDLE ? n : f;
                w->which = n != OK && n != BAD_HANDLE ? 4 : 5;
            }
        }
        for (k = 0; k < 4; k++) {
            if (rc[k] == BAD_HANDLE)
                w->bad_handles++;
            else if (rc[k] != OK) {
                w->unexpected++;
                w->last_unexpected = rc[k];
                w->which = k;
            }
        }
    }
    return NULL;
}

static void test_threads(void)
{
    struct hammer w[3];
    pthread_t t[3];
    SaCkptCallbacksT cb = {on_open, on_sync};
    SaCkptHandleT h;
    SaCkptCheckpointHandleT ck;
    pthread_t dispatcher;
    void *rc = NULL;
    int i, spins;
    group = "threads";

    /* A checkpoint handle closed while three threads use it. */
    h = init_lib(2, NULL);
    ck = open_ck(h, "safCkpt=threads", SA_CKPT_WR_ACTIVE_REPLICA, 4, CRW);
    create_section(ck, "s", "start");
    for (i = 0; i < 3; i++) {
        w[i].ck = ck;
        w[i].unexpected = 0;
        w[i].bad_handles = 0;
        CHECK(pthread_create(&t[i], NULL, hammer_thread, &w[i]) == 0);
    }
    sleep_ms(50);
    EXPECT(saCkptCheckpointClose(ck), OK);
    for (i = 0; i < 3; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK(w[i].unexpected == 0);
        CHECK(w[i].bad_handles > 0);
        if (w[i].unexpected)
            printf("  call %d returned %s\n", w[i].which, rc_name(w[i].last_unexpected));
    }

    /* The library finalized while three threads use a checkpoint of it. */
    ck = open_ck(h, "safCkpt=threads", SA_CKPT_WR_ACTIVE_REPLICA, 4, CRW);
    create_section(ck, "s", "again"); /* retention 0: the first one went with its close */
    for (i = 0; i < 3; i++) {
        w[i].ck = ck;
        w[i].unexpected = 0;
        w[i].bad_handles = 0;
        CHECK(pthread_create(&t[i], NULL, hammer_thread, &w[i]) == 0);
    }
    sleep_ms(50);
    EXPECT(saCkptFinalize(h), OK);
    for (i = 0; i < 3; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK(w[i].unexpected == 0);
        CHECK(w[i].bad_handles > 0);
        if (w[i].unexpected)
            printf("  call %d returned %s\n", w[i].which, rc_name(w[i].last_unexpected));
    }

    /* A blocking dispatcher thread runs callbacks as they come. */
    group = "saCkptDispatch BLOCKING";
    h = init_lib(2, &cb);
    ck = open_ck(h, "safCkpt=threads", SA_CKPT_WR_ACTIVE_REPLICA, 4, CRW);
    sync_calls = 0;
    CHECK(pthread_create(&dispatcher, NULL, blocking_dispatch, &h) == 0);
    EXPECT(saCkptCheckpointSynchronizeAsync(ck, 900), OK);
    for (spins = 0; sync_calls == 0 && spins < 500; spins++)
        sleep_ms(10);
    CHECK(sync_calls == 1 && sync_invocation == 900 && sync_error == OK);
    EXPECT(saCkptFinalize(h), OK);
    CHECK(pthread_join(dispatcher, &rc) == 0);
    CHECK(rc != NULL && *(SaAisErrorT *)rc == OK);
}

/* ------------------------------------------------------------------------ */

int main(void)
{
    test_initialize();
    test_selection_object_and_finalize();
    test_dispatch();
    test_open();
    test_close_and_stale_handles();
    test_unlink();
    test_retention();
    test_active_replica();
    test_status();
    test_section_create();
    test_section_delete_and_expiration();
    test_iteration();
    test_write();
    test_read();
    test_open_async();
    test_synchronize();
    test_arrival();
    test_threads();
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
