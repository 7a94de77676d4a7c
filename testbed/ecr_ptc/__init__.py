"""Amazon ECR pull-through cache (PTC) emulation on top of moto: test and demo infrastructure.

Not shipped in the Lambda layer. While moto's ``mock_aws()`` is active in this process,

    with mock_aws(), PullThroughCacheEmulator({"registry-1.docker.io": registry.url}) as ptc:
        ecr = boto3.client("ecr")
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="docker-hub", ...)
        ecr.batch_get_image(repositoryName="docker-hub/library/alpine", imageIds=[{"imageTag": "3"}])

makes moto's ECR behave like ECR with pull-through cache, importing from real registries over the
distribution HTTP API. Facts and their sources: docs/ecr-behaviour.md and docs/ecr-facts.md; each
fact has one home, named in that module's docstring. "Inferred" means not documented by AWS and chosen
here; tests/testbed/test_ecr_ptc_emulation.py checks each.

Modules, one concern each:

- ``rules``: pull-through cache rules, the name mapping to upstream, the rule's secret;
- ``pulls``: BatchGetImage, imports from upstream, the 24-hour re-check, background imports;
- ``images``: PutImage, DescribeImages, BatchDeleteImage, read-after-delete lag, the PutImage quota;
- ``layers``: GetDownloadUrlForLayer, BatchCheckLayerAvailability, layers cached in the background;
- ``pull_time``: pull-time update exclusions;
- ``events``: ``ECR Pull Through Cache Action`` events;
- ``faults``: switches that make upstream fail or import in the background;
- ``upstream``: ECR's own HTTP client to upstream registries;
- ``store``: how images live in moto's repositories, tag immutability;
- ``api``: the request, errors, pagination and failure codes every call shares;
- ``clock``: the only source of time; ``emulator``: the class and its installation into moto;
- ``access`` (opt-in, ``AccessEmulation``): STS trust, caller-bound ECR tokens and upstream
  repository policies, for ptc-sync's own read path to ECR upstreams.

Unknowns are switches, each settable both ways on the emulator: ``reimport_after_delete``,
``import_into_pushed_repositories`` (pulls), ``put_image_in_cache``, ``describe_lag`` (images),
``uncached_layer_answer`` (layers); tests/reliability/test_unknown_switches.py runs the never-lose
scenarios under each.

Not emulated: IAM identity policies (``customRoleArn`` is checked for shape and account; ECR's own
imports from ``ecr`` upstreams are read anonymously; ``access`` checks trust and repository policies
on ptc-sync's side), archive storage (every image is ACTIVE), cross-account registryId
(InvalidParameterException), ECR Image Action events, throttling of any call but PutImage.
"""

from testbed.ecr_ptc.api import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    FAILURE_CODES,
    IMAGE_DIGEST_RE,
    LAYER_DIGEST_RE,
    EmulatedEcrError,
)
from testbed.ecr_ptc.clock import Clock, FakeClock
from testbed.ecr_ptc.emulator import PullThroughCacheEmulator
from testbed.ecr_ptc.events import (
    EVENT_DETAIL_TYPE,
    EVENT_SOURCE,
    SYNC_FAILED,
    SYNC_SUCCESS,
)
from testbed.ecr_ptc.faults import BACKGROUND_REASON, RAISABLE_CODES
from testbed.ecr_ptc.images import IMAGE_ACTIVE, IMAGE_STATUSES, PUT_IMAGE_QUOTA
from testbed.ecr_ptc.layers import (
    DEFAULT_LAYER_MEDIA_TYPE,
    LAYER_AVAILABLE,
    LAYER_UNAVAILABLE,
    MAX_LAYER_DIGESTS,
    UNCACHED_LAYER_ANSWERS,
    ImportedLayer,
)
from testbed.ecr_ptc.pull_time import PRINCIPAL_ARN_RE
from testbed.ecr_ptc.pulls import (
    DEFAULT_ACCEPTED,
    REFRESH_INTERVAL,
    SCHEMA1,
    ImportRecord,
    UpstreamFetch,
)
from testbed.ecr_ptc.rules import (
    AZURE_HOST_RE,
    CREDENTIAL_ARN_RE,
    CREDENTIALS_REQUIRED,
    ECR_HOST_RE,
    FIXED_HOSTS,
    MAX_RULES,
    PREFIX_RE,
    ROLE_ARN_RE,
    SECRET_ARN_PARTS_RE,
    UPSTREAM_REGISTRIES,
)
from testbed.ecr_ptc.upstream import LOOPBACK_HOSTS

__all__ = [
    "AZURE_HOST_RE",
    "BACKGROUND_REASON",
    "CREDENTIALS_REQUIRED",
    "CREDENTIAL_ARN_RE",
    "DEFAULT_ACCEPTED",
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_LAYER_MEDIA_TYPE",
    "DEFAULT_REGION",
    "ECR_HOST_RE",
    "EVENT_DETAIL_TYPE",
    "EVENT_SOURCE",
    "FAILURE_CODES",
    "FIXED_HOSTS",
    "IMAGE_ACTIVE",
    "IMAGE_DIGEST_RE",
    "IMAGE_STATUSES",
    "LAYER_AVAILABLE",
    "LAYER_DIGEST_RE",
    "LAYER_UNAVAILABLE",
    "LOOPBACK_HOSTS",
    "MAX_LAYER_DIGESTS",
    "MAX_RULES",
    "PREFIX_RE",
    "PRINCIPAL_ARN_RE",
    "PUT_IMAGE_QUOTA",
    "RAISABLE_CODES",
    "REFRESH_INTERVAL",
    "ROLE_ARN_RE",
    "SCHEMA1",
    "SECRET_ARN_PARTS_RE",
    "SYNC_FAILED",
    "SYNC_SUCCESS",
    "UNCACHED_LAYER_ANSWERS",
    "UPSTREAM_REGISTRIES",
    "Clock",
    "EmulatedEcrError",
    "FakeClock",
    "ImportRecord",
    "ImportedLayer",
    "PullThroughCacheEmulator",
    "UpstreamFetch",
]
