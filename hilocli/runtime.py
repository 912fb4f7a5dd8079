"""Device selection and the environment a result was computed in."""

from __future__ import annotations

import os
import platform

from hilocli.errors import HiloError, UsageError


def resolve_device(choice: str = "auto"):
    """'auto' -> cuda when available else cpu; 'cuda' without CUDA is an error, not a fallback."""
    import torch

    choice = getattr(choice, "value", choice)
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise HiloError(
                "--device cuda was asked for but CUDA is not available on this machine "
                f"(torch {torch.__version__}); use --device cpu or auto"
            )
        return torch.device("cuda")
    raise UsageError(f"--device must be auto, cpu or cuda, got {choice!r}")


def environment(device=None) -> dict:
    """Versions and settings to store beside every result."""
    import matplotlib
    import numpy
    import scipy
    import torch

    from hilocli import __version__

    env = {
        "hilo": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "matplotlib": matplotlib.__version__,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    if device is not None:
        env["device"] = str(device)
        if getattr(device, "type", None) == "cuda":
            env["gpu"] = torch.cuda.get_device_name(device)
            env["cuda"] = torch.version.cuda
    return env
