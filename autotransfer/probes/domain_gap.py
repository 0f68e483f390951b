"""How far the unlabelled target images are from the source (training) images, seen by a backbone.

Measured on the probe's sample of the source and an equally large seeded sample of the target,
from one forward pass each (cached like every probe's features, keyed by the images' contents):

- **BN-statistics shift between the two**, per layer group: the symmetric KL between the source's
  and the target's per-channel BatchNorm input statistics (:mod:`.bn_shift`'s measure, with the
  source's statistics in place of ImageNet's). This is the gap that re-estimating BN statistics
  on the target (AdaBN, Li et al. 2016) removes.
- **A domain classifier on frozen features**: scikit-learn's logistic regression tells source
  from target, cross-validated; with its error ε the *proxy A-distance* is 2(1 − 2ε) (Ben-David
  et al. 2007; Ganin et al. 2016), 0 for indistinguishable domains and 2 for disjoint ones. The
  A-distance after AdaBN is *not* measured: with the BN statistics estimated on the very images
  classified, both domains' feature means are equal by construction and a cross-validated linear
  classifier scores below chance (error 0.80 on hymenoptera against its noisiest copy); with
  statistics estimated on held-out images, each domain's sampling error in its statistics is a
  constant offset a linear classifier in 1280 dimensions finds (A-distance 1.0 on the *clean*
  control). Whether the gap is one AdaBN closes is read from where the BN shift lies instead
  (rules DA05-DA08).
- **ImageNet prediction entropy** of each domain (:mod:`.imagenet_view`), where the backbone has
  its ImageNet classifier.
- **How a source-trained linear probe's predictions move on the target**: the total variation
  and KL divergence between its predicted-class histogram on the source (cross-validated) and on
  the target, and its mean prediction entropy on each (normalised by ln of the number of classes).

Target class folders, when present, give :class:`TargetEvaluation` (the source-trained linear
probe's accuracy on the target, and with AdaBN on each domain: :func:`held_out_adabn`, extracted
for this evaluation only) and nothing else: no fact the rules read comes from them.

The logistic regressions run with one BLAS thread (:mod:`.blas`): on real cached probe features
(640 source and 450 target rows × 1280, mobilenet_v2) OpenBLAS' default two threads against one,
alternating, at nice 10 beside development work (two runs, load 4-6): :func:`gap_from_arrays`
14.1-18.8 s against 0.52-0.72 s, :func:`domain_classifier_error` alone 0.46-0.74 s against
0.16-0.17 s; every figure identical.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from autotransfer.probes.blas import one_blas_thread
from autotransfer.probes.bn_shift import BNLayerStats, is_folded, overall_shift, shift_by_group
from autotransfer.probes.imagenet_view import prediction_entropy

if TYPE_CHECKING:
    from autotransfer.data.models import DatasetProfile
    from autotransfer.data.target import TargetSet
    from autotransfer.probes.cache import FeatureCache

#: Folds of the cross-validated domain classifier and of the source linear probe.
FOLDS = 5
#: Added to each class's share before the KL divergence of the predicted-class histograms.
_SMOOTH = 1e-3


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetEvaluation(_Model):
    """Accuracy on the target's class folders: for evaluation only, never read by a rule."""

    n_images: int = Field(description="Target sample images whose class folder names a source "
                          "class.")
    classes: list[str] = Field(description="Source classes found among the target's folders.")
    source_only_linear_accuracy: float = Field(
        description="Accuracy on them of the linear probe trained on the source sample.")
    adabn_linear_accuracy: float | None = Field(
        default=None, description="The same with AdaBN on each domain (statistics of the "
        "even-indexed half, accuracy on the odd-indexed half: held_out_adabn); None when not "
        "measured.")


