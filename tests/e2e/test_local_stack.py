"""The local stack: resources as the CDK stack declares them, S3 notifications, env file, and the
`img2img local` command's clean shutdown. The real worker is not needed (a test handler stands in)."""
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote_plus

import pytest

from img2img_local.project import IMAGE_SUFFIXES, load_pipeline_config
from img2img_local.stack import ENV_FILE_KEYS, LocalStack

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
IMG2IMG = Path(sys.executable).parent / "img2img"
TRICKY_KEY = "a/my photo+1 ü.png"


@pytest.fixture(scope="module")
def stack():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    config = load_pipeline_config(["maxReceiveCount=3"])
    with LocalStack(config, visibility_timeout_seconds=7, attach_worker=False) as running:
        yield running


def test_buckets_are_versioned_private_and_notify_the_job_queue_on_every_image_suffix(stack):
    s3, r = stack.client("s3"), stack.resources
    for bucket in (r.input_bucket, r.output_bucket):
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    configs = s3.get_bucket_notification_configuration(Bucket=r.input_bucket)["QueueConfigurations"]
    assert {c["QueueArn"] for c in configs} == {r.job_queue_arn}
    assert all(c["Events"] == ["s3:ObjectCreated:*"] for c in configs)
    suffixes = {rule["Value"] for c in configs for rule in c["Filter"]["Key"]["FilterRules"]}
    assert suffixes == {*IMAGE_SUFFIXES, *(s.upper() for s in IMAGE_SUFFIXES), ".json"}


