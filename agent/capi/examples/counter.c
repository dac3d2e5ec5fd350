/*
 * counter.c: the 1+1 counter of the OpenClovis checkpoint example, through
 * the standard C API.
 *
 * The active process overwrites a counter (a network-order 32-bit value) in
 * a checkpoint section every 100 ms and prints "stored N". The standby opens
 * the same checkpoint, follows the active through the arrival callback
 * (opensaf/cpsv_papi.h), and when it reads a line on its standard input (an
 * availability manager telling it to take over, for instance after the
 * active died) it makes its own replica active and resumes counting from the
 * stored value.
 *
 *   counter active [TICKS]    count (forever, or TICKS times)
 *   counter standby [TICKS]   follow; after a line on stdin, take over
 *
 * Written for the ckpt project. CKPT_DIR or CKPT_DOMAIN choose the domain;
 * COUNTER_CKPT names the checkpoint.
 */

#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ckpt/ckpt_ext.h>
#include <opensaf/cpsv_papi.h>
#include <saCkpt.h>

#define SECTION "counter"

static SaCkptSectionIdT counter_id = {sizeof SECTION - 1, (SaUint8T *)SECTION};

static SaNameT checkpoint_name(void)
{
    const char *text = getenv("COUNTER_CKPT");
    SaNameT n;
    if (text == NULL || *text == 0)
        text = "safCkpt=counter,safApp=demo";
    memset(&n, 0, sizeof n);
    n.length = (SaUint16T)strlen(text);
    if (n.length > SA_MAX_NAME_LENGTH)
        n.length = SA_MAX_NAME_LENGTH;
    memcpy(n.value, text, n.length);
    return n;
}

static int failed(const char *who, const char *what, SaAisErrorT rc)
{
    fprintf(stderr, "%s: %s failed with SaAisErrorT %d\n", who, what, (int)rc);
    return 1;
}

static SaAisErrorT open_counter(SaCkptHandleT lib, SaCkptCheckpointHandleT *ck)
{
    SaNameT name = checkpoint_name();
    SaCkptCheckpointCreationAttributesT attrs;
    attrs.creationFlags = SA_CKPT_WR_ACTIVE_REPLICA | SA_CKPT_CHECKPOINT_COLLOCATED;
    attrs.checkpointSize = 8;
    attrs.retentionDuration = 0;
    attrs.maxSections = 2;
    attrs.maxSectionSize = 4;
    attrs.maxSectionIdSize = 16;
    return saCkptCheckpointOpen(lib, &name, &attrs,
                                SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ |
                                    SA_CKPT_CHECKPOINT_WRITE,
                                SA_TIME_MAX, ck);
}

/* The stored counter, read from this node's replica; -1 if there is none. */
static long stored_value(SaCkptCheckpointHandleT ck)
{
    SaUint32T net = 0;
    SaCkptIOVectorElementT e;
    memset(&e, 0, sizeof e);
    e.sectionId = counter_id;
    e.dataBuffer = &net;
    e.dataSize = sizeof net;
    if (ckptCheckpointReadLocal(ck, &e, 1, NULL) != SA_AIS_OK || e.readSize != sizeof net)
        return -1;
    return (long)ntohl(net);
}

/* Makes this replica active and counts from the stored value. */
static int count(SaCkptCheckpointHandleT ck, const char *who, long ticks)
{
    struct timespec tick = {0, 100 * 1000 * 1000};
    SaCkptSectionCreationAttributesT section = {&counter_id, SA_TIME_END};
    SaUint32T n, net;
    long start;
    SaAisErrorT rc;

    rc = saCkptActiveReplicaSet(ck);
    if (rc != SA_AIS_OK)
        return failed(who, "saCkptActiveReplicaSet", rc);
    start = stored_value(ck);
    if (start < 0) {
        net = htonl(0);
        rc = saCkptSectionCreate(ck, &section, &net, sizeof net);
        if (rc != SA_AIS_OK && rc != SA_AIS_ERR_EXIST)
            return failed(who, "saCkptSectionCreate", rc);
        start = 0;
    }
    printf("%s: active, resuming from %ld\n", who, start);
    fflush(stdout);
    for (n = (SaUint32T)start; ticks != 0; ticks--) {
        n++;
        net = htonl(n);
        rc = saCkptSectionOverwrite(ck, &counter_id, &net, sizeof net);
        if (rc != SA_AIS_OK)
            return failed(who, "saCkptSectionOverwrite", rc);
        printf("stored %u\n", (unsigned)n);
        fflush(stdout);
        nanosleep(&tick, NULL);
    }
    return 0;
}

