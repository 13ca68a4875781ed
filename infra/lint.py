"""`make lint`'s template checks: synthesize the default configuration once (no bundling), then run cfn-lint
and checkov on the template. Acknowledged findings travel in the template (infra/checks.py); anything
else fails. Usage: `python -m infra.lint [--checkov PATH]` (checkov lives in its own venv: see Makefile).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def synth(outdir: Path) -> Path:
    """The CDK app exactly as `npx cdk synth` runs it (cdk.json's context, cdk-nag, acknowledgements)."""
    env = {**os.environ, "CDK_OUTDIR": str(outdir), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
           "CDK_CONTEXT_JSON": '{"aws:cdk:bundling-stacks": []}',
           "PYTHONPATH": os.pathsep.join([str(ROOT / "lambda_src"), str(ROOT)])}
    subprocess.run([sys.executable, str(ROOT / "app.py")], env=env, check=True)
    (template,) = outdir.glob("*.template.json")
    return template


def cfn_lint(template: Path) -> list[str]:
    return [str(Path(sys.executable).parent / "cfn-lint"), "--", str(template)]  # installed with the dev venv


def checkov(template: Path, executable: str) -> list[str]:
    # --skip-download: no calls to the vendor's platform (offline, and nothing to download for CFN checks)
    return [executable, "--file", str(template), "--framework", "cloudformation", "--compact", "--quiet",
            "--skip-download", "--output", "cli"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkov", default=os.environ.get("CHECKOV", ""),
                        help="the checkov executable (empty: skip checkov, say so)")
    args = parser.parse_args(argv)
    failed = []
    with tempfile.TemporaryDirectory(prefix="img2img-lint-") as tmp:
        template = synth(Path(tmp))
        runs = [("cfn-lint", cfn_lint(template))]
        if args.checkov:
            runs.append(("checkov", checkov(template, args.checkov)))
        else:
            print("lint: checkov not given (--checkov / CHECKOV): skipped", file=sys.stderr)
        for name, command in runs:
            done = subprocess.run(command, check=False)
            print(f"lint: {name} {'clean' if done.returncode == 0 else 'FOUND UNACKNOWLEDGED FINDINGS'}"
                  " (acknowledgements: infra/checks.py)")
            if done.returncode != 0:
                failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
