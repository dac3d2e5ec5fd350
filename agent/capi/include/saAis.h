/*
 * saAis.h: the definitions every SA Forum AIS service shares, as specified by
 * SAI-AIS-CPROG-B.05.01 (the C programming model that goes with CKPT B.02.02).
 *
 * Written for the ckpt project from the specification's facts (names, values,
 * field order). It declares only what the checkpoint service uses.
 *
 * Builds as C99 or later and as C++; it includes no other header.
 */

#ifndef CKPT_SAAIS_H
#define CKPT_SAAIS_H

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Fixed-width scalars. The widths hold on LP64 and ILP32 alike.            */
/* ------------------------------------------------------------------------ */

typedef char SaInt8T; /* plain char: its signedness is the platform's */
typedef short SaInt16T;
typedef int SaInt32T;
typedef long long SaInt64T;
typedef unsigned char SaUint8T;
typedef unsigned short SaUint16T;
typedef unsigned int SaUint32T;
typedef unsigned long long SaUint64T;

/* ------------------------------------------------------------------------ */
/* Time, sizes and opaque identifiers.                                      */
/* ------------------------------------------------------------------------ */

/*
 * Nanoseconds. An absolute time counts from 1970-01-01 00:00 UTC; any other
 * SaTimeT (a timeout, a retention duration) is a duration.
 */
typedef SaInt64T SaTimeT;
/* Chosen by the caller of an asynchronous call, handed back in its callback. */
typedef SaUint64T SaInvocationT;
typedef SaUint64T SaSizeT;
typedef SaUint64T SaOffsetT;
/* A file descriptor, widened, that polls readable while callbacks are pending. */
typedef SaUint64T SaSelectionObjectT;

#define SA_TIME_BEGIN 0LL
#define SA_TIME_END 0x7FFFFFFFFFFFFFFFLL /* "never", the largest SaTimeT */
#define SA_TIME_MAX SA_TIME_END          /* as a timeout: no limit */
/* The smallest SaTimeT, written so that it stays a signed constant. */
#define SA_TIME_UNKNOWN (-0x7FFFFFFFFFFFFFFFLL - 1LL)

#define SA_TIME_ONE_MICROSECOND 1000LL
#define SA_TIME_ONE_MILLISECOND 1000000LL
#define SA_TIME_ONE_SECOND 1000000000LL
#define SA_TIME_ONE_MINUTE 60000000000LL
#define SA_TIME_ONE_HOUR 3600000000000LL
#define SA_TIME_ONE_DAY 86400000000000LL

/* ------------------------------------------------------------------------ */
/* Track flags (part of the common definitions; the checkpoint service      */
/* itself does not track).                                                  */
/* ------------------------------------------------------------------------ */

#define SA_TRACK_CURRENT 0x01
#define SA_TRACK_CHANGES 0x02
#define SA_TRACK_CHANGES_ONLY 0x04
#define SA_TRACK_LOCAL 0x08
#define SA_TRACK_START_STEP 0x10
#define SA_TRACK_VALIDATE_STEP 0x20

/* ------------------------------------------------------------------------ */
/* Enumerations. Each is int-sized.                                         */
/* ------------------------------------------------------------------------ */

typedef enum {
    SA_FALSE = 0,
    SA_TRUE = 1
} SaBoolT;

/* How much saXxxDispatch() runs before it returns. */
typedef enum {
    SA_DISPATCH_ONE = 1,     /* at most one pending callback */
    SA_DISPATCH_ALL = 2,     /* every callback pending at the call */
    SA_DISPATCH_BLOCKING = 3 /* callbacks as they come, until finalize */
} SaDispatchFlagsT;

