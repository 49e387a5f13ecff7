"""The FHIR edge: everything that reads FHIR from outside the service.

* :mod:`cds.fhir.decoding`: FHIR JSON decoded lean (msgspec), and :mod:`cds.fhir.json_limits`, the limits
  a body must keep (depth, string length);
* :mod:`cds.fhir.prefetch`: a service's prefetch templates → the patient's resources (prefetched, else
  fetched), one copy of each;
* :mod:`cds.fhir.client`: the async FHIR client (allow-list, token, parallel queries, paging, retries);
* :mod:`cds.fhir.http`: the one factory of httpx clients (no redirects, a timeout);
* :mod:`cds.fhir.check` (``trial-cds check-fhir``) and :mod:`cds.fhir.load` (``trial-cds load``): tools
  for a FHIR server's CapabilityStatement and for loading Bundles into a server.

The errors a caller maps to answers are re-exported here.
"""

from __future__ import annotations

from cds.fhir.client import FhirServerNotAllowed
from cds.fhir.prefetch import DataUnavailable, FhirAccess, PrefetchError

__all__ = ["DataUnavailable", "FhirAccess", "FhirServerNotAllowed", "PrefetchError"]
