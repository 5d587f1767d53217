"""benchmarks/effects.py compares each effect with a plain torch version of the node packs' formula: the
formulas must compute what Darkroom computes where docs/effects.md says the two agree, or the speed
ratio would compare different work."""

from __future__ import annotations

import pytest
import torch

from benchmarks._node_formulas import FORMULAS
from benchmarks.effects import ENABLED, node_rows, params_for
from worker.effects import load_all
from worker.effects.chain import run_chain

load_all()

# Effects whose formula and parameters docs/effects.md calls the node's own ("same as the node"); the
# others differ on purpose (borders, noise, masks), so only their speed is compared.
SAME_MATHS = ("parabolize", "tint", "solarize", "desaturate", "vignette", "color_correction")


def _images(h: int = 24, w: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, h, w, 3, generator=g), torch.rand(1, h, w, 3, generator=g)


@pytest.mark.parametrize("name", SAME_MATHS)
def test_formula_matches_darkroom_where_the_docs_say_they_agree(name: str) -> None:
    x, other = _images()
    theirs = FORMULAS[name](x, other, ENABLED[name]).clamp(0, 1)
    with torch.inference_mode():
        ours = run_chain(x.permute(0, 3, 1, 2).contiguous(), [[(name, params_for(name, {}))]], [1],
                         {"dissolve": other.permute(0, 3, 1, 2).contiguous()})
    assert torch.allclose(ours.permute(0, 2, 3, 1), theirs, atol=2e-5)


def test_every_effect_has_a_formula_and_a_row() -> None:
    assert set(FORMULAS) == set(ENABLED)
    rows = node_rows(32, 1, floor=0.01)
    assert [r.label for r in rows] == [f"{name} (enabled)" for name in ENABLED]
    assert all(r.result in ("PASS", "MISS") and "node formula" in r.spread for r in rows)
