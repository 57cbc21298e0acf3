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
