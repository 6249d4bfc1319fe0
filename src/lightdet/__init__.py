__version__ = '0.1.0'

# The Python API for notebooks and scripts, loaded on first use (PEP 562) so that `import lightdet` and the
# light command-line tools do not import Lightning and Hydra up front.
_API = {
    "compose": "lightdet.api",
    "train": "lightdet.api",
    "evaluate": "lightdet.api",
    "TrainResult": "lightdet.api",
    "Detector": "lightdet.inference",
    "load_weights": "lightdet.checkpoint.load",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'lightdet' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value
