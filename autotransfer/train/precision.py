"""The Keras dtype policy a recipe's ``precision`` means on this machine, set for one run only.

* ``"bfloat16"`` on a CPU: ``mixed_bfloat16`` — layers compute in bfloat16, variables stay
  float32 (the optimizer updates float32 weights), the loss is computed in float32 and the
  classifier's softmax layer is float32 (``dtype="float32"`` in :func:`.model.build_classifier`);
  the exact L-BFGS head and the metrics work on float32/float64 arrays.
* ``"float32"``: float32 everywhere, on any device.
* ``"auto"``: the device's default: float32 on a CPU (bfloat16 only where the advisor measured it
  faster: rule PREC01).
* A GPU keeps its own mixed-precision path: ``mixed_float16`` for ``"auto"`` and ``"bfloat16"``
  (:func:`.distribute.precision_policy`).

:func:`run_policy` sets the policy for the duration of a run and restores the previous one, so
that no run leaks its policy into the next model built in the same process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from autotransfer.probes.precision import KERAS_POLICIES, policy_scope
from autotransfer.recipe.schema import Reason, Recipe

#: values of ``--precision`` (``"auto"``: as advised / as the recipe says)
PRECISIONS = ("auto", "float32", "bfloat16")


def keras_policy(precision: str, n_gpus: int | None = None) -> str:
    """The Keras dtype policy for a recipe's ``precision`` on this machine (``n_gpus``: as
    detected when ``None``)."""
    from autotransfer.train import distribute

    if precision == "float32":
        return "float32"
    if precision == "bfloat16":
        gpus = distribute.gpu_count() if n_gpus is None else n_gpus
        if gpus == 0:
            return KERAS_POLICIES["bfloat16"]
    return distribute.precision_policy(n_gpus)  # the device's own: mixed_float16 on a GPU


@contextmanager
def run_policy(precision: str, n_gpus: int | None = None) -> Iterator[str]:
    """The policy for ``precision`` set inside the block (yielded), the previous one after it."""
    policy = keras_policy(precision, n_gpus)
    with policy_scope(policy):
        yield policy


def with_precision(recipe: Recipe, precision: str) -> Recipe:
    """``recipe`` with the user's ``precision`` (``--precision``), its reason saying so;
    ``"auto"`` leaves the recipe's own (advised) precision."""
    if precision == "auto" or precision == recipe.precision:
        return recipe
    data = recipe.to_dict()
    data["precision"] = precision
    data["reasons"]["precision"] = Reason(
        rule="user", text=f"Compute precision {precision!r}: the user's choice (--precision), in "
        f"place of the recipe's {recipe.precision!r}.").model_dump(mode="json")
    return Recipe.model_validate(data)
