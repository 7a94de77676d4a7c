"""ptc-sync: keeps Amazon ECR pull-through cache repositories fresh.

The package is the Lambda layer's one import root. Layout:

- ``models``, ``mediatypes``, ``upstream`` (the pure core: types and decisions, no I/O)
- ``registry`` (the upstream registry HTTP client)
- ``aws`` adapters (ECR, SNS, state) behind the protocols in ``ports``
- ``wiring`` builds the adapters from validated ``settings``
"""

__version__ = "0.1.0"
