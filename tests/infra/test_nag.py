"""cdk-nag (AwsSolutions) finds nothing unacknowledged, in every configuration; and it does bite."""
from __future__ import annotations

import json

import pytest
from aws_cdk import aws_iam as iam

from infra_synth import API_KEY_EVENTBRIDGE, CUSTOM, SECURE, build

pytestmark = pytest.mark.infra


def report(outdir) -> dict:
    return json.loads((outdir / "validation-report.json").read_text())


@pytest.mark.parametrize("overrides", [{}, CUSTOM, SECURE, {"alarmEmail": "ops@example.com"}, API_KEY_EVENTBRIDGE,
                                       {"c2paCertificateChain": "/img2img/c2pa-chain"}],
                         ids=["default", "custom", "secure", "email-without-kms", "api-key-cors-eventbridge",
                              "c2pa-signing"])
def test_no_unacknowledged_findings(overrides, tmp_path):
    app, _, _ = build(overrides, outdir=tmp_path, with_nag=True)
    app.synth()  # raises ValidationFailed on any unacknowledged finding
    plugins = report(tmp_path)["pluginReports"]
    nag = [p for p in plugins if p["pluginName"] == "AwsSolutions"]
    assert len(nag) == 1, "the AwsSolutions pack did not run"
    assert nag[0]["violations"] == []
    for p in plugins:
        assert [v for v in p["violations"] if v.get("severity") in ("error", "fatal")] == [], p["pluginName"]
    for suppressed in nag[0].get("suppressedViolations", []):
        assert len(suppressed["reason"]) > 60, suppressed["ruleName"]
        if suppressed["ruleName"].startswith("AwsSolutions-IAM5"):
            assert "[" in suppressed["acknowledgedId"], "IAM5 must be acknowledged per finding"


def test_acknowledgements_are_the_documented_ones(tmp_path):
    app, _, _ = build({}, outdir=tmp_path, with_nag=True)
    app.synth()
    (nag,) = [p for p in report(tmp_path)["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    rules = sorted(s["ruleName"].split("[")[0] + ("[...]" if "[" in s["ruleName"] else "")
                   for s in nag["suppressedViolations"])
    api_rules = (["AwsSolutions-APIG3", "AwsSolutions-APIG6"] + ["AwsSolutions-COG4"] * 6  # IAM auth, 6 methods
                 + ["AwsSolutions-IAM5[...]"] * 7 + ["AwsSolutions-L1"])  # infra/nag.py _acknowledge_api
    assert rules == sorted(["AwsSolutions-IAM4[...]", "AwsSolutions-IAM5[...]", "AwsSolutions-IAM5[...]",
                            "AwsSolutions-IAM5[...]", "AwsSolutions-IAM5[...]", "AwsSolutions-L1", "AwsSolutions-L1",
                            *api_rules,
                            "AwsSolutions-IAM5[...]", "AwsSolutions-L1",  # _acknowledge_lifecycle
                            *["AwsSolutions-IAM5[...]"] * 4, "AwsSolutions-L1", "AwsSolutions-L1"])  # _acknowledge_bulk


def test_a_new_wildcard_fails_synth(tmp_path):
    app, stack, _ = build({}, outdir=tmp_path, with_nag=True)
    stack.worker.role.add_to_policy(iam.PolicyStatement(actions=["s3:*"], resources=["*"]))
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
    violations = [v["ruleName"] for p in report(tmp_path)["pluginReports"] for v in p["violations"]]
    assert "AwsSolutions-IAM5[Action::s3:*]" in violations
