"""`hilo convert`: any checkpoint hilo loads as LITv2 (the authors', OpenMixup's, birder's, with
any wrapper or prefix) written in the authors' layout: `.pth` as {"model": state_dict} (plus a
`hilo_convert` dict of strings naming the source), or `.safetensors` (the bare state dict, the
same record as metadata). The file appears whole or not at all (temporary file, then rename).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from hilocli.checkpoint import load_model
from hilocli.errors import UsageError
from hilocli.inputs import refuse_special
from hilocli.outfolder import atomic_write
from hilocli.output import RunRecord, sha256_file
from hilocli.runtime import environment

FORMATS = {".pth": "pth", ".pt": "pth", ".safetensors": "safetensors"}


@dataclass(frozen=True)
class ConvertRequest:
    source: Path
    dest: Path
    window_sizes: tuple[int, ...] | None = None
    head_dim: int | None = None
    overwrite: bool = False

    @property
    def format(self) -> str:
        return FORMATS[self.dest.suffix.lower()]

    def validate(self) -> ConvertRequest:
        if not self.source.exists():
            raise UsageError(f"{self.source}: no such file")
        if self.source.is_dir():
            raise UsageError(f"{self.source} is a folder, not a file")
        refuse_special(self.source, str(self.source))
        if self.dest.suffix.lower() not in FORMATS:
            raise UsageError(
                f"{self.dest}: the output must end in .pth or .safetensors (it picks the format)"
            )
        if self.dest.exists() and not self.overwrite:
            raise UsageError(f"{self.dest} exists; pass --overwrite to replace it")
        if self.dest.resolve() == self.source.resolve():
            raise UsageError("the output would replace the input; choose another name")
        if not self.dest.parent.is_dir():
            raise UsageError(f"{self.dest.parent}: no such folder")
        return self


@dataclass
class ConvertResult:
    request: ConvertRequest
    weights: dict[str, Any]
    num_tensors: int
    num_params: int
    dest_sha256: str

    def to_record(self) -> RunRecord:
        return RunRecord(
            command="convert",
            settings={
                "source": self.request.source,
                "dest": self.request.dest,
                "format": self.request.format,
            },
            weights=self.weights,
            environment=environment("cpu"),
            results={
                "num_tensors": self.num_tensors,
                "num_params": self.num_params,
                "source_layout": self.weights.get("layout") or "authors",
                "source_sha256": self.weights.get("sha256"),
                "dest_sha256": self.dest_sha256,
            },
            files={"checkpoint": str(self.request.dest)},
        )


def run(request: ConvertRequest) -> ConvertResult:
    """Load (strictly, into hilo's LITv2: proof the tensors compute a LITv2), then write."""
    loaded = load_model(
        checkpoint=request.source,
        window_sizes=list(request.window_sizes) if request.window_sizes else None,
        head_dim=request.head_dim,
        progress=False,
    )
    prov = loaded.provenance
    state = {k: v.detach().cpu().contiguous() for k, v in loaded.model.state_dict().items()}
    note = {
        "source": str(request.source),
        "source_sha256": str(prov.sha256),
        "source_layout": prov.layout or "authors",
        "written_by": "hilo convert",
    }
    if request.format == "pth":
        atomic_write(request.dest, lambda p: torch.save({"model": state, "hilo_convert": note}, p))
    else:
        atomic_write(request.dest, lambda p: save_file(state, str(p), metadata=note))
    return ConvertResult(
        request=request,
        weights=prov.to_dict(),
        num_tensors=len(state),
        num_params=sum(p.numel() for p in loaded.model.parameters()),
        dest_sha256=sha256_file(request.dest),
    )
