"""The answer stage: retrieved passages turned into a cited answer, or a plain decline.

:mod:`~assistant.answer.extractive` quotes the passages' own sentences (the default);
:mod:`~assistant.answer.generative` has a language model (:mod:`~assistant.answer.llm`) write
from them. Whether to answer at all is decided by :mod:`~assistant.answer.calibration`, from the
evidence features and the probe questions of :mod:`~assistant.answer.probes`.
"""

__all__: list[str] = []
