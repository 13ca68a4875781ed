"""CloudWatch dashboard and alarms; an SNS topic for them when `alarmEmail` or `alarmTopicArn` is set.

Every entry point is watched: the queue and the worker, the HTTP API (stage 5XX and latency, its function's
errors and throttles), the direct-invoke function, the EventBridge rules that turn events and uploads into
jobs (FailedInvocations), and the events the functions could not publish (EventsFailed).

Custom metrics come from the functions' Powertools Metrics: namespace `config.metrics_namespace`,
dimension `service` = `config.service_name` (names in img2img/metric_names.py).

Plain aws_cloudwatch rather than cdk-monitoring-constructs: each alarm here is one line of a table with
its own threshold and text, which that library would not shorten, and it would add a jsii dependency.
"""
from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from img2img import metric_names  # the names the worker publishes (Powertools Metrics)
from img2img.lifecycle import ALARMED_KINDS  # what the daily lifecycle check counts (infra/lifecycle.py)
from img2img.lifecycle import METRICS as LIFECYCLE_METRICS
from infra.config import PipelineConfig

PERIOD = Duration.minutes(5)
BEDROCK_THROTTLES_THRESHOLD = 10  # throttled attempts per 5 minutes (botocore's retries included)
FILTER_RATE_MIN_SAMPLES = 5  # below this many outputs in 15 minutes the rate alarm stays quiet


class Monitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig,
                 function: lambda_.IFunction, job_queue: sqs.IQueue, dead_letter_queue: sqs.IQueue,
                 direct_function: lambda_.IFunction, api_function: lambda_.IFunction, api_stage: apigw.Stage,
                 rules: dict[str, tuple[events.Rule, events.IEventBus | None]],
                 key: kms.IKey | None = None) -> None:
        super().__init__(scope, construct_id)
        self.config = config

        def custom(name: str, statistic: str = "Sum") -> cw.Metric:
            return cw.Metric(namespace=config.metrics_namespace, metric_name=name,
                             dimensions_map={"service": config.service_name},
                             statistic=statistic, period=PERIOD)

        dlq_visible = dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(1), statistic="Maximum")
        oldest = job_queue.metric_approximate_age_of_oldest_message(period=Duration.minutes(1),
                                                                   statistic="Maximum")
        errors = function.metric_errors(period=PERIOD, statistic="Sum")
        throttles = function.metric_throttles(period=PERIOD, statistic="Sum")
        generated = custom(metric_names.IMAGES_GENERATED)
        filtered = custom(metric_names.IMAGES_FILTERED)
        invalid = custom(metric_names.IMAGES_INVALID)
        failed = custom(metric_names.IMAGES_FAILED)
        internal_errors = custom(metric_names.INTERNAL_ERRORS)
        bedrock_throttles = custom(metric_names.BEDROCK_THROTTLES)
        bedrock_latency_p90 = custom(metric_names.BEDROCK_LATENCY, "p90")
        filter_rate = cw.MathExpression(
            expression=f"IF((generated + filtered) >= {FILTER_RATE_MIN_SAMPLES}, "
                       "100 * filtered / (generated + filtered), 0)",
            using_metrics={"generated": custom(metric_names.IMAGES_GENERATED).with_(period=Duration.minutes(15)),
                           "filtered": custom(metric_names.IMAGES_FILTERED).with_(period=Duration.minutes(15))},
            label="Content-filtered outputs (%)",
            period=Duration.minutes(15),
        )

        def alarm(construct_id: str, metric: cw.IMetric, threshold: float, description: str, *,
                  evaluation_periods: int = 1, datapoints: int | None = None) -> cw.Alarm:
            return metric_alarm(self, construct_id, metric, threshold, description,
                                evaluation_periods=evaluation_periods, datapoints=datapoints)

        # The other entry points: HTTP API, direct invoke, the rules that make jobs, event publishing.
        api_5xx = api_stage.metric_server_error(period=PERIOD, statistic="Sum")
        api_4xx = api_stage.metric_client_error(period=PERIOD, statistic="Sum")
        api_latency_p90 = api_stage.metric_latency(period=PERIOD, statistic="p90")
        api_latency_threshold_ms = config.api_sync_budget_seconds * 1000
        events_failed = custom(metric_names.EVENTS_FAILED)
        # The daily lifecycle check (infra/lifecycle.py): a model gone, going within 90 days, or not invocable.
        lifecycle_problems = cw.MathExpression(
            expression=" + ".join(f"FILL({kind}, 0)" for kind in ALARMED_KINDS),
            using_metrics={kind: custom(LIFECYCLE_METRICS[kind], "Maximum").with_(period=Duration.days(1))
                           for kind in ALARMED_KINDS},
            label="Configured models retired, Legacy, near end of life, or not invocable",
            period=Duration.days(1))
        rule_failures = {name: rule_metric(rule, bus, "FailedInvocations") for name, (rule, bus) in rules.items()}

        self.alarms: dict[str, cw.Alarm] = {
            "DlqNotEmpty": alarm("DlqNotEmpty", dlq_visible, 0,
                                 "Jobs failed repeatedly and are in the dead-letter queue"),
            "QueueBacklog": alarm("QueueBacklog", oldest, config.queue_age_alarm_seconds,
                                  f"The oldest job has waited more than {config.queue_age_alarm_seconds} s"),
            "WorkerErrors": alarm("WorkerErrors", errors, 0, "The worker function failed (not a job failure)"),
            # internal_error outcomes are defects of the pipeline (docs/errors.md): one is worth a look.
            "InternalErrors": alarm("InternalErrors", internal_errors, 0,
                                    "A job failed with internal_error (a defect, never retried): see its record"),
            "WorkerThrottles": alarm("WorkerThrottles", throttles, 0, "The worker function was throttled"),
            "BedrockThrottling": alarm("BedrockThrottling", bedrock_throttles, BEDROCK_THROTTLES_THRESHOLD,
                                       "Bedrock throttled the worker; lower bedrockMaxConcurrency or raise quotas",
                                       evaluation_periods=3, datapoints=2),
            "BedrockLatency": alarm("BedrockLatency", bedrock_latency_p90, config.bedrock_latency_alarm_ms,
                                    f"Bedrock p90 latency above {config.bedrock_latency_alarm_ms} ms",
                                    evaluation_periods=3, datapoints=2),
            "ContentFilterRate": alarm("ContentFilterRate", filter_rate, config.filter_rate_alarm_percent,
                                       f"More than {config.filter_rate_alarm_percent}% of outputs were "
                                       "content-filtered"),
            "ApiServerErrors": alarm("ApiServerErrors", api_5xx, 0,
                                     "The HTTP API answered 5XX (function error, Lambda throttling at its reserved "
                                     "concurrency, or an integration timeout)"),
            "ApiLatency": alarm("ApiLatency", api_latency_p90, api_latency_threshold_ms,
                                f"HTTP API p90 latency above the sync budget ({api_latency_threshold_ms} ms): "
                                "sync requests wait their whole budget, the worker is behind",
                                evaluation_periods=3, datapoints=2),
            "ApiFunctionErrors": alarm("ApiFunctionErrors", api_function.metric_errors(period=PERIOD, statistic="Sum"),
                                       0, "The API function failed (an unhandled error, not a job failure)"),
            "ApiFunctionThrottles": alarm("ApiFunctionThrottles",
                                          api_function.metric_throttles(period=PERIOD, statistic="Sum"), 0,
                                          "The API function was throttled (its reserved concurrency is used up)"),
            "DirectFunctionErrors": alarm("DirectFunctionErrors",
                                          direct_function.metric_errors(period=PERIOD, statistic="Sum"), 0,
                                          "The direct-invoke function raised (transient job errors included: the "
                                          "caller retries them)"),
            "DirectFunctionThrottles": alarm("DirectFunctionThrottles",
                                             direct_function.metric_throttles(period=PERIOD, statistic="Sum"), 0,
                                             "The direct-invoke function was throttled (its reserved concurrency, "
                                             "a quarter of bedrockMaxConcurrency, is used up)"),
            "ModelLifecycle": alarm("ModelLifecycle", lifecycle_problems, 0,
                                    "A configured model is retired, Legacy, within 90 days of end of life, not "
                                    "offered in the Bedrock region or not invocable: run `img2img doctor` "
                                    "(docs/deploy.md, when the model lifecycle alarm fires)"),
            "EventsFailed": alarm("EventsFailed", events_failed, 0,
                                  "A function could not publish an ImageGeneration* event on the bus"),
            **{f"{name}FailedInvocations": alarm(f"{name}FailedInvocations", metric, 0,
                                                 f"EventBridge rule {name} could not deliver events to the job queue")
               for name, metric in rule_failures.items()},
        }

        # ---- notifications --------------------------------------------------------------------
        self.topic: sns.Topic | None = None
        actions: list[cw.IAlarmAction] = []
        if config.alarm_email:
            self.topic = sns.Topic(self, "AlarmTopic", display_name=f"{config.service_name} alarms",
                                   enforce_ssl=True, master_key=key)
            if key is not None:
                # CloudWatch must be able to encrypt messages to a KMS-encrypted topic.
                key.add_to_resource_policy(iam.PolicyStatement(
                    sid="AllowCloudWatchAlarmsToPublish",
                    principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    resources=["*"],
                    conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
                ))
            self.topic.add_subscription(subs.EmailSubscription(config.alarm_email))
            actions.append(cw_actions.SnsAction(self.topic))
        if config.alarm_topic_arn:
            actions.append(cw_actions.SnsAction(
                sns.Topic.from_topic_arn(self, "ExistingAlarmTopic", config.alarm_topic_arn)))
        for a in self.alarms.values():
            a.add_alarm_action(*actions)
            a.add_ok_action(*actions)

        # ---- dashboard ------------------------------------------------------------------------
        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=24, height=3),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Images", left=[generated, filtered, invalid, failed, internal_errors], width=12),
            cw.GraphWidget(title="Content-filter rate (%)", left=[filter_rate], width=12,
                           left_annotations=[cw.HorizontalAnnotation(value=config.filter_rate_alarm_percent)]),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Bedrock latency (ms)",
                           left=[custom(metric_names.BEDROCK_LATENCY, "p50"), bedrock_latency_p90,
                                 custom(metric_names.BEDROCK_LATENCY, "Maximum")], width=12),
            cw.GraphWidget(title="Bedrock throttles", left=[bedrock_throttles], width=12),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Queues",
                           left=[job_queue.metric_approximate_number_of_messages_visible(),
                                 dead_letter_queue.metric_approximate_number_of_messages_visible()],
                           right=[oldest], width=12),
            cw.GraphWidget(title="Worker",
                           left=[function.metric_invocations(), errors, throttles],
                           right=[function.metric_duration(statistic="p90")], width=12),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="HTTP API requests",
                           left=[api_stage.metric_count(period=PERIOD, statistic="Sum"), api_4xx, api_5xx],
                           width=12),
            cw.GraphWidget(title="HTTP API latency (ms)",
                           left=[api_stage.metric_latency(period=PERIOD, statistic="p50"), api_latency_p90,
                                 api_stage.metric_integration_latency(period=PERIOD, statistic="p90")],
                           left_annotations=[cw.HorizontalAnnotation(value=api_latency_threshold_ms,
                                                                     label="sync budget")], width=12),
        )
        self.dashboard.add_widgets(*(
            cw.GraphWidget(title=f"{title} function",
                           left=[fn.metric_invocations(period=PERIOD, statistic="Sum"),
                                 fn.metric_errors(period=PERIOD, statistic="Sum"),
                                 fn.metric_throttles(period=PERIOD, statistic="Sum")],
                           right=[fn.metric("ConcurrentExecutions", period=PERIOD, statistic="Maximum")], width=8)
            for title, fn in (("API", api_function), ("Direct-invoke", direct_function))),
            cw.GraphWidget(title="Events and rules",
                           left=[events_failed, *(m.with_(label=f"{name} FailedInvocations")
                                                  for name, m in rule_failures.items())],
                           right=[rule_metric(rule, bus, "Invocations").with_(label=f"{name} Invocations")
                                  for name, (rule, bus) in rules.items()], width=8),
        )


def rule_metric(rule: events.Rule, bus: events.IEventBus | None, name: str) -> cw.Metric:
    """An AWS/Events metric of a rule: on a custom bus EventBridge adds the bus's name as a dimension."""
    dimensions = {"RuleName": rule.rule_name}
    if bus is not None:
        dimensions["EventBusName"] = bus.event_bus_name
    return cw.Metric(namespace="AWS/Events", metric_name=name, dimensions_map=dimensions, statistic="Sum",
                     period=PERIOD)


def metric_alarm(scope: Construct, construct_id: str, metric: cw.IMetric, threshold: float, description: str,
                 *, evaluation_periods: int = 1, datapoints: int | None = None) -> cw.Alarm:
    return cw.Alarm(
        scope, construct_id,
        metric=metric,
        threshold=threshold,
        comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluation_periods=evaluation_periods,
        datapoints_to_alarm=datapoints,
        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        alarm_description=description,
    )
