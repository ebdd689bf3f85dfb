"""The old import path of the one AST stripper, :mod:`grader.engine.strip` (the staged bundles, the
sandbox's library, the fingerprints of references and the similarity report all use it)."""
from grader.engine.strip import (Target, _python, definitions, exercise_qualnames, exercise_targets,  # noqa: F401
                                 find_fingerprints, fingerprint, is_stub, needed_by_library, normalised_dump,
                                 normalised_tokens, notebook_code, notebook_number, reference_fingerprints,
                                 strip_source, write_stripped)

__all__ = ["Target", "definitions", "exercise_qualnames", "exercise_targets", "find_fingerprints", "fingerprint",
           "is_stub", "needed_by_library", "normalised_dump", "normalised_tokens", "notebook_code",
           "notebook_number", "reference_fingerprints", "strip_source", "write_stripped"]
