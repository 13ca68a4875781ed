"""A real Docker-free bundle (arm64, Python 3.12) through the stack's asset, as `cdk synth` builds it."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from infra.bundling import PYTHON_ENV, BundlingError, LocalPipBundler, find_interpreter
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
    assert {fn["Properties"]["Handler"].split(".")[2] for fn in functions} == {  # one bundle (one asset) for all
        "sqs_worker", "direct", "api", "lifecycle_check", "bulk_enqueue", "bulk_events"}
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
    assert list(bundle.glob("c2pa/**/libc2pa_c.so"))  # C2PA signing's native library (docs/provenance.md)
    assert (bundle / "cryptography").is_dir()
    assert not list(bundle.rglob("*x86_64*.so")) and not list(bundle.rglob("*darwin*.so"))


def test_contains_nothing_that_must_not_ship(bundle):
    names = {p.name for p in bundle.rglob("*")}
    assert "tests" not in names
    assert "img2img_local" not in names
    assert not (bundle / "requirements.txt").exists()
    # bytecode only of the runtime's version (no host-version leftovers from a wheel or the source tree)
    assert {p.name.split(".")[-2] for p in bundle.rglob("*.pyc")} == {"cpython-312"}


PY312 = find_interpreter("3.12")


@pytest.mark.skipif(PY312 is None, reason="no Python 3.12 interpreter here: the bundle ships without bytecode")
def test_ships_bytecode_the_runtime_loads_without_recompiling(bundle):
    """Lambda's /var/task is read-only: a module without a valid .pyc is compiled on every cold start."""
    sources = [p for p in bundle.rglob("*.py")]
    assert len(sources) > 500  # botocore, boto3, powertools, pydantic, PIL, img2img
    missing = [p for p in sources if not (p.parent / "__pycache__" / f"{p.stem}.cpython-312.pyc").is_file()]
    assert missing == []
    pyc = bundle / "img2img" / "__pycache__" / "settings.cpython-312.pyc"
    read = ("import importlib.util, marshal, sys; data = open(sys.argv[1], 'rb').read(); "
            "print(data[:4] == importlib.util.MAGIC_NUMBER, int.from_bytes(data[4:8], 'little'), "
            "marshal.loads(data[16:]).co_filename)")
    answer = subprocess.run([PY312, "-c", read, str(pyc)], capture_output=True, text=True, check=True).stdout.split()
    # the 3.12 runtime's magic number; hash-based and unchecked (flags 0b01): mtimes never matter;
    # tracebacks name the Lambda's paths
    assert answer == ["True", "1", "/var/task/img2img/settings.py"]


def test_without_the_package_index_synth_says_what_to_do(tmp_path, monkeypatch):
    """Offline, pip's own error and the remedies, not a Docker error."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty-wheelhouse"))
    with pytest.raises(BundlingError) as caught:
        LocalPipBundler(architecture="arm64", python_version="3.12").bundle(tmp_path / "out")
    message = str(caught.value)
    assert "No matching distribution found for" in message  # pip's words
    assert "make wheels" in message and "PIP_FIND_LINKS=" in message and "PIP_INDEX_URL" in message


def test_an_interpreter_of_another_version_is_refused(monkeypatch):
    import sys

    monkeypatch.setenv(PYTHON_ENV, sys.executable)
    other = "3.13" if sys.version_info[:2] != (3, 13) else "3.12"
    with pytest.raises(BundlingError, match=f"not a Python {other} interpreter"):
        find_interpreter(other)


def test_offline_synth_ends_in_one_message_not_a_docker_error(tmp_path):
    """What `npx cdk synth` prints without the package index: pip's error and what to do, no traceback."""
    import os
    import sys

    from infra_synth import ROOT

    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "empty-wheelhouse"),
           "CDK_OUTDIR": str(tmp_path / "out"), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
           "PYTHONPATH": f"{ROOT / 'lambda_src'}{os.pathsep}{ROOT}"}
    env.pop(PYTHON_ENV, None)
    done = subprocess.run([sys.executable, str(ROOT / "app.py")], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "spawnSync docker" not in done.stderr and "ENOENT" not in done.stderr  # CDK's Docker fallback error
    assert "bedrock-img2img: bundling failed: pip could not install the function's wheels" in done.stderr
    assert "No matching distribution found" in done.stderr and "make wheels" in done.stderr
