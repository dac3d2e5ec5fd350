/*
 * saCkpt.h: the SA Forum Checkpoint Service API, SAI-AIS-CKPT-B.02.02.
 *
 * Written for the ckpt project from the specification's facts (names, values,
 * field order, parameter order). Link with -lSaCkpt.
 *
 * Every function returns an SaAisErrorT. Besides the codes each function
 * lists in the specification, any of them may return SA_AIS_ERR_LIBRARY,
 * SA_AIS_ERR_TIMEOUT or SA_AIS_ERR_TRY_AGAIN, and, to clients that asked for
 * a B.02 version, SA_AIS_ERR_UNAVAILABLE.
 *
 * Builds as C99 or later and as C++.
 */

#ifndef CKPT_SACKPT_H
#define CKPT_SACKPT_H

#include <stddef.h> /* NULL, for the section id initialisers */

#include "saAis.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Handles. 0 is never a valid handle.                                      */
/* ------------------------------------------------------------------------ */

typedef SaUint64T SaCkptHandleT;                 /* from saCkptInitialize */
typedef SaUint64T SaCkptCheckpointHandleT;       /* from a checkpoint open */
typedef SaUint64T SaCkptSectionIterationHandleT; /* from an iteration init */

/* ------------------------------------------------------------------------ */
/* Checkpoint creation.                                                     */
/* ------------------------------------------------------------------------ */

/*
 * Creation flags: exactly one of the three SA_CKPT_WR_* update modes,
 * optionally OR'd with SA_CKPT_CHECKPOINT_COLLOCATED.
 */
typedef SaUint32T SaCkptCheckpointCreationFlagsT;

#define SA_CKPT_WR_ALL_REPLICAS 0x1        /* synchronous, every replica */
#define SA_CKPT_WR_ACTIVE_REPLICA 0x2      /* asynchronous, atomic */
#define SA_CKPT_WR_ACTIVE_REPLICA_WEAK 0x4 /* asynchronous, may corrupt */
#define SA_CKPT_CHECKPOINT_COLLOCATED 0x8  /* active replica chosen by users */

/* 48 bytes on LP64. */
typedef struct {
    SaCkptCheckpointCreationFlagsT creationFlags;
    SaSizeT checkpointSize;    /* net bytes of application data per replica */
    SaTimeT retentionDuration; /* a duration, started by the last close */
    SaUint32T maxSections;     /* 1 means a single default section */
    SaSizeT maxSectionSize;
    SaSizeT maxSectionIdSize;
} SaCkptCheckpointCreationAttributesT;

/* ------------------------------------------------------------------------ */
/* Opening.                                                                 */
/* ------------------------------------------------------------------------ */

typedef SaUint32T SaCkptCheckpointOpenFlagsT;

#define SA_CKPT_CHECKPOINT_READ 0x1
#define SA_CKPT_CHECKPOINT_WRITE 0x2
#define SA_CKPT_CHECKPOINT_CREATE 0x4

/* ------------------------------------------------------------------------ */
/* Sections.                                                                */
/* ------------------------------------------------------------------------ */

/*
 * A section id is a byte string of idLen bytes (not a C string), compared
 * by length and bytes. 16 bytes on LP64.
 */
typedef struct {
    SaUint16T idLen;
    SaUint8T *id;
} SaCkptSectionIdT;

/*
 * Initialisers for an SaCkptSectionIdT. Both are the empty id: in a
 * checkpoint with maxSections == 1 it names the default section; passed to
 * saCkptSectionCreate when maxSections > 1 it asks the library to generate
 * an id.
 */
#define SA_CKPT_DEFAULT_SECTION_ID {0, NULL}
#define SA_CKPT_GENERATED_SECTION_ID {0, NULL}

/* 16 bytes on LP64. */
typedef struct {
    SaCkptSectionIdT *sectionId; /* in/out: a generated id is written back */
    SaTimeT expirationTime;      /* absolute; SA_TIME_END means never */
} SaCkptSectionCreationAttributesT;

typedef enum {
    SA_CKPT_SECTION_VALID = 1,
    SA_CKPT_SECTION_CORRUPTED = 2
} SaCkptSectionStateT;

/*
 * Returned by saCkptSectionIterationNext. The library owns sectionId.id;
 * it stays valid until the next call on the iteration at the latest.
 * 48 bytes on LP64.
 */
typedef struct {
    SaCkptSectionIdT sectionId;
    SaTimeT expirationTime;
    SaSizeT sectionSize;
    SaCkptSectionStateT sectionState;
    SaTimeT lastUpdate;
} SaCkptSectionDescriptorT;