class DomainGap(_Model):
    """Source against target, as one backbone sees them (see the module's docstring)."""

    backbone: str
    input_size: int
    target_root: str
    n_source: int = Field(description="Source images measured (the probe's sample).")
    n_target: int = Field(description="Target images measured (a seeded sample).")
    n_target_images: int = Field(description="Usable images in the target folder.")
    bn_applicable: bool = Field(description="The backbone has BatchNorm layers to compare.")
    bn_per_group: dict[str, float | None] = Field(
        description="Per layer group: median over its BN layers of the channel-mean symmetric KL "
        "between the source's and the target's BN input statistics.")
    bn_overall: float | None = Field(description="Mean of the group shifts (source ↔ target).")
    bn_peak_group: str | None
    source_bn_shift: float | None = Field(
        description="The source's BN shift from ImageNet's statistics (None: folded or absent).")
    target_bn_shift: float | None = Field(description="The target's BN shift from ImageNet's.")
    domain_error: float = Field(description="Cross-validated error ε of the domain classifier "
                                "(0.5: chance, the domains look alike).")
    a_distance: float = Field(description="Proxy A-distance 2(1 − 2ε), clipped to [0, 2].")
    source_entropy: float | None = Field(
        description="Mean ImageNet prediction entropy / ln(1000) on the source (None: no "
        "classifier).")
    target_entropy: float | None = Field(description="The same on the target.")
    class_tv: float = Field(
        description="Total variation between the source linear probe's predicted-class "
        "histograms on the source (cross-validated) and on the target, in [0, 1].")
    class_kl: float = Field(description="KL(target ‖ source) of those histograms, in nats.")
    source_pred_entropy: float = Field(
        description="Mean entropy / ln(classes) of the linear probe's predictions on the source "
        "(cross-validated).")
    target_pred_entropy: float = Field(description="The same on the target.")
    source_histogram: dict[str, float]
    target_histogram: dict[str, float]
    evaluation: TargetEvaluation | None = Field(
        default=None, description="Only when the target has class folders; for evaluation only.")
    cached: bool = Field(default=False, description="Both extractions came from the cache.")
    seconds: float = 0.0

    def describe(self) -> str:
        bn = f"BN shift {self.bn_overall:.2f}" if self.bn_overall is not None else "no BN"
        return (f"proxy A-distance {self.a_distance:.2f}, {bn} between source and target, "
                f"predicted classes move by TV {self.class_tv:.2f}, prediction entropy "
                f"{self.source_pred_entropy:.2f} → {self.target_pred_entropy:.2f}")


# ------------------------------------------------------------------------------ pure measures
def between_domains(source: Sequence[BNLayerStats], target: Sequence[BNLayerStats],
                    groups: Sequence[str]) -> tuple[dict[str, float | None], float | None]:
    """Per-group and overall BN shift of ``target``'s statistics from ``source``'s."""
    layers = [BNLayerStats(s.name, s.group, s.data_mean, s.data_var, t.data_mean, t.data_var,
                           s.epsilon) for s, t in zip(source, target, strict=True)]
    per_group = shift_by_group(layers, groups)
    return per_group, overall_shift(per_group)


