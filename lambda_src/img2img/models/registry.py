"""Which adapter serves a model id: SDXL 1.0, SD3.5 Large, or one of the Image Services (by the table).

The pipeline receives `adapter_for` from assembly.py (the core never imports models/)."""
from __future__ import annotations

from functools import lru_cache

from ..core.errors import JobError
from ..core.model_api import ModelAdapter, base_model_id
from ..operations import BY_MODEL, SERVICES


@lru_cache(maxsize=1)
def adapters() -> tuple[ModelAdapter, ...]:
    from .sd35 import SD35Adapter
    from .sdxl import SDXLAdapter
    from .services import ServiceAdapter

    return (SDXLAdapter(), SD35Adapter(), *(ServiceAdapter(op) for op in SERVICES))


def adapter_for(model_id: str, source: str = "model_id") -> ModelAdapter:
    """The adapter for a model id, inference-profile id or ARN; a clear error for anything else."""
    base = base_model_id(model_id)
    for adapter in adapters():
        if adapter.matches(base):
            return adapter
    services = ", ".join(sorted(BY_MODEL))
    raise JobError(
        "invalid_parameters",
        f"model_id {model_id!r} is not an image model this pipeline supports; supported: "
        "stability.stable-diffusion-xl-v1 (SDXL 1.0), stability.sd3-5-large-v1:0 (SD3.5 Large) and the "
        "Stability Image Services (docs/operations.md), also as inference profiles (us./eu./apac./global.) or ARNs",
        details={"errors": [{"field": "model_id", "source": source, "value": model_id,
                             "message": "is not a supported image model",
                             "allowed": "stability.stable-diffusion-xl-v1, stability.sd3-5-large-v1:0, "
                                        f"{services} (or their profiles/ARNs)"}]},
    )
