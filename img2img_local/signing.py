"""A throwaway C2PA signing identity for the local stack: NOT TRUSTED by anyone, on purpose.

An EC P-256 CA and a leaf it issued, made once and kept under a folder (the private keys unencrypted,
mode 0600). Manifests signed with it validate (`validation_state: Valid`) but readers report
`signingCredential.untrusted`: the CA is on no trust list, so it proves only that the file is unchanged
since this machine signed it, never who made it. A deployment brings its own certificate (docs/provenance.md).

The shape of the chain is what c2pa-rs accepts (../shared/reference/toolchain-notes.md): the CA with
BasicConstraints ca=True and KeyUsage keyCertSign; the leaf ca=False, digitalSignature, the
emailProtection EKU, and authority/subject key identifiers.
"""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from img2img.core.c2pa_manifest import der_to_raw

CA_NAME = "bedrock-img2img local test CA (NOT TRUSTED)"
LEAF_NAME = "bedrock-img2img local signer (NOT TRUSTED)"
ORGANIZATION = "bedrock-img2img offline stack"
VALID_DAYS = 365
_LEAF_KEY, _CHAIN = "signer-key.pem", "signer-chain.pem"


@dataclass(frozen=True)
class LocalIdentity:
    """The leaf's key and the chain (leaf first, then the CA), as c2pa's Signer.from_callback wants."""

    private_key: ec.EllipticCurvePrivateKey
    chain_pem: str

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.chain_pem.encode())[0]

    def callback(self) -> Callable[[bytes], bytes]:
        """bytes -> the raw r||s ES256 signature c2pa expects (the same shape as the KMS callback's)."""
        key = self.private_key

        def sign(data: bytes) -> bytes:
            return der_to_raw(key.sign(data, ec.ECDSA(hashes.SHA256())))

        return sign


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)])


def make_identity(now: dt.datetime | None = None) -> LocalIdentity:
    """A new CA and leaf (the CA's key is thrown away: nothing else is ever issued by it)."""
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    return LocalIdentity(leaf_key, issue_chain(leaf_key.public_key(), now))


def issue_chain(leaf_public_key: ec.EllipticCurvePublicKey, now: dt.datetime | None = None) -> str:
    """A throwaway CA's certificate for `leaf_public_key` (say, a KMS key's), and the CA: the PEM chain,
    leaf first. The local stack certifies its (moto) KMS key this way, so the worker signs through KMS
    offline exactly as it does in AWS."""
    now = now or dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(minutes=5), now + dt.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(_name(CA_NAME)).issuer_name(_name(CA_NAME))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(not_before).not_valid_after(not_after)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(_name(LEAF_NAME)).issuer_name(ca.subject)
            .public_key(leaf_public_key).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, ca)).decode()


def certify_kms_key(kms, key_id: str, now: dt.datetime | None = None) -> str:
    """The chain for an ECC_NIST_P256 KMS key, issued by a throwaway CA (see issue_chain)."""
    public = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
    return issue_chain(public, now)  # type: ignore[arg-type]


def load_or_create(folder: Path, now: dt.datetime | None = None) -> LocalIdentity:
    """The identity cached in `folder`, made (or remade, once expired) on first use."""
    key_path, chain_path = folder / _LEAF_KEY, folder / _CHAIN
    now = now or dt.datetime.now(dt.UTC)
    if key_path.exists() and chain_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        identity = LocalIdentity(key, chain_path.read_text())  # type: ignore[arg-type]
        if identity.certificate.not_valid_after_utc > now + dt.timedelta(days=1):
            return identity
    identity = make_identity(now)
    folder.mkdir(parents=True, exist_ok=True)
    pem = identity.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
    _write(key_path, pem, 0o600)
    _write(chain_path, identity.chain_pem.encode(), 0o644)
    return identity


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