def domain_classifier_error(source: np.ndarray, target: np.ndarray, *, seed: int = 0,
                            folds: int = FOLDS) -> float:
    """Cross-validated error of logistic regression telling ``source`` rows from ``target``
    rows (balanced: the larger set is subsampled to the smaller's size)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = min(len(source), len(target))
    s = source[np.sort(rng.choice(len(source), n, replace=False))]
    t = target[np.sort(rng.choice(len(target), n, replace=False))]
    x = np.concatenate([s, t]).astype(np.float64)
    y = np.concatenate([np.zeros(n, int), np.ones(n, int)])
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000, tol=1e-3))
    cv = StratifiedKFold(n_splits=max(2, min(folds, n)), shuffle=True, random_state=seed)
    with one_blas_thread():  # small matrices: a second BLAS thread only spins (probes/blas.py)
        return float(1.0 - cross_val_score(clf, x, y, cv=cv).mean())


def a_distance(error: float) -> float:
    """Proxy A-distance 2(1 − 2ε), clipped to [0, 2] (an error above chance is chance)."""
    return float(min(2.0, max(0.0, 2.0 * (1.0 - 2.0 * error))))


def histogram(predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Share of each class among the predicted labels."""
    return np.bincount(predicted, minlength=n_classes) / max(1, len(predicted))


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum())


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p ‖ q) in nats, both smoothed by :data:`_SMOOTH` so that an empty class stays finite."""
    p = (np.asarray(p) + _SMOOTH) / (1 + _SMOOTH * len(p))
    q = (np.asarray(q) + _SMOOTH) / (1 + _SMOOTH * len(q))
    return float((p * np.log(p / q)).sum())


def _normalised_entropy(probs: np.ndarray) -> float:
    k = probs.shape[1]
    return float(prediction_entropy(probs).mean() / math.log(k)) if k > 1 else 0.0


def gap_from_arrays(source: dict[str, np.ndarray], target: dict[str, np.ndarray],
                    source_labels: np.ndarray, classes: list[str], groups: Sequence[str], *,
                    seed: int = 0, eval_labels: Sequence[str] | None = None,
                    adapted: tuple[np.ndarray, np.ndarray] | None = None,
                    backbone: str = "", input_size: int = 0, target_root: str = "",
                    n_target_images: int | None = None, cached: bool = False,
                    seconds: float = 0.0) -> DomainGap:
    """The gap from two extractions (:func:`autotransfer.probes.extract.extract`'s arrays).

    ``source_labels`` index ``classes``; ``eval_labels`` (the target's class folder per target
    row, or ``None``) only fills :attr:`DomainGap.evaluation`. ``adapted``: the (source,
    target) features of the odd-indexed rows after AdaBN on each domain's even-indexed rows
    (:func:`held_out_adabn`), for the evaluation only. The other keywords are recorded as given
    (``n_target_images`` defaults to the target rows).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from autotransfer.probes.extract import bn_layer_stats

    fs = np.asarray(source["features"], dtype=np.float64)
    ft = np.asarray(target["features"], dtype=np.float64)
    y = np.asarray(source_labels)
    k = len(classes)

    bn_s, bn_t = bn_layer_stats(source), bn_layer_stats(target)
    bn_applicable = bool(bn_s)
    per_group, overall = between_domains(bn_s, bn_t, groups) if bn_applicable else (
        dict.fromkeys(groups), None)
    measured = {g: v for g, v in per_group.items() if v is not None}
    folded = not bn_applicable or is_folded(bn_s)
    imagenet_shift = (lambda layers: None if folded else overall_shift(shift_by_group(layers,
                                                                                      groups)))

    error = domain_classifier_error(fs, ft, seed=seed)

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000, tol=1e-3))
    counts = np.bincount(y)
    folds = max(2, min(FOLDS, int(counts[counts > 0].min())))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with one_blas_thread():  # 14-19 s against 0.5-0.7 s with two (module docstring)
        source_probs = cross_val_predict(probe, fs, y, cv=cv, method="predict_proba")
        probe.fit(fs, y)
        target_probs = probe.predict_proba(ft)
        evaluation = _evaluate(probe, ft, eval_labels, classes, adapted, y)
    present = probe.classes_  # columns of predict_proba: the classes in the sample
    hs = histogram(present[source_probs.argmax(axis=1)], k)
    ht = histogram(present[target_probs.argmax(axis=1)], k)

    return DomainGap(
        n_source=len(fs), n_target=len(ft),
        bn_applicable=bn_applicable, bn_per_group=per_group, bn_overall=overall,
        bn_peak_group=max(measured, key=measured.__getitem__) if measured else None,
        source_bn_shift=imagenet_shift(bn_s), target_bn_shift=imagenet_shift(bn_t),
        domain_error=round(error, 6), a_distance=round(a_distance(error), 6),
        source_entropy=_normalised_entropy(source["probs"]) if "probs" in source else None,
        target_entropy=_normalised_entropy(target["probs"]) if "probs" in target else None,
        class_tv=round(total_variation(hs, ht), 6), class_kl=round(kl_divergence(ht, hs), 6),
        source_pred_entropy=round(_normalised_entropy(source_probs), 6),
        target_pred_entropy=round(_normalised_entropy(target_probs), 6),
        source_histogram={c: round(float(v), 4) for c, v in zip(classes, hs, strict=True)},
        target_histogram={c: round(float(v), 4) for c, v in zip(classes, ht, strict=True)},
        evaluation=evaluation,
        backbone=backbone, input_size=input_size, target_root=target_root,
        n_target_images=len(ft) if n_target_images is None else n_target_images, cached=cached,
        seconds=seconds)


