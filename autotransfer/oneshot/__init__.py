"""``auto(dataset)``: a folder of images in, a deployable model and a report out, in one call.

profile → probe → advise → tune (trial 0 = the advised recipe) → final training with the refined
recipe → evaluation on the test split → exports → ``report.md`` that tells the story.

The package is called ``oneshot`` (not ``auto``) so that ``autotransfer.auto`` stays the function:
a submodule of that name would replace it as an attribute of the package once imported.

**Budget.** ``time_budget`` covers the whole call. Profiling and probing come first (their time is
measured, not guessed). The advised recipe is then sized so that one training of it takes
``remaining / (1 + factor + search_share)`` (rule PLAN01; BUD01 and BUD02 shorten fine-tuning, or
drop it, from the forward pass timed while probing): room for trial 0, the final training and some
search. When the budget *binds* a fine-tuning schedule — sized to that share, BUD01 shortens it or
BUD02 drops fine-tuning, while the whole budget would hold more of it and twice the budget more
still (the whole budget binds it, not BUD04's cap) — no search runs (rule PLAN02,
:func:`~.plan.search_skipped`): every trial would come out of the final model's training, and one or
two trials beyond trial 0 cannot tell a better recipe from chance. The advised recipe is then sized
to the whole budget and trained once, as the final model. Otherwise tuning gets the rest, keeping
free at its end room for the final training: ``reserve = factor × (the longest completed trial's
duration)``, updated after every trial, so that whichever trial wins can be trained again (trials
run in memory and save no model; the final model is trained by the recipe executor,
:func:`autotransfer.train.train`, with checkpoints, plots and exports):

* ``final="train+val"`` (rule PLAN04: the default when the dataset has a test split, so the held-out
  numbers stay honest): the refined recipe on train + validation, every phase for the epochs at
  which the best trial was best, no early stopping (FINAL01); ``factor = final_factor × (n_train +
  n_val) / n_train``. When the best trial's last phase was still improving at its last epoch, that
  phase is lengthened (at most doubled) to use the time left, from the trial's measured epoch times
  (FINAL02);
* ``final="train"`` (the default without a test split: the validation split is then the only
  held-out data and must stay out of training): the refined recipe on the tuning splits, with its
  early stopping, the head's L2 strength that the best trial cross-validated (FINAL03); ``factor =
  final_factor``.

A budget below what every run needs is refused, saying the minimum (rule BUD03,
:mod:`autotransfer.budget`): right after profiling when it is below the fixed costs, otherwise after
probing, before any training, from the image count and the measured forward pass. When only its
share for trial 0 is below the cheapest training, no search runs (PLAN03): the advised recipe trains
once. ``summary.json`` and the report say how much of the budget each step used, and whether it was
exceeded.

**Never worse than the linear probe (rule SEL02,** :mod:`autotransfer.tuning.baseline`**).** When
the advised recipe fine-tunes, the linear probe (its backbone frozen, the head fitted exactly) is
trained on the training split right after advising — seconds, out of the budget, before the
recipe is sized — and measured on the validation split. With a search, the best trial is
compared with it on the same validation images; without one, the advised recipe first trains
on the training split (early stopping on validation; it is not refitted on train + validation),
is compared, and is kept as trained only if it wins. The fine-tuned candidate is kept only when
a one-sided paired test finds it better beyond chance (balanced accuracy on imbalanced data);
otherwise the linear probe is the final model, refitted like the winner of a search.

Folder ``out`` (assembled in ``out.partial``, renamed when complete)::

    report.md           the story: data, measurements, decisions and why, tuning, final numbers
    report.html         the same story as one self-contained page (pictures embedded)
    summary.json        AutoResult: numbers, files, the budget split
    profile.json        the dataset profile          advice.json   measurements and decisions
    recipe.yaml         the advised recipe           recipe.tuned.yaml   the refined recipe
    tuning/             the search (see autotransfer.tuning.tuner), tuning.png (two trials or
                        more; one trial is said in words in the report)
    model/              the final run: model.keras, labels.txt, metrics.json, plots,
                        predictions.csv, mistakes.png, gradcam.png, [savedmodel/, model.tflite,
                        model.onnx] (``summary.json``'s ``exports``; the ONNX conversion is part
                        of the "evaluate and export" step, its time in the budget's steps)

``report.md`` and ``summary.json`` also set the advisor's forecast (issue 18) against what was
measured (:mod:`.versus`): the linear probe's and the advised recipe's held-out accuracy.
"""

from autotransfer.oneshot.final import final_recipe, reuse_head_c
from autotransfer.oneshot.plan import search_skipped
from autotransfer.oneshot.result import AutoResult
from autotransfer.oneshot.run import STEPS, auto

__all__ = ["STEPS", "AutoResult", "auto", "final_recipe", "reuse_head_c", "search_skipped"]
