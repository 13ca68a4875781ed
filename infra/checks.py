"""cfn-lint and checkov on the synthesized template: every finding this project accepts, with its reason.

The one home of these acknowledgements (cdk-nag's are in infra/nag.py). They travel in the template, where
both tools read them: checkov's as `Metadata.checkov.skip` on the resource that has the finding, cfn-lint's
as the template's `Metadata.cfn-lint.config.ignore_checks`. `make lint` runs both on a synth of the default
configuration (infra/lint.py); a finding not listed here fails it.

Acknowledgements by resource type hold for every resource of that type (the reason is about the type's use
here); the others name the construct.
"""
from __future__ import annotations

from aws_cdk import CfnResource, Stack
from constructs import IConstruct

from infra.stack import Img2ImgStack

# cfn-lint rule -> reason (template-wide).
CFN_LINT: dict[str, str] = {
    "W3005": "CDK writes DependsOn for orderings that a Ref/GetAtt also implies (bucket notifications after the "
             "queue policy, functions after their role's policy); redundant, not wrong.",
}

NO_VPC = ("No VPC on purpose: the functions reach only AWS service endpoints (S3, SQS, DynamoDB, EventBridge, "
          "Bedrock); a VPC would add NAT or six interface endpoints and change nothing they can reach.")
# checkov check -> reason, for every resource of a type.
CHECKOV_BY_TYPE: dict[str, dict[str, str]] = {
    "AWS::Lambda::Function": {
        "CKV_AWS_117": NO_VPC,
        "CKV_AWS_116": "A Lambda dead-letter queue applies to asynchronous invokes only; these are invoked by the "
                       "SQS event source (whose queue has a DLQ), synchronously (API, direct invoke, Step "
                       "Functions), by CloudFormation (custom resource), daily by the lifecycle schedule, "
                       "whose rule retries and whose next run repeats the whole check, or by the SubmitBulkJob "
                       "rule, whose target retries and whose answer (BulkJobSubmitted/Refused) is an event.",
        "CKV_AWS_173": "The environment holds resource names and limits, no secrets; Lambda encrypts it at rest "
                       "with its service key.",
    },
    "AWS::Logs::LogGroup": {
        "CKV_AWS_158": "CloudWatch Logs encrypts log data at rest by default; a customer key would need a key "
                       "policy for the logs service principal and is not part of encryption=kms.",
    },
    "AWS::SQS::Queue": {
        "CKV_AWS_27": "Encrypted at rest with SQS-managed keys (SqsManagedSseEnabled: true), which this check "
                      "does not recognise (it looks for KmsMasterKeyId).",
    },
    "AWS::ApiGateway::Stage": {
        "CKV_AWS_120": "No response cache: every answer is a job's own state (POSTs create jobs, GET polls "
                       "change), so a cached answer would be a wrong one.",
    },
}
DYNAMODB_AWS_MANAGED = ("The idempotency table holds job ids and outcomes, encrypted with the AWS managed key; "
                        "encryption=kms switches it (with the buckets) to the customer-managed key.")
UNBOUNDED_BY_DESIGN = {
    "worker": "Bounded by its SQS event source's maximum concurrency (derived from bedrockMaxConcurrency); a "
              "reserved concurrency below it would make Lambda throttle the queue's pollers.",
    "notifications": "CDK's BucketNotificationsHandler runs only during deployments (custom resource).",
    "bulk": "Invoked by S3 Batch Operations, which paces its own invocations; each one only validates a row and "
            "enqueues a message (milliseconds), and the worker's event source bounds the Bedrock load.",
}


def _skip(resource: CfnResource, checks: dict[str, str]) -> None:
    metadata = resource.get_metadata("checkov") or {}
    skips = [*metadata.get("skip", []), *({"id": i, "comment": c} for i, c in checks.items())]
    resource.add_metadata("checkov", {"skip": skips})


def _cfn(construct: IConstruct) -> CfnResource:
    return construct.node.default_child  # type: ignore[return-value]


def acknowledge(stack: Img2ImgStack) -> None:
    """Attach every acknowledgement (call once, after the stack is built)."""
    Stack.of(stack).template_options.metadata = {
        "cfn-lint": {"config": {"ignore_checks": sorted(CFN_LINT)}},
    }
    for construct in stack.node.find_all():
        if isinstance(construct, CfnResource) and construct.cfn_resource_type in CHECKOV_BY_TYPE:
            _skip(construct, CHECKOV_BY_TYPE[construct.cfn_resource_type])

    if stack.storage.log_bucket is not None:
        _skip(_cfn(stack.storage.log_bucket), {
            "CKV_AWS_18": "This is the access-log bucket: logging it into itself would log its own log writes.",
            "CKV_AWS_21": "Log objects are written once and expire after a year; versioning would only keep "
                          "noncurrent copies of expired logs.",
        })
    if stack.config.encryption != "kms":
        _skip(_cfn(stack.state.table), {"CKV_AWS_119": DYNAMODB_AWS_MANAGED})
    _skip(_cfn(stack.worker.function), {"CKV_AWS_115": UNBOUNDED_BY_DESIGN["worker"]})
    _skip(_cfn(stack.bulk.function), {"CKV_AWS_115": UNBOUNDED_BY_DESIGN["bulk"]})
    handler = next((c for c in stack.node.children if c.node.id.startswith("BucketNotificationsHandler")), None)
    if handler is not None:
        function = handler.node.try_find_child("Resource")
        if isinstance(function, CfnResource):
            _skip(function, {"CKV_AWS_115": UNBOUNDED_BY_DESIGN["notifications"]})
