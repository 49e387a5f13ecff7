"""The peer: a minimal HealthChain CDS Hooks service, as HealthChain documents it.

Runs in its own virtualenv (benchmarks/.venv-healthchain, made by benchmarks/setup-healthchain), with
uvicorn in its own process:

    benchmarks/.venv-healthchain/bin/python -m uvicorn peer_healthchain:app --app-dir benchmarks --port 8093

Its patient-view handler only reads the prefetch (counts the resources) and returns one card: whatever
it costs is HealthChain's own request handling (FastAPI body parsing, the CDSRequest and CDSResponse
pydantic models), the least a HealthChain service pays per call.
"""

from __future__ import annotations

from typing import Any

from healthchain.gateway import CDSHooksService, HealthChainAPI
from healthchain.models.requests.cdsrequest import CDSRequest
from healthchain.models.responses.cdsresponse import CDSResponse

app = HealthChainAPI(title="peer", enable_events=False)
cds = CDSHooksService()


def _count(value: Any) -> int:
    if not isinstance(value, dict):
        return 0
    if value.get("resourceType") == "Bundle":
        return len(value.get("entry") or [])
    return 1


@cds.hook("patient-view", id="trial-eligibility")
def patient_view(request: CDSRequest) -> CDSResponse:
    resources = sum(_count(v) for v in (request.prefetch or {}).values())
    return CDSResponse(
        cards=[
            {
                "summary": f"Read {resources} prefetched resources",
                "indicator": "info",
                "source": {"label": "peer"},
            }
        ]
    )


app.register_service(cds)
