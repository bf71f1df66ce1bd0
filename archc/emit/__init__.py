"""Emitters: turn a Plan into something else (a torch module here; diagrams and reports elsewhere)."""
