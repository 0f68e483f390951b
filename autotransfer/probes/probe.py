"""``probe_dataset``: measure each candidate backbone on a sample of the user's data."""

from __future__ import annotations

import gc
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from autotransfer.backbones.catalog import get_backbone, list_backbones
from autotransfer.backbones.spec import BackboneSpec
from autotransfer.backbones.weights import WeightStatus, weight_status
from autotransfer.data.models import DatasetProfile
from autotransfer.probes.bn_shift import is_folded, overall_shift, shift_by_group
from autotransfer.probes.cache import (FeatureCache, code_digest, feature_key, library_versions,
                                       weights_identity)
from autotransfer.probes.extract import ExtractionPlan, plan_extraction
from autotransfer.probes.imagenet_view import prediction_entropy, top_concepts
from autotransfer.probes.models import (AdaBNCheck, BackboneProbe, BNShift, ImageNetView,
                                        ProbeReport)
from autotransfer.probes.orientation import Orientation, measure_orientation
from autotransfer.probes.precision import policy_scope
from autotransfer.probes.sample import (DEFAULT_PER_CLASS, DEFAULT_TOTAL, SampleImages,
                                        sample_images, sample_records)
from autotransfer.probes.transferability import measure_transferability

#: Probed when the user names no backbone and none has weights on this machine (Keras downloads).
FALLBACK_CANDIDATES = ("mobilenet_v2", "efficientnet_b0", "efficientnet_lite0")

#: Images (spread over the classes) whose rotated and mirrored views measure orientation.
ORIENTATION_IMAGES = 96

#: Progress messages: (backbone or "", what is happening).
ProgressCallback = Callable[[str, str], None]


def default_candidates() -> list[str]:
    """Backbones whose ImageNet weights are on this machine, or a small downloadable set."""
    local = (WeightStatus.CACHED, WeightStatus.OFFLINE_PACKAGE)
    names = [s.name for s in list_backbones() if weight_status(s) in local]
    return names or list(FALLBACK_CANDIDATES)


