"""C2PA Content Credentials: the manifest an output carries, signed through an injected callback.

The callback is the only thing that touches a private key (`bytes -> raw r||s`, ES256): in AWS it
calls KMS `Sign` (aws/kms_signer.py), so the key never leaves KMS; offline it is the throwaway local
identity (img2img_local/signing.py). `c2pa` (a 15 MB native library) is imported only inside
`sign` and `verify`, so jobs that do not sign start as fast as before.

What the manifest says: one `c2pa.created` action (a generation) or `c2pa.opened` + `c2pa.edited`
(an edit that keeps the photo), each with the IPTC digital source type and the model as software
agent; the input as an ingredient known by its SHA-256 only (never its pixels, no thumbnail); the job
id in our own assertion; our name and version as claim generator. No output thumbnail either: the
file is its own picture, and a thumbnail costs tens of kilobytes.
"""
from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import TOOL_NAME, __version__
from ..operations import GENERATED
from .errors import JobError
from .formats import CONTENT_TYPES
from .xmp import DIGITAL_SOURCE_TYPE_BASE

JOB_ASSERTION = "com.bedrock-img2img.job"
INGREDIENT_SHA256 = "com.bedrock-img2img.sha256"   # the input's hash, in the ingredient's metadata
INPUT_LABEL = "input"
ES256_HALF = 32  # bytes of r and of s on P-256
# c2pa-rs settings: no thumbnails (see the module docstring).
SETTINGS = {"builder": {"thumbnail": {"enabled": False}}}


