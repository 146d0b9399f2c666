"""Find the labelled images of a dataset, whatever layout it comes in.

Layouts understood (checked in this order):
  seed        ROOT/Training/<type folders> and ROOT/Testing/<type folders> (the public seed dataset)
  types       ROOT/glioma_tumor, meningioma_tumor, pituitary_tumor, no_tumor (one split of the seed set), or
              some of them (a collection of tumors only, as figshare-cheng2017's three)
  two-folder  ROOT/tumor + ROOT/no_tumor, or ROOT/yes + ROOT/no
  csv         a CSV file with columns path,label (paths relative to the CSV's folder), and optionally source

Every image gets the binary label (tumor / no tumor), where the layout says it its tumor type, and its
source: the collection it came from (a manifest's `source` column, else the dataset's folder name), so that
training on several datasets can weight them and evaluation can hold one out.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from braintriage.preprocess import IMAGE_SUFFIXES

# Index 0 is "no tumor", so P(tumor) = 1 - P(class 0) for a type-trained model.
TUMOR_TYPES = ("no_tumor", "glioma", "meningioma", "pituitary")
TYPE_FOLDERS = {"no_tumor": "no_tumor", "glioma_tumor": "glioma", "meningioma_tumor": "meningioma",
                "pituitary_tumor": "pituitary"}
SEED_SPLITS = {"training": "Training", "testing": "Testing"}
TWO_FOLDER_LAYOUTS = ({"tumor": "tumor", "no_tumor": "no_tumor"}, {"yes": "tumor", "no": "no_tumor"})
LAYOUT_HELP = (
    "Known dataset layouts: (1) seed: Training/ and Testing/, each with glioma_tumor/, meningioma_tumor/, "
    "pituitary_tumor/, no_tumor/; (2) those four folders directly, or some of them; (3) tumor/ + no_tumor/; "
    "(4) yes/ + no/; "
    "(5) a CSV manifest file with columns path,label (label tumor/no_tumor, yes/no, 1/0 or a tumor type) and "
    "optionally source."
)


class DatasetLayoutError(ValueError):
    pass


@dataclass(frozen=True)
class Sample:
    path: Path
    tumor: int  # 1 = tumor, 0 = no tumor
    tumor_type: str | None  # one of TUMOR_TYPES, or None where the layout does not say
    source: str = ""  # the collection it came from; "" means the dataset's own name (Dataset.source_of)


@dataclass
class Dataset:
    root: Path
    layout: str
    split: str | None
    samples: list[Sample] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def has_types(self) -> bool:
        return all(s.tumor_type is not None for s in self.samples)

    @property
    def name(self) -> str:
        """The dataset's own name: its folder (a seed root's, not its split's), or a manifest's file stem."""
        if self.layout == "seed":
            return self.root.parent.name
        return self.root.stem if self.root.is_file() else self.root.name

    def source_of(self, sample: Sample) -> str:
        return sample.source or self.name

    def relpath(self, sample: Sample) -> str:
        base = self.root.parent if self.root.is_file() else self.root
        try:
            return sample.path.relative_to(base).as_posix()
        except ValueError:  # a manifest may point outside its own folder
            return sample.path.as_posix()

    def fingerprint(self) -> str:
        """sha256 over (relative path, labels, file content) of every image, in sorted order."""
        h = hashlib.sha256(f"{self.layout}:{self.split}\n".encode())
        for s in sorted(self.samples, key=self.relpath):
            h.update(f"{self.relpath(s)}\t{s.tumor}\t{s.tumor_type}\t".encode())
            if s.source:  # a manifest's source column is part of what was trained on
                h.update(f"{s.source}\t".encode())
            h.update(hashlib.sha256(s.path.read_bytes()).digest())
        return h.hexdigest()


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _from_type_folders(root: Path, layout: str, split: str | None) -> Dataset:
    ds = Dataset(root, layout, split)
    for folder, tumor_type in TYPE_FOLDERS.items():
        for p in list_images(root / folder) if (root / folder).is_dir() else []:
            ds.samples.append(Sample(p, int(tumor_type != "no_tumor"), tumor_type))
    return ds


def _parse_label(text: str) -> tuple[int, str | None]:
    t = text.strip().lower()
    if t in ("tumor", "yes", "1", "true"):
        return 1, None
    if t in ("no_tumor", "no", "0", "false", "normal"):
        return 0, "no_tumor"
    t = t.removesuffix("_tumor")
    if t in TUMOR_TYPES:
        return 1, t
    raise DatasetLayoutError(f"unknown label {text!r}; use tumor/no_tumor, yes/no, 1/0 or a tumor type")


def _from_csv(path: Path) -> Dataset:
    ds = Dataset(path, "csv", None)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise DatasetLayoutError(f"{path}: a manifest needs the columns path,label (source optional). "
                                     f"{LAYOUT_HELP}")
        for row_number, row in enumerate(reader, start=2):
            try:
                tumor, tumor_type = _parse_label(row["label"])
            except DatasetLayoutError as e:
                raise DatasetLayoutError(f"{path}, line {row_number}: {e}") from None
            source = (row.get("source") or "").strip()
            ds.samples.append(Sample((path.parent / row["path"]).resolve(), tumor, tumor_type, source))
    return ds


def load_dataset(root: str | Path, split: str = "training") -> Dataset:
    """Read a dataset in any known layout. `split` picks Training or Testing of a seed-layout root."""
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return _from_csv(root)
        raise DatasetLayoutError(f"{root} is a file, not a dataset. {LAYOUT_HELP}")
    if not root.is_dir():
        raise DatasetLayoutError(f"{root} does not exist. {LAYOUT_HELP}")
    subdirs = {p.name for p in root.iterdir() if p.is_dir()}
    if set(SEED_SPLITS.values()) <= subdirs:
        if split not in SEED_SPLITS:
            raise DatasetLayoutError(f"split must be one of {sorted(SEED_SPLITS)}, not {split!r}")
        return _from_type_folders(root / SEED_SPLITS[split], "seed", split)
    if set(TYPE_FOLDERS) <= subdirs:
        return _from_type_folders(root, "types", None)
    for mapping in TWO_FOLDER_LAYOUTS:
        if set(mapping) <= subdirs:
            ds = Dataset(root, "two-folder", None)
            for folder, label in mapping.items():
                for p in list_images(root / folder):
                    ds.samples.append(Sample(p, int(label == "tumor"), None if label == "tumor" else "no_tumor"))
            return ds
    if subdirs & set(TYPE_FOLDERS):  # some of the type folders: a collection of tumors only (figshare's three)
        return _from_type_folders(root, "types", None)
    raise DatasetLayoutError(f"{root} matches no dataset layout. {LAYOUT_HELP}")
