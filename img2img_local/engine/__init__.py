"""Offline Bedrock engine: bedrock-runtime's InvokeModel on loopback, with classical image treatments
standing in for diffusion and configurable faults. See docs/offline-engine.md."""
from .cli import add_engine_arguments, config_from_args
from .faults import ERRORS, ConfigError, EngineConfig
from .server import EngineServer, serve

__all__ = ["ERRORS", "ConfigError", "EngineConfig", "EngineServer", "add_engine_arguments", "config_from_args",
           "serve"]
