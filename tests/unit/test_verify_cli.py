"""`img2img verify`: what a person sees for a signed output, a tampered one, an unsigned one."""
from __future__ import annotations

import json

import imagegen as g
import pytest

from img2img.core import c2pa_manifest as cm
from img2img.core import xmp
from img2img.operations import EDITED
from img2img_local import cli, signing


@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> bytes:
    identity = signing.load_or_create(tmp_path_factory.mktemp("keys"))
    data = xmp.mark(g.encode(g.textured((128, 96)), "JPEG"), "jpeg", xmp.Marking(EDITED, "us.model", "job-42"))
    manifest = cm.build_manifest(source_type=EDITED, model_id="us.model", job_id="job-42",
                                 input_sha256=cm.sha256(b"photo"), input_format="image/jpeg")
    return cm.sign(data, "jpeg", manifest, cm.SigningKey(identity.callback(), identity.chain_pem)).data


def test_a_signed_output_prints_its_marking_and_manifest(signed, tmp_path, capsys):
    path = tmp_path / "out.jpg"
    path.write_bytes(signed)
    assert cli.main(["verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert "compositeWithTrainedAlgorithmicMedia" in out and "job-42" in out
    assert "C2PA  Valid" in out and "c2pa.edited" in out and "by us.model" in out
    assert cm.sha256(b"photo") in out and "signingCredential.untrusted" in out


def test_a_tampered_output_exits_non_zero(signed, tmp_path, capsys):
    path = tmp_path / "out.jpg"
    at = signed.index(b"\xff\xda") + 40
    path.write_bytes(signed[:at] + bytes([signed[at] ^ 0xFF]) + signed[at + 1:])
    assert cli.main(["verify", "--json", str(path)]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["c2pa"]["present"] and report["c2pa"]["state"] == "Invalid" and not report["ok"]
    assert report["xmp"]["job_id"] == "job-42"


def test_an_unsigned_output_shows_its_marking_and_no_manifest(tmp_path, capsys):
    path = tmp_path / "plain.png"
    path.write_bytes(xmp.mark(g.encode(g.solid(), "PNG"), "png", xmp.Marking(EDITED, "m", "j")))
    missing = tmp_path / "missing.png"
    assert cli.main(["verify", str(path)]) == 0
    assert "C2PA  no manifest" in capsys.readouterr().out
    assert cli.main(["verify", str(path), str(missing)]) == 1