/* The result of every AIS function. There is no code 0. */
typedef enum {
    SA_AIS_OK = 1,
    SA_AIS_ERR_LIBRARY = 2,
    SA_AIS_ERR_VERSION = 3,
    SA_AIS_ERR_INIT = 4,
    SA_AIS_ERR_TIMEOUT = 5,
    SA_AIS_ERR_TRY_AGAIN = 6,
    SA_AIS_ERR_INVALID_PARAM = 7,
    SA_AIS_ERR_NO_MEMORY = 8,
    SA_AIS_ERR_BAD_HANDLE = 9,
    SA_AIS_ERR_BUSY = 10,
    SA_AIS_ERR_ACCESS = 11,
    SA_AIS_ERR_NOT_EXIST = 12,
    SA_AIS_ERR_NAME_TOO_LONG = 13,
    SA_AIS_ERR_EXIST = 14,
    SA_AIS_ERR_NO_SPACE = 15,
    SA_AIS_ERR_INTERRUPT = 16,
    SA_AIS_ERR_NAME_NOT_FOUND = 17,
    SA_AIS_ERR_NO_RESOURCES = 18,
    SA_AIS_ERR_NOT_SUPPORTED = 19,
    SA_AIS_ERR_BAD_OPERATION = 20,
    SA_AIS_ERR_FAILED_OPERATION = 21,
    SA_AIS_ERR_MESSAGE_ERROR = 22,
    SA_AIS_ERR_QUEUE_FULL = 23,
    SA_AIS_ERR_QUEUE_NOT_AVAILABLE = 24,
    SA_AIS_ERR_BAD_FLAGS = 25,
    SA_AIS_ERR_TOO_BIG = 26,
    SA_AIS_ERR_NO_SECTIONS = 27,
    SA_AIS_ERR_NO_OP = 28,
    SA_AIS_ERR_REPAIR_PENDING = 29,
    SA_AIS_ERR_NO_BINDINGS = 30,
    SA_AIS_ERR_UNAVAILABLE = 31,
    SA_AIS_ERR_CAMPAIGN_ERROR_DETECTED = 32,
    SA_AIS_ERR_CAMPAIGN_PROC_FAILED = 33,
    SA_AIS_ERR_CAMPAIGN_CANCELED = 34,
    SA_AIS_ERR_CAMPAIGN_FAILED = 35,
    SA_AIS_ERR_CAMPAIGN_SUSPENDED = 36,
    SA_AIS_ERR_CAMPAIGN_SUSPENDING = 37,
    SA_AIS_ERR_ACCESS_DENIED = 38,
    SA_AIS_ERR_NOT_READY = 39,
    SA_AIS_ERR_DEPLOYMENT = 40
} SaAisErrorT;

/*
 * Service identifiers, used for instance as the major id of a notification.
 * SA_SCV_LOG (sic) is the standard's own spelling and is kept for source
 * compatibility.
 */
typedef enum {
    SA_SVC_HPI = 1,
    SA_SVC_AMF = 2,
    SA_SVC_CLM = 3,
    SA_SVC_CKPT = 4,
    SA_SVC_EVT = 5,
    SA_SVC_MSG = 6,
    SA_SVC_LCK = 7,
    SA_SVC_IMMS = 8,
    SA_SCV_LOG = 9,
    SA_SVC_NTF = 10,
    SA_SVC_NAM = 11,
    SA_SVC_TMR = 12,
    SA_SVC_SMF = 13,
    SA_SVC_SEC = 14,
    SA_SVC_PLM = 15
} SaServicesT;

/* ------------------------------------------------------------------------ */
/* Structures.                                                              */
/* ------------------------------------------------------------------------ */

#define SA_MAX_NAME_LENGTH 256

/*
 * A name of at most SA_MAX_NAME_LENGTH bytes. `length` counts the bytes of
 * `value` in use; `value` is not NUL-terminated. 258 bytes, 2-aligned.
 */
typedef struct {
    SaUint16T length;
    SaUint8T value[SA_MAX_NAME_LENGTH];
} SaNameT;

/*
 * A specification version such as {'B', 2, 2}. On input to an initialize
 * call the minor version is ignored; on return all three fields hold the
 * version the library provides. 3 bytes, 1-aligned.
 */
typedef struct {
    SaUint8T releaseCode;
    SaUint8T majorVersion;
    SaUint8T minorVersion;
} SaVersionT;

#ifdef __cplusplus
}
#endif

#endif /* CKPT_SAAIS_H */
