"""The advisor: profile + measurements in, recipe + reasons out. Pure Python: no TensorFlow."""
