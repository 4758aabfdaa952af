"""The catalog of experiments, as data: what fires each one, and what the manuals say must
be observed."""
