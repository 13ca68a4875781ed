"""C2PA signing at synth: the stack's ECC_NIST_P256 signing key (or an imported one), kms:Sign on that one
key and reading its chain only once a chain is configured, and the worker told exactly that."""
from __future__ import annotations

import pytest

from infra.config import ConfigError, PipelineConfig
from infra_synth import actions, of_type, one, resources, synth, with_action, worker_statements

pytestmark = pytest.mark.infra

CHAIN = "/img2img/c2pa-chain"
SECRET = "arn:aws:secretsmanager:us-west-2:123456789012:secret:c2pa-chain-AbCdEf"
IMPORTED = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    return synth({"c2paCertificateChain": CHAIN}, tmp_path_factory.mktemp("c2pa-signing"))


def env_of(result, prefix: str = "WorkerFunction") -> dict:
    return one(result, "AWS::Lambda::Function", prefix)[1]["Properties"]["Environment"]["Variables"]


def signing_statements(result) -> list[dict]:
    return with_action(worker_statements(result), "kms:Sign")


def test_the_stack_creates_an_es256_signing_key_but_signs_nothing_without_a_chain(default):
    _, key = one(default, "AWS::KMS::Key", "ProvenanceSigningKey")
    assert key["Properties"]["KeySpec"] == "ECC_NIST_P256" and key["Properties"]["KeyUsage"] == "SIGN_VERIFY"
    assert not signing_statements(default)
    assert "IMG2IMG_C2PA_KMS_KEY_ID" not in env_of(default)


def test_with_a_chain_the_worker_signs_with_that_key_only_and_reads_that_parameter(signing):
    key_id, _ = one(signing, "AWS::KMS::Key", "ProvenanceSigningKey")
    (sign,) = signing_statements(signing)
    assert actions(sign) == {"kms:Sign"} and resources(sign) == {f"${{{key_id}.Arn}}"}
    (read,) = with_action(worker_statements(signing), "ssm:")
    assert actions(read) == {"ssm:GetParameter"}
    assert resources(read) == {f"arn:${{AWS::Partition}}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter{CHAIN}"}
    for prefix in ("WorkerFunction", "WorkerDirectFunction"):
        env = env_of(signing, prefix)
        assert env["IMG2IMG_C2PA_CERTIFICATE_CHAIN"] == CHAIN
        assert env["IMG2IMG_C2PA_KMS_KEY_ID"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert "IMG2IMG_C2PA_KMS_KEY_ID" not in env_of(signing, "ApiFunction")  # the API never signs
    api_role = one(signing, "AWS::IAM::Role", "ApiRole")[0]
    api_policies = [p for p in of_type(signing, "AWS::IAM::Policy").values()
                    if {"Ref": api_role} in p["Properties"]["Roles"]]
    assert api_policies and not [p for p in api_policies if "kms:Sign" in str(p)]


def test_an_imported_key_and_a_secret(tmp_path):
    result = synth({"c2paKey": IMPORTED, "c2paCertificateChain": SECRET}, tmp_path)
    assert not of_type(result, "AWS::KMS::Key")
    (sign,) = signing_statements(result)
    assert resources(sign) == {IMPORTED}
    (read,) = with_action(worker_statements(result), "secretsmanager:")
    assert actions(read) == {"secretsmanager:GetSecretValue"} and resources(read) == {SECRET}
    assert env_of(result)["IMG2IMG_C2PA_KMS_KEY_ID"] == IMPORTED


def test_c2pa_none_makes_no_key_and_no_grant(tmp_path):
    result = synth({"c2paKey": "none"}, tmp_path)
    assert not of_type(result, "AWS::KMS::Key") and not signing_statements(result)


@pytest.mark.parametrize("context, says", [
    ({"c2paKey": "alias/mine"}, "c2paKey"),
    ({"c2paKey": "none", "c2paCertificateChain": CHAIN}, "c2paCertificateChain"),
    ({"c2paCertificateChain": "s3://bucket/chain.pem"}, "c2paCertificateChain"),
    ({"c2paTimestampUrl": "timestamp.example.com"}, "c2paTimestampUrl"),
])
def test_bad_c2pa_context_is_a_synth_time_error(context, says):
    with pytest.raises(ConfigError) as info:
        PipelineConfig.from_context(context)
    assert says in str(info.value)
