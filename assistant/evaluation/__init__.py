"""The evaluation: known-answer sets run through the assistant and its baselines, scored and gated.

:mod:`~assistant.evaluation.cases` reads the sets, :mod:`~assistant.evaluation.run` scores them,
:mod:`~assistant.evaluation.baselines` are the systems compared with the assistant,
:mod:`~assistant.evaluation.suite` runs every set of ``eval/sets.toml``,
:mod:`~assistant.evaluation.report` renders the result, :mod:`~assistant.evaluation.gate` checks
it against ``eval/thresholds.toml``, and :mod:`~assistant.evaluation.calibrate` fits the decline
calibration out of sample. It uses the pipeline; nothing in the pipeline uses it.
"""

__all__: list[str] = []
