"""Test harness for code that uses remote_cache: fakes, fault injection, real servers."""
