"""Where Bedrock serves each model this project configures, and the synth-time check that uses it.

Plain data and pure functions (no aws_cdk import). Sources: ../shared/reference/bedrock-image-models.md and
stability-image-services.md (late 2026); check `aws bedrock list-foundation-models --region <r>` before
relying on a row, and correct it here: IAM (infra/worker.py) and the check below both read this table.

How a model id is callable from a region (the region the worker's Bedrock client uses):

* a foundation-model id in `MODEL_REGIONS`: from those regions only;
* a geographic inference profile (`us.`, `eu.`, `apac.`): from the profile's source regions, which are
  the regions it routes to (`INFERENCE_PROFILE_REGIONS`); `global.`: from anywhere;
* a model id this table does not know, or an ARN: not checked (the ARN names its own region).

SDXL 1.0 is end of life in every region (calls answer ResourceNotFoundException): it is not checked, so
it stays granted wherever the worker's Bedrock region is, as the documented contract.
"""
from __future__ import annotations

from img2img.operations import PROFILE_GEOGRAPHY, PROFILE_REGIONS

SD35_LARGE = "stability.sd3-5-large-v1:0"
SDXL_V1 = "stability.stable-diffusion-xl-v1"

# Foundation models offered in single regions (on-demand, InvokeModel without a profile).
MODEL_REGIONS: dict[str, tuple[str, ...]] = {
    SD35_LARGE: ("us-west-2",),
}
# Retired on Bedrock everywhere: granted (the contract users know) but never region-checked.
END_OF_LIFE: frozenset[str] = frozenset({SDXL_V1})

# Destination regions of the geographic cross-region inference profiles (Bedrock user guide,
# "Supported Regions and models for inference profiles"). A profile may route a request to any of them,
# and IAM evaluates InvokeModel on the foundation model in the region that serves it. `us.` is the
# Image Services' geography: its regions live with them in img2img/operations.py.
INFERENCE_PROFILE_REGIONS: dict[str, tuple[str, ...]] = {
    PROFILE_GEOGRAPHY: PROFILE_REGIONS,
    "eu": ("eu-central-1", "eu-west-1", "eu-west-3", "eu-north-1"),
    "apac": ("ap-northeast-1", "ap-northeast-2", "ap-south-1", "ap-southeast-1", "ap-southeast-2"),
    "global": ("",),  # region-less foundation-model ARN
}
ANYWHERE = "global"

# The region Bedrock is called in unless `bedrockRegion` says otherwise (cdk.json): the one region that
# serves the default model (SD3.5 Large) and, through `us.` profiles, every Image Service.
DEFAULT_BEDROCK_REGION = "us-west-2"
# What `app.py` pins the stack to when neither CDK_DEFAULT_REGION nor a profile names a region.
DEFAULT_STACK_REGION = DEFAULT_BEDROCK_REGION


def invocable_from(model_id: str) -> tuple[str, ...] | None:
    """The regions whose Bedrock endpoint can invoke this model id; None when it is not checked."""
    if model_id.startswith("arn:") or model_id in END_OF_LIFE:
        return None
    prefix, _, base = model_id.partition(".")
    if prefix in INFERENCE_PROFILE_REGIONS and base:
        return None if prefix == ANYWHERE else INFERENCE_PROFILE_REGIONS[prefix]
    return MODEL_REGIONS.get(model_id)


def unavailable(model_ids: tuple[str, ...], region: str) -> dict[str, tuple[str, ...]]:
    """model id -> the regions that can invoke it, for every model that `region` cannot invoke."""
    found = {}
    for model_id in model_ids:
        regions = invocable_from(model_id)
        if regions is not None and region not in regions:
            found[model_id] = regions
    return found


def serving_all(model_ids: tuple[str, ...]) -> tuple[str, ...]:
    """The regions that can invoke every checked model id (empty if none can)."""
    sets = [set(r) for r in map(invocable_from, model_ids) if r is not None]
    if not sets:
        return ()
    common = set.intersection(*sets)
    order = [r for regions in map(invocable_from, model_ids) if regions for r in regions]
    return tuple(dict.fromkeys(r for r in order if r in common))
