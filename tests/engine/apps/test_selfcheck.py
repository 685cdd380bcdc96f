"""The paper's proof of correctness as the CLI runs it: the R_Σ check."""

from tonno_engine.apps.selfcheck import SIZES, selfcheck_iter


def test_radon_sum_check_recovers_the_volume(device):
    """With the slice integral in place of the network the phantom comes back (quick size)."""
    result = list(selfcheck_iter("quick", device=device))[-1]
    assert result.correlation >= 0.97, result
    assert result.relative_error <= 0.2, result


def test_sizes_are_as_documented():
    assert SIZES["paper"] == (64, 96, 2000, 96)


def test_physical_geometry_check_recovers_the_whole_anisotropic_volume():
    result = list(selfcheck_iter("quick", device="cpu", geometry="physical"))[-1]
    assert result.passed and result.correlation >= 0.95, result
    assert result.shape == (64, 48, 14) and len(result.corner_recovery) == 2
    assert min(result.corner_recovery) >= 0.7, result