def probe_dataset(
    dataset: str | os.PathLike[str] | DatasetProfile,
    backbones: Sequence[str] | None = None,
    *,
    per_class: int = DEFAULT_PER_CLASS,
    total: int = DEFAULT_TOTAL,
    seed: int = 0,
    input_size: int | None = None,
    weights: str | None = "imagenet",
    cache: FeatureCache | bool = True,
    measure_orientation_with: str = "smallest",
    adabn_for: Sequence[str] = (),
    progress: ProgressCallback | None = None,
) -> ProbeReport:
    """Measure domain shift and transferability of each backbone on a sample of ``dataset``.

    ``dataset`` is a path or a profile from :func:`~autotransfer.profile_dataset`. The sample is
    stratified and seeded: at most ``per_class`` images per class and ``total`` in all, from the
    training split. Extracted features are cached on disk (``cache=False`` to disable).
    Orientation (are rotations and mirror images distinguishable?) is measured with the smallest
    probed backbone on a subset (``measure_orientation_with``: "smallest", a name, or "none").
    For the backbones named in ``adabn_for`` (and with BatchNorm statistics), whether AdaBN
    improves the linear probe is measured too (:mod:`.adabn_check`: one more pass over the sample;
    :func:`measure_adabn` does it later, for one backbone of a finished report).
    """
    from autotransfer.data.profile import profile_dataset

    started = time.perf_counter()
    say = progress or (lambda backbone, what: None)
    profile = dataset if isinstance(dataset, DatasetProfile) else profile_dataset(dataset)
    specs = [get_backbone(name) for name in (backbones or default_candidates())]
    records, classes, labels, hashes = _sample(profile, per_class, total, seed)
    store = _store(cache)
    images = sample_images(records, profile.root)
    measured = _measured_id(labels, classes, seed)

    plans = {s.name: plan_extraction(s, input_size, weights) for s in specs}
    keys = {name: _key(plan, hashes, seed, extra=f"top={plan.with_top}")
            for name, plan in plans.items()}
    found = {name: _load_record(store, BackboneProbe, keys[name], measured) for name in plans}
    for name, plan in plans.items():  # decode in the background while TensorFlow starts
        if found[name] is None and not (store and store.path(keys[name]).is_file()):
            images.start(plan.input_size)

    orientation = view_arrays = o_plan = o_name = o_key = None
    subset = _orientation_subset(labels, ORIENTATION_IMAGES)
    if measure_orientation_with != "none":
        smallest = min(specs, key=lambda s: s.params)
        o_name = (smallest.name if measure_orientation_with == "smallest"
                  else measure_orientation_with)
        o_plan = plans.get(o_name) or plan_extraction(get_backbone(o_name), input_size, weights)
        o_key = _key(o_plan, [hashes[i] for i in subset], seed, extra="orientation")
        orientation = _load_record(store, Orientation, o_key, measured)
        if orientation is None and store:
            view_arrays = store.load(o_key)

    probes, extracted = [], False
    for spec in specs:
        plan, key = plans[spec.name], keys[spec.name]
        if found[spec.name] is not None:  # features and statistics cached: nothing to compute
            probes.append(found[spec.name])
            continue
        arrays = store.load(key) if store else None
        cached = arrays is not None
        extract_s = 0.0
        if arrays is None:
            # the orientation's views from the same model, when they are to be extracted too
            views = spec.name == o_name and orientation is None and view_arrays is None
            say(spec.name, "extracting features" + (" and the orientation views" if views else ""))
            t0 = time.perf_counter()
            _seed_random_init(weights, seed)
            from autotransfer.probes.extract import extract_with_views  # TensorFlow from here on

            with policy_scope("float32"):  # the key says float32: never a caller's mixed policy
                arrays, made = extract_with_views(
                    plan, lambda: _decoded(images, plan.input_size, say), subset if views else None,
                    free_memory=False)  # one collection after the last backbone, not one each
            extracted = True
            extract_s = time.perf_counter() - t0
            if store:
                store.save(key, arrays)
            if made is not None:
                view_arrays = made
                if store:
                    store.save(o_key, made)  # type: ignore[arg-type]
        say(spec.name, "measuring")
        t0 = time.perf_counter()
        probe = _measure(spec, plan.input_size, arrays, labels, classes, plan.top_note, seed,
                         extract_s, cached, t0)
        _save_record(store, key, measured, probe)
        probes.append(probe)
    if extracted:
        gc.collect()  # the models' garbage (Keras' session was cleared without it)

    for name in adabn_for:
        i = next((i for i, p in enumerate(probes) if p.backbone == name), None)
        if i is not None and probes[i].bn_shift.applicable:
            probes[i] = _with_adabn(probes[i], plans[name], images, hashes, labels, seed,
                                    store, say)

    if o_plan is not None and orientation is None:
        if view_arrays is None:
            images.start(o_plan.input_size)
            say(o_name, f"measuring orientation on {len(subset)} images × 5 views")
            _seed_random_init(weights, seed)
            from autotransfer.probes.extract import extract_views

            size = o_plan.input_size
            with policy_scope("float32"):
                view_arrays = extract_views(o_plan, lambda: _decoded(images, size, say)[subset])
            if store:
                store.save(o_key, view_arrays)  # type: ignore[arg-type]
        orientation = measure_orientation(o_name, view_arrays["features"], view_arrays["view"],
                                          view_arrays["source"])
        _save_record(store, o_key, measured, orientation)  # type: ignore[arg-type]
    return ProbeReport(
        root=profile.root,
        seed=seed,
        weights="none" if weights is None else weights,
        n_samples=len(records),
        sample_per_class=dict(sorted(Counter(r.label for r in records).items())),
        decode_s=round(images.decode_s, 3),
        elapsed_s=round(time.perf_counter() - started, 3),
        probes=probes,
        orientation=orientation,
    )


