"""Global models packed two grid values per field element (fedmarket/packing.py): exact elements,
the float unpacking, and the circuit's unpacking on a real EZKL build at each rebase scale the
round (8) and settlement circuits (16 for LR, 24 for the MLP) use, including the check that makes
it unique."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedmarket.errors import ZKError
from fedmarket.fixed_point import FRAC_BITS, MAX_ABS, STEP
from fedmarket.packing import OFFSET, PAIR_BITS, always_one, pack_pairs, packed_size, unpack_pairs
from fedmarket.zk import RunArgs, build_circuit
from fedmarket.zk.ezkl.prover import circuit_outputs

EDGE = MAX_ABS - STEP  # the largest magnitude in the provable range


def test_pairs_pack_into_exact_elements():
    # steps 256, -640, 1 (and a 0 to make the pair): (256 + 2^18) - 640 x 2^20, 1 + 2^18
    packed = pack_pairs(np.array([1.0, -2.5, STEP]))
    assert packed.tolist() == [(256 + 2**18 - 640 * 2**20) * STEP, (1 + 2**18) * STEP]
    assert OFFSET == 2**18 and PAIR_BITS == 20


def test_unpacking_in_float_returns_every_value():
    rng = np.random.default_rng(3)
    values = np.concatenate([[-EDGE, EDGE, 0.0, -STEP, EDGE], np.round(rng.uniform(-EDGE, EDGE, 96) / STEP) * STEP])
    for dim in (values.size, values.size - 1):  # even, and odd with a padded last element
        packed = torch.from_numpy(pack_pairs(values[:dim])).reshape(1, -1)
        unpacked, short = unpack_pairs(packed, dim, torch.ones(1, 1, dtype=torch.float64))
        assert unpacked.numpy()[0].tolist() == values[:dim].tolist()
        assert short.shape == (1, packed_size(dim)) and short.abs().max() == 0


def test_off_the_grid_or_out_of_range_values_do_not_pack():
    with pytest.raises(ZKError, match="grid"):
        pack_pairs(np.array([0.1]))
    with pytest.raises(ZKError, match="provable range"):
        pack_pairs(np.array([MAX_ABS]))


class _Unpack(torch.nn.Module):
    def __init__(self, dim: int, rebase_scale: int):
        super().__init__()
        self.dim, self.rebase_scale = dim, rebase_scale

    def forward(self, packed, flag):
        values, short = unpack_pairs(packed, self.dim, always_one(flag), self.rebase_scale)
        return values, short


@pytest.mark.parametrize("multiplier", [1, 2, 3])
def test_the_circuit_unpacks_exactly_and_refuses_a_second_reading(tmp_path, multiplier):
    values = np.array([-EDGE, EDGE, 3.0, -STEP, 0.5, 0.0])
    packed = pack_pairs(values)
    # an element whose first value sits past its range: the range check on the quotient alone
    # would read it two ways, and EZKL's rounding takes the one the check refuses
    second = packed.copy()
    second[2] = (2 * OFFSET + 5 + (7 << PAIR_BITS)) * STEP
    build = build_circuit(
        f"unpack-x{multiplier}",
        _Unpack(values.size, FRAC_BITS * multiplier).double(),
        [torch.zeros(1, packed.size, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)],
        tmp_path,
        run_args=RunArgs(
            num_inner_cols=1, scale_rebase_multiplier=multiplier, rebase_frac_zero_constants=multiplier > 1
        ),
    )
    scale = build.settings()["model_output_scales"][0]
    for flag in (0.0, 1.0):  # `one` is 1 whatever the public flag holds
        unpacked, short = circuit_outputs(build, [packed.reshape(1, -1), np.array([[flag]])])
        assert [v * 2.0**-scale for v in unpacked] == values.tolist()
        assert short == [0, 0, 0]
    # EZKL rounds its quotient up to 8, leaving x = 2^19 + 5 - 2^20 steps: |x| - x = 2 (2^19 - 5)
    _, short = circuit_outputs(build, [second.reshape(1, -1), np.array([[1.0]])])
    assert [v * 2.0**-scale for v in short] == [0, 0, 2 * (2 * OFFSET - 5) * STEP]
