"""ptc-sync: keeps Amazon ECR pull-through cache repositories fresh.

The package is the Lambda layer's one import root; the handlers in ``functions/`` are thin. Layout:

- the pure core, no I/O: ``models`` (types, outcomes and their groupings), ``names`` (repository,
  tag and image-reference rules), ``mediatypes``, ``upstream`` (rule → upstream host and path, the
  rule matcher), ``semver``, ``work`` (the SQS work item), ``events`` (event models), ``settings``
- ``registry`` (the upstream registry HTTP client: ``transport``, ``auth``, ``client``, ``ratelimit``,
  ``concurrency``, ``errors``) and ``credentials`` (the rule's upstream credentials)
- AWS adapters: ``ecr`` (the only module calling ECR), ``state`` (the DynamoDB state table: tag
  history, pull budget, runs; in memory too), ``journal`` (refresh lease, intent and backup
  ledger, also in memory), ``queue`` (SQS), ``notify`` (SNS)
- the work: ``discovery`` (rules, scope, cached tags), ``sync`` (``Comparer``: compare and refresh
  what is stale), ``local_run`` (one run in this process, through the checker), ``refresh`` (the
  refresh protocol), ``repair`` (the sweep that finishes a killed refresh), ``planner``,
  ``checker`` (with ``warm``, its pre-warm path, and ``state_budget``, the shared pull budget),
  ``ondemand`` (ECR events and sync requests), ``report`` and ``metrics`` (the run report, EMF
  metrics and log lines)
- ``service`` (one use case per handler), ``wiring`` (builds everything from validated ``settings``)
  and ``container`` (what a Lambda container keeps between invocations)
- ``redact`` (one redactor for every outward text) and ``logs`` (the redacting Powertools Logger)
- ``cli`` and ``cli_output`` (the ``ptc-sync`` operator command) and ``chat`` (the chat notifier)
"""

__version__ = "0.1.0"
