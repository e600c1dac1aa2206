"""Patchers that validate the corpus: templates, the native example, mutants."""