def measure_adabn(report: ProbeReport, profile: DatasetProfile, backbone: str, *,
                  per_class: int = DEFAULT_PER_CLASS, total: int = DEFAULT_TOTAL,
                  weights: str | None = "imagenet", cache: FeatureCache | bool = True,
                  progress: ProgressCallback | None = None) -> ProbeReport:
    """``report`` with AdaBN's effect on ``backbone``'s linear probe measured (same sample: pass
    the ``per_class`` and ``total`` of the probe); unchanged when the backbone has no BatchNorm
    statistics or it is already measured."""
    i = next(i for i, p in enumerate(report.probes) if p.backbone == backbone)
    probe = report.probes[i]
    if probe.adabn is not None or not probe.bn_shift.applicable:
        return report
    say = progress or (lambda backbone, what: None)
    records, labels, hashes = _probed_sample(profile, probe, per_class, total, report.seed)
    plan = plan_extraction(get_backbone(backbone), probe.input_size, weights)
    probes = list(report.probes)
    probes[i] = _with_adabn(probe, plan, sample_images(records, profile.root), hashes, labels,
                            report.seed, _store(cache), say)
    return report.model_copy(update={"probes": probes})


def measure_precision(report: ProbeReport, profile: DatasetProfile, backbone: str, *,
                      per_class: int = DEFAULT_PER_CLASS, total: int = DEFAULT_TOTAL,
                      weights: str | None = "imagenet", cache: FeatureCache | bool = True,
                      progress: ProgressCallback | None = None) -> ProbeReport:
    """``report`` with ``backbone``'s forward pass timed in float32 and mixed_bfloat16 and, where
    bfloat16 is faster, its features compared with float32's on the same sample (pass the
    ``per_class`` and ``total`` of the probe); see :mod:`.precision`. The timings and features
    are cached with the probe's. Not measured on a machine with a GPU (it has its own path)."""
    from autotransfer.probes.precision import PrecisionCheck, precision_check

    i = next(i for i, p in enumerate(report.probes) if p.backbone == backbone)
    probe = report.probes[i]
    if probe.precision is not None:
        return report
    say = progress or (lambda backbone, what: None)
    records, labels, hashes = _probed_sample(profile, probe, per_class, total, report.seed)
    plan = plan_extraction(get_backbone(backbone), probe.input_size, weights)
    store = _store(cache)
    key = _key(plan, hashes, report.seed, extra="precision:float32,mixed_bfloat16")
    arrays = store.load(key) if store else None
    seconds = 0.0
    if arrays is None:
        from autotransfer.probes.precision import TIMED_BATCHES, extract_timed, gpu_present

        if gpu_present():
            check = PrecisionCheck(
                measured=False, reason="a GPU is present: training uses the GPU's own mixed "
                "precision (mixed_float16), so bfloat16 on the CPU is not in question")
            return _with_probe(report, i, probe.model_copy(update={"precision": check}))
        say(backbone, "timing the forward pass in float32 and mixed_bfloat16")
        t0 = time.perf_counter()
        timed = (TIMED_BATCHES + 1) * 32  # decode the rest only if bfloat16 is faster
        decoded = sample_images(records, profile.root)
        images = decoded.at(plan.input_size, timed)
        _seed_random_init(weights, report.seed)
        arrays = extract_timed(plan, images, sample=lambda: images if len(records) <= timed
                               else decoded.at(plan.input_size))
        seconds = time.perf_counter() - t0
        if store:
            store.save(key, arrays)
    f32_key = _key(plan, hashes, report.seed, extra=f"top={plan.with_top}")
    features = store.load(f32_key) if store else None  # the probe's own, for the cosine
    t = probe.transferability
    check = precision_check(arrays, t.linear_probe_accuracy, t.logme, labels, seed=report.seed,
                            seconds=seconds,
                            float32_features=None if features is None else features["features"])
    return _with_probe(report, i, probe.model_copy(update={"precision": check}))


