"""The planted corpus through the whole flow: client -> Redis -> a real worker -> PostgreSQL COPY -> S3."""

from __future__ import annotations

import pytest

from tests.support import corpus
from tests.support.packs import object_bytes, seed

pytestmark = pytest.mark.e2e

WAIT = 90


@pytest.mark.parametrize("include_pii", [False, True])
def test_nothing_planted_leaves_in_tenant_or_review_packs(stack, worker, include_pii):
    ids = seed(stack, findings=20)
    with stack.session() as session:
        corpus.plant(session, ids)
    client = stack.client()

    tenant = client.request_pack(tenant_id=ids.tenant_id, actor_id=ids.manager_id, include_pii=include_pii)
    tenant_pack = client.wait(tenant.pack.id, ids.manager_id, timeout=WAIT)
    assert tenant_pack.status == "ready", tenant_pack
    review = client.request_review_pack(ids.review_id, ids.manager_id, include_pii=include_pii)
    review_pack = client.wait(review.pack.id, ids.manager_id, timeout=WAIT)
    assert review_pack.status == "ready", review_pack

    for pack in (tenant_pack, review_pack):
        files = corpus.entries(object_bytes(stack, pack))
        assert corpus.leaks(files, include_pii=include_pii) == []
        if include_pii:
            assert corpus.personal_data_kept(files)
