"""The KMS signing callback: the request c2pa's bytes become, the DER answer as the raw r||s that
verifies against the key's public key, and each KMS error as the JobError its cause says."""
from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from img2img.aws.kms_signer import kms_callback
from img2img.core.errors import JobError

KEY_ID = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PAYLOAD = b"the COSE Sig_structure c2pa asks us to sign \x00\x01\x02"


@pytest.fixture
def kms():
    client = boto3.client("kms", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    with Stubber(client) as stubber:
        yield client, stubber


def _raw_verifies(public_key, raw: bytes, data: bytes) -> bool:
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


@pytest.mark.parametrize("attempt", range(8))  # DER lengths vary with r and s (70-72 bytes): cover a few
def test_kms_signs_raw_message_and_answers_raw_r_s_that_verifies(kms, attempt):
    client, stubber = kms
    private_key = ec.generate_private_key(ec.SECP256R1())
    der = private_key.sign(PAYLOAD, ec.ECDSA(hashes.SHA256()))
    stubber.add_response("sign", {"KeyId": KEY_ID, "Signature": der, "SigningAlgorithm": "ECDSA_SHA_256"},
                         {"KeyId": KEY_ID, "Message": PAYLOAD, "MessageType": "RAW",
                          "SigningAlgorithm": "ECDSA_SHA_256"})
    raw = kms_callback(KEY_ID, client)(PAYLOAD)
    assert len(raw) == 64
    assert _raw_verifies(private_key.public_key(), raw, PAYLOAD)
    assert not _raw_verifies(private_key.public_key(), raw, PAYLOAD + b"!")
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize("code, status, outcome, retryable", [
    ("AccessDeniedException", 400, "access_denied", False),
    ("DisabledException", 400, "signing_unavailable", False),
    ("NotFoundException", 400, "signing_unavailable", False),
    ("KMSInvalidStateException", 400, "signing_unavailable", False),
    ("InvalidKeyUsageException", 400, "signing_unavailable", False),
    ("ThrottlingException", 400, "signing_error", True),
    ("KMSInternalException", 500, "signing_error", True),
    ("KeyUnavailableException", 500, "signing_error", True),
    ("DependencyTimeoutException", 503, "signing_error", True),
    ("SomethingNew", 502, "signing_error", True),
    ("ValidationException", 400, "internal_error", False),
])
def test_kms_errors_are_classified(kms, code, status, outcome, retryable):
    client, stubber = kms
    stubber.add_client_error("sign", service_error_code=code, service_message="no", http_status_code=status)
    with pytest.raises(JobError) as caught:
        kms_callback(KEY_ID, client)(PAYLOAD)
    assert (caught.value.code, caught.value.retryable) == (outcome, retryable)
    assert KEY_ID in caught.value.message


class _Unreachable:
    def __init__(self, exc: Exception):
        self.exc = exc

    def sign(self, **_):
        raise self.exc


@pytest.mark.parametrize("exc", [EndpointConnectionError(endpoint_url="https://kms.us-east-1.amazonaws.com"),
                                 ReadTimeoutError(endpoint_url="https://kms.us-east-1.amazonaws.com")])
def test_network_faults_are_transient(exc):
    with pytest.raises(JobError) as caught:
        kms_callback(KEY_ID, _Unreachable(exc))(PAYLOAD)
    assert (caught.value.code, caught.value.retryable) == ("signing_error", True)


def test_an_answer_without_a_der_signature_is_internal_error(kms):
    client, stubber = kms
    stubber.add_response("sign", {"KeyId": KEY_ID, "Signature": b"\x01\x02", "SigningAlgorithm": "ECDSA_SHA_256"})
    with pytest.raises(JobError) as caught:
        kms_callback(KEY_ID, client)(PAYLOAD)
    assert caught.value.code == "internal_error"


def test_a_manifest_signed_through_kms_validates(kms, tmp_path):
    """The whole path: c2pa -> callback -> (stubbed) KMS -> raw r||s, with a certificate for KMS's key."""
    import imagegen as g

    from img2img.core import c2pa_manifest as cm
    from img2img.operations import GENERATED
    from img2img_local import signing

    identity = signing.make_identity()  # stands in for the key inside KMS and its certificate

    class SigningKms:  # answers like KMS, for whatever c2pa asks to sign
        def sign(self, KeyId, Message, MessageType, SigningAlgorithm):
            assert (KeyId, MessageType, SigningAlgorithm) == (KEY_ID, "RAW", "ECDSA_SHA_256")
            return {"Signature": identity.private_key.sign(Message, ec.ECDSA(hashes.SHA256()))}

    key = cm.SigningKey(kms_callback(KEY_ID, SigningKms()), identity.chain_pem)
    manifest = cm.build_manifest(source_type=GENERATED, model_id="m", job_id="j", input_sha256=cm.sha256(b"in"))
    signed = cm.sign(g.encode(g.solid(), "PNG"), "png", manifest, key)
    assert cm.verify(signed.data).valid