def _evaluate(probe: object, features: np.ndarray, eval_labels: Sequence[str] | None,
              classes: list[str], adapted: tuple[np.ndarray, np.ndarray] | None,
              source_labels: np.ndarray) -> TargetEvaluation | None:
    """The source probe's accuracy on the target rows whose class folder names a source class,
    and, with ``adapted``, that of a probe trained and applied after AdaBN on each domain."""
    from sklearn.base import clone

    if not eval_labels:
        return None
    rows = [i for i, label in enumerate(eval_labels) if label in classes]
    if not rows:
        return None
    truth = np.asarray([classes.index(eval_labels[i]) for i in rows])
    predicted = probe.predict(features[rows])  # type: ignore[attr-defined]
    after = None
    odd = [i for i in rows if i % 2 == 1]  # the rows held_out_adabn extracted
    if adapted is not None and odd and len(np.unique(source_labels[1::2])) > 1:
        adabn_probe = clone(probe).fit(adapted[0], source_labels[1::2])  # type: ignore[arg-type]
        guess = adabn_probe.predict(adapted[1][[i // 2 for i in odd]])
        truth_odd = np.asarray([classes.index(eval_labels[i]) for i in odd])
        after = round(float(np.mean(guess == truth_odd)), 6)
    return TargetEvaluation(n_images=len(rows),
                            classes=sorted({eval_labels[i] for i in rows}),
                            source_only_linear_accuracy=round(float(np.mean(predicted == truth)),
                                                              6),
                            adabn_linear_accuracy=after)


def held_out_adabn(plan: object, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Pooled features of the odd-indexed ``images`` (uint8) after AdaBN on the even-indexed
    ones: statistics of the domain, estimated on other images than those measured."""
    import keras
    import tensorflow as tf

    from autotransfer.backbones.adabn import adapt_batchnorm
    from autotransfer.backbones.build import build_backbone
    from autotransfer.data.pipeline import set_autotune
    from autotransfer.probes.extract import run_model

    p = plan  # an ExtractionPlan
    model = build_backbone(p.spec, p.input_size, weights=p.weights,  # type: ignore[attr-defined]
                           include_top=False)
    adapt_batchnorm(model, set_autotune(
        tf.data.Dataset.from_tensor_slices(images[0::2]).batch(batch_size)))
    (features,) = run_model(model, images[1::2], batch_size)
    keras.backend.clear_session(free_memory=True)
    return np.asarray(features, dtype=np.float32)


# ------------------------------------------------------------------------------ measuring
def target_sample(target: TargetSet, n: int, seed: int = 0) -> list[int]:
    """Indices of at most ``n`` target records, seeded, independent of listing order, sorted."""
    rng = np.random.default_rng(seed)
    if len(target.records) <= n:
        return list(range(len(target.records)))
    return sorted(rng.choice(len(target.records), n, replace=False).tolist())


def measure_domain_gap(profile: DatasetProfile, target: TargetSet, backbone: str, *,
                       per_class: int, total: int, seed: int = 0, input_size: int | None = None,
                       weights: str | None = "imagenet", cache: FeatureCache | bool = True,
                       progress: Callable[[str, str], None] | None = None) -> DomainGap:
    """The gap between the probe's source sample (``per_class``, ``total``, ``seed``: those of
    the probe, whose cached features are reused) and a sample of ``target`` as large, for
    ``backbone`` at ``input_size`` (default: its own). For the evaluation only (a target with
    class folders, a backbone with real BN statistics), each domain's features are also
    extracted after AdaBN on its own images (:func:`held_out_adabn`; cached too)."""
    from autotransfer.backbones.catalog import get_backbone
    from autotransfer.probes.extract import bn_layer_stats, plan_extraction
    from autotransfer.probes.probe import _sample, _store

    started = time.perf_counter()
    say = progress or (lambda backbone, what: None)
    spec = get_backbone(backbone)
    plan = plan_extraction(spec, input_size, weights)
    store = _store(cache)
    records, classes, labels, hashes = _sample(profile, per_class, total, seed)
    chosen = [target.records[i] for i in target_sample(target, len(records), seed)]
    source = _Domain("source", records, profile.root, hashes)
    other = _Domain("target", chosen, target.root, [r.sha for r in chosen])
    arrays = [d.arrays(plan, store, seed, weights, say, adabn=False) for d in (source, other)]
    stats = bn_layer_stats(arrays[0])
    adapted = None
    if target.labelled and stats and not is_folded(stats):
        adapted = tuple(d.arrays(plan, store, seed, weights, say, adabn=True)["features"]
                        for d in (source, other))
    say(backbone, "measuring the gap between source and target")
    eval_labels = ([target.eval_labels.get(r.path, "") for r in chosen] if target.labelled
                   else None)
    return gap_from_arrays(
        arrays[0], arrays[1], labels, classes, spec.group_names, seed=seed,
        eval_labels=eval_labels, adapted=adapted, backbone=backbone,  # type: ignore[arg-type]
        input_size=plan.input_size, target_root=target.root, n_target_images=target.n_images,
        cached=source.cached and other.cached,
        seconds=round(time.perf_counter() - started, 3))


class _Domain:
    """One side's sample: its images decoded once, its extractions from the cache or made."""

    def __init__(self, name: str, records: list, root: str, hashes: list[str]) -> None:
        self.name, self.records, self.root, self.hashes = name, records, root, hashes
        self.cached = True
        self._images: np.ndarray | None = None

    def arrays(self, plan: object, store: FeatureCache | None, seed: int,
               weights: str | None, say: Callable[[str, str], None], *,
               adabn: bool) -> dict[str, np.ndarray]:
        """The probe's extraction (``adabn=False``) or the features after AdaBN on these
        images, keyed as the probe keys them."""
        from autotransfer.probes.precision import policy_scope
        from autotransfer.probes.probe import _key, _seed_random_init

        extra = "adabn-held-out" if adabn else f"top={plan.with_top}"  # type: ignore[attr-defined]
        key = _key(plan, self.hashes, seed, extra=extra)  # type: ignore[arg-type]
        found = store.load(key) if store else None
        if found is not None:
            return found
        self.cached = False
        from autotransfer.probes.extract import decode_sample, extract

        if self._images is None:
            self._images = decode_sample(self.records, self.root,
                                         plan.input_size)  # type: ignore[attr-defined]
        name = plan.spec.name  # type: ignore[attr-defined]
        _seed_random_init(weights, seed)
        with policy_scope("float32"):
            if adabn:
                say(name, f"AdaBN on the {len(self.records)} {self.name} images, extracting again")
                made = {"features": held_out_adabn(plan, self._images)}
            else:
                say(name, f"extracting the features of {len(self.records)} {self.name} images")
                made = extract(plan, self._images)  # type: ignore[arg-type]
        if store:
            store.save(key, made)
        return made
