"""Object detectors that turn images into auxiliary semantics (COCO results format)."""
