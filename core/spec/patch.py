"""A spec changed by JSON Patch (RFC 6902), as a verdict suggests or a retry asks: applied op by
op so an op that does not apply is named by its index (``/patch/2``)."""

from typing import Any

import jsonpatch
import jsonpointer

from core.errors import SpecError, SpecInvalid, pointer


def apply_patch(document: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """``document`` with ``ops`` applied (a new object; ``document`` is left as it was); an op that
    is malformed or names no place in the document raises SpecInvalid pointing at it."""
    patched = document
    for index, op in enumerate(ops):
        try:
            patched = jsonpatch.apply_patch(patched, [op])
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise SpecInvalid([SpecError(pointer("patch", index), f"the op does not apply: {exc}")]) from None
    return patched if ops else dict(document)
