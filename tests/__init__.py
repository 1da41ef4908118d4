"""The test suite, a package tree: helpers are imported by their path
(`from tests.unit.deploy_helpers import ...`); fixtures stay in conftest.py files."""
