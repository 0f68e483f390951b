"""Bring your own backbone: register a small Keras model (file or callable), probe it, let the
advisor rank it, train a recipe on it, and refuse what must be refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from autotransfer.backbones.catalog import backbone_names, get_backbone
from autotransfer.backbones.custom import (custom_backbone, custom_backbones, load_backbone_file,
                                           register_backbone, unregister_backbone)
from autotransfer.cli import EXIT_USER_ERROR, main
from autotransfer.errors import InvalidConfigError, InvalidParameterError, ModelFileError
from tests.train.helpers import make_colour_dataset, tiny_recipe

keras = pytest.importorskip("keras")

GROUPS = ["s1_conv", "s2_conv", "s3_conv", "s4_conv"]
SETTINGS = dict(preprocessing={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
                groups=GROUPS, input_size=32, feature_layer="s4_relu")


def small_net(name: str = "small_net", seed: int = 1) -> keras.Model:
    """Five conv+BN+ReLU stages (stride 2 each) and a classifier, any input size."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = inputs
    for i, width in enumerate((8, 8, 16, 16, 32)):
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", name=f"s{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"s{i}_bn")(x)
        x = keras.layers.ReLU(name=f"s{i}_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name=name)
    rng = np.random.default_rng(seed)  # statistics as training leaves them, not placeholders
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, rng.normal(0, 0.3, gamma.shape),
                               rng.uniform(0.5, 2.0, gamma.shape)])
    return model


@pytest.fixture(autouse=True)
def _clean_registry():
    """Every test leaves the registry as it found it (registrations are process-wide)."""
    before = custom_backbones()
    yield
    for name in set(custom_backbones()) - set(before):
        unregister_backbone(name)
    assert custom_backbones() == before


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "small_net.keras"
    small_net().save(path)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_colour_dataset(tmp_path_factory.mktemp("ds") / "colours",
                               {"red": 10, "green": 10, "blue": 10})


def write_yaml(folder: Path, model: Path, **changes) -> Path:
    data = {"name": "my_net", "model": model.name if model.parent == folder else str(model),
            **SETTINGS, **changes}
    path = folder / "my_backbone.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_register_a_file_gives_a_measured_spec_and_the_same_features(model_file):
    from autotransfer.backbones.build import build_backbone, layer_group_ranges

    spec = register_backbone("my_net", model_file, **SETTINGS)
    assert get_backbone("my_net") is spec and "my_net" in backbone_names()
    assert spec.feature_dim == 32 and spec.default_input_size == spec.min_input_size == 32
    assert [g.stride for g in spec.layer_groups] == [2, 4, 8, 16, 32]
    assert spec.bn_statistics == "real" and spec.weights[0].kind == "custom"
    net = small_net()
    assert spec.params == keras.Model(net.input, net.get_layer("s4_relu").output).count_params()
    json.dumps(spec.to_dict())

    built = build_backbone("my_net")
    groups = {g.name: g.layers for g in layer_group_ranges(built, spec)}
    assert groups["stage_s4"] == ("s1_conv", "s1_bn", "s1_relu")
    assert "preprocess" in groups["stem"] and "logits" not in built.layers[-1].name

    original = keras.saving.load_model(model_file)
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    reference = keras.Model(original.input, original.get_layer("s4_relu").output)(
        (images / 255 - 0.5) / 0.25)
    expected = keras.ops.convert_to_numpy(reference).mean(axis=(1, 2))
    np.testing.assert_allclose(built.predict(images, verbose=0), expected, atol=1e-5)
    # random initialisation keeps the architecture, not the weights
    fresh = build_backbone("my_net", weights=None)
    assert not np.allclose(fresh.get_layer("s1_conv").get_weights()[0],
                           built.get_layer("s1_conv").get_weights()[0])


def test_register_a_callable_and_unregister(model_file):
    with custom_backbone("my_callable", lambda: small_net(seed=2), preprocessing="tf",
                         groups=GROUPS, input_size=64, min_input_size=32,
                         feature_layer="s4_relu") as spec:
        from autotransfer.backbones.build import build_backbone

        assert spec.weights[0].file_name == "" and spec.min_input_size == 32
        assert build_backbone(spec, 32).output_shape == (None, 32)
        with pytest.raises(InvalidParameterError, match="already registered"):
            register_backbone("my_callable", model_file, **SETTINGS)
    assert "my_callable" not in backbone_names()
    with pytest.raises(KeyError, match="register it first"):
        get_backbone("my_callable")


