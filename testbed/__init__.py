"""Local testbed: a real upstream registry on loopback and an emulated ECR pull-through cache.

Test and demo infrastructure only; nothing here ships in the Lambda layer.

- ``registry``: runs Debian's ``docker-registry`` (CNCF distribution) as a child process
- ``images``: pushes images over the registry HTTP API (the way an upstream release happens)
- ``ecr_ptc``: ECR pull-through cache behaviour on top of moto (see docs/ecr-behaviour.md)
"""
