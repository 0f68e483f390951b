"""Does orientation carry information in this data? Measured, not guessed.

Natural photos have a canonical "up" (sky above ground) and are mirror-symmetric; overhead and
microscope images have neither an up nor a handedness; X-rays and text have both. Following the
rotation-prediction task of Gidaris et al. (ICLR 2018), a linear classifier on frozen features
tries to tell (a) by how many quarter turns an image was rotated and (b) whether it was mirrored.
Accuracy near chance means that transformation leaves the data's distribution unchanged, so it
is a safe augmentation; high accuracy means orientation carries information, so augmenting with
it would teach the model wrong images.

Folds are grouped by source image, so no image's views are on both sides of a split.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class Orientation(BaseModel):
    """How predictable rotations and mirror images are from frozen features."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: str
    n_images: int
    rotation_accuracy: float = Field(description="4-way quarter-turn prediction; chance 0.25.")
    flip_accuracy: float = Field(description="Mirrored-or-not prediction; chance 0.5.")

    def describe(self) -> str:
        """``"quarter turns predicted with accuracy 0.31 (chance 0.25), mirror images …"``."""
        return (f"quarter turns predicted with accuracy {self.rotation_accuracy:.2f} (chance "
                f"0.25), mirror images {self.flip_accuracy:.2f} (chance 0.5)")


def views(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All views (N × 5: rotations by 0, 90, 180, 270° and the horizontal mirror), the view
    index of each, and the source image of each."""
    n = len(images)
    stacked = [np.rot90(images, k, axes=(1, 2)) for k in range(4)] + [images[:, :, ::-1]]
    return (
        np.ascontiguousarray(np.concatenate(stacked, axis=0)),
        np.repeat(np.arange(5), n),
        np.tile(np.arange(n), 5),
    )


def predictability(features: np.ndarray, targets: np.ndarray, groups: np.ndarray,
                   folds: int = 4, seed: int = 0) -> float:
    """Grouped cross-validated accuracy of logistic regression predicting ``targets``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from autotransfer.probes.blas import one_blas_thread

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000, tol=1e-3))
    n_folds = max(2, min(folds, len(np.unique(groups))))
    cv = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with one_blas_thread():
        return float(cross_val_score(clf, features, targets, groups=groups, cv=cv).mean())


def measure_orientation(backbone: str, features: np.ndarray, view: np.ndarray,
                        source: np.ndarray) -> Orientation:
    """Rotation and flip predictability from the features of :func:`views`."""
    rotations = view < 4
    upright_or_mirror = (view == 0) | (view == 4)
    return Orientation(
        backbone=backbone,
        n_images=int(len(np.unique(source))),
        rotation_accuracy=predictability(features[rotations], view[rotations], source[rotations]),
        flip_accuracy=predictability(features[upright_or_mirror], (view[upright_or_mirror] == 4)
                                     .astype(int), source[upright_or_mirror]),
    )
