"""C2PA signing (docs/provenance.md): the asymmetric KMS key that signs manifests, and the grants to use it.

The private key never leaves KMS: the worker calls `kms:Sign` on this one key (ECC_NIST_P256, ES256) and
reads the certificate chain that certifies it from SSM Parameter Store or Secrets Manager. The key is
created by the stack (`c2paKey=create`, the default) or imported by ARN; outputs are signed once
`c2paCertificateChain` names the chain (a new key has no certificate until its owner gets one).
"""
from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.config import PipelineConfig
from infra.storage import removal_policy


def chain_arn(stack: Stack, reference: str) -> tuple[str, str]:
    """(IAM action, resource ARN) that reads the chain: a secret ARN as given, an SSM parameter by ARN
    or by name (`/path/name` or `name`) in the stack's region and account."""
    if reference.startswith("arn:") and ":secretsmanager:" in reference:
        return "secretsmanager:GetSecretValue", reference
    if reference.startswith("arn:"):
        return "ssm:GetParameter", reference
    name = reference if reference.startswith("/") else f"/{reference}"
    return "ssm:GetParameter", f"arn:{stack.partition}:ssm:{stack.region}:{stack.account}:parameter{name}"


class Provenance(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.key: kms.IKey | None = None
        if config.c2pa_key == "create":
            self.key = kms.Key(
                self, "SigningKey", key_spec=kms.KeySpec.ECC_NIST_P256, key_usage=kms.KeyUsage.SIGN_VERIFY,
                description="bedrock-img2img: signs C2PA manifests of generated images (ES256)",
                removal_policy=removal_policy(config), pending_window=Duration.days(30))
        elif config.c2pa_key != "none":
            self.key = kms.Key.from_key_arn(self, "SigningKey", config.c2pa_key)

    @property
    def signing_key_arn(self) -> str:
        """What the worker signs with (its IMG2IMG_C2PA_KMS_KEY_ID), or "" when outputs are not signed."""
        return self.key.key_arn if self.key is not None and self.config.signs_c2pa else ""

    def grant_signing(self, role: iam.IRole) -> None:
        """kms:Sign on this key only, and reading the chain: nothing when outputs are not signed."""
        if not self.signing_key_arn:
            return
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="SignC2paManifests", actions=["kms:Sign"], resources=[self.signing_key_arn]))
        action, resource = chain_arn(Stack.of(self), self.config.c2pa_certificate_chain)
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReadC2paCertificateChain", actions=[action], resources=[resource]))
