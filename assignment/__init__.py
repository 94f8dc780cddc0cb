"""The assignment half of the kit: what a candidate receives.

* ``assignment.docs``: renders the prompt (``PROMPT.md.j2``) and the contract reference
  (``CONTRACT.md.j2``) from the grader's configuration and the contract model, so every number
  and field a candidate reads is the one the grader uses.
* ``assignment.schema``: the JSON Schema of ``takehome.yaml`` (``takehome.schema.json``).
* ``assignment.build``: ``materialize`` / ``build_archive``, the candidate's archive.
* ``selfcheck.py``: a stdlib-only script shipped in the archive (not imported by the project).

Imports stay lazy: ``import assignment`` pulls in nothing heavy.
"""

from __future__ import annotations

from pathlib import Path

#: The directory holding the templates, examples and the shipped self-check.
ASSIGNMENT_DIR: Path = Path(__file__).resolve().parent

__all__ = ["ASSIGNMENT_DIR"]
