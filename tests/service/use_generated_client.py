"""Submit a spec, wait for it and predict, through a client generated from Trainyard's OpenAPI
document (package ``trainyard_client``, made by openapi-python-client). Run by
test_openapi_contract.py: ``python use_generated_client.py URL TOKEN SPEC_JSON``."""

import json
import sys
import time

from trainyard_client import AuthenticatedClient
from trainyard_client.api.models import predict
from trainyard_client.api.runs import read_run, submit_run
from trainyard_client.models import ExperimentSpec, PredictRequest, PredictResponse, RunPublic

url, token, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = AuthenticatedClient(base_url=url, token=token, timeout=30)
run = submit_run.sync(client=client, body=ExperimentSpec.from_dict(spec))
assert isinstance(run, RunPublic), run
deadline = time.monotonic() + 120
while run.status not in ("succeeded", "failed", "cancelled"):
    assert time.monotonic() < deadline, f"still {run.status}"
    time.sleep(0.5)
    run = read_run.sync(run.id, client=client)
assert run.status == "succeeded", (run.status, run.failure)
inputs = PredictRequest.from_dict({"inputs": [[0.0] * 64, [16.0] * 64]})
answer = predict.sync(run.id, client=client, body=inputs)
assert isinstance(answer, PredictResponse), answer
print(json.dumps({"run": run.id, "status": run.status, "prediction": answer.to_dict()}))
