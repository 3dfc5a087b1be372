"""Adapt to a site without labels (``reid-adapt``): its camera videos and a tracker's MOT files in, a model that
matches people across those cameras out, with the matches before and after.

:func:`~reid_sdk.adapt.pipeline.adapt_site` runs the steps (tracklets, the start measured, training, ONNX
export with parity, the adapted model measured, a report); :mod:`~reid_sdk.adapt.matching` measures one model on
a site; :class:`~reid_sdk.adapt.settings.AdaptSettings` holds the options; :mod:`~reid_sdk.adapt.step_inputs`
records what each step read of the site, so that a re-run redoes the steps a changed site invalidates.
"""
