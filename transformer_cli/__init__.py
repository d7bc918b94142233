"""transformer-cli: train, translate with and evaluate a from-scratch Transformer.

    from transformer_cli import load_run
    load_run("runs/toy").translate(["The dog sees the cat."])

Training from Python: `from transformer_cli.train import train` with a `load_config(...)` result.
"""

import importlib

__version__ = "0.1.0"

# Imported on first use (PEP 562), so that `tcli --help` does not wait for torch to load.
_EXPORTS = {
    "Config": "transformer_cli.config",
    "load_config": "transformer_cli.config",
    "TcliError": "transformer_cli.errors",
    "Translator": "transformer_cli.translator",
    "load_run": "transformer_cli.translator",
    "score": "transformer_cli.evaluate",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'transformer_cli' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
