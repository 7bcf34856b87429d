"""stabgap: reference reproduction of NGM-SGD and the stability gap in joint training.

arXiv:2507.14056 -- see README.md for the workflow and docs/protocol.md for the paper as implemented.
"""

__version__ = "0.2.0"  # as pyproject.toml's version
