"""PWD's POST / counts against the native quotas, an embedding origin's budget included."""

from __future__ import annotations

import pytest

from tests.compat_helpers import Sdk, compat_server

pytestmark = pytest.mark.docker


def test_sessions_from_an_embedding_origin_count_against_its_budget(engine, tmp_path):
    with compat_server(tmp_path, PWD_EMBED_SESSIONS_PER_ORIGIN="1") as server:
        docs, direct = Sdk(server.url), Sdk(server.url, origin=None)
        first = docs.new_session()["session_id"]
        refused = docs.post_root()
        assert refused.status == 429
        assert refused.code == "origin_limit"
        other = direct.new_session()["session_id"]
        for session_id in (first, other):
            assert docs.close(session_id).status == 200
        again = docs.new_session()["session_id"]
        assert docs.close(again).status == 200
