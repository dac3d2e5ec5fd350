/*
 * opensaf/cpsv_papi.h: the checkpoint arrival callback, an extension that
 * OpenSAF programs use. Declared here with OpenSAF's names and argument
 * order so that such programs build against this library unchanged.
 *
 * Written for the ckpt project. Include it with the directory holding
 * saCkpt.h on the include path. Builds as C99 or later and as C++.
 */

#ifndef CKPT_OPENSAF_CPSV_PAPI_H
#define CKPT_OPENSAF_CPSV_PAPI_H

#include "saCkpt.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Called inside saCkptDispatch on the library handle it was registered with.
 * It receives, as numberOfElements elements of ioVector, the data of updates
 * to a checkpoint opened through that handle.
 */
typedef void (*ncsCkptCkptArrivalCallbackT)(SaCkptCheckpointHandleT checkpointHandle,
                                            SaCkptIOVectorElementT *ioVector,
                                            SaUint32T numberOfElements);

/* Registers the arrival callback of ckptHandle. */
extern SaAisErrorT ncsCkptRegisterCkptArrivalCallback(
    SaCkptHandleT ckptHandle, ncsCkptCkptArrivalCallbackT ckptArrivalCallback);

#ifdef __cplusplus
}
#endif

#endif /* CKPT_OPENSAF_CPSV_PAPI_H */
