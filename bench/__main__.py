"""``python -m bench``: run every benchmark and print the figures."""

from bench import fixtures

fixtures.main()
