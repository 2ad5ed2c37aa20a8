"""Targets from a teacher model: a small, fast student learns what a larger model sees.

``--teacher MODEL.onnx`` (a one-class model, e.g. the 16-filter DAGM model at half scale) runs
over every training frame through the station's own code (:func:`engines.predict_maps`: its
scale, tiles and stitching, full-resolution map), the map is brought to the student's scale the
way masks are (area average) and mixed with the label: ``target = (1 - w) * label + w *
teacher``. The teacher's map is clean on defect-free frames and soft at defect edges, which is
what a student at a quarter of the resolution needs to place its edges and to stay silent on
good parts. Validation, the operating point and every reported figure stay on the labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.data.batches import Arrays
from training.data.loaders import Sample


def distill_targets(
    arrays: Arrays, samples: Sequence[Sample], teacher: str, weight: float
) -> Arrays:
    """``arrays`` with masks mixed with ``teacher``'s maps (module docstring); the defective flags
    (which frames the sampler treats as defective) stay the labels'."""
    from engines import load_engine, predict_maps
    from engines.preprocess import resize
    from training.data.loaders import read_image

    if not 0.0 < weight <= 1.0:
        raise ValueError(f"--teacher-weight {weight}: give a share in (0, 1]")
    engine = load_engine(teacher)
    try:
        if len(engine.card.class_names) > 1:
            raise ValueError(
                f"{teacher}: a multi-class teacher is not supported; use a one-class model"
            )
        masks = []
        for s, m in zip(samples, arrays.masks, strict=True):
            full = predict_maps(engine, [read_image(s.image_path)])[0]
            t = np.clip(resize(full[:, :, None].astype(np.float32), *m.shape)[:, :, 0], 0.0, 1.0)
            masks.append(((1.0 - weight) * m + weight * t).astype(np.float32))
    finally:
        engine.close()
    return Arrays(arrays.names, arrays.images, masks, arrays.defective)
