def test_it_reports_healthy_without_a_key(anon, db):
    response = anon.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": {"status": "ok"}}


def test_it_serves_the_openapi_schema(owner):
    response = owner.client().get("/api/schema/")
    assert response.status_code == 200
    assert b"openapi" in response.content


def test_it_rejects_a_wrong_key_with_the_envelope(anon, db):
    anon.credentials(HTTP_AUTHORIZATION="Bearer sb-not-a-real-key")
    response = anon.get("/api/schema/?format=json")
    assert response.status_code == 401
    assert response.json()["success"] is False
    assert "Incorrect API key" in response.json()["message"]


def test_the_docs_page_loads_its_scripts_from_our_own_static_files(owner):
    import re

    from django.contrib.staticfiles import finders

    response = owner.client().get("/api/docs/")
    assert response.status_code == 200
    sources = re.findall(rb'(?:src|href)="([^"]+)"', response.content)
    assets = [s.decode() for s in sources if s.endswith((b".js", b".css"))]
    assert assets and all(a.startswith("/static/drf_spectacular_sidecar/") for a in assets), assets
    for asset in assets:
        assert finders.find(asset.removeprefix("/static/")), asset
