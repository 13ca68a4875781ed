"""Command-line flags for the engine, shared by `python -m img2img_local.engine` and `img2img engine`."""
from __future__ import annotations

import argparse

from .faults import ERRORS, EngineConfig

DEFAULT_PORT = 8750


def _error_rate(text: str) -> tuple[str, float]:
    name, sep, rate = text.partition("=")
    if not sep or name not in ERRORS:
        raise argparse.ArgumentTypeError(f"expected Name=rate with Name one of {', '.join(ERRORS)}, got {text!r}")
    try:
        return name, float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"rate must be a number between 0 and 1, got {rate!r}") from None


def add_engine_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add --host/--port and every fault knob of EngineConfig to `parser`."""
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency added to every call")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="plus uniform random latency in [0, N]")
    parser.add_argument("--latency-mean-ms", type=float, default=0.0,
                        help="plus lognormal latency with this mean (needs --latency-p95-ms)")
    parser.add_argument("--latency-p95-ms", type=float, default=0.0, help="95th percentile of that lognormal")
    parser.add_argument("--rpm", type=int, default=None, help="requests per minute before ThrottlingException")
    parser.add_argument("--max-concurrent", type=int, default=None,
                        help="concurrent requests before ThrottlingException")
    parser.add_argument("--error-rate", type=_error_rate, action="append", default=[], metavar="NAME=RATE",
                        help="inject an error at this rate, e.g. ThrottlingException=0.1 (repeatable)")
    parser.add_argument("--block-word", action="append", default=[], metavar="WORD",
                        help="prompts with this word get 400 ValidationException invalid_prompts (repeatable)")
    parser.add_argument("--filter-word", action="append", default=[], metavar="WORD",
                        help="prompts with this word come back content-filtered (repeatable)")
    parser.add_argument("--eol-model", action="append", default=[], metavar="MODEL_ID",
                        help="answer this model with the end-of-life 404, as Bedrock does for SDXL (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="seed fault draws and random image seeds")
    return parser


def config_from_args(args: argparse.Namespace) -> EngineConfig:
    """The EngineConfig the parsed flags describe (raises faults.ConfigError on inconsistent values)."""
    return EngineConfig(
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        lognormal_mean_ms=args.latency_mean_ms,
        lognormal_p95_ms=args.latency_p95_ms,
        requests_per_minute=args.rpm,
        max_concurrent=args.max_concurrent,
        error_rates=dict(args.error_rate),
        blocked_words=tuple(args.block_word),
        filter_words=tuple(args.filter_word),
        eol_models=tuple(args.eol_model),
        seed=args.seed,
    )