def measure_step(report: ProbeReport, profile: DatasetProfile, backbone: str, *,
                 input_size: int, trainable_from: int, batch_size: int, bn_frozen: bool,
                 mixes: bool, precision: str = "float32", per_class: int = DEFAULT_PER_CLASS,
                 total: int = DEFAULT_TOTAL, cache: FeatureCache | bool = True,
                 progress: ProgressCallback | None = None,
                 augmentation: Any = None) -> ProbeReport:
    """``report`` with one training step of ``backbone`` timed as the trainer would run the
    recipe (its input size, batch size, deepest ``trainable_from``, BatchNorm policy, precision
    ``float32`` or ``bfloat16``, and whether it mixes images), on the probe's sample (pass its ``per_class`` and ``total``); see
    :mod:`.step_time`. With the recipe's ``augmentation``, its image transform is timed too
    (the input pipeline's share of an uncached epoch). Cached with the probe's features; unchanged when this step is already
    timed with the same setting (every argument above that the timing depends on)."""
    from autotransfer.probes.precision import KERAS_POLICIES
    from autotransfer.probes.step_time import SAMPLE_BATCHES, step_timing, time_training_step

    i = next(i for i, p in enumerate(report.probes) if p.backbone == backbone)
    probe = report.probes[i]
    n_train = next((s.n_images for s in profile.splits if s.name == "train"),
                   profile.splits[0].n_images)
    timed = (f"train-step:from={trainable_from}:batch={batch_size}:bn_frozen={bn_frozen}"
             f":mixes={mixes}:n_train={n_train}:precision={precision}"
             f":aug={_augmentation_key(augmentation)}:v7")  # all that the timing depends on
    setting = dict(trainable_from=trainable_from, input_size=input_size, batch_size=batch_size,
                   precision=precision)
    if probe.step is not None and probe.step.setting == f"{timed}:size={input_size}":
        return report
    say = progress or (lambda backbone, what: None)
    records, labels, hashes = _probed_sample(profile, probe, per_class, total, report.seed)
    plan = plan_extraction(get_backbone(backbone), input_size, None)
    store = _store(cache)
    key = _key(plan, hashes, report.seed, extra=timed)
    arrays = store.load(key) if store else None
    seconds = 0.0
    if arrays is None:
        say(backbone, f"timing a training step from group {trainable_from} at {input_size} px")
        t0 = time.perf_counter()
        images = sample_images(records, profile.root).at(input_size,
                                                         SAMPLE_BATCHES * batch_size)
        with policy_scope(KERAS_POLICIES.get(precision, "float32")):
            arrays = time_training_step(plan.spec, images, len(np.unique(labels)),
                                        trainable_from, batch_size=batch_size,
                                        bn_frozen=bn_frozen, mixes=mixes, n_train=n_train,
                                        augmentation=augmentation)
        seconds = time.perf_counter() - t0
        if store:
            store.save(key, arrays)
    step = step_timing(arrays, seconds=seconds, setting=f"{timed}:size={input_size}", **setting)
    return _with_probe(report, i, probe.model_copy(update={"step": step}))


def _augmentation_key(augmentation: Any) -> str:
    """The augmentation's settings in a cache key (a pydantic model, or None: not timed)."""
    if augmentation is None:
        return "none"
    return ",".join(f"{k}={v}" for k, v in sorted(augmentation.model_dump().items()))


def _with_probe(report: ProbeReport, i: int, probe: BackboneProbe) -> ProbeReport:
    probes = list(report.probes)
    probes[i] = probe
    return report.model_copy(update={"probes": probes})


def _sample(profile: DatasetProfile, per_class: int, total: int,
            seed: int) -> tuple[list[Any], list[str], np.ndarray, list[str]]:
    """The probe's stratified sample: its records, class names, integer labels and content
    hashes."""
    records = sample_records(profile, per_class=per_class, total=total, seed=seed)
    classes = sorted({r.label for r in records})
    labels = np.asarray([classes.index(r.label) for r in records])
    return records, classes, labels, [r.sha for r in records]


def _store(cache: FeatureCache | bool) -> FeatureCache | None:
    return FeatureCache() if cache is True else (cache or None)


