"""One view of "a model with HiLo layers": the functional core (`core`), a layer found by
structure (`discover`, `layer.HiLoLayer`), how modules are called (`signature`) and the one
capture (`capture`). LITv2 is one case of it."""
