"""The golden runs give the digests recorded in golden_digests.json (see tests/golden.py).

A change that means to alter behaviour refreshes them (``python tests/golden.py --update`` or
``RECLOOP_UPDATE_GOLDEN=1 pytest tests/test_golden.py``) and says why in its commit.
"""

from __future__ import annotations

import json
import os

import golden
import pytest


def _stored() -> dict[str, dict[str, str]]:
    return json.loads(golden.DIGESTS.read_text())


@pytest.mark.parametrize("case", sorted(golden.cases()))
def test_golden_case(
    case: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if case in golden.NEEDS_MOVIELENS:
        monkeypatch.setenv("RECLOOP_DATA", str(request.getfixturevalue("movielens_path")))
    if case in golden.NEEDS_LLM:
        request.getfixturevalue("embedded_model")
    found = golden.record([case])[case]
    if os.environ.get("RECLOOP_UPDATE_GOLDEN"):
        stored = _stored() if golden.DIGESTS.exists() else {}
        stored[case] = found
        golden.DIGESTS.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
        pytest.skip("digests refreshed")
    assert found == _stored()[case], (
        f"golden run {case} changed; if the change of behaviour is meant, refresh it with "
        "`python tests/golden.py --update --only " + case + "` and say why in the commit"
    )


def test_every_case_has_a_digest() -> None:
    assert set(_stored()) == set(golden.cases())


def test_digest_sees_a_changed_value() -> None:
    import pandas as pd

    a = pd.DataFrame({"tick": [0, 1], "ctr": [0.5, 0.25]})
    b = a.copy()
    b.loc[1, "ctr"] = 0.2500001
    assert golden.frame_digest(a) == golden.frame_digest(a.copy())
    assert golden.frame_digest(a) != golden.frame_digest(b)
    assert golden.frame_digest(a) != golden.frame_digest(a.astype({"tick": "int32"}))
