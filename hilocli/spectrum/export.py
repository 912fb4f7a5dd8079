"""Per-image numbers of a spectrum run as rows: one per image, weights, layer and branch.

Written as `per_image.csv` beside `spectrum.json` (which keeps the summaries and names the file),
ready for pandas: `pd.read_csv("hilo-out/per_image.csv")`. Columns:

- image: position of the image in the run (0-based, the order of `inputs.analysed`);
- path, sha256: the file and the SHA-256 of its content;
- weights: "model" (the weights under test; in `hilo compare` each set's label) or
  "random:SEED" (a random-init control model);
- layer, module, branch: the HiLo layer index (what --layer takes), its module name, and
  hifi | lofi | control (the layer's norm1 input);
- then every per-image field of `hilocli.spectrum.measures.PER_IMAGE_FIELDS`, at full precision;
  undefined values (NaN) are empty cells.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hilocli.spectrum.measures import BRANCHES, PER_IMAGE_FIELDS

FILE_NAME = "per_image.csv"
ID_COLUMNS = ("image", "path", "sha256", "weights", "layer", "module", "branch")
COLUMNS = (*ID_COLUMNS, *PER_IMAGE_FIELDS)


def per_image_rows(result: Any, weights_name: str = "model") -> Iterator[tuple[Any, ...]]:
    """Rows in COLUMNS order for a SpectrumResult: image-major, then weights, layer, branch.
    `weights_name`: the `weights` cell of the model under test (hilo compare: its label)."""
    models = [(weights_name, result.layers)]
    seeds = result.request.seeds_of_control()
    models += [(f"random:{s}", layers) for s, layers in zip(seeds, result.control_layers)]
    for i, path in enumerate(result.inputs.analysed):
        digest = result.sha256.get(path)
        for weights, layers in models:
            for spectra in layers:
                for b in BRANCHES:
                    spec = spectra.branch(b)
                    if spec is None:
                        continue
                    values = [float(spec.per_image[k][i]) for k in PER_IMAGE_FIELDS]
                    yield (
                        i,
                        path,
                        digest,
                        weights,
                        spectra.layer.index,
                        spectra.layer.name,
                        b,
                        *values,
                    )
