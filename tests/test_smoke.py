def test_obtain_and_me(api_client, alice, password):
    response = api_client.post(
        "/auth/token/", {"username": "alice", "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    access = response.json()["access_token"]
    me = api_client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {access}")
    assert me.status_code == 200, me.content