def test_a_bad_cut_point_lists_close_matches(model_file):
    with pytest.raises(InvalidParameterError) as caught:
        register_backbone("my_net", model_file, **{**SETTINGS, "groups":
                                                    ["s1_conv", "s2_cnv", "s3_conv", "s4_conv"]})
    message = str(caught.value)
    assert "'s2_cnv' is not a layer" in message and "Did you mean 's2_conv'" in message
    assert "my_net" not in backbone_names()
    with pytest.raises(InvalidParameterError, match="not after the start of the previous"):
        register_backbone("my_net", model_file, **{**SETTINGS, "groups":
                                                    ["s2_conv", "s1_conv", "s3_conv", "s4_conv"]})
    with pytest.raises(InvalidParameterError, match="feature_layer 'gap_x'.*Did you mean 'gap'"):
        register_backbone("my_net", model_file, **{**SETTINGS, "feature_layer": "gap_x"})
    with pytest.raises(InvalidParameterError, match="not a feature map"):
        register_backbone("my_net", model_file, **{**SETTINGS, "feature_layer": "gap"})
    with pytest.raises(InvalidParameterError, match="catalog backbone"):
        register_backbone("mobilenet_v2", model_file, **SETTINGS)
    with pytest.raises(InvalidParameterError, match="mean and std are on the"):
        register_backbone("my_net", model_file, **{**SETTINGS, "preprocessing": {
            "mean": [123.7, 116.3, 103.5], "std": [1, 1, 1]}})


def test_a_keras_file_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    inputs = keras.Input((None, None, 3))
    where = str(marker)
    x = keras.layers.Lambda(lambda t: (open(where, "w").close(), t * 2.0)[1], name="double")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, x).save(path)
    marker.unlink()  # building the model ran it; loading the file must not
    with pytest.raises(ModelFileError, match="safe_mode"):
        register_backbone("lam", path, **{**SETTINGS, "feature_layer": None})
    assert not marker.exists() and "lam" not in backbone_names()

    @keras.saving.register_keras_serializable(package="test_custom")
    class Doubler(keras.layers.Layer):
        def call(self, t):
            return t * 2.0

    inputs = keras.Input((None, None, 3))
    path = tmp_path / "custom_layer.keras"
    keras.Model(inputs, keras.layers.Conv2D(4, 3)(Doubler(name="doubler")(inputs))).save(path)
    with pytest.raises(ModelFileError, match="Doubler"):  # registered here, still not a built-in
        register_backbone("dbl", path, **{**SETTINGS, "feature_layer": None})
    path.with_suffix(".txt").write_text("not a model")
    with pytest.raises(ModelFileError, match="not a .keras file"):
        register_backbone("dbl", path.with_suffix(".txt"), **SETTINGS)


def test_the_yaml_file_is_validated(tmp_path, model_file):
    (tmp_path / "small_net.keras").write_bytes(model_file.read_bytes())
    path = write_yaml(tmp_path, tmp_path / "small_net.keras", gropus=GROUPS)
    with pytest.raises(InvalidConfigError, match="gropus"):
        load_backbone_file(path)
    path = write_yaml(tmp_path, tmp_path / "small_net.keras")
    spec = load_backbone_file(path)
    assert spec.name == "my_net" and spec.weights[0].file_name == str(tmp_path / "small_net.keras")
    unregister_backbone("my_net")
    path.write_text("name: [unclosed")
    with pytest.raises(InvalidConfigError, match="not valid YAML"):
        load_backbone_file(path)
    marker = tmp_path / "ran"
    path.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(InvalidConfigError, match="not valid YAML"):  # safe_load: no objects
        load_backbone_file(path)
    assert not marker.exists()
    path = write_yaml(tmp_path, tmp_path / "missing.keras")
    with pytest.raises(InvalidConfigError, match="missing.keras' does not exist"):
        load_backbone_file(path)