def der_to_raw(der: bytes, half: int = ES256_HALF) -> bytes:
    """A DER ECDSA signature (what KMS and `cryptography` return) as the raw r||s that COSE wants."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(der)
    return r.to_bytes(half, "big") + s.to_bytes(half, "big")


@dataclass(frozen=True)
class SigningKey:
    """Who signs: the callback, the PEM chain (leaf first) that certifies its key, an optional RFC 3161
    timestamp authority (without one, a manifest is valid only while the leaf certificate is)."""

    callback: Callable[[bytes], bytes]
    chain_pem: str
    tsa_url: str | None = None
    subject: str = field(init=False)

    def __post_init__(self) -> None:
        from cryptography import x509

        try:
            leaf = x509.load_pem_x509_certificates(self.chain_pem.encode())[0]
        except (ValueError, IndexError) as exc:
            raise JobError("signing_unavailable", f"the C2PA certificate chain is not PEM certificates: {exc}")\
                from None
        object.__setattr__(self, "subject", leaf.subject.rfc4514_string())


@dataclass(frozen=True)
class Signed:
    """The signed file and what its record carries about the manifest."""

    data: bytes
    manifest_label: str
    digest: str        # "sha256:<hex>" of `data`, the stored output
    signer: str        # the signing certificate's subject (RFC 4514)

    def record(self) -> dict[str, str]:
        return {"manifest_label": self.manifest_label, "digest": self.digest, "signer": self.signer}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_manifest(*, source_type: str, model_id: str, job_id: str, input_sha256: str | None,
                   input_format: str | None = None, title: str | None = None) -> dict[str, Any]:
    """The manifest definition for c2pa's Builder. `source_type` is operations.GENERATED or EDITED;
    `input_sha256` is sha256() of the uploaded bytes (None: no ingredient); `input_format` its MIME type."""
    created = source_type == GENERATED
    agent = {"name": model_id}
    action: dict[str, Any] = {"action": "c2pa.created" if created else "c2pa.edited",
                              "digitalSourceType": DIGITAL_SOURCE_TYPE_BASE + source_type, "softwareAgent": agent}
    actions = [action]
    ingredients = []
    if input_sha256:
        ingredient: dict[str, Any] = {"title": "input image", "relationship": "inputTo" if created else "parentOf",
                                      "label": INPUT_LABEL, "metadata": {INGREDIENT_SHA256: input_sha256}}
        if input_format:
            ingredient["format"] = input_format
        ingredients.append(ingredient)
        if created:  # the input fed the model; a created asset has no parent
            action["parameters"] = {"ingredientIds": [INPUT_LABEL]}
        else:        # an edit opens its parent first (C2PA 2: the first action is created or opened)
            actions.insert(0, {"action": "c2pa.opened", "parameters": {"ingredientIds": [INPUT_LABEL]}})
    manifest: dict[str, Any] = {
        "claim_generator_info": [{"name": TOOL_NAME, "version": __version__}],
        "ingredients": ingredients,
        "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": actions}},
                       {"label": JOB_ASSERTION, "data": {"job_id": job_id}}],
    }
    if title:
        manifest["title"] = title
    return manifest


def sign(data: bytes, fmt: str, manifest: dict[str, Any], key: SigningKey) -> Signed:
    """`data` (an encoded png/jpeg/webp, its XMP already in) with `manifest` embedded and signed.

    The c2pa bindings swallow a callback's exception (it logs, then fails the signature): it is kept
    here and raised as itself, so a KMS throttle stays a transient JobError, not a signing error."""
    import c2pa

    mime = CONTENT_TYPES[fmt]
    raised: list[BaseException] = []

    def callback(payload: bytes) -> bytes:
        try:
            return key.callback(payload)
        except BaseException as exc:
            raised.append(exc)
            raise

    try:
        signer = c2pa.Signer.from_callback(callback, c2pa.C2paSigningAlg.ES256, key.chain_pem, key.tsa_url)
    except c2pa.C2paError as exc:
        raise JobError("signing_unavailable", f"c2pa refused the signer: {exc}"[:500]) from None
    out = io.BytesIO()
    try:
        with signer, c2pa.Builder(manifest, context=c2pa.Context.from_dict(SETTINGS)) as builder:
            builder.sign(signer, mime, io.BytesIO(data), out)
    except c2pa.C2paError as exc:
        if raised:
            raise raised[0] from None
        if isinstance(exc, c2pa.C2paError.Signature):
            raise JobError("signing_unavailable", f"the C2PA signature failed ({exc}): does the certificate "
                           "chain certify this key, with the digitalSignature usage?"[:500]) from None
        raise
    signed = out.getvalue()
    label = _active_label(signed, mime)
    return Signed(signed, label, sha256(signed), key.subject)


def _active_label(data: bytes, mime: str) -> str:
    import c2pa

    with c2pa.Reader(mime, io.BytesIO(data)) as reader:
        return json.loads(reader.json())["active_manifest"]


# ---- reading back -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verification:
    """What a reader found: `state` is None (no manifest), "Valid", "Trusted" or "Invalid"; `error` says
    why a manifest could not be read at all (then state is "Invalid")."""

    state: str | None
    manifest: dict[str, Any] | None = None
    failures: tuple[str, ...] = ()
    informational: tuple[str, ...] = ()
    error: str | None = None

    @property
    def present(self) -> bool:
        return self.state is not None

    @property
    def valid(self) -> bool:
        return self.state in ("Valid", "Trusted")


# Failures that say "no trust list knows this signer", not "this file was changed".
UNTRUSTED = frozenset({"signingCredential.untrusted"})


def verify(data: bytes, mime: str | None = None) -> Verification:
    """Validate the manifest of an encoded image (the signature, the hash of every byte outside it)."""
    import c2pa

    try:
        reader = c2pa.Reader.try_create(mime or "", io.BytesIO(data))
    except c2pa.C2paError as exc:
        return Verification("Invalid", error=str(exc))
    if reader is None:
        return Verification(None)
    with reader:
        store = json.loads(reader.json())
    manifest = store.get("manifests", {}).get(store.get("active_manifest", ""))
    results = store.get("validation_results", {}).get("activeManifest", {})
    failures = tuple(f"{r['code']}: {r.get('explanation', '')}" for r in results.get("failure", []))
    info = tuple(f"{r['code']}: {r.get('explanation', '')}" for r in results.get("informational", []))
    return Verification(store.get("validation_state", "Invalid"), manifest, failures, info)


def summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """The facts a person checks in a manifest: actions with source type and agent, ingredients' hashes,
    job id, claim generator, signer."""
    actions, job_id = [], None
    for assertion in manifest.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            actions += [{"action": a.get("action"), "digitalSourceType": a.get("digitalSourceType"),
                         "softwareAgent": (a.get("softwareAgent") or {}).get("name")
                         if isinstance(a.get("softwareAgent"), dict) else a.get("softwareAgent")}
                        for a in assertion.get("data", {}).get("actions", [])]
        elif assertion.get("label") == JOB_ASSERTION:
            job_id = assertion.get("data", {}).get("job_id")
    ingredients = [{"relationship": i.get("relationship"), "format": i.get("format"),
                    "sha256": (i.get("metadata") or {}).get(INGREDIENT_SHA256)}
                   for i in manifest.get("ingredients", [])]
    signature = manifest.get("signature_info", {})
    return {"label": manifest.get("label"), "claim_generator": manifest.get("claim_generator_info"),
            "actions": actions, "ingredients": ingredients, "job_id": job_id,
            "signer": {"common_name": signature.get("common_name"), "issuer": signature.get("issuer"),
                       "alg": signature.get("alg"), "time": signature.get("time")}}
