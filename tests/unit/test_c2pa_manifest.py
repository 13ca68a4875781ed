"""C2PA Content Credentials: an output signed with the local (untrusted) identity validates with the
c2pa Reader and says what made it, for every output format, for a generation and for an edit; a
changed byte fails; a signing key that cannot sign fails the way its cause says."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import imagegen as g
import pytest

from img2img.core import c2pa_manifest as cm
from img2img.core import xmp
from img2img.core.errors import JobError, transient
from img2img.core.formats import CONTENT_TYPES
from img2img.operations import BY_NAME, EDITED, GENERATED
from img2img_local import signing

REPO = Path(__file__).resolve().parents[2]
MODEL = {GENERATED: "us.stability.sd3-5-large-v1:0", EDITED: BY_NAME["inpaint"].default_model_id}
INPUT = g.encode(g.textured((320, 240), seed=3), "JPEG")
UNTRUSTED = "signingCredential.untrusted: signing certificate untrusted"


@pytest.fixture(scope="module")
def identity(tmp_path_factory) -> signing.LocalIdentity:
    return signing.load_or_create(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def key(identity) -> cm.SigningKey:
    return cm.SigningKey(identity.callback(), identity.chain_pem)


def output(fmt: str) -> bytes:
    image = g.textured((256, 192), seed=1)
    if fmt != "jpeg":
        image.putalpha(200)
    return g.encode(image, fmt.upper(), **({"quality": 85} if fmt != "png" else {}))


def signed_output(fmt: str, source_type: str, key: cm.SigningKey, job_id: str = "job-7<&>") -> tuple[bytes, cm.Signed]:
    data = output(fmt)
    marked = xmp.mark(data, fmt, xmp.Marking(source_type, MODEL[source_type], job_id))
    manifest = cm.build_manifest(source_type=source_type, model_id=MODEL[source_type], job_id=job_id,
                                 input_sha256=cm.sha256(INPUT), input_format="image/jpeg")
    return data, cm.sign(marked, fmt, manifest, key)


@pytest.mark.parametrize("fmt", sorted(CONTENT_TYPES))
@pytest.mark.parametrize("source_type", [GENERATED, EDITED])
def test_a_signed_output_validates_and_says_what_made_it(fmt, source_type, key):
    import c2pa

    data, signed = signed_output(fmt, source_type, key)
    with c2pa.Reader(CONTENT_TYPES[fmt], io.BytesIO(signed.data)) as reader:
        assert reader.get_validation_state() == "Valid"
        manifest = reader.get_active_manifest()
    check = cm.verify(signed.data)
    assert check.valid and check.failures == (UNTRUSTED,)
    facts = cm.summary(manifest)
    kind = "c2pa.created" if source_type == GENERATED else "c2pa.edited"
    main = next(a for a in facts["actions"] if a["action"] == kind)
    assert main["digitalSourceType"] == f"http://cv.iptc.org/newscodes/digitalsourcetype/{source_type}"
    assert main["softwareAgent"] == MODEL[source_type]
    assert [a["action"] for a in facts["actions"]] == (["c2pa.created"] if source_type == GENERATED
                                                      else ["c2pa.opened", "c2pa.edited"])
    assert facts["ingredients"] == [{"relationship": "inputTo" if source_type == GENERATED else "parentOf",
                                     "format": "image/jpeg", "sha256": cm.sha256(INPUT)}]
    assert facts["job_id"] == "job-7<&>"
    assert facts["claim_generator"][0]["name"] == "bedrock-img2img"
    # The record's facts, and the XMP marking and the pixels survive signing.
    assert signed.manifest_label == manifest["label"] == facts["label"]
    assert signed.digest == cm.sha256(signed.data)
    assert "CN=bedrock-img2img local signer (NOT TRUSTED)" in signed.signer
    assert xmp.read_xmp(signed.data)["job_id"] == "job-7<&>"
    assert g.decode(signed.data).tobytes() == g.decode(data).tobytes()


def test_no_pixel_of_the_input_is_embedded(key):
    _, signed = signed_output("png", EDITED, key)
    assert len(signed.data) - len(output("png")) < 20_000  # no thumbnail of input or output
    assert INPUT[200:264] not in signed.data


def _pixel_offset(fmt: str, data: bytes) -> int:
    marker = {"png": b"IDAT", "jpeg": b"\xff\xda", "webp": b"VP8"}[fmt]
    return data.index(marker) + 40


@pytest.mark.parametrize("fmt", sorted(CONTENT_TYPES))
@pytest.mark.parametrize("source_type", [GENERATED, EDITED])
def test_a_flipped_byte_fails_verification(fmt, source_type, key):
    _, signed = signed_output(fmt, source_type, key)
    at = _pixel_offset(fmt, signed.data)
    tampered = signed.data[:at] + bytes([signed.data[at] ^ 0x01]) + signed.data[at + 1:]
    check = cm.verify(tampered)
    assert check.present and not check.valid
    assert check.error or any(not f.startswith("signingCredential.untrusted") for f in check.failures)


@pytest.mark.parametrize("fmt", sorted(CONTENT_TYPES))
def test_a_changed_marking_fails_verification(fmt, key):
    _, signed = signed_output(fmt, GENERATED, key, job_id="job-1")
    tampered = signed.data.replace(b'JobId="job-1"', b'JobId="job-2"')
    assert tampered != signed.data
    assert not cm.verify(tampered).valid


def test_an_unsigned_file_has_no_manifest():
    check = cm.verify(output("webp"))
    assert check.state is None and not check.present


def test_a_callbacks_transient_error_is_raised_as_itself(identity):
    def throttled(_: bytes) -> bytes:
        raise transient("signing_error", "KMS Sign failed: ThrottlingException")

    key = cm.SigningKey(throttled, identity.chain_pem)
    manifest = cm.build_manifest(source_type=GENERATED, model_id="m", job_id="j", input_sha256=None)
    with pytest.raises(JobError) as caught:
        cm.sign(output("png"), "png", manifest, key)
    assert caught.value.code == "signing_error" and caught.value.retryable


def test_a_chain_for_another_key_is_signing_unavailable(identity):
    other = signing.make_identity()
    key = cm.SigningKey(other.callback(), identity.chain_pem)
    manifest = cm.build_manifest(source_type=EDITED, model_id="m", job_id="j", input_sha256=cm.sha256(INPUT))
    with pytest.raises(JobError) as caught:
        cm.sign(output("jpeg"), "jpeg", manifest, key)
    assert caught.value.code == "signing_unavailable" and not caught.value.retryable


def test_a_chain_that_is_not_pem_is_signing_unavailable(identity):
    with pytest.raises(JobError) as caught:
        cm.SigningKey(identity.callback(), "not a certificate")
    assert caught.value.code == "signing_unavailable"


def test_der_to_raw_gives_r_and_s_as_32_bytes_each():
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    raw = cm.der_to_raw(encode_dss_signature(1, 2**255 + 7))
    assert raw == (1).to_bytes(32, "big") + (2**255 + 7).to_bytes(32, "big")


def test_importing_the_modules_loads_neither_c2pa_nor_cryptography():
    code = ("import sys, img2img.core.c2pa_manifest, img2img.core.xmp, img2img.aws.kms_signer; "
            "print(sorted(m for m in ('c2pa', 'cryptography') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True,
                          env={"PYTHONPATH": f"{REPO / 'lambda_src'}:{REPO}", "PATH": "/usr/bin:/bin"})
    assert done.stdout.strip() == "[]"


# ---- the local identity ---------------------------------------------------------------------------
def test_the_local_identity_is_cached_and_private(tmp_path):
    first = signing.load_or_create(tmp_path)
    again = signing.load_or_create(tmp_path)
    assert again.chain_pem == first.chain_pem
    assert (tmp_path / "signer-key.pem").stat().st_mode & 0o077 == 0


def test_an_expiring_local_identity_is_replaced(tmp_path):
    import datetime as dt

    old = signing.load_or_create(tmp_path, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=signing.VALID_DAYS))
    assert signing.load_or_create(tmp_path).chain_pem != old.chain_pem


def test_the_local_chain_has_the_shape_c2pa_accepts(identity):
    from cryptography import x509

    leaf, ca = x509.load_pem_x509_certificates(identity.chain_pem.encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == \
        ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert "NOT TRUSTED" in leaf.subject.rfc4514_string() and "NOT TRUSTED" in ca.subject.rfc4514_string()
