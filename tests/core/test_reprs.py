"""Reprs of the public handles: informative, HTML-capable, never showing secrets."""

from __future__ import annotations

import icechunk as ic


def test_reprs_show_state_and_no_secrets(tmp_path) -> None:
    repo = ic.Repository.create(ic.local_filesystem_storage(str(tmp_path / "r")))
    session = repo.writable_session("main")
    objects = [repo, session, session.store, repo.lookup_snapshot(repo.lookup_branch("main")), session.status()]
    for obj in objects:
        text = repr(obj)
        assert text.startswith("icechunk.")
        assert "<pre>" in obj._repr_html_()
    assert "branch='main'" in repr(session)
    assert "1CECHNKREP0F1RSTCMT0" in repr(session.store)
    assert "Repository initialized" in repr(repo.lookup_snapshot("1CECHNKREP0F1RSTCMT0"))

    secret = "SECRETKEYVALUE123"
    storage = ic.s3_storage(
        bucket="b", prefix="p", endpoint_url="http://127.0.0.1:9", allow_http=True,
        access_key_id="AKIDEXAMPLE", secret_access_key=secret, session_token="TOKENVALUE456",
    )
    for text in (repr(storage), str(storage), repr(ic.Repository(repo._engine.reopen(None, None)))):
        assert secret not in text
        assert "TOKENVALUE456" not in text
    creds = ic.s3_static_credentials(access_key_id="AKIDEXAMPLE", secret_access_key=secret)
    assert secret not in repr(creds)
