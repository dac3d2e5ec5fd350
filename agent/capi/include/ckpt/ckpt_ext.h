/*
 * ckpt/ckpt_ext.h: extensions of this checkpoint service beyond
 * SAI-AIS-CKPT-B.02.02. Programs that use them are not portable to other
 * implementations.
 *
 * Include it with the directory holding saCkpt.h on the include path.
 * Builds as C99 or later and as C++.
 */

#ifndef CKPT_CKPT_EXT_H
#define CKPT_CKPT_EXT_H

#include "saCkpt.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Reads like saCkptCheckpointRead, with the same arguments, rules and error
 * codes, but always from the replica on this node and never from the active
 * replica elsewhere: the fast path for a hot standby. The data may therefore
 * lag behind the active replica by the updates that have not reached this
 * node yet. The checkpoint must be open for reading; if this node holds no
 * replica the call fails with SA_AIS_ERR_NOT_EXIST.
 */
extern SaAisErrorT ckptCheckpointReadLocal(SaCkptCheckpointHandleT checkpointHandle,
                                           SaCkptIOVectorElementT *ioVector,
                                           SaUint32T numberOfElements,
                                           SaUint32T *erroneousVectorIndex);

#ifdef __cplusplus
}
#endif

#endif /* CKPT_CKPT_EXT_H */
