/*
 * cpsv_demo.c: the writer/reader demo of the NCS checkpoint service, through
 * the standard C API (saCkpt.h, -lSaCkpt).
 *
 * The writer initializes the library, opens (creating) a collocated
 * checkpoint, makes its replica active, creates a section, writes a text
 * into it and synchronizes; a reader process then opens the checkpoint,
 * reads the text and prints it; the writer unlinks and closes the checkpoint
 * and finalizes the library.
 *
 *   cpsv_demo           both: the writer runs the reader as a child process
 *   cpsv_demo writer    only the writer (keeps the checkpoint 10 s)
 *   cpsv_demo reader    only the reader
 *
 * Written for the ckpt project. It needs only <saCkpt.h>. Checkpoints live
 * in shared memory on this node (CKPT_DIR or CKPT_DOMAIN choose the domain).
 */

#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <saCkpt.h>

#define DEMO_NAME "safCkpt=DemoCkpt,safApp=safCkptService"
#define SECTION "11"
#define TEXT "The Checkpoint Service of the Service Availability Forum, from C"

static SaNameT demo_name(void)
{
    SaNameT n;
    memset(&n, 0, sizeof n);
    n.length = (SaUint16T)strlen(DEMO_NAME);
    memcpy(n.value, DEMO_NAME, n.length);
    return n;
}

static int failed(const char *who, const char *what, SaAisErrorT rc)
{
    fprintf(stderr, "%s: %s failed with SaAisErrorT %d\n", who, what, (int)rc);
    return 1;
}

static int run_reader_child(const char *self)
{
    pid_t pid;
    int status = 0;
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        execl("/proc/self/exe", self, "reader", (char *)NULL);
        execl(self, self, "reader", (char *)NULL);
        perror("exec reader");
        _exit(127);
    }
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "writer: the reader failed (status %d)\n", status);
        return 1;
    }
    return 0;
}

static int writer(int spawn_reader, const char *self)
{
    SaCkptHandleT lib;
    SaCkptCheckpointHandleT ck;
    SaVersionT version = {'B', 2, 2};
    SaNameT name = demo_name();
    SaCkptCheckpointCreationAttributesT attrs;
    SaCkptSectionIdT id = {2, (SaUint8T *)SECTION};
    SaCkptSectionCreationAttributesT section = {&id, SA_TIME_END};
    SaCkptIOVectorElementT element;
    SaAisErrorT rc;

    attrs.creationFlags = SA_CKPT_WR_ACTIVE_REPLICA | SA_CKPT_CHECKPOINT_COLLOCATED;
    attrs.checkpointSize = 1024;
    attrs.retentionDuration = 100 * SA_TIME_ONE_SECOND;
    attrs.maxSections = 2;
    attrs.maxSectionSize = 700;
    attrs.maxSectionIdSize = 4;

    rc = saCkptInitialize(&lib, NULL, &version);
    if (rc != SA_AIS_OK)
        return failed("writer", "saCkptInitialize", rc);
    printf("writer: library initialized (B.%02d.%02d)\n", version.majorVersion,
           version.minorVersion);

    rc = saCkptCheckpointOpen(lib, &name, &attrs,
                              SA_CKPT_CHECKPOINT_CREATE | SA_CKPT_CHECKPOINT_READ |
                                  SA_CKPT_CHECKPOINT_WRITE,
                              SA_TIME_MAX, &ck);
    if (rc != SA_AIS_OK)
        return failed("writer", "saCkptCheckpointOpen", rc);
    printf("writer: checkpoint %s opened\n", DEMO_NAME);

    rc = saCkptActiveReplicaSet(ck);
    if (rc != SA_AIS_OK)
        return failed("writer", "saCkptActiveReplicaSet", rc);
    printf("writer: this node's replica is active\n");

    rc = saCkptSectionCreate(ck, &section, NULL, 0);
    if (rc == SA_AIS_OK)
        printf("writer: section %s created\n", SECTION);
    else if (rc == SA_AIS_ERR_EXIST)
        printf("writer: section %s exists\n", SECTION);
    else
        return failed("writer", "saCkptSectionCreate", rc);

    memset(&element, 0, sizeof element);
    element.sectionId = id;
    element.dataBuffer = TEXT;
    element.dataSize = strlen(TEXT);
    element.dataOffset = 0;
    rc = saCkptCheckpointWrite(ck, &element, 1, NULL);
    if (rc != SA_AIS_OK)
        return failed("writer", "saCkptCheckpointWrite", rc);
    printf("writer: wrote %d bytes: %s\n", (int)strlen(TEXT), TEXT);

    rc = saCkptCheckpointSynchronize(ck, SA_TIME_MAX);
    if (rc != SA_AIS_OK)
        return failed("writer", "saCkptCheckpointSynchronize", rc);
    printf("writer: synchronized\n");

    if (spawn_reader) {
        if (run_reader_child(self) != 0)
            return 1;
    } else {
        struct timespec ten = {10, 0};
        printf("writer: keeping the checkpoint open for 10 s; run the reader now\n");
        fflush(stdout);
        nanosleep(&ten, NULL);
    }

    rc = saCkptCheckpointUnlink(lib, &name);
    if (rc != SA_AIS_OK)
        return failed("writer", "saCkptCheckpointUnlink", rc);
    printf("writer: checkpoint unlinked\n");

    rc = saCkptCheckpointClose(ck);
    if (rc != SA_AIS_OK)
        return failed("writer", "saCkptCheckpointClose", rc);
    printf("writer: checkpoint closed\n");

    rc = saCkptFinalize(lib);
    if (rc != SA_AIS_OK)
        return failed("writer", "saCkptFinalize", rc);
    printf("writer: library finalized\n");
    return 0;
}

static int reader(void)
{
    SaCkptHandleT lib;
    SaCkptCheckpointHandleT ck;
    SaVersionT version = {'B', 2, 2};
    SaNameT name = demo_name();
    SaCkptIOVectorElementT element;
    SaUint32T erroneous = 0;
    char buf[701];
    SaAisErrorT rc;

    rc = saCkptInitialize(&lib, NULL, &version);
    if (rc != SA_AIS_OK)
        return failed("reader", "saCkptInitialize", rc);

    rc = saCkptCheckpointOpen(lib, &name, NULL, SA_CKPT_CHECKPOINT_READ, SA_TIME_MAX, &ck);
    if (rc != SA_AIS_OK) {
        fprintf(stderr, "reader: is the writer running?\n");
        return failed("reader", "saCkptCheckpointOpen", rc);
    }
    printf("reader: checkpoint %s opened for reading\n", DEMO_NAME);

    memset(&element, 0, sizeof element);
    element.sectionId.idLen = 2;
    element.sectionId.id = (SaUint8T *)SECTION;
    element.dataBuffer = buf;
    element.dataSize = sizeof buf - 1;
    element.dataOffset = 0;
    rc = saCkptCheckpointRead(ck, &element, 1, &erroneous);
    if (rc != SA_AIS_OK)
        return failed("reader", "saCkptCheckpointRead", rc);
    buf[element.readSize] = 0;
    printf("reader: read %d bytes: %s\n", (int)element.readSize, buf);

    saCkptCheckpointClose(ck);
    saCkptFinalize(lib);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return writer(1, argv[0]);
    if (strcmp(argv[1], "writer") == 0)
        return writer(0, argv[0]);
    if (strcmp(argv[1], "reader") == 0)
        return reader();
    fprintf(stderr, "cpsv_demo: unknown role %s: use writer or reader\n", argv[1]);
    return 2;
}
