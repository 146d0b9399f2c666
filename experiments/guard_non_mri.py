"""Which of the guard test's 11 non-MRI inputs (tests/test_ood.py::non_mri_images) each model's guard flags.

    python experiments/guard_non_mri.py runs/RUN/model.safetensors [MORE ...]

The bundled model's guard must flag all 11 (that test); a candidate recipe's rule can ask the same of its runs.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from braintriage.inference import Predictor  # noqa: E402
from braintriage.scans import ScanItem, Slice  # noqa: E402
from test_ood import non_mri_images  # noqa: E402

if __name__ == "__main__":
    images = non_mri_images(ROOT.parent / "shared" / "data" / "brain-tumor-classification-mri")
    for model in sys.argv[1:]:
        items = [ScanItem(name, [Slice("1", lambda im=im: im.convert("L"))]) for name, im in images.items()]
        results = Predictor(model).predict_items(items)
        missed = [r.path for r in results if not r.warning]
        print(f"{model}: flags {len(results) - len(missed)} of {len(results)}; lets through: {', '.join(missed) or 'none'}")
