"""The recipe study of issue 18 (``tools/bench_advice.py``), one concept per module:

==========  =======================================================================================
store       the results file (``docs/benchmarks/advice.json``), the work folder, the rule base read
layouts     the capped copies of the shared datasets every part sees
ranking     ``--part ranking`` / ``rescore``: the probe's scores against the linear probe (τ)
truth       ``--part truth``: the linear probe cross-validated, a less noisy truth for the ranking
cells       the grid's constants and each cell's recipe and role
grid        ``--part grid``: the cells trained to their early stop (paired reruns included)
regret      regret of the advised recipe, and the tests that say whether a difference is noise
length      LR05: how long fine-tuning needs, and its floor fitted leave one dataset out
refits      the rules refitted against the grid, leave one dataset out
paired      LR01's rate: × 1 and × M rerun side by side, the paired tests and the decision
forecast    ``--part forecast``: ``recipes/forecast.yaml``, judged with its choices nested
report      ``docs/benchmarks/advice.md`` and the issue's goals
==========  =======================================================================================

Imports flow one way (store, layouts, cells → the parts → report); ``store.save`` renders the
report lazily. Module state a test may replace (``store.WORK``, ``store.OUT``, ``store.REPO``,
``store.rule_params``, ``report.markdown``) is read through its module.
"""
