from pathlib import Path

import pytest
from PIL import Image

from braintriage.datasets import DatasetLayoutError, load_dataset
from conftest import synthetic_slice


def put(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(synthetic_slice(32, seed=i)).save(folder / f"{i}.png")


def test_seed_layout_reads_each_split_with_types(tmp_path):
    for split, n in (("Training", 3), ("Testing", 1)):
        for t in ("glioma_tumor", "meningioma_tumor", "pituitary_tumor", "no_tumor"):
            put(tmp_path / split / t, n)
    train = load_dataset(tmp_path, "training")
    test = load_dataset(tmp_path, "testing")
    assert (train.layout, len(train), len(test)) == ("seed", 12, 4)
    assert sum(s.tumor for s in train.samples) == 9 and train.has_types
    assert {s.tumor_type for s in train.samples} == {"glioma", "meningioma", "pituitary", "no_tumor"}
    assert train.fingerprint() != test.fingerprint()


def test_type_folders_without_splits(tmp_path):
    for t in ("glioma_tumor", "meningioma_tumor", "pituitary_tumor", "no_tumor"):
        put(tmp_path / t, 2)
    ds = load_dataset(tmp_path)
    assert ds.layout == "types" and len(ds) == 8


@pytest.mark.parametrize("pos,neg", [("tumor", "no_tumor"), ("yes", "no")])
def test_two_folder_layouts(tmp_path, pos, neg):
    put(tmp_path / pos, 3)
    put(tmp_path / neg, 2)
    ds = load_dataset(tmp_path)
    assert ds.layout == "two-folder" and len(ds) == 5
    assert sorted(s.tumor for s in ds.samples) == [0, 0, 1, 1, 1]
    assert not ds.has_types


def test_csv_manifest(tmp_path):
    put(tmp_path / "img", 4)
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label\nimg/0.png,tumor\nimg/1.png,no_tumor\nimg/2.png,glioma\nimg/3.png,0\n")
    ds = load_dataset(manifest)
    assert [s.tumor for s in ds.samples] == [1, 0, 1, 0]
    assert ds.samples[2].tumor_type == "glioma"
    manifest.write_text("path,label\nimg/0.png,maybe\n")
    with pytest.raises(DatasetLayoutError, match="line 2"):
        load_dataset(manifest)


def test_unknown_layout_names_the_known_ones(tmp_path):
    put(tmp_path / "random", 1)
    with pytest.raises(DatasetLayoutError, match="Known dataset layouts.*tumor/ \\+ no_tumor/.*CSV"):
        load_dataset(tmp_path)


@pytest.mark.dataset
def test_seed_dataset_counts(seed_data):
    train, test = load_dataset(seed_data, "training"), load_dataset(seed_data, "testing")
    assert (len(train), len(test)) == (2870, 394)
    assert sum(1 - s.tumor for s in train.samples) + sum(1 - s.tumor for s in test.samples) == 500


def test_two_writers_of_one_cache_file_both_finish(tmp_path, monkeypatch):
    """Runs started side by side build the same cache at once: a second writer that finishes between the first's
    write and its rename must not take the first's temporary file away (it did: FileNotFoundError)."""
    import os

    from braintriage import atomic_files, cache
    from braintriage.preprocess import PreprocessConfig

    put(tmp_path / "data" / "yes", 2)
    put(tmp_path / "data" / "no", 2)
    decoded = cache.decode_dataset(load_dataset(tmp_path / "data"), PreprocessConfig(size=32))
    target = tmp_path / "c.npz"
    real_replace, real_getpid = os.replace, os.getpid
    calls = []

    def replace_after_another_writer(src, dst):
        calls.append(str(src))
        if len(calls) == 1:  # the other writer, another process, start to finish
            monkeypatch.setattr(atomic_files.os, "getpid", lambda: real_getpid() + 1)
            decoded.save(target)
            monkeypatch.setattr(atomic_files.os, "getpid", real_getpid)
        real_replace(src, dst)

    monkeypatch.setattr(atomic_files.os, "replace", replace_after_another_writer)
    decoded.save(target)
    assert len(calls) == 2 and calls[0] != calls[1]
    assert len(cache.DecodedSet.load(target)) == 4
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["c.npz"]  # no temporary file left behind
