"""The exact analysis: regular languages of atoms, rule reasoning, findings, `diff`."""
