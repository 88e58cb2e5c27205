"""fastfill.steady: the noise rule a held fill and a still hole share, each bound on its own."""
import numpy as np
import pytest

from fastfill import steady

TOL = 2.0


def noise(context=1.2, worst=10.0, border=0.5, blocks=(0.4, 5.0)):
    return steady.only_noise(context, worst, border, TOL, lambda: blocks)


def test_each_bound_of_the_noise_rule_decides_alone():
    """Noise passes; moving any one number past its bound (and nothing else) fails it."""
    assert noise()
    assert noise(border=TOL) and not noise(border=TOL + 0.01)  # the border as a whole
    # a border sample: 16x the bound under noise past the per-sample bound on average, 4x under
    # weaker noise
    assert noise(worst=16 * TOL) and not noise(worst=16 * TOL + 1)
    assert noise(context=TOL / 2, worst=4 * TOL) and not noise(context=TOL / 2, worst=4 * TOL + 1)
    assert noise(blocks=(TOL / 2, 5.0)) and not noise(blocks=(TOL / 2 + 0.01, 5.0))
    assert noise(blocks=(0.4, 4 * TOL)) and not noise(blocks=(0.4, 4 * TOL + 0.5))
    assert not noise(blocks=None)  # no whole block to tell noise by


def test_noise_moves_the_whole_context():
    """The context moved as a whole: its blocks' means by at least 1/32 of the bound, or, where
    rounded block means hardly move (weak noise over a flat scene), its samples by at least 1/16
    of the bound and its border alike (within a factor of 2). A change of a few samples or of the
    border alone is neither."""
    assert noise(blocks=(TOL / 32, 1.0)) and not noise(blocks=(TOL / 32 - 0.01, 1.0))
    def weak(context, border):
        return noise(context=context, worst=3.0, border=border, blocks=(0.0, 0.0))

    assert weak(0.5, 0.5) and weak(0.5, 1.0) and weak(0.5, 0.25)
    assert not weak(0.5, 1.01)  # the border moved, not the rest
    assert not weak(0.5, 0.24)  # the rest moved, not the border
    assert weak(TOL / 16, TOL / 16) and not weak(TOL / 16 - 0.01, TOL / 16)  # a few samples


def test_the_blocks_are_asked_last():
    """blocks() (the dearest) is not called when a cheaper bound already fails."""
    def never():
        raise AssertionError("blocks asked")

    assert not steady.only_noise(1.0, 10.0, TOL + 1, TOL, never)
    assert not steady.only_noise(1.0, 16 * TOL + 1, 0.5, TOL, never)


def test_block_means_and_their_moves():
    """blocks4 rounds the means of whole 4x4 blocks (a ragged edge left out); known_blocks keeps
    the blocks wholly known; block_difference gives the mean and the largest move."""
    a = np.arange(10 * 9, dtype=np.uint8).reshape(10, 9)
    means = steady.blocks4(a)
    assert means.shape == (2, 2) and means.dtype == np.int16
    assert means[1, 1] == int(np.floor(a[4:8, 4:8].mean() + 0.5))
    known = np.ones((10, 9), bool)
    known[0, 0] = False  # the first block is not whole
    which, ref = steady.known_blocks(a, known)
    assert which.tolist() == [[False, True], [True, True]] and len(ref) == 3
    moved = a.astype(int)
    moved[4:8, 4:8] += 8  # one block, by 8
    mean, largest = steady.block_difference(moved.astype(np.uint8), which, ref)
    assert largest == 8 and mean == pytest.approx(8 / 3)
    assert steady.known_blocks(a, np.zeros((10, 9), bool)) is None


def test_unchanged_is_the_per_sample_bounds_or_noise():
    """Within the per-sample bounds (no border sample past the bound, the context on average
    within half of it) a fill fits as it is, whatever the blocks say; past them, only as noise."""
    def never():
        raise AssertionError("blocks asked")

    assert steady.unchanged(TOL / 2, TOL, 0.0, TOL, never)
    assert not steady.unchanged(TOL / 2, TOL + 1, 0.0, TOL, lambda: None)  # no noise either
    assert steady.unchanged(1.2, 10.0, 0.5, TOL, lambda: (0.4, 5.0))  # noise
    assert not steady.unchanged(1.2, 10.0, 0.5, TOL, lambda: (1.1, 5.0))
