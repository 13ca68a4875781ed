"""Helpers shared by the offline-engine tests: clients, request bodies, sample images, measurements."""
from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from PIL import Image, ImageChops, ImageOps, ImageStat

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SDXL = "stability.stable-diffusion-xl-v1"
SD35 = "stability.sd3-5-large-v1:0"


def bedrock_client(url: str, total_attempts: int = 1):
    """An unmodified boto3 bedrock-runtime client. total_max_attempts=1 means no retries at all
    (botocore's `max_attempts` counts retries, so max_attempts=1 would still retry once)."""
    retries = {"mode": "standard", "total_max_attempts": total_attempts}
    return boto3.client("bedrock-runtime", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x", config=Config(retries=retries, read_timeout=30))


def invoke(client, model_id: str, body: dict | bytes | str, headers: dict | None = None) -> dict:
    """InvokeModel and parse the JSON answer; `headers` go on the wire (e.g. the x-img2img-* ones)."""
    def add_headers(request, **_):
        for name, value in headers.items():
            request.headers[name] = value

    event = "before-sign.bedrock-runtime.InvokeModel"
    if headers:
        client.meta.events.register(event, add_headers)
    try:
        payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
        response = client.invoke_model(modelId=model_id, body=payload, contentType="application/json",
                                       accept="application/json")
        assert response["contentType"] == "application/json"
        return json.loads(response["body"].read())
    finally:
        if headers:
            client.meta.events.unregister(event, add_headers)


def sample(name: str, size: tuple[int, int]) -> Image.Image:
    """A real photo from samples/, cropped and scaled to exactly `size`."""
    return ImageOps.fit(Image.open(SAMPLES / name).convert("RGB"), size, Image.Resampling.BILINEAR)


def b64(image: Image.Image, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return base64.b64encode(buffer.getvalue()).decode()


def decode(data: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def sdxl_body(image_b64: str, **fields) -> dict:
    return {"text_prompts": [{"text": "a portrait in bold colours", "weight": 1.0}], "init_image": image_b64,
            "seed": 42, **fields}


def sd35_body(image_b64: str, **fields) -> dict:
    return {"prompt": "a portrait in bold colours", "mode": "image-to-image", "image": image_b64,
            "strength": 0.6, "seed": 42, **fields}


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute per-channel difference in 0..255, compared at 256 px for speed."""
    size = (256, round(256 * a.height / a.width))
    a = a.convert("RGB").resize(size, Image.Resampling.BOX)
    b = b.convert("RGB").resize(size, Image.Resampling.BOX)
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def http(method: str, url: str, payload: dict | None = None) -> tuple[int, dict, dict]:
    """Plain HTTP for the control endpoints and raw wire checks: (status, headers, JSON body)."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


# Fixtures shared by the engine's test modules (import them by name: pytest uses imported fixtures).
@pytest.fixture(scope="module")
def server():
    from img2img_local.engine import EngineConfig, EngineServer

    with EngineServer(EngineConfig(), host="127.0.0.1", port=0) as engine:
        yield engine


@pytest.fixture(autouse=True)
def fresh(server):
    """Each test starts from the start-up config with zeroed counters."""
    server.reset()


@pytest.fixture(scope="module")
def client(server):
    return bedrock_client(server.url)
