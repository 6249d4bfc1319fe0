__version__ = '0.1.0'

# The Python API for notebooks and scripts, loaded on first use (PEP 562) so that `import lightdet` and the
# light command-line tools do not import Lightning and Hydra up front.
_API = {
    "compose": "lightdet.api",
    "train": "lightdet.api",
    "evaluate": "lightdet.api",
    "TrainResult": "lightdet.api",
    "Predictor": "lightdet.inference",
    "load_weights": "lightdet.checkpoint.load",
}
__all__ = ["__version__", *_API]

#: Old public names that keep working: ``lightdet.Detector`` was the image-in, detections-out predictor,
#: renamed so that ``Detector`` means one thing (the model base class, ``lightdet.models.Detector``).
_RENAMED = {"Detector": "Predictor"}


def __getattr__(name: str):
    if name in _RENAMED:
        import warnings

        new = _RENAMED[name]
        warnings.warn(f"lightdet.{name} is now lightdet.{new}", DeprecationWarning, stacklevel=2)
        return __getattr__(new)
    if name not in _API:
        raise AttributeError(f"module 'lightdet' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value