def test_probe_measures_it_and_the_cache_follows_its_settings(model_file, dataset, tmp_path):
    from autotransfer.probes.cache import FeatureCache
    from autotransfer.probes.probe import probe_dataset

    cache = FeatureCache(tmp_path / "cache")
    register_backbone("my_net", model_file, **SETTINGS)
    report = probe_dataset(dataset, ["my_net"], per_class=10, cache=cache,
                           measure_orientation_with="none")
    (probe,) = report.probes
    assert probe.backbone == "my_net" and probe.input_size == 32
    assert probe.transferability.knn_accuracy > 0.8  # colour classes: easy for these features
    assert probe.bn_shift.applicable
    # another preprocessing of the same file is another backbone: not served from the cache
    register_backbone("my_net", model_file, replace=True,
                      **{**SETTINGS, "preprocessing": {"scale": 0.0, "offset": 0.0}})
    blind = probe_dataset(dataset, ["my_net"], per_class=10, cache=cache,
                          measure_orientation_with="none").probes[0]
    assert not blind.cached
    assert blind.transferability.knn_accuracy < probe.transferability.knn_accuracy


def test_advisor_ranks_it_with_the_others(model_file, dataset, tmp_path):
    from autotransfer.advisor.advise import Advisor
    from autotransfer.probes.cache import FeatureCache

    register_backbone("my_net", model_file, **SETTINGS)
    # the same network, blind: every image is mapped to zeros before it sees it
    register_backbone("blind_net", model_file, **{**SETTINGS, "preprocessing":
                                                   {"scale": 0.0, "offset": 0.0}})
    advisor = Advisor(backbones=["blind_net", "my_net"], per_class=10)
    advisor.cache = FeatureCache(tmp_path)
    advisor.fit(dataset)
    assert {c.backbone for c in advisor.candidates_} == {"my_net", "blind_net"}
    assert advisor.recipe_.backbone.name == "my_net"
    assert advisor.recipe_.backbone.weights == "imagenet"  # its own pretrained weights