def test_buckets_expire_what_the_stack_expires_staged_answers_included(stack):
    s3, r = stack.client("s3"), stack.resources
    output_rules = {rule["ID"]: rule for rule in s3.get_bucket_lifecycle_configuration(Bucket=r.output_bucket)["Rules"]}
    staged = output_rules["expire-staged-model-answers"]
    assert staged["Filter"]["Prefix"] == "_staging/" and staged["Expiration"]["Days"] == 2
    for bucket in (r.input_bucket, r.output_bucket):
        rules = {rule["ID"] for rule in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
        assert "expire-noncurrent-and-abort-multipart" in rules


def test_job_queue_redrives_to_the_dlq_with_the_configured_max_receive_count(stack):
    sqs, r = stack.client("sqs"), stack.resources
    attrs = sqs.get_queue_attributes(QueueUrl=r.job_queue_url, AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "7"  # the local-only override
    assert json.loads(attrs["RedrivePolicy"]) == {"deadLetterTargetArn": r.dlq_arn, "maxReceiveCount": 3}


def test_idempotency_table_matches_powertools_needs(stack):
    dynamodb, table = stack.client("dynamodb"), stack.resources.idempotency_table
    described = dynamodb.describe_table(TableName=table)["Table"]
    assert described["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert described["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiration"}


def test_events_on_the_bus_reach_the_events_queue(stack):
    r = stack.resources
    stack.client("events").put_events(Entries=[{"EventBusName": r.event_bus_name, "Source": "test.img2img",
                                                "DetailType": "ImageGenerationSucceeded", "Detail": "{}"}])
    messages = stack.client("sqs").receive_message(QueueUrl=r.events_queue_url, WaitTimeSeconds=2)["Messages"]
    event = json.loads(messages[0]["Body"])
    assert (event["source"], event["detail-type"]) == ("test.img2img", "ImageGenerationSucceeded")


def test_an_upload_sends_the_s3_event_with_the_key_encoded_as_s3_does_and_txt_sends_nothing(stack):
    s3, sqs, r = stack.client("s3"), stack.client("sqs"), stack.resources
    s3.put_object(Bucket=r.input_bucket, Key="a/notes.txt", Body=b"not an image")
    s3.put_object(Bucket=r.input_bucket, Key=TRICKY_KEY, Body=b"png bytes")
    records, deadline = [], time.monotonic() + 5
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=r.job_queue_url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=1).get("Messages", []):
            sqs.delete_message(QueueUrl=r.job_queue_url, ReceiptHandle=message["ReceiptHandle"])
            records += json.loads(message["Body"]).get("Records", [])  # skips s3:TestEvent
        if records:
            time.sleep(1)  # and make sure the .txt upload adds nothing later
            assert not sqs.receive_message(QueueUrl=r.job_queue_url, WaitTimeSeconds=1).get("Messages")
            break
    (record,) = records
    assert record["eventName"].startswith("ObjectCreated:")
    assert record["s3"]["bucket"]["name"] == r.input_bucket
    raw = record["s3"]["object"]["key"]
    assert "my+photo%2B1+%C3%BC.png" in raw  # form-URL encoding: space '+', '+' '%2B', UTF-8 '%XX'
    assert unquote_plus(raw) == TRICKY_KEY


def test_worker_environment_is_the_cdk_environment_plus_only_standard_aws_variables(stack):
    r, config = stack.resources, stack.effective_config  # its signing key's chain included
    expected = config.worker_settings(
        input_bucket=r.input_bucket, output_bucket=r.output_bucket, idempotency_table=r.idempotency_table,
        job_queue_url=r.job_queue_url, event_bus_name=r.event_bus_name, c2pa_kms_key_id=r.c2pa_key_arn).to_env()
    assert expected["IMG2IMG_C2PA_KMS_KEY_ID"] == r.c2pa_key_arn
    expected.update(config.powertools_env())
    expected.update({"AWS_ENDPOINT_URL": stack.endpoint_url, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": stack.engine_url,
                     "AWS_ENDPOINT_URL_BEDROCK": stack.engine_url, "AWS_ACCESS_KEY_ID": "testing",
                     "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                     "POWERTOOLS_TRACE_DISABLED": "true"})
    assert stack.worker_environment() == expected
    assert expected["IMG2IMG_MAX_RECEIVE_COUNT"] == "3"  # -c overrides flow into the worker too


def test_env_file_is_a_dotenv_a_shell_can_source(stack, tmp_path):
    path = tmp_path / "local.env"
    stack.write_env_file(path)
    r = stack.resources
    sourced = subprocess.run(["sh", "-c", f"set -a; . '{path}'; set +a; env"], capture_output=True, text=True,
                             env={"PATH": os.environ["PATH"]}, check=True).stdout
    values = dict(line.split("=", 1) for line in sourced.splitlines() if line.split("=", 1)[0] in ENV_FILE_KEYS)
    assert values == {
        "AWS_ENDPOINT_URL": stack.endpoint_url, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": stack.engine_url,
        "AWS_ENDPOINT_URL_BEDROCK": stack.engine_url,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "IMG2IMG_INPUT_BUCKET": r.input_bucket, "IMG2IMG_OUTPUT_BUCKET": r.output_bucket,
        "IMG2IMG_EVENTS_QUEUE_URL": r.events_queue_url, "IMG2IMG_JOB_QUEUE_URL": r.job_queue_url,
        "IMG2IMG_DLQ_URL": r.dlq_url, "IMG2IMG_EVENT_BUS_NAME": r.event_bus_name,
        "IMG2IMG_API_URL": stack.api.url, "IMG2IMG_IDEMPOTENCY_TABLE": r.idempotency_table}
    assert [p.name for p in tmp_path.iterdir()] == ["local.env"]  # no temporary file left behind


# ---- the `img2img local` command ------------------------------------------------------------------
def descendants(pid):
    """(pid, start time) of every process below pid, from /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = (int(fields[1]), fields[19])
    found, frontier = set(), {pid}
    while frontier:
        children = {(child, start) for child, (ppid, start) in parents.items() if ppid in frontier}
        found |= children
        frontier = {child for child, _ in children}
    return found


def alive(process):
    pid, start = process
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19] == start
    except OSError:
        return False


def load_env(path):
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def test_img2img_local_serves_then_stops_cleanly_on_sigterm(tmp_path):
    import boto3

    env_file = tmp_path / "stack.env"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}  # so the worker finds the test handler
    proc = subprocess.Popen([str(IMG2IMG), "local", "--env-file", str(env_file), "--handler",
                             "esm_test_handler.noop", "-c", "batchWindowSeconds=0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not env_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else ""
            time.sleep(0.1)
        values = load_env(env_file)
        assert list(values) == list(ENV_FILE_KEYS)
        s3 = boto3.client("s3", endpoint_url=values["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.put_object(Bucket=values["IMG2IMG_INPUT_BUCKET"], Key="x.png", Body=b"x")
        while not any("lambda_runtime" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
                      for pid, _ in descendants(proc.pid) if Path(f"/proc/{pid}").exists()):
            assert time.monotonic() < deadline, "no worker process was started"
            time.sleep(0.1)
        children = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read()
    assert "aws s3 cp" in output and values["AWS_ENDPOINT_URL"] in output and "stopped" in output
    assert "Traceback" not in output
    assert not [c for c in children if alive(c)], "processes left behind"
    assert not env_file.exists()
    port = int(values["AWS_ENDPOINT_URL"].rsplit(":", 1)[1])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # moto is gone


def test_img2img_local_reports_bad_options_in_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for args, message in ((["-c", "batchSize=99"], "batchSize=99 is invalid"),
                              (["-c", "nonsense"], "not of the form key=value"),
                              (["--port", str(port)], f"cannot listen on 127.0.0.1:{port}")):
            result = subprocess.run([str(IMG2IMG), "local", *args], capture_output=True, text=True, timeout=60)
            assert result.returncode == 1
            (error,) = [line for line in result.stderr.splitlines() if line.startswith("img2img: error:")]
            assert message in error and "Traceback" not in result.stderr
