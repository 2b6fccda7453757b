"""What the test modules share: paths, tiny checkpoints, cards, made-up data, result builders and
the headless browser. A test module (tests/test_*.py) imports from here or takes a fixture from
tests/conftest.py, never from another test module (tests/test_layout.py checks it); bench/
imports from here too."""
