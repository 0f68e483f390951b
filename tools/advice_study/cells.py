"""What a grid cell is: the grid's rates, epochs and augmentation, each cell's recipe and role."""

from __future__ import annotations

from typing import Any



# ----------------------------------------------------------------------------- grid
#: fine-tuning rate multiples around the advised one
RATES = (1 / 3, 1.0, 3.0)
#: epochs of a grid cell's fine-tuning phase: its schedule (the advised one, e.g. cosine) anneals
#: the rate over them, and the recipe's early stopping (patience, best weights restored) ends it
#: sooner; a cell that runs them all is marked "schedule completed" (rate annealed to its floor)
MAX_EPOCHS = 20
#: rules added after the grid's centres were fixed (session 4): a centre advised now (a dataset
#: whose kept advice is missing) leaves them out, so that every centre comes from one rule base;
#: the re-advised cell (``--readvise``) uses the whole rule base in force
AFTER_CENTRES = ("LR05", "LR06")
NO_AUGMENTATION = {"horizontal_flip": False, "vertical_flip": False, "rotate90": False,
                   "rotation": 0.0, "zoom": 0.0, "translation": 0.0, "brightness": 0.0,
                   "contrast": 0.0, "saturation": 0.0, "hue": 0.0, "mixup_alpha": 0.0,
                   "cutmix_alpha": 0.0}


def advised_finetune(advice: Any) -> tuple[int, float, list[float]]:
    """(depth, rate, group multipliers) of the advised fine-tuning; for a head-only recipe, what
    the rules decided it would have been (the last firing that set them), else the preset's."""
    from autotransfer.advisor.presets import load_preset

    tuned = [p for p in advice.recipe.phases if p.trainable_from < 5]
    if tuned:
        deepest = min(tuned, key=lambda p: p.trainable_from)
        return deepest.trainable_from, deepest.learning_rate, list(deepest.group_lr_multipliers)
    decided = dict(load_preset(advice.preset).decisions)
    for f in advice.firings:
        decided.update({k: v for k, v in f.set.items() if k in ("finetune_from", "finetune_lr")})
    depth = int(decided.get("finetune_from", 4))
    return (depth if depth < 5 else 4), float(decided["finetune_lr"]), [1.0] * 5


def grid_cells(advice: Any) -> list[tuple[str, dict[str, Any], Any]]:
    """(cell id, its coordinates, recipe) in the order they run (cheapest first). The grid is
    coordinate-wise around the advised recipe: every freeze depth at the advised rate and
    augmentation, every rate at the advised depth, no augmentation at the advised depth and rate;
    plus the advised recipe itself and the exact linear probe (head only)."""
    from autotransfer.recipe.schema import Recipe
    from autotransfer.tuning.baseline import linear_probe_recipe

    recipe = advice.recipe
    depth, rate, multipliers = advised_finetune(advice)
    head = next((p for p in recipe.phases if p.trainable_from >= 5), None)

    def cell(d: int, m: float, aug: str) -> Recipe:
        data = recipe.model_dump()
        tune = dict((min((p for p in recipe.phases if p.trainable_from < 5),
                         key=lambda p: p.trainable_from, default=None) or recipe.phases[-1]
                     ).model_dump())
        tune.update(name="fine_tune", trainable_from=d, learning_rate=rate * m,
                    epochs=MAX_EPOCHS, group_lr_multipliers=multipliers)
        data["phases"] = ([head.model_dump()] if head else []) + [tune]
        if aug == "none":
            data["augmentation"] = dict(NO_AUGMENTATION)
        data["name"] = f"grid d{d} x{m:.3g} aug-{aug}"
        data["reasons"] = {}
        return Recipe.model_validate(data)

    cells = [("advised", {"advised": True}, recipe),
             ("linear_probe", {"depth": 5}, linear_probe_recipe(recipe)),
             (f"d{depth}-x1-advised", {"depth": depth, "rate": 1.0, "aug": "advised"},
              cell(depth, 1.0, "advised")),
             (f"d{depth}-x1-none", {"depth": depth, "rate": 1.0, "aug": "none"},
              cell(depth, 1.0, "none"))]
    rates = [(f"d{depth}-x{m:.3g}-advised", {"depth": depth, "rate": m, "aug": "advised"},
              cell(depth, m, "advised")) for m in (3.0, 1 / 3)]
    depths = [(f"d{d}-x1-advised", {"depth": d, "rate": 1.0, "aug": "advised"},
               cell(d, 1.0, "advised")) for d in range(4, -1, -1) if d != depth]
    return cells + depths[:1] + rates + depths[1:]


def rate_variant(recipe: Any, multiplier: float, tag: str) -> tuple[str, dict[str, Any], Any]:
    """(cell id, coordinates, recipe): ``recipe`` as advised (its phases, epochs, augmentation)
    with every fine-tuning phase's learning rate × ``multiplier`` — a candidate change of LR01's
    ratios measured at the advised schedule, not on the grid's one 20-epoch phase."""
    from autotransfer.recipe.schema import Recipe

    data = recipe.model_dump()
    for p in data["phases"]:
        if p["trainable_from"] < 5:
            p["learning_rate"] *= multiplier
    data["name"] = f"{recipe.name} (fine-tuning rate x{multiplier:g})"
    data["reasons"] = {}
    return (f"advised-x{multiplier:g}", {"advised_rate": multiplier, "advice_of": tag},
            Recipe.model_validate(data))


def cell_roles(depth: int) -> dict[str, str]:
    """Names for the cells one factor away from the centre (``d<depth>-x1-advised``), usable in
    ``--cells`` before the advised depth is known: centre, no_aug, rate_up, rate_down,
    shallower (one group fewer tuned; the linear probe when the centre tunes group 4 only),
    deeper (one group more)."""
    return {"centre": f"d{depth}-x1-advised", "no_aug": f"d{depth}-x1-none",
            "rate_up": f"d{depth}-x3-advised", "rate_down": f"d{depth}-x0.333-advised",
            "shallower": f"d{depth + 1}-x1-advised" if depth < 4 else "linear_probe",
            "deeper": f"d{depth - 1}-x1-advised" if depth > 0 else f"d{depth}-x1-advised"}


def recipe_changes(before: Any, after: Any) -> dict[str, Any]:
    """The recipe fields that differ (``phases`` as their (trainable_from, epochs) pairs; the
    reasons and the name left out): what a re-advised cell changes against the kept advice."""
    a, b = before.to_dict(), after.to_dict()
    out: dict[str, Any] = {}
    for key in sorted(set(a) | set(b)):
        if key in ("reasons", "name") or a.get(key) == b.get(key):
            continue
        if key == "phases":
            out[key] = [[[p["trainable_from"], p["epochs"]] for p in a[key]],
                        [[p["trainable_from"], p["epochs"]] for p in b[key]]]
            if any({k: v for k, v in p.items() if k not in ("epochs", "warmup_epochs")}
                   != {k: v for k, v in q.items() if k not in ("epochs", "warmup_epochs")}
                   for p, q in zip(a[key], b[key])) or len(a[key]) != len(b[key]):
                out["phases_other"] = True  # more than the epochs (and warm-up) changed
        else:
            out[key] = [a.get(key), b.get(key)]
    return out