/* Which sections an iteration returns. */
typedef enum {
    SA_CKPT_SECTIONS_FOREVER = 1,             /* expiration is SA_TIME_END */
    SA_CKPT_SECTIONS_LEQ_EXPIRATION_TIME = 2, /* expiration <= the time given */
    SA_CKPT_SECTIONS_GEQ_EXPIRATION_TIME = 3, /* expiration >= the time given */
    SA_CKPT_SECTIONS_CORRUPTED = 4,
    SA_CKPT_SECTIONS_ANY = 5
} SaCkptSectionsChosenT;

/* ------------------------------------------------------------------------ */
/* Data access.                                                             */
/* ------------------------------------------------------------------------ */

/*
 * One element of a read or write vector. 48 bytes on LP64.
 * For a read, a NULL dataBuffer asks the library to allocate the buffer;
 * a client that asked for B.02 frees it with saCkptIOVectorElementDataFree.
 * readSize is set by a read and ignored by a write.
 */
typedef struct {
    SaCkptSectionIdT sectionId;
    void *dataBuffer;
    SaSizeT dataSize;
    SaOffsetT dataOffset;
    SaSizeT readSize;
} SaCkptIOVectorElementT;

/*
 * What saCkptCheckpointStatusGet reports. 64 bytes on LP64.
 *
 * B.01 compatibility: the B.01 (and B.02.01) headers declare memoryUsed as
 * SaUint32T, which makes this structure 56 bytes on LP64 (numberOfSections
 * at offset 48, memoryUsed at 52, no padding). So that programs built
 * against those headers are not overrun, the library writes that 56-byte
 * layout for a client whose saCkptInitialize asked for major version 1, and
 * the 64-byte layout below for major version 2.
 */
typedef struct {
    SaCkptCheckpointCreationAttributesT checkpointCreationAttributes;
    SaUint32T numberOfSections;
    SaSizeT memoryUsed; /* bytes of stored data: the sum of section sizes */
} SaCkptCheckpointDescriptorT;

/* ------------------------------------------------------------------------ */
/* Notification values (state changes reported through the NTF service).   */
/* ------------------------------------------------------------------------ */

typedef enum {
    SA_CKPT_SECTION_RESOURCES_EXHAUSTED = 1, /* maxSections reached */
    SA_CKPT_SECTION_RESOURCES_AVAILABLE = 2  /* below maxSections again */
} SaCkptCheckpointStatusT;

typedef enum {
    SA_CKPT_CHECKPOINT_STATUS = 1
} SaCkptStateT;

/* ------------------------------------------------------------------------ */
/* Callbacks. They run only inside saCkptDispatch.                          */
/* ------------------------------------------------------------------------ */

/* The outcome of saCkptCheckpointOpenAsync. */
typedef void (*SaCkptCheckpointOpenCallbackT)(SaInvocationT invocation,
                                              SaCkptCheckpointHandleT checkpointHandle,
                                              SaAisErrorT error);

/* The outcome of saCkptCheckpointSynchronizeAsync. */
typedef void (*SaCkptCheckpointSynchronizeCallbackT)(SaInvocationT invocation,
                                                     SaAisErrorT error);

/* Either member may be NULL. 16 bytes on LP64. */
typedef struct {
    SaCkptCheckpointOpenCallbackT saCkptCheckpointOpenCallback;
    SaCkptCheckpointSynchronizeCallbackT saCkptCheckpointSynchronizeCallback;
} SaCkptCallbacksT;

/* ------------------------------------------------------------------------ */
/* Library life cycle.                                                      */
/* ------------------------------------------------------------------------ */

/*
 * Creates a library handle. callbacks may be NULL. version is in/out: on
 * return it holds the version the library provides (or, with
 * SA_AIS_ERR_VERSION, the one it would accept).
 */
extern SaAisErrorT saCkptInitialize(SaCkptHandleT *ckptHandle,
                                    const SaCkptCallbacksT *callbacks,
                                    SaVersionT *version);

/* A pollable descriptor, readable while callbacks are pending. */
extern SaAisErrorT saCkptSelectionObjectGet(SaCkptHandleT ckptHandle,
                                            SaSelectionObjectT *selectionObject);

/* Runs pending callbacks in the calling thread. */
extern SaAisErrorT saCkptDispatch(SaCkptHandleT ckptHandle, SaDispatchFlagsT dispatchFlags);

/* Closes every checkpoint opened through the handle and invalidates it. */
extern SaAisErrorT saCkptFinalize(SaCkptHandleT ckptHandle);

/* ------------------------------------------------------------------------ */
/* Checkpoint management.                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Opens, and with SA_CKPT_CHECKPOINT_CREATE creates, a checkpoint.
 * checkpointCreationAttributes must be given with CREATE and NULL without.
 * timeout is a duration.
 */
extern SaAisErrorT saCkptCheckpointOpen(
    SaCkptHandleT ckptHandle, const SaNameT *checkpointName,
    const SaCkptCheckpointCreationAttributesT *checkpointCreationAttributes,
    SaCkptCheckpointOpenFlagsT checkpointOpenFlags, SaTimeT timeout,
    SaCkptCheckpointHandleT *checkpointHandle);

