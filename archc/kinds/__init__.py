"""Kinds as records: each member of a closed set (a decoder type, a weights source, ...) is one record in one place."""
