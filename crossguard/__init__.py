"""CrossGuard-Edge: an on-device guard against explicit and joint-modal implicit jailbreaks.

Subpackages live in the repository's top-level folders: ``crossguard.runtime`` (runtime/, no torch),
``crossguard.train`` (train/), ``crossguard.export`` (export/), ``crossguard.benchmarks`` (benchmarks/).
This core package holds the taxonomy, the ``Sample``/``Verdict`` schemas and manifest I/O.
"""
__version__ = "0.1.0"
