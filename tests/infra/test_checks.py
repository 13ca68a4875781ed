"""cfn-lint (and checkov, where installed) on the synthesized template: clean, every acknowledgement with a
reason, in infra/checks.py. `make lint` runs the same tools through infra/lint.py."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Template

from infra import checks
from infra.lint import cfn_lint, checkov
from infra_synth import ROOT, build

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    outdir = tmp_path_factory.mktemp("checks")
    _, stack, _ = build(outdir=outdir)
    checks.acknowledge(stack)
    path = outdir / "stack.template.json"
    path.write_text(json.dumps(Template.from_stack(stack).to_json()))
    return path


def test_cfn_lint_is_clean(template):
    done = subprocess.run(cfn_lint(template), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


def test_cfn_lint_still_bites(template, tmp_path):
    broken = json.loads(template.read_text())
    broken["Resources"]["Stray"] = {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": "soon"}}
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    done = subprocess.run(cfn_lint(path), capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "E3012 'soon' is not of type 'integer'" in done.stdout


def test_every_acknowledgement_has_a_reason(template):
    body = json.loads(template.read_text())
    assert body["Metadata"]["cfn-lint"]["config"]["ignore_checks"] == sorted(checks.CFN_LINT)
    skips = [(name, s) for name, r in body["Resources"].items()
             for s in r.get("Metadata", {}).get("checkov", {}).get("skip", [])]
    assert skips
    for name, skip in skips:
        assert skip["id"].startswith("CKV_AWS_") and len(skip["comment"]) > 40, name
    # reserved concurrency fixed CKV_AWS_115 for the API and direct functions: no acknowledgement there
    limited = {name for name, s in skips if s["id"] == "CKV_AWS_115"}
    assert any(n.startswith("WorkerFunction") for n in limited)
    assert not any(n.startswith(("ApiFunction", "WorkerDirectFunction")) for n in limited)


CHECKOV = os.environ.get("CHECKOV") or shutil.which("checkov") or str(ROOT / ".venv" / "checkov" / "bin" / "checkov")


@pytest.mark.skipif(not Path(CHECKOV).is_file(), reason="checkov is installed by `make lint` in its own venv")
def test_checkov_is_clean(template):
    done = subprocess.run(checkov(template, CHECKOV), capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Failed checks: 0" in done.stdout


def test_lint_module_runs_the_real_app():
    """infra/lint.py synthesizes app.py (cdk.json's context, nag and these acknowledgements), cfn-lint only."""
    done = subprocess.run([sys.executable, "-m", "infra.lint", "--checkov", ""], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=300,
                          env={**os.environ, "PYTHONPATH": f"{ROOT / 'lambda_src'}{os.pathsep}{ROOT}"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lint: cfn-lint clean" in done.stdout
