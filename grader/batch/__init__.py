"""Grading a cohort: a roster of candidates, each graded in its own process and folder, with a
resumable state file and a cohort view (``takehome batch``, ``takehome compare``)."""
