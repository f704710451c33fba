"""What the scheduler counts of a deployment (apps.scheduling.coordination.capacity): its
capacity, reserve and limits, told to it whenever an operator saves the deployment."""

import logging

from django.conf import settings
from django.db import transaction

from apps.deployments.models import Deployment
from apps.scheduling.coordination.capacity import Target, capacity_configure

logger = logging.getLogger(__name__)


def deployment_target(deployment: Deployment, weight: int = 1) -> Target:
    return Target(
        name=deployment.name,
        capacity=deployment.max_concurrency,
        reserved_for_high=deployment.reserved_for_high,
        bulk_reserve=int(settings.PLATFORM["BULK_RESERVED_SEQUENCES"]),
        weight=weight,
        rpm_limit=deployment.rpm_limit,
        tpm_limit=deployment.tpm_limit,
        enabled=deployment.enabled,
    )


def deployment_capacity_publish(deployment: Deployment) -> None:
    """Once the change commits: answers waiting for it see the new capacity at once (a
    disabled deployment takes nothing more; what it runs finishes)."""

    def publish() -> None:
        try:
            capacity_configure(deployment_target(deployment))
        except Exception:
            # The next answer submitted to it tells the scheduler anyway.
            logger.warning("could not publish a deployment's capacity", exc_info=True)

    transaction.on_commit(publish)
