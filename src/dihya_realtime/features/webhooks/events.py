"""The webhooks feature: no client event; ``setup`` wires the service to the server.

Endpoints come from ``DIHYA_RT_WEBHOOKS`` (docs/webhooks.md). Without any, the feature only
adds its test route (which answers ``not_found``): no listener, no worker, no cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dihya_realtime.features.webhooks.http import register_routes
from dihya_realtime.features.webhooks.service import WebhookService

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime


def setup(rt: Realtime) -> None:
    """Build ``rt.webhooks``, add the test route, listen and start the worker."""
    service = rt.webhooks = WebhookService(rt)
    register_routes(rt, rt.blueprint, service)
    service.start()
