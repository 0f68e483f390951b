"""The dataset layer: discover a dataset's layout, read its images, profile it, feed training."""
