"""`img2img`: offline tooling on loopback. Each subcommand is one entry of COMMANDS.

    img2img local [--env-file local.env] [-c key=value ...]   the whole pipeline, in the foreground
    img2img engine [--port 8750] [fault flags]                 the offline Bedrock engine alone
    img2img verify FILE...                                     an output's XMP marking and C2PA manifest
    img2img doctor [-c key=value ...]                          lifecycle, access and quotas of every model
    img2img bulk submit|status ...                             bulk jobs on S3 Batch Operations (docs/bulk.md)

To add a subcommand, write a Command (name, help, add_arguments, run) and list it in COMMANDS; commands
that need the local stack can reuse add_stack_arguments() and stack_from_args().
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from img2img_local import bulk, demo, doctor, generate, verify
from img2img_local.engine import ConfigError as EngineConfigError
from img2img_local.engine import add_engine_arguments, config_from_args, serve
from img2img_local.project import ConfigError, load_pipeline_config
from img2img_local.stack import DEFAULT_VISIBILITY_TIMEOUT_SECONDS, WORKER_HANDLER, LocalStack, StackError

log = logging.getLogger("img2img")
PROG = "img2img"


class CliError(Exception):
    """A problem the user can fix: printed as one line, exit status 1."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ---- shared by commands that run the local stack ---------------------------------------------------
def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    """The local stack's options: ports, CDK context overrides, local-only conveniences, engine faults."""
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE",
                        help="override a cdk.json context value, as `cdk synth -c` does (repeatable), "
                             "e.g. -c sidecarGraceSeconds=10 -c batchSize=2")
    parser.add_argument("--port", type=int, default=0, help="moto's port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--engine-port", type=int, default=0,
                        help="the Bedrock engine's port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--visibility-timeout", type=int, default=DEFAULT_VISIBILITY_TIMEOUT_SECONDS,
                        metavar="SECONDS",
                        help="job queue visibility timeout; local only: failed jobs come back after this "
                             f"(default {DEFAULT_VISIBILITY_TIMEOUT_SECONDS}; the deployed queue uses 6x the "
                             "Lambda timeout)")
    parser.add_argument("--handler", default=WORKER_HANDLER,
                        help=f"the Lambda handler the job queue feeds (default {WORKER_HANDLER})")
    faults = parser.add_argument_group("Bedrock engine faults")
    _add_engine_fault_arguments(faults)


def _add_engine_fault_arguments(group) -> None:
    """The engine's fault flags without its --host/--port (the stack binds the engine itself)."""
    engine_parser = add_engine_arguments(argparse.ArgumentParser(add_help=False))
    for action in engine_parser._actions:  # argparse's own `parents=` mechanism copies actions this way
        if action.dest not in ("host", "port"):
            group._add_action(action)


def stack_from_args(args: argparse.Namespace) -> LocalStack:
    """A LocalStack (not started) configured from add_stack_arguments' options."""
    if args.visibility_timeout < 0 or args.visibility_timeout > 43200:
        raise CliError("--visibility-timeout must be 0..43200 seconds (SQS's range)")
    config = load_pipeline_config(args.context)
    return LocalStack(config, port=args.port, engine_port=args.engine_port,
                      engine_config=config_from_args(args), visibility_timeout_seconds=args.visibility_timeout,
                      handler=args.handler)


def wait_for_stop_signal() -> threading.Event:
    """An event set by SIGINT or SIGTERM: install it before starting anything, so no signal is lost."""
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    return stopping


# ---- img2img local ---------------------------------------------------------------------------------
def _local_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-file", type=Path, metavar="PATH",
                        help="write the endpoints, fake credentials, bucket names and queue URLs there as a "
                             "dotenv once everything is ready (removed again at exit)")
    add_stack_arguments(parser)


