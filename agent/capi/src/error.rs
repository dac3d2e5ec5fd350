//! The one table from [`ckpt_agent::Error`] to `SaAisErrorT`.

use ckpt_agent::{Error, Version};

use crate::types::SaAisErrorT;

/// The `SaAisErrorT` a client that asked for `version` sees for `error`.
///
/// The numbers are the agent's ([`Error::code`], which lists every variant against its
/// `SA_AIS_ERR_*` value); [`Error::for_version`] first replaces codes newer than the client's
/// version (`SA_AIS_ERR_UNAVAILABLE` is never shown to a B.01 client). Every export maps its
/// errors through here and nowhere else.
pub(crate) fn code(error: Error, version: Version) -> SaAisErrorT {
    SaAisErrorT(error.for_version(version).code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::*;

    const EVERY_ERROR: [(Error, SaAisErrorT); 18] = [
        (Error::Library("x"), SA_AIS_ERR_LIBRARY),
        (Error::Version, SA_AIS_ERR_VERSION),
        (Error::Init, SA_AIS_ERR_INIT),
        (Error::Timeout, SA_AIS_ERR_TIMEOUT),
        (Error::TryAgain, SA_AIS_ERR_TRY_AGAIN),
        (Error::InvalidParam("x"), SA_AIS_ERR_INVALID_PARAM),
        (Error::NoMemory, SA_AIS_ERR_NO_MEMORY),
        (Error::BadHandle, SA_AIS_ERR_BAD_HANDLE),
        (Error::Access, SA_AIS_ERR_ACCESS),
        (Error::NotExist, SA_AIS_ERR_NOT_EXIST),
        (Error::Exist, SA_AIS_ERR_EXIST),
        (Error::NoSpace, SA_AIS_ERR_NO_SPACE),
        (Error::NoResources, SA_AIS_ERR_NO_RESOURCES),
        (Error::BadOperation, SA_AIS_ERR_BAD_OPERATION),
        (Error::BadFlags, SA_AIS_ERR_BAD_FLAGS),
        (Error::NoSections, SA_AIS_ERR_NO_SECTIONS),
        (Error::Unavailable, SA_AIS_ERR_UNAVAILABLE),
        (Error::FailedOperation, SA_AIS_ERR_FAILED_OPERATION),
    ];

    #[test]
    fn every_agent_error_maps_to_the_sa_ais_code_of_the_same_name_for_b02_clients() {
        for (error, expected) in EVERY_ERROR {
            let sut = code(error, Version::B_02_02);
            assert_eq!(sut, expected, "{error:?}");
            assert_eq!(sut.name(), Some(error.name()));
        }
    }

    #[test]
    fn b01_clients_never_see_unavailable_but_try_again() {
        assert_eq!(
            code(Error::Unavailable, Version::B_01_01),
            SA_AIS_ERR_TRY_AGAIN
        );
        for (error, expected) in EVERY_ERROR {
            if error != Error::Unavailable {
                assert_eq!(code(error, Version::B_01_01), expected, "{error:?}");
            }
        }
    }
}