def test_cli_advise_then_train_with_the_backbone_file(model_file, dataset, tmp_path, capsys,
                                                      monkeypatch):
    from autotransfer.recipe.io import save_recipe

    monkeypatch.setenv("AUTOTRANSFER_CACHE", str(tmp_path / "cache"))
    (tmp_path / "small_net.keras").write_bytes(model_file.read_bytes())
    spec_file = write_yaml(tmp_path, tmp_path / "small_net.keras")
    recipe_path = tmp_path / "recipe.yaml"
    assert main(["advise", str(dataset), "--backbone-file", str(spec_file), "-b", "my_net",
                 "--sample", "10", "-o", str(recipe_path)]) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "my_net" in captured.out and f"--backbone-file {spec_file}" in captured.err
    assert load_recipe_needs(spec_file, recipe_path)
    assert "my_net" not in backbone_names()  # the command registered it for itself only
    assert main(["backbones", "my*", "--backbone-file", str(spec_file), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "my_net" and row["weights_status"] == "cached"

    # train a short recipe on it, end to end; without the file the recipe is refused clearly
    recipe = tiny_recipe(backbone={"name": "my_net", "input_size": 32, "weights": "imagenet"},
                         head={"solver": "lbfgs", "dropout": 0.0})
    with custom_backbone("my_net", tmp_path / "small_net.keras", **SETTINGS):
        save_recipe(recipe, tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    assert main(["train", str(dataset), "--recipe", str(tmp_path / "tiny.yaml"), "--out",
                 str(run)]) == EXIT_USER_ERROR
    assert "--backbone-file" in capsys.readouterr().err
    assert main(["train", str(dataset), "--recipe", str(tmp_path / "tiny.yaml"), "--out", str(run),
                 "--backbone-file", str(spec_file), "--json"]) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["phases"]) == 2 and summary["val_accuracy"] > 0.5

    # the exported model loads in a Python without autotransfer (built-in layers only)
    code = ("import sys; sys.modules['autotransfer'] = None; import keras, numpy as np; "
            f"m = keras.saving.load_model({str(run / 'model.keras')!r}, safe_mode=True); "
            "p = m.predict(np.full((1, 32, 32, 3), 128.0, 'float32'), verbose=0); "
            "assert abs(float(p.sum()) - 1) < 1e-4")
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path).returncode == 0


def load_recipe_needs(spec_file: Path, recipe_path: Path) -> bool:
    """The advised recipe names the custom backbone and loads once it is registered."""
    from autotransfer.errors import InvalidConfigError as Invalid
    from autotransfer.recipe.io import load_recipe

    with pytest.raises(Invalid, match="register it first"):
        load_recipe(recipe_path)
    spec = load_backbone_file(spec_file)
    try:
        return load_recipe(recipe_path).backbone.name == spec.name == "my_net"
    finally:
        unregister_backbone("my_net")


def test_a_model_file_changed_after_registration_is_refused(tmp_path, model_file):
    from autotransfer.backbones.build import build_backbone
    from autotransfer.errors import WeightsFileError

    path = tmp_path / "net.keras"
    path.write_bytes(model_file.read_bytes())
    register_backbone("my_net", path, **SETTINGS)
    small_net(seed=5).save(path)  # same layers, other weights: the checked groups may not fit
    with pytest.raises(WeightsFileError, match="changed since it was registered"):
        build_backbone("my_net")


def test_a_model_instance_registers_like_a_callable():
    net = small_net(seed=3)
    spec = register_backbone("my_instance", net, **SETTINGS)
    from autotransfer.backbones.build import build_backbone

    built = build_backbone(spec)
    np.testing.assert_array_equal(built.get_layer("s2_conv").get_weights()[0],
                                  net.get_layer("s2_conv").get_weights()[0])


def residual_net() -> keras.Model:
    """Stride-2 stages with a residual branch each, and a bare operation (x + 1) between them."""
    inputs = keras.Input((None, None, 3))
    x = inputs
    for i, width in enumerate((8, 8, 16, 16, 32)):
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", name=f"s{i}_conv")(x)
        y = keras.layers.Conv2D(width, 3, padding="same", name=f"s{i}_conv2")(x)
        y = keras.layers.BatchNormalization(name=f"s{i}_bn")(y)
        x = keras.layers.Add(name=f"s{i}_add")([x, keras.layers.ReLU(name=f"s{i}_relu")(y)])
        x = x + 1.0
    return keras.Model(inputs, x)


def test_a_group_start_that_a_skip_connection_jumps_is_refused(tmp_path):
    from autotransfer.train.model import build_classifier

    path = tmp_path / "res.keras"
    residual_net().save(path)
    with pytest.raises(InvalidParameterError, match="cannot start at 's2_relu'.*'s2_add'.*skip"):
        register_backbone("res", path, preprocessing="tf", input_size=32,
                          groups=["s1_conv", "s2_relu", "s3_conv", "s4_conv"])
    register_backbone("res", path, preprocessing="tf", input_size=32,
                      groups=["s1_conv", "s2_conv", "s3_conv", "s4_conv"])
    clf = build_classifier(tiny_recipe(backbone={"name": "res", "input_size": 32,
                                                 "weights": "imagenet"}), 3)
    for k in range(1, 5):  # the trainer splits the network at each group start
        boundary = clf.boundary(k)
        assert boundary.shape[1] == 32 // 2 ** k
        keras.Model(boundary, clf.model.output)


def test_a_callable_may_use_custom_layers_a_file_may_not():
    class Scale(keras.layers.Layer):  # your own code, so allowed from Python
        def __init__(self, factor: float, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, t):
            return t * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    def make() -> keras.Model:
        net = small_net()
        inputs = keras.Input((None, None, 3))
        return keras.Model(inputs, net(Scale(0.5, name="halve")(inputs)))

    from autotransfer.backbones.build import build_backbone

    spec = register_backbone("scaled", make, **SETTINGS)  # a nested model: flattened
    built = build_backbone(spec)
    assert built.get_layer("halve").factor == 0.5 and built.get_layer("s2_conv")
    assert spec.feature_dim == 32


def test_a_fixed_size_classifier_after_the_feature_layer_does_not_fix_the_input_size(tmp_path):
    from autotransfer.backbones.build import build_backbone

    inputs = keras.Input((64, 64, 3))  # a VGG-style head: Flatten + Dense for 64 px only
    x = inputs
    for i, width in enumerate((8, 8, 16, 16, 32)):
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", name=f"s{i}_conv")(x)
    outputs = keras.layers.Dense(5, name="fc")(keras.layers.Flatten(name="flat")(x))
    path = tmp_path / "vggish.keras"
    keras.Model(inputs, outputs).save(path)
    spec = register_backbone("vggish", path, preprocessing="caffe", groups=GROUPS,
                             input_size=64, min_input_size=32, feature_layer="s4_conv")
    assert spec.bn_statistics == "absent"
    assert build_backbone(spec, 32).output_shape == build_backbone(spec, 96).output_shape
