"""The built-in synthetic data: rendered pedestrians (``pedestrians``), whole datasets in the real layouts
(``layouts``, what ``reid-synth`` writes) and re-ID-shaped feature vectors for gallery tests (``vectors``)."""
