"""Synthetic lesions (issue 21): painted into no-tumor images only, inside the head, and they relabel them."""

import torch

from braintriage.synthetic_lesions import add_lesions, infiltrative_draws, mass_draws, paint_masses, pushed_outward
from conftest import synthetic_slice


def head_batch(n: int) -> torch.Tensor:
    return torch.stack([torch.from_numpy(synthetic_slice(128, seed=i)).float()[None] / 255 for i in range(n)])


def test_only_chosen_normals_change_and_become_tumors_of_unknown_type():
    images = head_batch(8)
    targets = torch.tensor([0, 0, 0, 0, 1, 2, 3, 4])  # four normals, then tumors (4: type unknown)
    weights = torch.arange(1.0, 9.0)
    out, new_targets, new_weights = add_lesions(images, targets, weights, 1.0, 4, 0.5,
                                                torch.Generator().manual_seed(0))
    changed = (out != images).flatten(1).any(1)
    assert changed[:4].all() and not changed[4:].any()
    assert new_targets.tolist() == [4, 4, 4, 4, 1, 2, 3, 4]
    assert new_weights.tolist() == [0.5] * 4 + [5.0, 6.0, 7.0, 8.0]
    # A visible mass: a few hundred pixels moved by more than 0.1.
    moved = ((out - images).abs() > 0.1).flatten(1).sum(1)[:4]
    assert (moved > 50).all(), moved


def test_nothing_is_painted_outside_the_head_and_rate_zero_changes_nothing():
    images = head_batch(6)
    out, targets, _ = add_lesions(images, torch.zeros(6, dtype=torch.long), torch.ones(6), 1.0, 1, 1.0,
                                  torch.Generator().manual_seed(1))
    background = images < 0.02
    assert torch.equal(out[background], images[background])
    assert (targets == 1).all()
    same, zero_targets, _ = add_lesions(images, torch.zeros(6, dtype=torch.long), torch.ones(6), 0.0, 1, 1.0,
                                        torch.Generator().manual_seed(1))
    assert torch.equal(same, images) and (zero_targets == 0).all()


def test_an_image_without_room_for_a_mass_is_left_a_normal():
    black = torch.zeros(2, 1, 64, 64)
    out, targets, _ = add_lesions(black, torch.zeros(2, dtype=torch.long), torch.ones(2), 1.0, 4, 1.0)
    assert torch.equal(out, black) and (targets == 0).all()


def test_the_random_stream_does_not_depend_on_which_images_get_a_mass():
    # Only the chosen images are painted (the cost), but every draw is made for the whole batch, so what a run
    # draws next is the same whichever images were normals.
    images = torch.rand(6, 1, 48, 48) * 0.8 + 0.1
    states = []
    for targets in (torch.zeros(6, dtype=torch.long), torch.tensor([1, 2, 0, 3, 0, 1]), torch.ones(6, dtype=torch.long)):
        generator = torch.Generator().manual_seed(5)
        add_lesions(images, targets, torch.ones(6), 0.5, 4, 1.0, generator)
        states.append(generator.get_state())
    assert torch.equal(states[0], states[1]) and torch.equal(states[1], states[2])


def test_as_copies_keeps_every_normal_and_adds_the_same_painted_images_after_the_batch():
    images = head_batch(8)
    targets = torch.tensor([0, 1, 0, 2, 0, 3, 0, 4])
    weights = torch.arange(1.0, 9.0)
    replaced, replaced_targets, _ = add_lesions(images, targets, weights, 0.6, 4, 0.5,
                                                torch.Generator().manual_seed(3))
    out, new_targets, new_weights = add_lesions(images, targets, weights, 0.6, 4, 0.5,
                                                torch.Generator().manual_seed(3), as_copies=True)
    painted = torch.nonzero(replaced_targets != targets).flatten()
    assert 0 < len(painted) < 4  # some normals, not all: the test sees both kinds
    assert torch.equal(out[:8], images) and new_targets[:8].tolist() == targets.tolist()
    assert torch.equal(out[8:], replaced[painted])  # the very images the replacing mode paints, in order
    assert new_targets[8:].tolist() == [4] * len(painted) and new_weights[8:].tolist() == [0.5] * len(painted)
    assert new_weights[:8].tolist() == weights.tolist()