static int active(long ticks)
{
    SaCkptHandleT lib;
    SaCkptCheckpointHandleT ck;
    SaVersionT version = {'B', 2, 2};
    SaAisErrorT rc;
    int result;

    rc = saCkptInitialize(&lib, NULL, &version);
    if (rc != SA_AIS_OK)
        return failed("active", "saCkptInitialize", rc);
    rc = open_counter(lib, &ck);
    if (rc != SA_AIS_OK)
        return failed("active", "saCkptCheckpointOpen", rc);
    result = count(ck, "active", ticks);
    saCkptFinalize(lib);
    return result;
}

static unsigned long arrivals;
static long last_seen = -1;

/* The arrival callback: the active stored a value; read it. */
static void on_arrival(SaCkptCheckpointHandleT ck, SaCkptIOVectorElementT *elements,
                       SaUint32T count)
{
    SaUint32T net = 0;
    SaCkptIOVectorElementT e;
    (void)elements;
    arrivals += count;
    memset(&e, 0, sizeof e);
    e.sectionId = counter_id;
    e.dataBuffer = &net;
    e.dataSize = sizeof net;
    if (saCkptCheckpointRead(ck, &e, 1, NULL) == SA_AIS_OK && e.readSize == sizeof net)
        last_seen = (long)ntohl(net);
}

static int standby(long ticks)
{
    SaCkptHandleT lib;
    SaCkptCheckpointHandleT ck;
    SaVersionT version = {'B', 2, 2};
    SaSelectionObjectT selection;
    struct pollfd fds[2];
    long value;
    SaAisErrorT rc;
    int result;

    rc = saCkptInitialize(&lib, NULL, &version);
    if (rc != SA_AIS_OK)
        return failed("standby", "saCkptInitialize", rc);
    rc = ncsCkptRegisterCkptArrivalCallback(lib, on_arrival);
    if (rc != SA_AIS_OK)
        return failed("standby", "ncsCkptRegisterCkptArrivalCallback", rc);
    rc = open_counter(lib, &ck);
    if (rc != SA_AIS_OK)
        return failed("standby", "saCkptCheckpointOpen", rc);
    rc = saCkptSelectionObjectGet(lib, &selection);
    if (rc != SA_AIS_OK)
        return failed("standby", "saCkptSelectionObjectGet", rc);
    printf("standby: following\n");
    fflush(stdout);

    /* Dispatch arrivals until stdin says take over (a line, or its end). */
    for (;;) {
        fds[0].fd = (int)selection;
        fds[0].events = POLLIN;
        fds[1].fd = STDIN_FILENO;
        fds[1].events = POLLIN;
        if (poll(fds, 2, -1) < 0)
            continue;
        if (fds[0].revents & POLLIN)
            saCkptDispatch(lib, SA_DISPATCH_ALL);
        if (fds[1].revents & (POLLIN | POLLHUP))
            break;
    }
    /* The hot-standby read of the local replica: the last value stored. */
    value = stored_value(ck);
    printf("standby: taking over after %lu arrival callbacks, last stored value %ld "
           "(last seen in a callback %ld)\n",
           arrivals, value, last_seen);
    fflush(stdout);
    result = count(ck, "standby", ticks);
    saCkptCheckpointClose(ck);
    saCkptFinalize(lib);
    return result;
}

int main(int argc, char **argv)
{
    long ticks = argc > 2 ? atol(argv[2]) : -1;
    if (argc > 1 && strcmp(argv[1], "active") == 0)
        return active(ticks);
    if (argc > 1 && strcmp(argv[1], "standby") == 0)
        return standby(ticks);
    fprintf(stderr, "usage: counter active|standby [TICKS]\n");
    return 2;
}
