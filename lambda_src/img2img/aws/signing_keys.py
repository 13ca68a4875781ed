"""The C2PA signing key of this deployment: a KMS key (aws/kms_signer.py) and its certificate chain.

The chain (PEM, leaf first) lives in an SSM parameter or a Secrets Manager secret
(IMG2IMG_C2PA_CERTIFICATE_CHAIN: a parameter name or ARN, or a secret ARN). It is read on the first job
that signs and kept for the process's life: a rotated certificate reaches new sandboxes, and a sandbox
that cannot read it fails the job with a stable code rather than storing an unsigned output.
"""
from __future__ import annotations

import threading

from botocore.exceptions import BotoCoreError, ClientError

from ..core.c2pa_manifest import SigningKey
from ..core.errors import JobError, transient
from .clients import NETWORK_FAULTS, client
from .kms_signer import kms_callback

MISSING = frozenset({"ParameterNotFound", "ParameterVersionNotFound", "ResourceNotFoundException"})
DENIED = frozenset({"AccessDeniedException", "AccessDenied"})
TRANSIENT = frozenset({"ThrottlingException", "InternalServerError", "InternalServiceError",
                       "InternalServiceErrorException", "ServiceUnavailable"})


def _is_secret(reference: str) -> bool:
    return reference.startswith("arn:") and ":secretsmanager:" in reference


def read_chain(reference: str, ssm=None, secrets=None) -> str:
    """The PEM text behind an SSM parameter (name or ARN) or a Secrets Manager secret ARN."""
    try:
        if _is_secret(reference):
            return (secrets or client("secretsmanager", read_timeout=10)).get_secret_value(
                SecretId=reference)["SecretString"]
        return (ssm or client("ssm", read_timeout=10)).get_parameter(
            Name=reference, WithDecryption=True)["Parameter"]["Value"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        where = f"the C2PA certificate chain {reference[:200]}"
        if code in DENIED:
            raise JobError("access_denied", f"reading {where} was refused ({code})") from None
        if code in MISSING:
            raise JobError("signing_unavailable", f"{where} does not exist ({code})") from None
        if code in TRANSIENT or status >= 500:
            raise transient("signing_error", f"reading {where} failed: {code or status}") from None
        raise JobError("signing_unavailable", f"reading {where} failed ({code}: "
                       f"{str(exc.response.get('Error', {}).get('Message', ''))[:200]})") from None
    except NETWORK_FAULTS as exc:
        raise transient("signing_error", f"reading the C2PA certificate chain failed: {exc}") from None
    except BotoCoreError as exc:
        raise JobError("internal_error", f"reading the C2PA certificate chain: {type(exc).__name__}: {exc}"[:500])\
            from None


class KmsSigningKeys:
    """SigningKeys (core/ports.py) for a KMS key and its chain; the chain is fetched once."""

    def __init__(self, key_id: str, chain_reference: str, timestamp_url: str = "") -> None:
        self.key_id, self.chain_reference, self.timestamp_url = key_id, chain_reference, timestamp_url
        self._key: SigningKey | None = None
        self._lock = threading.Lock()

    def key(self) -> SigningKey:
        with self._lock:
            if self._key is None:
                self._key = SigningKey(kms_callback(self.key_id), read_chain(self.chain_reference),
                                       self.timestamp_url or None)
            return self._key
