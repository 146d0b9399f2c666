import torch

from braintriage.augment import AugmentPolicy, augment_batch, sample_affine


def spot_image(n: int, size: int = 64) -> torch.Tensor:
    """A bright spot near the top-left corner of a dark image."""
    x = torch.zeros(n, 1, size, size)
    x[:, :, 8:16, 8:16] = 1.0
    return x


def centre_of_mass(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    size = x.shape[-1]
    coords = torch.arange(size, dtype=torch.float32)
    mass = x.sum(dim=(1, 2, 3)).clamp(min=1e-6)
    return (x.sum(dim=(1, 3)) @ coords / mass), (x.sum(dim=(1, 2)) @ coords / mass)  # (row, col)


def test_never_flips_vertically_but_does_flip_horizontally():
    policy = AugmentPolicy(brightness=(1.0, 1.0))
    out = augment_batch(spot_image(400), policy, torch.Generator().manual_seed(0))
    row, col = centre_of_mass(out)
    assert (row < 32).all(), "the spot at the top must stay in the top half"
    mirrored = (col > 32).float().mean()
    assert 0.3 < mirrored < 0.7, "about half the images are mirrored left-right"


def test_transforms_are_similarities_without_shear():
    theta = sample_affine(1000, AugmentPolicy(zoom=(0.8, 1.25), rotation_degrees=10),
                          torch.Generator().manual_seed(1))
    a = theta[:, :, :2]
    gram = a @ a.transpose(1, 2)
    scale = gram[:, 0, 0]
    assert torch.allclose(gram[:, 1, 1], scale, atol=1e-5) and gram[:, 0, 1].abs().max() < 1e-5
    assert (a[:, 1, 1] > 0).all()  # y axis never negated
    angles = torch.rad2deg(torch.atan2(a[:, 1, 0].abs(), a[:, 1, 1]))
    assert angles.max() <= 10.0 + 1e-3


def test_brightness_range_and_output_range():
    x = torch.full((200, 1, 16, 16), 0.5)
    policy = AugmentPolicy(zoom=(1.0, 1.0), rotation_degrees=0, horizontal_flip=0, brightness=(0.6, 1.5))
    out = augment_batch(x, policy, torch.Generator().manual_seed(2))
    centre = out[:, 0, 8, 8]
    assert centre.min() >= 0.3 - 1e-4 and centre.max() <= 0.75 + 1e-4
    assert centre.max() - centre.min() > 0.3
    loud = AugmentPolicy(gamma=(0.5, 2.0), noise=0.1)
    out = augment_batch(torch.rand(50, 1, 16, 16), loud, torch.Generator().manual_seed(3))
    assert out.min() >= 0 and out.max() <= 1 and out.shape == (50, 1, 16, 16)


def test_batched_augmentation_matches_the_per_image_version_in_distribution():
    """The device-side batch version and the PIL per-image version, 3000 draws each of the bundled recipe's
    policy on one image: the distributions of where the content lands, how big and how bright it is agree."""
    import numpy as np
    from scipy.stats import ks_2samp

    from braintriage.augment import augment_image

    size = 64
    img = np.zeros((size, size), np.uint8)
    img[14:30, 10:22] = 200  # an off-centre block: rotation, zoom, shift and mirror all move its statistics
    policy = AugmentPolicy(zoom=(0.75, 1.3), rotation_degrees=15, translate=0.1, gamma=(0.6, 1.6),
                           brightness=(0.6, 1.5))
    n = 3000
    batched = augment_batch(torch.from_numpy(np.repeat(img[None, None], n, 0)).float() / 255, policy,
                            torch.Generator().manual_seed(0))[:, 0].numpy()
    rng = np.random.default_rng(0)
    single = np.stack([augment_image(img, policy, rng) for _ in range(n)])

    def stats(x: np.ndarray) -> dict[str, np.ndarray]:
        mass = x.sum(axis=(1, 2)) + 1e-9
        coords = np.arange(size)
        return {"row": (x.sum(2) @ coords) / mass, "col": (x.sum(1) @ coords) / mass,
                "area": (x > 0.1).sum(axis=(1, 2)), "peak": x.max(axis=(1, 2))}

    a, b = stats(batched), stats(single)
    for name in a:
        assert ks_2samp(a[name], b[name]).pvalue > 1e-3, name
    assert abs((a["col"] > size / 2).mean() - (b["col"] > size / 2).mean()) < 0.05  # mirrored share


def test_progressive_resizing_downscales_without_moving_or_dimming_the_content():
    x = spot_image(4, size=64)
    identity = AugmentPolicy(zoom=(1.0, 1.0), rotation_degrees=0, horizontal_flip=0, brightness=(1.0, 1.0))
    small = augment_batch(x, identity, torch.Generator().manual_seed(0), size=32)
    assert small.shape == (4, 1, 32, 32)
    # Anti-aliased: the spot keeps its share of the image's brightness and its place (scaled by half).
    assert abs(small.mean() - x.mean()) < 1e-3
    row, col = centre_of_mass(small)
    assert torch.allclose(row, torch.full((4,), 5.5), atol=0.3) and torch.allclose(col, torch.full((4,), 5.5),
                                                                                   atol=0.3)
    same = augment_batch(x, identity, torch.Generator().manual_seed(0), size=64)
    assert torch.allclose(same, x, atol=1e-5)


def test_blur_and_bias_field_match_the_per_image_version_in_distribution():
    """Blur (how much fine texture survives) and the coil-shading field (how unevenly a flat image ends up
    lit) have the same distributions in the batched and the per-image versions."""
    import numpy as np
    from scipy.stats import ks_2samp

    from braintriage.augment import augment_image

    size, n = 48, 1500
    # Stripes with a period of 6 pixels: blur fades them smoothly over the whole range of sigma.
    img = np.repeat((128 + 100 * np.cos(np.arange(size) * 2 * np.pi / 6))[None], size, 0).astype(np.uint8)
    still = dict(zoom=(1.0, 1.0), rotation_degrees=0, horizontal_flip=0, brightness=(1.0, 1.0))
    for policy, stat in [
        (AugmentPolicy(**still, blur=1.5), lambda x: x[:, 8:-8, 8:-8].std(axis=(1, 2))),
        (AugmentPolicy(**still, bias_field=0.4), lambda x: np.log(x[:, :, :size // 2].mean(axis=(1, 2))
                                                                 / x[:, :, size // 2:].mean(axis=(1, 2)))),
    ]:
        batch = torch.from_numpy(np.repeat(img[None, None], n, 0)).float() / 255
        batched = augment_batch(batch, policy, torch.Generator().manual_seed(0))[:, 0].numpy()
        rng = np.random.default_rng(0)
        single = np.stack([augment_image(img, policy, rng) for _ in range(n)])
        # Rounded: an unblurred image gives one value, and float noise must not split it into two for KS.
        a, b = np.round(stat(batched), 4), np.round(stat(single), 4)
        assert a.std() > 0.01 and ks_2samp(a, b).pvalue > 1e-3, policy
    sharp = augment_batch(batch[:4], AugmentPolicy(**still), torch.Generator().manual_seed(0))
    blurred = augment_batch(batch[:4], AugmentPolicy(**still, blur=3.0), torch.Generator().manual_seed(1))
    assert blurred.shape == sharp.shape and abs(blurred.mean() - sharp.mean()) < 0.01  # blur keeps brightness


def two_tissues(n: int):
    """A 32x32 image with a dark and a bright "tissue" on black, n copies as a float batch, and a policy with
    no geometry or brightness change."""
    import numpy as np

    img = np.zeros((32, 32), np.uint8)
    img[8:24, 8:16], img[8:24, 16:24] = 60, 200
    still = dict(zoom=(1.0, 1.0), rotation_degrees=0, horizontal_flip=0, brightness=(1.0, 1.0))
    return img, torch.from_numpy(np.repeat(img[None, None], n, 0)).float() / 255, still


def test_intensity_curves_keep_background_black_and_match_the_per_image_version():
    """The random intensity curve keeps black black and leaves the image's shape alone, can turn a bright
    tissue dark and a dark one bright (contrast reordered), is off with probability 0, and has the same
    distribution in the batched and the per-image versions."""
    import numpy as np
    from scipy.stats import ks_2samp

    from braintriage.augment import augment_image

    n = 1500
    img, batch, still = two_tissues(n)
    policy = AugmentPolicy(**still, intensity_remap=0.5)
    batched = augment_batch(batch, policy, torch.Generator().manual_seed(0))[:, 0].numpy()
    assert np.all(batched[:, :8] == 0) and np.all(batched[:, 24:] == 0)  # background stays black
    dark, bright = batched[:, 12, 12], batched[:, 12, 20]
    untouched = np.isclose(dark, 60 / 255, atol=1e-4) & np.isclose(bright, 200 / 255, atol=1e-4)
    assert 0.4 < untouched.mean() < 0.6  # half the images keep their intensities
    assert (dark > bright).mean() > 0.15  # and some of the others swap the two tissues' order
    off = augment_batch(batch[:8], AugmentPolicy(**still), torch.Generator().manual_seed(0))
    assert torch.allclose(off, batch[:8], atol=1e-5)
    rng = np.random.default_rng(0)
    single = np.stack([augment_image(img, policy, rng) for _ in range(n)])
    for a, b in [(dark, single[:, 12, 12]), (bright, single[:, 12, 20])]:
        assert ks_2samp(np.round(a, 4), np.round(b, 4)).pvalue > 1e-3


def test_contrast_inversion_swaps_tissues_inside_the_head_and_keeps_the_background_black():
    import numpy as np
    from scipy.stats import ks_2samp

    from braintriage.augment import augment_image

    n = 800
    img, batch, still = two_tissues(n)
    policy = AugmentPolicy(**still, invert=0.5)
    out = augment_batch(batch, policy, torch.Generator().manual_seed(0))[:, 0].numpy()
    assert np.all(out[:, :8] == 0) and np.all(out[:, 24:] == 0)
    dark, bright = out[:, 12, 12], out[:, 12, 20]
    inverted = dark > bright
    assert 0.4 < inverted.mean() < 0.6
    assert np.allclose(dark[inverted], 1 - 60 / 255, atol=1e-4) and np.allclose(bright[inverted], 1 - 200 / 255,
                                                                                 atol=1e-4)
    rng = np.random.default_rng(0)
    single = np.stack([augment_image(img, policy, rng) for _ in range(n)])
    assert ks_2samp(dark, single[:, 12, 12]).pvalue > 1e-3


def test_histogram_matching_gives_an_image_its_partners_head_histogram_and_keeps_its_anatomy():
    """Matched to another image of the batch, an image's head pixels take the partner's grey levels at the
    same quantiles (its histogram becomes the partner's), keep their order (a darker tissue stays darker, one
    grey level stays one grey level), and the background stays as it was; probability 0 leaves the batch alone."""
    import numpy as np

    from braintriage.augment import HEAD_LEVEL, match_histograms

    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(6, 1, 40, 40, generator=gen) * 255).round() / 255
    images[:, :, :10] = 0.0  # a black background band
    images[::2] = images[::2] ** 3  # half the batch dark, half bright: their histograms differ
    with_flat_region = images.clone()
    with_flat_region[:, :, 10:14] = 0.5  # one grey level over many pixels
    flat = match_histograms(with_flat_region, 1.0, torch.Generator().manual_seed(1))[:, :, 10:14]
    assert all(len(torch.unique(f)) == 1 for f in flat)  # a flat region stays flat
    matched = match_histograms(images, 1.0, torch.Generator().manual_seed(1))
    replay = torch.Generator().manual_seed(1)
    torch.rand(6, generator=replay)
    partner = torch.randperm(6, generator=replay)
    changed = 0
    for i, j in enumerate(partner.tolist()):
        head = images[i] >= HEAD_LEVEL
        assert torch.equal(matched[i][~head], images[i][~head])
        if i == j:
            assert torch.equal(matched[i], images[i])
            continue
        changed += 1
        before, after = images[i][head].numpy(), matched[i][head].numpy()
        order = np.argsort(before, kind="stable")
        assert np.all(np.diff(after[order]) >= 0)  # the anatomy's contrast order stays
        partner_head = images[j][images[j] >= HEAD_LEVEL].numpy()
        for q in (0.1, 0.5, 0.9):
            assert abs(np.quantile(after, q) - np.quantile(partner_head, q)) < 0.03
        assert abs(np.median(after) - np.median(before)) > 0.05 or (i % 2) == (j % 2)
    assert changed >= 4
    assert torch.equal(match_histograms(images, 0.0, torch.Generator().manual_seed(1)), images)
    policy = AugmentPolicy(zoom=(1.0, 1.0), rotation_degrees=0, horizontal_flip=0, brightness=(1.0, 1.0),
                           histogram_match=1.0)
    through_the_policy = augment_batch(images, policy, torch.Generator().manual_seed(2))
    assert not torch.allclose(through_the_policy, images, atol=1e-3)


def test_histogram_partners_of_the_other_class_give_each_class_the_others_grey_levels():
    """With partners of the other class, a normal takes a tumor's head histogram and a tumor a normal's, never
    one of its own class; a batch of one class is left as it is; a policy names only known partner rules."""
    import pytest

    from braintriage.augment import HEAD_LEVEL, match_histograms

    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(8, 1, 32, 32, generator=gen) * 255).round() / 255
    images[:, :, :8] = 0.0
    tumor = torch.tensor([True, True, True, True, True, True, False, False])
    images[tumor] = images[tumor] ** 3  # the tumors dark, the two normals bright: the classes' histograms differ
    matched = match_histograms(images, 1.0, torch.Generator().manual_seed(1), tumor)
    for i in range(8):
        head = images[i] >= HEAD_LEVEL
        assert torch.equal(matched[i][~head], images[i][~head])
        after = matched[i][head]
        other = images[~tumor if tumor[i] else tumor]
        other_median = float(torch.median(other[other >= HEAD_LEVEL]))
        own = images[tumor if tumor[i] else ~tumor]
        own_median = float(torch.median(own[own >= HEAD_LEVEL]))
        # every image changed class of histogram: its median moved to the other class's side
        assert abs(float(torch.median(after)) - other_median) < abs(float(torch.median(after)) - own_median)
    one_class = match_histograms(images[tumor], 1.0, torch.Generator().manual_seed(1), tumor[tumor])
    assert torch.equal(one_class, images[tumor])
    with pytest.raises(ValueError):
        AugmentPolicy(histogram_partners="same-source")
    policy = AugmentPolicy(zoom=(1.0, 1.0), rotation_degrees=0, horizontal_flip=0, brightness=(1.0, 1.0),
                           histogram_match=1.0, histogram_partners="other-class")
    through_the_policy = augment_batch(images, policy, torch.Generator().manual_seed(2), tumor=tumor)
    before, after = images[~tumor], through_the_policy[~tumor]
    # the bright normals came out dark, as the tumors are
    assert float(torch.median(after[after >= HEAD_LEVEL])) < float(torch.median(before[before >= HEAD_LEVEL])) - 0.2


def test_matching_to_one_histogram_gives_every_image_the_same_head_histogram():
    """match_to_histogram: images as different as dark and bright come out with the reference's head quantiles,
    their contrast order and their background unchanged."""
    import numpy as np

    from braintriage.augment import HEAD_LEVEL, head_histograms, match_to_histogram

    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(6, 1, 40, 40, generator=gen) * 255).round() / 255
    images = images ** torch.linspace(0.5, 3.0, 6)[:, None, None, None]
    images[:, :, :8] = 0.0
    _, _, counts = head_histograms(images.reshape(6, -1))
    pooled = counts.sum(0)
    matched = match_to_histogram(images, pooled)
    levels = torch.arange(len(pooled), dtype=torch.float32) / (len(pooled) - 1)
    reference = np.repeat(levels.numpy(), pooled.long().numpy())
    medians_before = []
    for i in range(6):
        head = images[i] >= HEAD_LEVEL
        assert torch.equal(matched[i][~head], images[i][~head])
        before, after = images[i][head].numpy(), matched[i][head].numpy()
        assert np.all(np.diff(after[np.argsort(before, kind="stable")]) >= 0)
        for q in (0.1, 0.5, 0.9):
            assert abs(np.quantile(after, q) - np.quantile(reference, q)) < 0.03
        medians_before.append(np.median(before))
    assert max(medians_before) - min(medians_before) > 0.3  # they did differ before
