"""`img2img generate IMAGE`: the worker's own pipeline on a local file, against Bedrock or the offline engine.

The same core code runs: parameters (deployment defaults from cdk.json, a sidecar beside the file,
then --params/--param/--prompt), validation, preparation, the model adapter, records. Only the
object store differs: folders stand in for buckets.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from img2img.core.ports import ObjectInfo
from img2img.core.triggers import Trigger
from img2img.operations import NAMES

INPUT, OUTPUT = "local-input", "local-output"
DEFAULT_OUT_DIR = Path("img2img-out")


class FolderStore:
    """The core's ObjectStore over local folders: `bucket` names a folder, keys are relative paths.

    `files` shows other local files under chosen keys (`photo.png.mask.png` -> ~/masks/m.png): the
    companions given on the command line sit beside the image without copying into the user's folder."""

    def __init__(self, folders: dict[str, Path], files: dict[tuple[str, str], Path] | None = None):
        self.folders = folders
        self.files = dict(files or {})

    def _path(self, bucket: str, key: str) -> Path:
        return self.files.get((bucket, key)) or self.folders[bucket] / key

    def head(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo | None:
        path = self._path(bucket, key)
        if not path.is_file():
            return None
        stat = path.stat()
        # Like S3's ETag, it changes when the content does; cheap, since the pipeline HEADs several times.
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        return ObjectInfo(bucket, key, stat.st_size, etag, None, datetime.fromtimestamp(stat.st_mtime, UTC))

    def get(self, bucket: str, key: str, version_id: str | None = None):
        info = self.head(bucket, key)
        return (self._path(bucket, key).read_bytes(), info) if info else None

    def list_keys(self, bucket: str, prefix: str, limit: int = 50) -> list[str]:
        root = self.folders[bucket]
        keys = {str(p.relative_to(root)) for p in root.rglob("*")} | {k for b, k in self.files if b == bucket}
        return sorted(key for key in keys if key.startswith(prefix))[:limit]

    def put(self, bucket: str, key: str, data: bytes, content_type: str, metadata: dict | None = None) -> None:
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def delete(self, bucket: str, key: str) -> None:
        self._path(bucket, key).unlink(missing_ok=True)


@contextmanager
def offline_engine():
    """Start the offline engine on a free loopback port and point bedrock-runtime at it."""
    from img2img_local.engine import EngineConfig, EngineServer

    server = EngineServer(EngineConfig(), host="127.0.0.1", port=0).start()
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ACCESS_KEY_ID",
                                             "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL_BEDROCK_RUNTIME=server.url, AWS_ACCESS_KEY_ID="offline",
                      AWS_SECRET_ACCESS_KEY="offline",
                      AWS_DEFAULT_REGION=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    try:
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def heartbeat(message: str, stream=sys.stderr):
    """Show that long work (a Bedrock call takes 10-90 s) is still going."""
    done = threading.Event()
    started = time.monotonic()

    def tick():
        while not done.wait(1.0):
            stream.write(f"\r{message} {time.monotonic() - started:4.0f} s")
            stream.flush()

    stream.write(f"{message}...")
    stream.flush()
    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        stream.write(f"\r{message} done in {time.monotonic() - started:.1f} s\n")


def companion_files(image: Path, companions: dict[str, Path]) -> dict[str, tuple[str, Path]]:
    """companion name -> (its key beside the image by convention, the local file): `--mask m.png` for
    photo.png is `photo.png.mask.png`, as an upload beside it would be."""
    from img2img.core import keys
    from img2img.operations import COMPANIONS

    placed = {}
    for companion in COMPANIONS:
        path = companions.get(companion.name)
        if path is None:
            continue
        flag = "--" + companion.name.replace("_", "-")
        if not path.is_file():
            raise ValueError(f"{flag} {path}: no such file")
        key = f"{image.name}.{companion.suffix}{path.suffix.lower()}"
        if not keys.is_image(key):
            raise ValueError(f"{flag} {path}: not an image file name ({', '.join(keys.IMAGE_SUFFIXES)})")
        placed[companion.name] = (key, path)
    return placed


def generate(image: Path, request_params: dict[str, Any], output: Path | None, settings, *,
             offline: bool, companions: dict[str, Path] | None = None) -> dict[str, Any]:
    """Run one job on a local file; returns the record (image and record written beside `output`).

    `companions` (mask, style_image: local files) sit beside the image under the convention names, and
    the job names them: an operation that takes no such image says so instead of ignoring it."""
    from img2img.aws.bedrock import BedrockInvoker
    from img2img.core.pipeline import Pipeline
    from img2img.models.registry import adapter_for

    if not image.is_file():
        raise ValueError(f"{image}: no such file")
    placed = companion_files(image, companions or {})
    request_params = {**request_params, **{name: key for name, (key, _) in placed.items()}}
    work = Path(tempfile.mkdtemp(prefix="img2img-generate-"))
    try:
        store = FolderStore({INPUT: image.resolve().parent, OUTPUT: work},
                            {(INPUT, key): path.resolve() for key, path in placed.values()})
        invoker = BedrockInvoker(settings.bedrock_read_timeout, settings.bedrock_max_attempts,
                                 region=settings.bedrock_region)
        pipeline = Pipeline(settings, store, invoker, registry=adapter_for)
        trigger = Trigger("job", INPUT, image.name, params=request_params, origin="cli")
        doing = request_params.get("model_id") or request_params.get("operation") or settings.model_id
        with (offline_engine() if offline else nullcontext(),
              heartbeat(f"generating with {doing}{' (offline engine)' if offline else ''}")):
            [record] = pipeline.handle(trigger)
        out_dir = output.parent if output else DEFAULT_OUT_DIR
        out_dir.mkdir(parents=True, exist_ok=True)
        for out in record.get("outputs", []):
            final = output or out_dir / Path(out["key"]).name
            shutil.move(work / out["key"], final)
            out.update(bucket="local", key=str(final))
        outputs = record.get("outputs") or [{"key": str(output or out_dir / image.name)}]
        record_path = Path(outputs[0]["key"] + ".json")
        record["record"] = {"bucket": "local", "key": str(record_path)}
        record["source"].update(bucket="local", key=str(image))
        for name, (_, path) in placed.items():
            if name in record.get("companions", {}):
                record["companions"][name].update(bucket="local", key=str(path))
        record_path.write_text(json.dumps(record, indent=2, ensure_ascii=False))
        return record
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- the `generate` subcommand ---------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("image", type=Path, help="a local image file (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC)")
    parser.add_argument("-o", "--output", type=Path, help=f"where to write the image (default {DEFAULT_OUT_DIR}/"
                        "<name>.<format>); the record goes beside it as <output>.json")
    parser.add_argument("--prompt", help="the prompt (overrides sidecar and --params)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="any job parameter, e.g. --param style_preset=anime --param seed=7 (repeatable)")
    parser.add_argument("--params", type=Path, metavar="FILE.json", help="a JSON file of parameters (sidecar format)")
    parser.add_argument("--model-id", help="model id, inference profile or ARN (default: cdk.json modelId)")
    parser.add_argument("--operation", metavar="NAME", help="what to do (docs/operations.md): "
                        + ", ".join(NAMES) + " (default image-to-image)")
    parser.add_argument("--mask", type=Path, metavar="FILE",
                        help="inpaint / erase: the mask image (white = edit, black = keep; default: a mask beside "
                             "the image, else its alpha channel)")
    parser.add_argument("--style-image", type=Path, metavar="FILE", help="style-transfer: the style image")
    parser.add_argument("--offline", action="store_true", help="use the offline engine instead of Bedrock")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE",
                        help="override a cdk.json context value (deployment defaults)")


def request_params(args) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.params:
        try:
            params.update(json.loads(args.params.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"--params {args.params}: {exc}") from None
    for pair in args.param:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--param {pair!r}: expected KEY=VALUE")
        params[key.strip()] = value
    if args.prompt is not None:
        params["prompt"] = args.prompt
    if args.model_id:
        params["model_id"] = args.model_id
    if args.operation:
        params["operation"] = args.operation
    return params


def _check_aws(bedrock_region: str) -> None:
    """Calling Bedrock needs a region and credentials: say which setting gives them, in one line (not
    boto3's traceback, nor a job record blaming a defect)."""
    import boto3

    session = boto3.session.Session()
    if not (bedrock_region or session.region_name):
        raise ValueError("no AWS region for Bedrock: set AWS_REGION (or a profile's region), or -c "
                         "bedrockRegion=us-west-2, or add --offline to use the offline engine")
    if session.get_credentials() is None:
        raise ValueError("no AWS credentials for Bedrock: set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                         "AWS_SECRET_ACCESS_KEY (or run `aws configure`), or add --offline to use the offline engine")


def run(args) -> int:
    from img2img.core.errors import JobError
    from img2img_local.project import load_pipeline_config

    settings = load_pipeline_config(args.context).worker_settings(
        input_bucket="", output_bucket=OUTPUT, idempotency_table="", job_queue_url="", event_bus_name="")
    if not args.offline:
        _check_aws(settings.bedrock_region)
    try:
        record = generate(args.image, request_params(args), args.output, settings, offline=args.offline,
                          companions={"mask": args.mask, "style_image": args.style_image})
    except JobError as exc:
        hint = "" if args.offline else " (configure AWS credentials for Bedrock, or add --offline)"
        raise ValueError(f"{exc.code}: {exc.message}{hint if exc.retryable else ''}") from None
    if record["status"] != "succeeded":
        print(f"failed ({record['error']['code']}): {record['error']['message']}", file=sys.stderr)
        print(f"record: {record['record']['key']}", file=sys.stderr)
        return 2
    out = record["outputs"][0]
    print(f"{out['key']}  ({out['width']}x{out['height']}, seed {out['seed']}, {record['model_id']})")
    print(f"record: {record['record']['key']}")
    return 0
