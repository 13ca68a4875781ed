"""`img2img verify FILE...`: what an output says about itself, and whether its Content Credentials hold.

Prints the XMP marking (IPTC digital source type, generator, job id) and the C2PA manifest's facts with
its validation state. Exit status: 0 when every file is fine (a valid manifest, or none), 1 when a
file cannot be read, 2 when a manifest is present but invalid (the file changed after signing, or the
signature does not verify). `signingCredential.untrusted` alone is not a failure: it means the signer
is on no trust list (the local stack's throwaway CA never is), not that the file changed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from img2img.core import c2pa_manifest, xmp

INVALID = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="an output image (png, jpeg, webp)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file instead of text")


def inspect(data: bytes) -> dict:
    """The marking and the verification of one file's bytes, as plain data."""
    try:
        marking = xmp.read_xmp(data)
        marking_error = None
    except (ValueError, SyntaxError) as exc:  # ET.ParseError is a SyntaxError
        marking, marking_error = {}, f"unreadable XMP: {exc}"
    check = c2pa_manifest.verify(data)
    c2pa: dict = {"present": check.present, "state": check.state}
    if check.error:
        c2pa["error"] = check.error
    if check.manifest:
        c2pa.update(c2pa_manifest.summary(check.manifest))
    if check.failures:
        c2pa["failures"] = list(check.failures)
    return {"xmp": marking, **({"xmp_error": marking_error} if marking_error else {}), "c2pa": c2pa,
            "ok": not check.present or check.valid}


def _text(path: Path, report: dict) -> str:
    lines = [f"{path}:"]
    marking = report["xmp"]
    if marking:
        lines.append(f"  XMP   digital source type  {marking.get('digital_source_type', '(none)')}")
        lines += [f"        {label:<20} {marking[key]}" for key, label in
                  (("model_id", "AI system used"), ("job_id", "job id"), ("creator_tool", "creator tool"))
                  if key in marking]
    else:
        lines.append(f"  XMP   {report.get('xmp_error', 'no XMP marking')}")
    c2pa = report["c2pa"]
    if not c2pa["present"]:
        lines.append("  C2PA  no manifest")
        return "\n".join(lines)
    lines.append(f"  C2PA  {c2pa['state']}" + (f": {c2pa['error']}" if c2pa.get("error") else ""))
    if c2pa.get("label"):
        lines.append(f"        manifest             {c2pa['label']}")
        for action in c2pa["actions"]:
            lines.append(f"        action               {action['action']}"
                         + (f"  {action['digitalSourceType']}" if action.get("digitalSourceType") else "")
                         + (f"  by {action['softwareAgent']}" if action.get("softwareAgent") else ""))
        for ingredient in c2pa["ingredients"]:
            lines.append(f"        ingredient           {ingredient['relationship']} {ingredient['sha256'] or ''}")
        lines.append(f"        job id               {c2pa['job_id']}")
        generator = ", ".join(f"{g.get('name')} {g.get('version', '')}".strip() for g in c2pa["claim_generator"] or [])
        lines.append(f"        claim generator      {generator}")
        signer = c2pa["signer"]
        lines.append(f"        signed by            {signer['common_name']} (issuer {signer['issuer']})")
    for failure in c2pa.get("failures", []):
        note = "  (no trust list knows the signer; the file is unchanged)" if \
            failure.split(":")[0] in c2pa_manifest.UNTRUSTED else ""
        lines.append(f"        failure              {failure}{note}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror}")
            status = max(status, 1)
            continue
        report = inspect(data)
        print(json.dumps({"file": str(path), **report}) if args.json else _text(path, report), flush=True)
        if not report["ok"]:
            status = INVALID
    return status