/* As saCkptCheckpointOpen; the result arrives through the open callback. */
extern SaAisErrorT saCkptCheckpointOpenAsync(
    SaCkptHandleT ckptHandle, SaInvocationT invocation, const SaNameT *checkpointName,
    const SaCkptCheckpointCreationAttributesT *checkpointCreationAttributes,
    SaCkptCheckpointOpenFlagsT checkpointOpenFlags);

extern SaAisErrorT saCkptCheckpointClose(SaCkptCheckpointHandleT checkpointHandle);

/* Removes the name at once; the checkpoint goes with its last close. */
extern SaAisErrorT saCkptCheckpointUnlink(SaCkptHandleT ckptHandle,
                                          const SaNameT *checkpointName);

extern SaAisErrorT saCkptCheckpointRetentionDurationSet(SaCkptCheckpointHandleT checkpointHandle,
                                                        SaTimeT retentionDuration);

/* Makes the local replica the active one (collocated, asynchronous only). */
extern SaAisErrorT saCkptActiveReplicaSet(SaCkptCheckpointHandleT checkpointHandle);

extern SaAisErrorT saCkptCheckpointStatusGet(SaCkptCheckpointHandleT checkpointHandle,
                                             SaCkptCheckpointDescriptorT *checkpointStatus);

/* ------------------------------------------------------------------------ */
/* Section management.                                                      */
/* ------------------------------------------------------------------------ */

extern SaAisErrorT saCkptSectionCreate(
    SaCkptCheckpointHandleT checkpointHandle,
    SaCkptSectionCreationAttributesT *sectionCreationAttributes, const void *initialData,
    SaSizeT initialDataSize);

extern SaAisErrorT saCkptSectionDelete(SaCkptCheckpointHandleT checkpointHandle,
                                       const SaCkptSectionIdT *sectionId);

/* Frees an id that saCkptSectionCreate generated. */
extern SaAisErrorT saCkptSectionIdFree(SaCkptCheckpointHandleT checkpointHandle, SaUint8T *id);

extern SaAisErrorT saCkptSectionExpirationTimeSet(SaCkptCheckpointHandleT checkpointHandle,
                                                  const SaCkptSectionIdT *sectionId,
                                                  SaTimeT expirationTime);

/* expirationTime is used only with the LEQ and GEQ choices. */
extern SaAisErrorT saCkptSectionIterationInitialize(
    SaCkptCheckpointHandleT checkpointHandle, SaCkptSectionsChosenT sectionsChosen,
    SaTimeT expirationTime, SaCkptSectionIterationHandleT *sectionIterationHandle);

/* SA_AIS_ERR_NO_SECTIONS marks the end of the iteration. */
extern SaAisErrorT saCkptSectionIterationNext(
    SaCkptSectionIterationHandleT sectionIterationHandle,
    SaCkptSectionDescriptorT *sectionDescriptor);

extern SaAisErrorT saCkptSectionIterationFinalize(
    SaCkptSectionIterationHandleT sectionIterationHandle);

/* ------------------------------------------------------------------------ */
/* Data access.                                                             */
/* ------------------------------------------------------------------------ */

/*
 * Writes the elements in order. erroneousVectorIndex may be NULL; on
 * failure it receives the index of the element that failed.
 */
extern SaAisErrorT saCkptCheckpointWrite(SaCkptCheckpointHandleT checkpointHandle,
                                         const SaCkptIOVectorElementT *ioVector,
                                         SaUint32T numberOfElements,
                                         SaUint32T *erroneousVectorIndex);

/* Replaces a section's data; its size becomes dataSize. */
extern SaAisErrorT saCkptSectionOverwrite(SaCkptCheckpointHandleT checkpointHandle,
                                          const SaCkptSectionIdT *sectionId,
                                          const void *dataBuffer, SaSizeT dataSize);

extern SaAisErrorT saCkptCheckpointRead(SaCkptCheckpointHandleT checkpointHandle,
                                        SaCkptIOVectorElementT *ioVector,
                                        SaUint32T numberOfElements,
                                        SaUint32T *erroneousVectorIndex);

/* Frees a buffer that saCkptCheckpointRead allocated. */
extern SaAisErrorT saCkptIOVectorElementDataFree(SaCkptCheckpointHandleT checkpointHandle,
                                                 void *data);

/* Propagates earlier updates from the active replica to the others. */
extern SaAisErrorT saCkptCheckpointSynchronize(SaCkptCheckpointHandleT checkpointHandle,
                                               SaTimeT timeout);

/* As saCkptCheckpointSynchronize; the result arrives through the callback. */
extern SaAisErrorT saCkptCheckpointSynchronizeAsync(SaCkptCheckpointHandleT checkpointHandle,
                                                    SaInvocationT invocation);

#ifdef __cplusplus
}
#endif

#endif /* CKPT_SACKPT_H */
