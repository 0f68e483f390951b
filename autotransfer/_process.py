"""Process-wide choices that belong to the application (the console script), not the library."""

from __future__ import annotations

#: :func:`gc.freeze` once TensorFlow and Keras are imported
#: (:func:`autotransfer.probes.extract.import_tensorflow`). Set by the console script only: in a
#: library caller's process, freezing would also keep the caller's own objects from the cyclic
#: garbage collector for good.
freeze_after_import = False
