import json

import numpy as np
import pytest
from PIL import Image
from click.testing import CliRunner

from braintriage.audit import audit
from braintriage.cli import app
from conftest import blocks




def test_audit_finds_copies_leaks_conflicts_and_bad_files(tmp_path):
    folders = ("glioma_tumor", "meningioma_tumor", "pituitary_tumor", "no_tumor")
    for split in ("Training", "Testing"):
        for f in folders:
            (tmp_path / split / f).mkdir(parents=True)
    train, test = tmp_path / "Training", tmp_path / "Testing"
    for i, f in enumerate(folders):
        Image.fromarray(blocks(i)).save(train / f / "a.png")
    Image.fromarray(blocks(10)).save(train / "glioma_tumor" / "b.png")
    Image.fromarray(blocks(10)).save(train / "no_tumor" / "b-copy.png")  # same pixels, other class
    Image.fromarray(blocks(0)).save(test / "glioma_tumor" / "leak.png")  # file-identical to a training image
    noisy = blocks(1).astype(int) + np.random.default_rng(0).integers(-3, 4, (128, 128))
    Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(test / "meningioma_tumor" / "near.jpg", quality=90)
    Image.fromarray(blocks(20)).save(test / "pituitary_tumor" / "new.png")
    (test / "no_tumor" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")

    a = audit(tmp_path)
    assert a["splits"]["training"]["images"] == 6 and a["splits"]["testing"]["images"] == 4
    assert a["splits"]["testing"]["classes"] == {"meningioma": 1, "glioma": 1, "pituitary": 1, "no_tumor": 1}
    assert [u["path"] for u in a["unreadable"]] == ["no_tumor/broken.png"]
    assert a["exact_duplicates"]["pixel_identical_groups"] == 2  # b/b-copy, a/leak
    assert a["label_conflicts"]["pixel_identical_groups"] == 1
    assert a["leaked_images"] == 2 and sorted(a["leaked_paths"]) == ["glioma_tumor/leak.png",
                                                                     "meningioma_tumor/near.jpg"]
    assert a["leaked_file_identical"] == 1 and a["cross_split_groups"]["groups"] == 2
    assert a["modes"] == {"L": 9}


def test_audit_cli_writes_json(tmp_path):
    for folder in ("yes", "no"):
        (tmp_path / folder).mkdir()
        Image.fromarray(blocks(len(folder))).save(tmp_path / folder / "x.png")
    result = CliRunner().invoke(app, ["audit", str(tmp_path), "--json", str(tmp_path / "a.json")])
    assert result.exit_code == 0, result.output
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["images"] == 2 and a["leaked_images"] == 0 and a["layout"] == "two-folder"


@pytest.mark.dataset
def test_seed_dataset_leak_count(seed_data):
    a = audit(seed_data)
    # Documented threshold: pHash (64 bits) within 6 bits, or identical file/pixels.
    assert a["leaked_images"] == 271 and a["leaked_at_phash_distance_0"] == 257
    assert a["leaked_by_class"]["no_tumor"] == 105
