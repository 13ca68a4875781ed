"""Every output says what it is: the IPTC marking in its XMP always, and a C2PA manifest signed through
KMS (moto's, with a chain from SSM or Secrets Manager) where the deployment has a key. Read back as a
client would: a plain XMP parse and the c2pa Reader, for every output format, a generation and an edit."""
from __future__ import annotations

import io
import json

import boto3
import pytest
from aws_world import OUTPUT, SD35, s3_body, sd35_ok
from PIL import Image

from img2img.aws.signing_keys import KmsSigningKeys
from img2img.core import c2pa_manifest, xmp
from img2img.core.errors import JobError
from img2img.operations import EDITED, GENERATED
from img2img_local.signing import certify_kms_key

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"


def picture(size=(96, 64), mode="RGB", fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, (30, 90, 150) if mode == "RGB" else (30, 90, 150, 255)).save(buffer, fmt)
    return buffer.getvalue()


def answer(fmt: str, mode: str = "RGB") -> dict:
    return sd35_ok(seed=5, image=picture(fmt={"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}[fmt], mode=mode))


@pytest.fixture
def signing(world):
    """A KMS signing key (moto) certified by a throwaway CA, its chain in an SSM parameter."""
    kms = boto3.client("kms", region_name="us-east-1")
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/img2img/c2pa-chain", Value=certify_kms_key(kms, key_id), Type="String", Tier="Advanced")
    world.pipeline.signing = KmsSigningKeys(key_id, "/img2img/c2pa-chain")
    return key_id


def stored(world, record: dict) -> bytes:
    out = record["outputs"][0]
    return world.s3.get_object(Bucket=out["bucket"], Key=out["key"])["Body"].read()


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_without_a_key_every_output_is_marked_in_its_xmp(world, fmt):
    world.put("plain/cat.png", picture(), {"prompt": "a cat", "output-format": fmt})
    world.stub.add_response("invoke_model", answer(fmt))
    world.run(s3_body("plain/cat.png"))
    record = world.record("plain/cat.png")
    data = stored(world, record)
    marking = xmp.read_xmp(data)
    assert marking["digital_source_type"] == IPTC + GENERATED and marking["model_id"] == SD35
    assert marking["job_id"] == record["job_id"]
    assert record["provenance"] == {"xmp": {"digital_source_type": IPTC + GENERATED}}
    assert record["outputs"][0]["bytes"] == len(data)
    assert not c2pa_manifest.verify(data, f"image/{fmt}").present


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
@pytest.mark.parametrize("job, source_type", [
    ({"prompt": "a cat"}, GENERATED),                                             # image-to-image
    ({"operation": "upscale-fast"}, EDITED),                                      # an edit of the photo
])
def test_with_a_kms_key_every_output_carries_a_valid_manifest(world, signing, fmt, job, source_type):
    upload = picture()
    world.put("signed/cat.png", upload, {**job, "output-format": fmt})
    world.stub.add_response("invoke_model", answer(fmt))
    world.run(s3_body("signed/cat.png"))
    record = world.record("signed/cat.png")
    assert record["status"] == "succeeded", record.get("error")
    data = stored(world, record)
    check = c2pa_manifest.verify(data, f"image/{fmt}")
    assert check.valid and check.state == "Valid", (check.failures, check.error)
    facts = c2pa_manifest.summary(check.manifest)
    model_id = record["model_id"]
    expected_action = "c2pa.created" if source_type == GENERATED else "c2pa.edited"
    assert [a["action"] for a in facts["actions"]][-1] == expected_action
    assert all(a["digitalSourceType"] == IPTC + source_type and a["softwareAgent"] == model_id
               for a in facts["actions"] if a["action"] != "c2pa.opened")
    assert facts["ingredients"][0]["sha256"] == c2pa_manifest.sha256(upload)  # the input, by its hash only
    assert facts["job_id"] == record["job_id"]
    c2pa = record["provenance"]["c2pa"]
    assert c2pa["digest"] == c2pa_manifest.sha256(data) and c2pa["manifest_label"] == facts["label"]
    assert "NOT TRUSTED" in c2pa["signer"]
    assert xmp.read_xmp(data)["digital_source_type"] == IPTC + source_type  # the marking is still there


def test_a_tampered_output_fails_verification(world, signing):
    world.put("tamper/cat.png", picture(), {"prompt": "a cat", "output-format": "png"})
    world.stub.add_response("invoke_model", answer("png"))
    world.run(s3_body("tamper/cat.png"))
    data = bytearray(stored(world, world.record("tamper/cat.png")))
    data[-20] ^= 0xFF  # inside IDAT/IEND: a pixel or checksum byte, not the manifest
    assert not c2pa_manifest.verify(bytes(data), "image/png").valid


def test_the_chain_may_live_in_secrets_manager(world):
    kms = boto3.client("kms", region_name="us-east-1")
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="c2pa-chain", SecretString=certify_kms_key(kms, key_id))["ARN"]
    key = KmsSigningKeys(key_id, secret).key()
    assert "NOT TRUSTED" in key.subject


def test_a_missing_chain_is_one_failure_record_and_no_unsigned_output(world):
    kms = boto3.client("kms", region_name="us-east-1")
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    world.pipeline.signing = KmsSigningKeys(key_id, "/img2img/absent")
    world.put("nochain/cat.png", picture(), {"prompt": "a cat"})
    world.stub.add_response("invoke_model", answer("png"))
    world.run(s3_body("nochain/cat.png"))
    record = world.record("nochain/cat.png")
    assert record["status"] == "failed" and record["error"]["code"] == "signing_unavailable"
    assert "/img2img/absent" in record["error"]["message"]
    assert world.output_keys() == ["nochain/cat.png.json"]  # nothing unsigned was stored


def test_a_chain_that_does_not_certify_the_key_is_signing_unavailable(world):
    kms = boto3.client("kms", region_name="us-east-1")
    key_id, other = (kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
                     for _ in range(2))
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/img2img/wrong", Value=certify_kms_key(kms, other), Type="String", Tier="Advanced")
    world.pipeline.signing = KmsSigningKeys(key_id, "/img2img/wrong")
    world.put("wrong/cat.png", picture(), {"prompt": "a cat"})
    world.stub.add_response("invoke_model", answer("png"))
    world.run(s3_body("wrong/cat.png"))
    record = world.record("wrong/cat.png")
    assert record["status"] == "failed" and record["error"]["code"] == "signing_unavailable"


def test_a_kms_throttle_retries_from_the_checkpoint_without_paying_again(world, signing, monkeypatch):
    from img2img.aws import kms_signer

    world.put("throttle/cat.png", picture(), {"prompt": "a cat"})
    world.stub.add_response("invoke_model", answer("png"))  # one model answer only
    real = kms_signer.kms_callback
    monkeypatch.setattr("img2img.aws.signing_keys.kms_callback", _throttled)
    result = world.run(s3_body("throttle/cat.png"))
    assert result["batchItemFailures"]  # transient: the message comes back
    monkeypatch.setattr("img2img.aws.signing_keys.kms_callback", real)
    world.pipeline.signing = KmsSigningKeys(signing, "/img2img/c2pa-chain")
    world.run(s3_body("throttle/cat.png"), receive_count=2)
    world.stub.assert_no_pending_responses()
    record = world.record("throttle/cat.png")
    assert record["status"] == "succeeded" and "c2pa" in record["provenance"]
    assert c2pa_manifest.verify(stored(world, record), "image/png").valid
    assert not [k for k in world.output_keys() if "_staging" in k]


def _throttled(key_id: str):
    def sign(_data: bytes) -> bytes:
        raise JobError("signing_error", "KMS Sign failed: ThrottlingException", retryable=True)
    return sign


def test_records_name_what_was_embedded(world, signing):
    world.put("record/cat.png", picture(), {"prompt": "a cat"})
    world.stub.add_response("invoke_model", answer("png"))
    world.run(s3_body("record/cat.png"))
    body = json.loads(world.s3.get_object(Bucket=OUTPUT, Key="record/cat.png.json")["Body"].read())
    assert set(body["provenance"]) == {"xmp", "c2pa"}
    assert set(body["provenance"]["c2pa"]) == {"manifest_label", "digest", "signer"}
