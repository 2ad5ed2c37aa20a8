"""GUI tests (pytest-qt, offscreen): they drive the real widgets on a tiny real model."""