def _run_local(args: argparse.Namespace) -> int:
    stopping = wait_for_stop_signal()
    stack = stack_from_args(args)
    env_file: Path | None = args.env_file
    if env_file is not None:
        env_file.unlink(missing_ok=True)  # a stale file would tell clients we are ready
    log.info("starting the local stack (moto, Bedrock engine, worker event source)")
    stack.start()
    try:
        if env_file is not None:
            stack.write_env_file(env_file)
        print(_describe(stack, env_file), flush=True)
        while not stopping.wait(0.5):
            pass
        log.info("stopping the local stack")
    finally:
        stack.stop()
        if env_file is not None:
            env_file.unlink(missing_ok=True)
    log.info("stopped")
    return 0


def _describe(stack: LocalStack, env_file: Path | None) -> str:
    r = stack.resources
    config = stack.config
    source = f"env file       {env_file}  (set -a; . {env_file}; set +a)" if env_file else \
        "env file       none (use --env-file PATH to write one)"
    bucket_in = r.input_bucket
    return "\n".join([
        "img2img local stack is running (Ctrl-C to stop)",
        f"  moto           {stack.endpoint_url}   S3, SQS, DynamoDB, EventBridge",
        f"  Bedrock engine {stack.engine_url}",
        f"  worker         {stack.handler} ({config.worker_memory_mb} MB, {config.worker_timeout_seconds} s timeout)",
        f"                 fed by {r.job_queue_url}: batch {config.batch_size}, window "
        f"{config.batch_window_seconds} s, max concurrency {config.event_source_max_concurrency}, "
        f"visibility {stack.visibility_timeout_seconds} s, DLQ after {config.max_receive_count} receives",
        f"  input bucket   s3://{bucket_in}",
        f"  output bucket  s3://{r.output_bucket}",
        f"  events queue   {r.events_queue_url}",
        f"  HTTP API       {stack.api.url + '/v1/' if stack.api else 'off'}   (docs/api.md; no credentials)",
        f"  dead letters   {r.dlq_url}",
        f"  {source}",
        "Try it:",
        f"  set -a; . {env_file or './local.env'}; set +a",
        f"  aws s3 cp photo.jpg s3://{bucket_in}/ --metadata prompt='a watercolor painting'",
        f"  aws s3 ls s3://{r.output_bucket}/ --recursive",
        f"  curl -s '{stack.api.url if stack.api else '$IMG2IMG_API_URL'}/v1/generations?prompt=a%20watercolor' "
        "-H 'Content-Type: image/jpeg' -H 'Accept: image/png' --data-binary @photo.jpg -o out.png",
        # AWS CLI v1 sends SQS calls in us-east-1 to queue.amazonaws.com whatever AWS_ENDPOINT_URL says.
        f"  aws sqs receive-message --endpoint-url {stack.endpoint_url} --queue-url {r.events_queue_url} "
        "--max-number-of-messages 10",
    ])


# ---- img2img engine --------------------------------------------------------------------------------
def _run_engine(args: argparse.Namespace) -> int:
    try:
        serve(args.host, args.port, config_from_args(args))
    except OSError as exc:
        raise CliError(f"the engine cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


COMMANDS: tuple[Command, ...] = (
    Command("local", "run the whole pipeline offline on loopback (moto + Bedrock engine + worker)",
            _local_arguments, _run_local),
    Command("engine", "run the offline Bedrock engine alone", add_engine_arguments, _run_engine),
    Command("demo", "run the sample photos through the local stack; results and a contact sheet in demo-out/",
            demo.add_arguments, demo.run),
    Command("generate", "run one local image through the pipeline (Bedrock, or --offline for the engine)",
            generate.add_arguments, generate.run),
    Command("verify", "print an image's XMP marking and check its C2PA Content Credentials",
            verify.add_arguments, verify.run),
    Command("doctor", "check every configured model's lifecycle, region, access and quotas (read-only; exit 1 "
            "on a problem that would fail jobs)", doctor.add_arguments, doctor.run),
    Command("bulk", "bulk jobs from a manifest on S3 Batch Operations: submit, status", bulk.add_arguments, bulk.run),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="bedrock-img2img offline tooling (never touches AWS)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subcommands.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not args.verbose:
        logging.getLogger("botocore").setLevel(logging.WARNING)  # "found credentials in environment" etc.
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except (CliError, ConfigError, EngineConfigError, StackError, OSError, ValueError) as exc:
        if args.verbose:
            raise
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