def _with_adabn(probe: BackboneProbe, plan: ExtractionPlan, images: SampleImages,
                hashes: list[str], labels: np.ndarray, seed: int, store: FeatureCache | None,
                say: ProgressCallback) -> BackboneProbe:
    from autotransfer.probes.adabn_check import ADAPT_IMAGES, adapted_features, compare

    key = _key(plan, hashes, seed, extra=f"adabn:on={ADAPT_IMAGES}")
    t = probe.transferability
    measured = (f"{_measured_id(labels, [], seed)}|{t.linear_probe_accuracy!r}|"
                f"{t.knn_accuracy!r}|{code_digest('autotransfer.probes.adabn_check')}")
    check = _load_record(store, AdaBNCheck, key, measured)
    if check is not None:
        return probe.model_copy(update={"adabn": check})
    arrays = store.load(key) if store else None
    seconds = 0.0
    if arrays is None:
        images.start(plan.input_size)
        say(probe.backbone, "re-estimating BatchNorm statistics (AdaBN) and extracting again")
        t0 = time.perf_counter()
        with policy_scope("float32"):
            arrays = {"features": adapted_features(plan, _decoded(images, plan.input_size,
                                                                  say))}
        seconds = time.perf_counter() - t0
        if store:
            store.save(key, arrays)
    check = compare(arrays["features"], labels, imagenet_linear=t.linear_probe_accuracy,
                    imagenet_knn=t.knn_accuracy, seed=seed, seconds=seconds)
    _save_record(store, key, measured, check)
    return probe.model_copy(update={"adabn": check})


#: The code that turns cached features into a probe's figures: a change to it is a cache miss.
MEASURING_MODULES = ("autotransfer.probes.probe", "autotransfer.probes.models",
                     "autotransfer.probes.transferability", "autotransfer.probes.logme",
                     "autotransfer.probes.bn_shift", "autotransfer.probes.imagenet_view",
                     "autotransfer.probes.extract",
                     "autotransfer.probes.orientation", "autotransfer.probes.blas",
                     "autotransfer.probes.precision",
                     "autotransfer.probes.step_time", "autotransfer.probes.domain_gap",
                     "autotransfer.backbones.imagenet_labels")
#: ... and the libraries it uses.
MEASURING_LIBRARIES = ("numpy", "scipy", "scikit-learn", "pydantic")


def _measured_id(labels: np.ndarray, classes: list[str], seed: int) -> str:
    """What a probe's figures depend on besides its features: the sample's labels and class
    names, the seed (folds), and the measuring code and libraries."""
    import hashlib

    h = hashlib.sha256()
    h.update("\0".join(classes).encode() + b"\1" + np.asarray(labels, np.int64).tobytes())
    h.update(f"{seed}|{code_digest(*MEASURING_MODULES)}|"
             f"{library_versions(MEASURING_LIBRARIES)}".encode())
    return h.hexdigest()


def _load_record(store: FeatureCache | None, kind: type[Any], key: str, measured: str) -> Any:
    """The figures measured on the features of ``key`` and cached (marked as cached), or None."""
    text = store.load_json(feature_key([key, measured], "measured", "", 0)) if store else None
    if text is None:
        return None
    try:
        record = kind.model_validate_json(text)
    except ValueError:  # an entry of an older shape: measured again
        return None
    if isinstance(record, BackboneProbe):
        record = record.model_copy(update={"cached": True, "extract_s": 0.0, "measure_s": 0.0})
    elif isinstance(record, AdaBNCheck):
        record = record.model_copy(update={"seconds": 0.0})  # its documented "cached"
    return record


def _save_record(store: FeatureCache | None, key: str, measured: str, record: Any) -> None:
    # JSON has no NaN/inf (pydantic writes null): such a record would not read back the same
    if store and _finite(record.model_dump()):
        store.save_json(feature_key([key, measured], "measured", "", 0),
                        record.model_dump_json())


