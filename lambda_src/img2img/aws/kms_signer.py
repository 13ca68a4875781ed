"""KMS as the C2PA signing callback: the private key never leaves KMS.

`Sign` with MessageType RAW and ECDSA_SHA_256 hashes and signs the bytes c2pa hands us (the COSE
Sig_structure, far below KMS's 4 KB RAW limit) and answers DER, which becomes the raw r||s ES256 wants.
Errors are classified as aws/s3.py does: AccessDenied is permanent `access_denied`; a disabled, missing
or wrong-kind key is `signing_unavailable`; throttling, 5xx and network faults are the transient
`signing_error`; any other answer is a request we should not make (`internal_error`).
"""
from __future__ import annotations

from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from ..core.c2pa_manifest import der_to_raw
from ..core.errors import JobError, transient
from .clients import NETWORK_FAULTS, client

SIGNING_ALGORITHM = "ECDSA_SHA_256"
DENIED = frozenset({"AccessDeniedException"})
UNAVAILABLE = frozenset({"DisabledException", "NotFoundException", "KMSInvalidStateException",
                         "InvalidKeyUsageException", "InvalidGrantTokenException"})
TRANSIENT = frozenset({"ThrottlingException", "KMSInternalException", "KeyUnavailableException",
                       "DependencyTimeoutException", "LimitExceededException", "ServiceUnavailable",
                       "RequestTimeout", "InternalFailure"})


def _fail(exc: Exception, key_id: str) -> JobError:
    where = f"KMS Sign with {key_id[:200]}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in DENIED:
            return JobError("access_denied", f"{where} was refused ({code}); the worker role needs kms:Sign on "
                            "this key")
        if code in UNAVAILABLE:
            return JobError("signing_unavailable", f"{where} cannot sign ({code}: "
                            f"{str(error.get('Message', ''))[:200]})", details={"kms_error": code})
        if code in TRANSIENT or status >= 500:
            return transient("signing_error", f"{where} failed: {code or status}")
        return JobError("internal_error", f"{where} was rejected ({code or status}: "
                        f"{str(error.get('Message', ''))[:200]}): a request this pipeline should not make",
                        details={"kms_error": code})
    if isinstance(exc, NETWORK_FAULTS):
        return transient("signing_error", f"{where} failed: {exc}")
    return JobError("internal_error", f"{where} could not be sent: {type(exc).__name__}: {exc}"[:500],
                    details={"exception": type(exc).__name__})


def kms_callback(key_id: str, kms=None) -> Callable[[bytes], bytes]:
    """bytes -> raw r||s, signed by the asymmetric ECC_NIST_P256 KMS key `key_id` (id, ARN or alias).
    `kms` is a boto3 KMS client (tests pass a stubbed one); by default the shared client."""

    def sign(data: bytes) -> bytes:
        kms_client = kms or client("kms", read_timeout=10)
        try:
            answer = kms_client.sign(KeyId=key_id, Message=data, MessageType="RAW",
                                     SigningAlgorithm=SIGNING_ALGORITHM)
        except (ClientError, BotoCoreError) as exc:
            raise _fail(exc, key_id) from None
        try:
            return der_to_raw(answer["Signature"])
        except (KeyError, ValueError) as exc:
            raise JobError("internal_error", f"KMS Sign with {key_id[:200]} answered no ECDSA signature: {exc}",
                           details={"exception": type(exc).__name__}) from None

    return sign
