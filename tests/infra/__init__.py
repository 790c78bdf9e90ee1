"""Offline checks of infra/*.bicep and of the package built by scripts/package.

Run with: python3 -m unittest discover -s tests/infra -t . -v
"""