def _finite(value: Any) -> bool:
    """Whether no float in ``value`` (nested dicts, lists, tuples) is NaN or infinite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(v) for v in value)
    return True


def _decoded(images: SampleImages, size: int, say: ProgressCallback) -> np.ndarray:
    if not images.ready(size):
        say("", f"decoding {len(images.records)} images at {size}px")
    return images.at(size)


def _key(plan: ExtractionPlan, hashes: list[str], seed: int, extra: str) -> str:
    source = plan.spec.weight_source(plan.with_top)
    fallback = (f"random-init:{seed}" if plan.weights is None
                else f"download:{source.url if source else None}")
    name = plan.spec.name
    if source is not None and source.kind == "custom":  # its settings, not only its weights
        name = f"{name}@{source.url}"
    return feature_key(hashes, name, weights_identity(plan.weights_file, fallback),
                       plan.input_size, extra=extra)


def _seed_random_init(weights: str | None, seed: int) -> None:
    """Random initialisation (no pretrained weights) must be the same on every run."""
    if weights is None:
        import keras

        keras.utils.set_random_seed(seed)


def _orientation_subset(labels: np.ndarray, limit: int) -> list[int]:
    """Indices of at most ``limit`` sample images, spread evenly over the classes."""
    classes = np.unique(labels)
    per_class = max(1, limit // len(classes))
    chosen = [i for c in classes for i in np.flatnonzero(labels == c)[:per_class]]
    return sorted(chosen)


def _measure(spec: BackboneSpec, size: int, arrays: dict[str, np.ndarray], labels: np.ndarray,
             classes: list[str], top_note: str, seed: int, extract_s: float, cached: bool,
             t0: float) -> BackboneProbe:
    from autotransfer.probes.extract import bn_layer_stats

    features = arrays["features"]
    return BackboneProbe(
        backbone=spec.name,
        input_size=size,
        feature_dim=int(features.shape[1]),
        n_samples=int(features.shape[0]),
        bn_shift=_bn_shift(spec, bn_layer_stats(arrays)),
        imagenet=_imagenet_view(arrays.get("probs"), labels, classes),
        imagenet_note=top_note if "probs" not in arrays else "",
        transferability=measure_transferability(features, labels, seed=seed),
        extract_s=round(extract_s, 3),
        forward_ms=(round(1000 * float(arrays["seconds_per_image"]), 4)
                    if "seconds_per_image" in arrays else None),
        measure_s=round(time.perf_counter() - t0, 3),
        cached=cached,
    )


def _bn_shift(spec: BackboneSpec, layers: list) -> BNShift:  # type: ignore[type-arg]
    empty = dict.fromkeys(spec.group_names)
    if not layers:
        return BNShift(applicable=False, reason="the backbone has no BatchNorm layers",
                       per_group=empty, overall=None, peak_group=None, n_layers=0)
    if is_folded(layers):
        return BNShift(
            applicable=False,
            reason="BatchNorm is folded into the convolutions in these weights (stored mean 0, "
            "variance 1 in every layer), so there are no ImageNet statistics to compare with",
            per_group=empty, overall=None, peak_group=None, n_layers=len(layers),
        )  # fmt: skip
    per_group = shift_by_group(layers, spec.group_names)
    measured = {g: v for g, v in per_group.items() if v is not None}
    return BNShift(
        applicable=True,
        reason="symmetric KL between the data's and ImageNet's per-channel BN input statistics",
        per_group=per_group,
        overall=overall_shift(per_group),
        peak_group=max(measured, key=measured.__getitem__) if measured else None,
        n_layers=len(layers),
    )


def _imagenet_view(probs: np.ndarray | None, labels: np.ndarray, classes: list[str]) -> ImageNetView | None:
    if probs is None:
        return None
    from autotransfer.backbones.imagenet_labels import imagenet_class_names

    entropy = float(prediction_entropy(probs).mean())
    return ImageNetView(
        mean_entropy=entropy,
        normalized_entropy=entropy / math.log(probs.shape[1]),
        top_concepts=top_concepts(probs, labels, classes, imagenet_class_names()),
    )


def _probed_sample(profile: DatasetProfile, probe: Any, per_class: int, total: int,
                   seed: int) -> tuple[list[Any], np.ndarray, list[str]]:
    """(records, labels, hashes) of the sample ``probe`` measured; an error when ``per_class``
    and ``total`` draw another one."""
    records, _, labels, hashes = _sample(profile, per_class, total, seed)
    if len(records) != probe.n_samples:
        from autotransfer.errors import InvalidParameterError

        raise InvalidParameterError(
            f"The sample of per_class={per_class}, total={total} has {len(records)} images, but "
            f"the probe of {probe.backbone} measured {probe.n_samples}: pass the per_class and "
            "total that the probe used.")
    return records, labels, hashes
