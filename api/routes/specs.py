"""Specs: validation without running, and the JSON Schema."""

from typing import Any

from fastapi import APIRouter

from api.deps import ServiceDep, TenantDep, data_access_for
from api.openapi import SPEC_BODY
from api.routes.runs import SpecDocument
from core.engine.plan import plan_experiment
from core.spec.schema import ExperimentSpec, parse_spec
from core.store.submit import check_limits

router = APIRouter(prefix="/v1/specs", tags=["specs"])


@router.post("/validate", openapi_extra=SPEC_BODY)
def validate_spec(document: SpecDocument, service: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    """The resolved spec with defaults, the per-layer table (output shape, parameters, FLOPs),
    the parameter count and a memory estimate; 422 problem+json with pointers when invalid."""
    with data_access_for(service, tenant):
        plan = plan_experiment(parse_spec(document))
    check_limits(plan, service.settings)
    return plan.report()


@router.get("/schema")
def spec_schema() -> dict[str, Any]:
    """The experiment spec's JSON Schema."""
    return ExperimentSpec.model_json_schema()
