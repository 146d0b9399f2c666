"""Knowledge distillation: a network also learns a trained model's soft predictions (`train --teacher`).

Why: on the 2-core CPU the bundled model must stay at 160 px to triage 200 images a second (issue 24), while
the same recipe at 200 px finds more of the seed set's tumors out of fold (docs/model.md, session 28). A
200 px teacher sees each augmented training view at its own size; the student sees the same view made
smaller, and learns the teacher's class probabilities beside the labels (Hinton et al. 2015: the loss on
probabilities softened by a temperature T, scaled by T^2 so its gradients keep their size as T grows).
The teacher only runs forward, in eval mode; what it was trained on must not include what the student is
scored on (a leave-source-out student needs a teacher trained without that source too).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from braintriage.modelfile import load_model
from braintriage.models import normalised_views
from braintriage.preprocess import PreprocessConfig


class Teacher:
    """A trained model file, run forward on augmented views at its own input size."""

    def __init__(self, path: str | Path, device: torch.device):
        self.path = Path(path)
        with torch.random.fork_rng(devices=[]):  # building the network draws weights: the run's stream stays as it is
            self.model, self.metadata = load_model(self.path)
        self.model = self.model.to(device, memory_format=torch.channels_last).eval()
        self.preprocess = PreprocessConfig.from_dict(self.metadata["input"]["preprocess"])
        norm = self.metadata["input"]["normalization"]
        self.mean, self.std = float(norm["mean"]), float(norm["std"])
        self.class_names = list(self.metadata["class_names"])

    @property
    def size(self) -> int:
        return self.preprocess.size

    @torch.no_grad()
    def logits(self, views: torch.Tensor) -> torch.Tensor:
        """Augmented views in [0, 1] at the teacher's size (N, 1, size, size) -> its logits, float32."""
        return self.model(normalised_views(views, self.mean, self.std)).float()


def resized_views(views: torch.Tensor, size: int) -> torch.Tensor:
    """The teacher's views made `size` pixels square for the student (antialiased, as a photo is shrunk)."""
    if views.shape[-1] == size:
        return views
    return F.interpolate(views, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, weights: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """T^2 KL(teacher || student) over the classes, both softened by T, averaged with one weight per image.
    A one-logit (sigmoid) model counts as two classes, logits (0, z)."""
    def as_classes(logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return torch.cat([torch.zeros_like(logits), logits], 1) if logits.shape[1] == 1 else logits

    log_student = F.log_softmax(as_classes(student_logits) / temperature, 1)
    log_teacher = F.log_softmax(as_classes(teacher_logits) / temperature, 1)
    per_image = F.kl_div(log_student, log_teacher, reduction="none", log_target=True).sum(1)
    return temperature ** 2 * (per_image * weights).sum() / weights.sum()
