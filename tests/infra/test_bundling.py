"""A real Docker-free bundle (arm64, Python 3.12) through the stack's asset, as `cdk synth` builds it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra_synth import build

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    outdir = tmp_path_factory.mktemp("bundled")
    app, stack, _config = build({"architecture": "arm64", "pythonVersion": "3.12"}, outdir=outdir, bundling=True)
    assembly = app.synth()
    template = json.loads(Path(assembly.get_stack_artifact(stack.artifact_id).template_full_path).read_text())
    functions = [r for r in template["Resources"].values()
                 if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler", "").startswith("img2img.")]
    assert len(functions) == 3  # the worker, direct invoke and the HTTP API ship the same bundle (one asset)
    (asset_hash,) = {fn["Properties"]["Code"]["S3Key"].removesuffix(".zip") for fn in functions}
    asset_dir = outdir / f"asset.{asset_hash}"
    assert asset_dir.is_dir()
    return asset_dir


def test_contains_the_package_and_linux_arm64_wheels(bundle):
    assert (bundle / "img2img" / "settings.py").is_file()
    assert (bundle / "img2img" / "handlers").is_dir()
    assert (bundle / "PIL" / "_imaging.cpython-312-aarch64-linux-gnu.so").is_file()
    assert (bundle / "aws_lambda_powertools").is_dir()
    assert (bundle / "pydantic_core").is_dir()
    assert list(bundle.glob("pydantic_core/_pydantic_core.cpython-312-aarch64-linux-gnu.so"))
    assert not list(bundle.rglob("*x86_64*.so")) and not list(bundle.rglob("*darwin*.so"))


def test_contains_nothing_that_must_not_ship(bundle):
    names = {p.name for p in bundle.rglob("*")}
    assert "tests" not in names
    assert "img2img_local" not in names
    assert "__pycache__" not in names
    assert not list(bundle.rglob("*.pyc"))
    assert not (bundle / "requirements.txt").exists()
