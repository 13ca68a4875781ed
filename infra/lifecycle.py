"""The daily lifecycle check: an EventBridge schedule runs handlers/lifecycle_check.py once a day.

It reads what img2img doctor reads (img2img/aws/lifecycle.py) for every model `config.model_ids` names,
publishes a metric per problem kind (infra/monitoring.py alarms on them) and a `ModelLifecycleProblem`
event per problem on the pipeline's bus. Its role may only read:

* `bedrock:GetFoundationModel` on the configured foundation models in the Bedrock region;
* `bedrock:InvokeModel` on exactly the worker's ARNs (infra/worker.bedrock_model_arns), for the unbilled
  probe that tells "may invoke" from "denied" and "Legacy, unused";
* `bedrock:ListInferenceProfiles` and `servicequotas:ListServiceQuotas`, which have no resource-level
  permissions (Resource "*", acknowledged in infra/nag.py);
* `events:PutEvents` on the pipeline's bus.
"""
from __future__ import annotations

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from img2img.lifecycle import Plan, base_model, model_plan
from img2img.operations import IMAGE_TO_IMAGE
from img2img.settings import ENV
from infra.config import PipelineConfig
from infra.functions import function_role, pipeline_function
from infra.regions import invocable_from
from infra.worker import bedrock_model_arns

HANDLER = "img2img.handlers.lifecycle_check.handler"
TRANSLATION = "prompt translation"  # what the translation model is used for, in the check's table
SCHEDULE = events.Schedule.rate(Duration.days(1))
MEMORY_MB = 256
TIMEOUT_SECONDS = 120  # ~3 calls per model, a few seconds each


def plan_for(config: PipelineConfig, region: str) -> Plan:
    """What the check (and img2img doctor) checks for this deployment, calling Bedrock in `region`."""
    models = config.invoked_model_ids  # the image models and the translation model
    offered = {m: r for m in models if (r := invocable_from(m))}
    uses = {**config.operations, **({TRANSLATION: config.translation_model_id} if config.translation_model_id else {})}
    return Plan(region=region, models=model_plan(models, uses, IMAGE_TO_IMAGE),
                concurrency=config.bedrock_ceiling, offered_in=offered)


def foundation_model_arns(model_ids: tuple[str, ...], region: str, partition: str = Aws.PARTITION) -> list[str]:
    """GetFoundationModel's resources: each configured model's foundation model in the Bedrock region."""
    return list(dict.fromkeys(f"arn:{partition}:bedrock:{region}::foundation-model/{base_model(m)}"
                              for m in model_ids if not m.startswith("arn:")))


class LifecycleCheck(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig,
                 bus: events.IEventBus) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        region = config.bedrock_region or stack.region
        self.role = function_role(self, config, "daily model lifecycle check")
        environment = {**plan_for(config, region).to_env(), ENV["event_bus_name"]: bus.event_bus_name,
                       **config.powertools_env()}
        self.function, self.log_group = pipeline_function(
            self, "Function", config=config, role=self.role, environment=environment, handler=HANDLER,
            description="daily check: lifecycle, region, access and quotas of every configured model",
            memory_mb=MEMORY_MB, timeout_seconds=TIMEOUT_SECONDS, reserved_concurrency=1)
        account = stack.account
        # Bedrock in a policy of its own, as the worker's (infra/worker.py): ~60 ARNs would overflow the
        # default policy's size estimate into extra managed policies.
        self.bedrock_policy = iam.Policy(self, "BedrockPolicy", statements=[
            iam.PolicyStatement(sid="ReadConfiguredModelLifecycles", actions=["bedrock:GetFoundationModel"],
                                resources=foundation_model_arns(config.invoked_model_ids, region)),
            iam.PolicyStatement(sid="ProbeConfiguredModels", actions=["bedrock:InvokeModel"],
                                resources=bedrock_model_arns(config.invoked_model_ids, region=region,
                                                             account=account))])
        self.bedrock_policy.attach_to_role(self.role)
        self.function.node.add_dependency(self.bedrock_policy)
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ListProfilesAndQuotas", actions=["bedrock:ListInferenceProfiles", "servicequotas:ListServiceQuotas"],
            resources=["*"]))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="PublishLifecycleProblems", actions=["events:PutEvents"], resources=[bus.event_bus_arn]))
        self.schedule = events.Rule(
            self, "Schedule", schedule=SCHEDULE,
            description=f"{config.service_name}: daily model lifecycle check (docs/deploy.md)",
            targets=[targets.LambdaFunction(self.function, retry_attempts=2, max_event_age=Duration.hours(6))])