def test_infiltrative_masses_stay_in_the_head_and_zero_share_draws_what_it_drew_before():
    images = head_batch(6)
    out, targets, _ = add_lesions(images, torch.zeros(6, dtype=torch.long), torch.ones(6), 1.0, 1, 1.0,
                                  torch.Generator().manual_seed(1), infiltrative=1.0)
    background = images < 0.02
    assert torch.equal(out[background], images[background]) and (targets == 1).all()
    assert (((out - images).abs() > 0.1).flatten(1).sum(1) > 50).all()  # visible
    plain = add_lesions(images, torch.zeros(6, dtype=torch.long), torch.ones(6), 1.0, 1, 1.0,
                        torch.Generator().manual_seed(1))[0]
    zero_share = add_lesions(images, torch.zeros(6, dtype=torch.long), torch.ones(6), 1.0, 1, 1.0,
                             torch.Generator().manual_seed(1), infiltrative=0.0)[0]
    assert torch.equal(plain, zero_share)


def test_an_infiltrative_zone_keeps_the_anatomy_a_solid_mass_replaces():
    """The point of the infiltrative kind: the tissue's pattern shows through it (a solid mass is a flat fill)."""
    n, size = 4, 96
    stripes = 0.35 + 0.25 * (torch.arange(size) // 4 % 2).float()  # anatomy: vertical stripes
    images = stripes.expand(n, 1, size, size).clone()
    centre = torch.full((n,), size // 2 * size + size // 2)
    draws = mass_draws(n, torch.Generator().manual_seed(2), "cpu", torch.float32)
    draws.update(mottle=torch.zeros(n, 1, 1, 1), ring=torch.zeros(n, 1, 1, 1, dtype=torch.bool),
                 halo=torch.zeros(n, 1, 1, 1, dtype=torch.bool), bright=torch.ones(n, 1, 1, 1, dtype=torch.bool), a=torch.full((n, 1, 1, 1), 0.12),
                 b=torch.full((n, 1, 1, 1), 0.12))
    solid = paint_masses(images, centre, draws)
    draws.update(infiltrative_draws(n, 1.0, torch.Generator().manual_seed(3), "cpu", torch.float32))
    draws.update(solid_core=torch.zeros(n, 1, 1, 1, dtype=torch.bool), push=torch.zeros(n, 1, 1, 1))
    zoned = paint_masses(images, centre, draws)
    middle = (slice(None), 0, slice(size // 2 - 6, size // 2 + 6), slice(size // 2 - 6, size // 2 + 6))
    pattern = images[middle] - images[middle].mean()

    def pattern_kept(out: torch.Tensor) -> float:
        shown = out[middle] - out[middle].mean(dim=(-2, -1), keepdim=True)
        return float((shown * pattern).sum() / (pattern * pattern).sum())

    assert pattern_kept(solid) < 0.05
    assert pattern_kept(zoned) > 0.1
    assert (zoned[middle].mean(dim=(-2, -1)) > images[middle].mean(dim=(-2, -1)) + 0.05).all()  # and brightened


def test_mass_effect_pushes_the_anatomy_away_from_the_centre():
    size = 64
    image = torch.zeros(1, 1, size, size)
    image[0, 0, 32, 40] = 1.0  # a landmark 8 px right of the centre
    cy, cx = torch.tensor([[[[32.0]]]]), torch.tensor([[[[32.0]]]])
    reach = torch.tensor([[[[16.0]]]])
    still = pushed_outward(image, cy, cx, reach, torch.zeros(1, 1, 1, 1))
    assert torch.allclose(still, image, atol=1e-6)
    pushed = pushed_outward(image, cy, cx, reach, torch.full((1, 1, 1, 1), 0.3))
    columns = torch.arange(size).float()
    landmark_x = float((pushed[0, 0].sum(0) * columns).sum() / pushed[0, 0].sum())
    assert landmark_x > 42
